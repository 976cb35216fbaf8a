//! The CUDA backend on a real NVIDIA GPU. Without one (no driver, no
//! device) these tests skip, saying so, unless `ACCELHUB_TEST_CUDA` is set
//! (GPU CI sets it): then a missing GPU, or a missing NVRTC, fails.
//!
//! The cases every kernel backend shares are the conformance suite
//! (`accelhub_device::conformance`), run here with CUDA C kernels; this
//! file adds what only CUDA does (mangled names, sticky faults and slot
//! resets, dynamic shared memory, 2-D grids, PTX programs).
#![allow(clippy::unwrap_used)] // a test: a panic is a failure

use accelhub_cuda::{CudaBackend, CudaConfig};
use accelhub_device::conformance::{
    call, image, image_as, present, Kit, ADD_TOML, MAP_TOML, SEQ_TOML,
};
use accelhub_device::{Backend, CallError, ImageId};
use accelhub_domain::kernel::KernelBundle;
use bytes::Bytes;

fn required() -> bool {
    std::env::var_os("ACCELHUB_TEST_CUDA").is_some()
}

fn backend(slots: usize) -> Option<CudaBackend> {
    let config = CudaConfig {
        slots_per_device: slots,
        ..Default::default()
    };
    present(CudaBackend::discover(config), "ACCELHUB_TEST_CUDA")
}

/// A backend that can build CUDA C source (one with NVRTC).
fn nvrtc_backend(slots: usize) -> Option<CudaBackend> {
    let b = backend(slots)?;
    if b.runtime().nvrtc_version().is_none() {
        if required() {
            panic!("ACCELHUB_TEST_CUDA is set but this node has no NVRTC (libnvrtc)");
        }
        eprintln!("skipping: no NVRTC (libnvrtc) on this node");
        return None;
    }
    Some(b)
}

fn kit() -> Kit<CudaBackend> {
    Kit {
        class: "cuda",
        source_file: "k.cu",
        backend: nvrtc_backend,
        add: r#"
extern "C" __global__ void add(const unsigned char* in, unsigned char* out, unsigned int n, unsigned int k) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = in[i] + k;
}
"#,
        add_unbounded: r#"extern "C" __global__ void add(const unsigned char* in, unsigned char* out, unsigned int n, unsigned int k) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    out[i] = 0xEE;
}"#,
        broken: r#"extern "C" __global__ void add(unsigned char* out) { out[0] = undeclared_thing; }"#,
        sequence: r#"
extern "C" __global__ void twice(const unsigned char* in, unsigned int* tmp, unsigned int n) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) tmp[i] = 2u * in[i];
}
extern "C" __global__ void plus(const unsigned int* tmp, unsigned int* out, unsigned int n, unsigned int k) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = tmp[i] + k;
}"#,
        map: r#"extern "C" __global__ void map(const unsigned char* in, unsigned char* out, const unsigned char* lut, unsigned int n) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = lut[in[i]];
}"#,
    }
}

accelhub_device::kernel_conformance!(kit);

/// `out[i] = in[i] + k`, with `k` a parameter (default 1).
fn add_image() -> (ImageId, Bytes) {
    image(&kit(), kit().add, ADD_TOML)
}

const REV_TOML: &str = r#"output = "input"
input_multiple = 64
[[implementation.kernel]]
name = "rev"
global = ["input"]
local = [64]
args = ["input", "output", "local 64", "u32 (input)"]"#;

const TRANSPOSE_TOML: &str = r#"output = "input"
input_size = "w * h"
[[implementation.kernel]]
name = "transpose"
global = ["w", "h"]
args = ["input", "output", "u32 w", "u32 h"]"#;

const FILL_TOML: &str = r#"output = "input"
[[implementation.kernel]]
name = "fill"
global = ["input"]
args = ["output", "u32 (input)", "u32 v = 7"]"#;

/// Runs everywhere: every declaration the GPU tests use is a valid
/// `ip.toml` kernel implementation, of the format its file name says.
#[test]
fn the_test_images_are_valid_kernel_implementations() {
    for toml in [
        ADD_TOML,
        SEQ_TOML,
        REV_TOML,
        TRANSPOSE_TOML,
        MAP_TOML,
        FILL_TOML,
    ] {
        let (id, art) = image(&kit(), kit().add, toml);
        assert!(id.0.starts_with("cuda:"));
        assert!(KernelBundle::decode(&art).is_ok());
    }
    let (_, art) = image_as("cuda", "fill.ptx", FILL_PTX.as_bytes(), FILL_TOML);
    let bundle = KernelBundle::decode(&art).unwrap();
    assert_eq!(
        bundle.spec.format,
        accelhub_domain::kernel::ProgramFormat::Binary
    );
    let (_, art) = add_image();
    let bundle = KernelBundle::decode(&art).unwrap();
    assert_eq!(
        bundle.spec.format,
        accelhub_domain::kernel::ProgramFormat::Source
    );
}

#[tokio::test]
async fn discovery_reports_nvidia_hardware_and_the_driver() {
    let Some(b) = backend(2) else { return };
    for h in b.hardware() {
        assert_eq!(h.vendor, "NVIDIA");
        assert!(h.runtime.starts_with("CUDA driver "), "{h:?}");
        assert!(h.memory_bytes > 0 && h.compute_units > 0, "{h:?}");
    }
    assert_eq!(b.status().hardware, b.hardware());
    eprintln!(
        "{:?}; NVRTC {:?}",
        b.hardware(),
        b.runtime().nvrtc_version()
    );
}

#[tokio::test]
async fn a_missing_or_mangled_kernel_and_a_wrong_signature_fail_the_load() {
    let Some(b) = nvrtc_backend(1) else { return };
    // Without extern "C" the name is mangled.
    let (id, art) = image(&kit(), &kit().add.replace("extern \"C\" ", ""), ADD_TOML);
    let e = b.load(&id, art).await.unwrap_err().to_string();
    assert!(
        e.contains("no kernel 'add'") && e.contains("extern \"C\""),
        "{e}"
    );
    // Declared with three arguments; the kernel takes four. Drivers from
    // 12.4 on report kernel parameters, so the load catches it.
    let (id, art) = image(&kit(), kit().add, &ADD_TOML.replace(", \"u32 k = 1\"", ""));
    match b.load(&id, art).await {
        Err(e) => {
            let e = e.to_string();
            assert!(
                e.contains("takes 4 parameters but ip.toml declares 3"),
                "{e}"
            );
        }
        Ok(_) => eprintln!("note: this driver does not report kernel parameters"),
    }
    // A work-group larger than CUDA's blocks.
    let (id, art) = image(
        &kit(),
        kit().add,
        &ADD_TOML.replace("local = [64]", "local = [2048]"),
    );
    let e = b.load(&id, art).await.unwrap_err().to_string();
    assert!(e.contains("threads per block"), "{e}");
}

#[tokio::test]
async fn a_faulting_kernel_resets_its_slot_and_the_device_keeps_serving() {
    let Some(b) = nvrtc_backend(1) else { return };
    let (good, art) = add_image();
    b.load(&good, art).await.unwrap();
    // A write a terabyte past the output: an illegal address, which leaves
    // the context unusable.
    let (bad, art) = image(
        &kit(),
        r#"extern "C" __global__ void add(const unsigned char* in, unsigned char* out, unsigned int n, unsigned int k) {
            ((volatile unsigned char*)out)[1ull << 40] = 1;
        }"#,
        ADD_TOML,
    );
    b.load(&bad, art).await.unwrap();
    let e = b
        .call(&bad, call(&[0u8; 10], serde_json::json!({})))
        .await
        .unwrap_err();
    assert!(matches!(e, CallError::Device(_)), "{e}");
    assert!(e.to_string().contains("context was reset"), "{e}");
    // The slot's programs went with its context.
    assert!(!b.status().images.contains(&good), "{:?}", b.status());
    // The next call programs the slot again and works.
    let out = b
        .call(&good, call(&[1u8; 10], serde_json::json!({})))
        .await
        .unwrap();
    assert_eq!(out.output.bytes(), vec![2u8; 10]);
    assert!(String::from_utf8_lossy(&out.log).contains("programmed slot 0"));
}

#[tokio::test]
async fn local_arguments_are_dynamic_shared_memory() {
    let Some(b) = nvrtc_backend(1) else { return };
    // Reverse each block of 64 bytes through shared memory; `local 64` is
    // not a kernel parameter.
    let (id, art) = image(
        &kit(),
        r#"extern "C" __global__ void rev(const unsigned char* in, unsigned char* out, unsigned int n) {
            extern __shared__ unsigned char tile[];
            unsigned int t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
            tile[t] = i < n ? in[i] : 0;
            __syncthreads();
            if (i < n) out[i] = tile[blockDim.x - 1 - t];
        }"#,
        REV_TOML,
    );
    b.load(&id, art).await.unwrap();
    let input: Vec<u8> = (0..128u32).map(|i| i as u8).collect();
    let out = b
        .call(&id, call(&input, serde_json::json!({})))
        .await
        .unwrap();
    let want: Vec<u8> = input
        .chunks(64)
        .flat_map(|c| c.iter().rev().copied().collect::<Vec<_>>())
        .collect();
    assert_eq!(out.output.bytes(), want);
}

#[tokio::test]
async fn two_dimensional_launches_without_a_work_group_cover_the_grid() {
    let Some(b) = nvrtc_backend(1) else { return };
    let (id, art) = image(
        &kit(),
        r#"extern "C" __global__ void transpose(const unsigned char* in, unsigned char* out, unsigned int w, unsigned int h) {
            unsigned int x = blockIdx.x * blockDim.x + threadIdx.x;
            unsigned int y = blockIdx.y * blockDim.y + threadIdx.y;
            if (x < w && y < h) out[x * h + y] = in[y * w + x];
        }"#,
        TRANSPOSE_TOML,
    );
    b.load(&id, art).await.unwrap();
    let (w, h) = (37usize, 21usize);
    let input: Vec<u8> = (0..w * h).map(|i| i as u8).collect();
    let out = b
        .call(&id, call(&input, serde_json::json!({"w": w, "h": h})))
        .await
        .unwrap();
    let mut want = vec![0u8; w * h];
    for y in 0..h {
        for x in 0..w {
            want[x * h + y] = input[y * w + x];
        }
    }
    assert_eq!(out.output.bytes(), want);
}

/// `fill(out, n, v)`: `out[i] = v` for `i < n`, written by hand in PTX
/// for the oldest target a current driver takes, so the driver JIT-compiles
/// it for whatever GPU runs the test.
const FILL_PTX: &str = r#"
.version 7.0
.target sm_52
.address_size 64

.visible .entry fill(
    .param .u64 fill_param_0,
    .param .u32 fill_param_1,
    .param .u32 fill_param_2
)
{
    .reg .pred %p<2>;
    .reg .b32 %r<6>;
    .reg .b64 %rd<5>;

    ld.param.u64 %rd1, [fill_param_0];
    ld.param.u32 %r2, [fill_param_1];
    ld.param.u32 %r3, [fill_param_2];
    mov.u32 %r4, %ctaid.x;
    mov.u32 %r5, %ntid.x;
    mov.u32 %r1, %tid.x;
    mad.lo.s32 %r1, %r4, %r5, %r1;
    setp.ge.u32 %p1, %r1, %r2;
    @%p1 bra DONE;
    cvta.to.global.u64 %rd2, %rd1;
    cvt.u64.u32 %rd3, %r1;
    add.s64 %rd4, %rd2, %rd3;
    st.global.u8 [%rd4], %r3;
DONE:
    ret;
}
"#;

#[tokio::test]
async fn a_ptx_binary_is_loaded_as_is() {
    // No NVRTC needed: the driver loads PTX itself.
    let Some(b) = backend(1) else { return };
    let (id, art) = image_as("cuda", "fill.ptx", FILL_PTX.as_bytes(), FILL_TOML);
    let loaded = b.load(&id, art).await.unwrap();
    assert!(!loaded.cached);
    let out = b
        .call(&id, call(&[0u8; 1000], serde_json::json!({})))
        .await
        .unwrap();
    assert_eq!(out.output.bytes(), vec![7u8; 1000]);
    let out = b
        .call(&id, call(&[0u8; 3], serde_json::json!({"v": 9})))
        .await
        .unwrap();
    assert_eq!(out.output.bytes(), vec![9u8; 3]);

    // Bytes that are neither PTX nor a cubin.
    let (id, art) = image_as("cuda", "fill.ptx", b"this is not PTX", FILL_TOML);
    let e = b.load(&id, art).await.unwrap_err().to_string();
    assert!(e.contains("neither PTX"), "{e}");
}
