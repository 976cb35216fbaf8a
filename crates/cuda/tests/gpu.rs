//! The CUDA backend on a real NVIDIA GPU. Without one (no driver, no
//! device) these tests skip, saying so, unless `ACCELHUB_TEST_CUDA` is set
//! (GPU CI sets it): then a missing GPU, or a missing NVRTC, fails.
#![allow(clippy::unwrap_used)] // a test: a panic is a failure

use accelhub_cuda::{CudaBackend, CudaConfig};
use accelhub_device::{Backend, CallError, CallInput, ImageId, ObjectArg};
use accelhub_domain::kernel::KernelBundle;
use accelhub_domain::{Limits, Manifest};
use bytes::Bytes;
use std::sync::Arc;

fn required() -> bool {
    std::env::var_os("ACCELHUB_TEST_CUDA").is_some()
}

fn backend(slots: usize) -> Option<CudaBackend> {
    match CudaBackend::discover(CudaConfig {
        slots_per_device: slots,
        ..Default::default()
    }) {
        Ok(b) => Some(b),
        Err(e) if required() => panic!("ACCELHUB_TEST_CUDA is set but {e}"),
        Err(e) => {
            eprintln!("skipping: {e}");
            None
        }
    }
}

/// A backend that can build CUDA C source (one with NVRTC).
fn nvrtc_backend(slots: usize) -> Option<CudaBackend> {
    let b = backend(slots)?;
    if b.nvrtc_version().is_none() {
        if required() {
            panic!("ACCELHUB_TEST_CUDA is set but this node has no NVRTC (libnvrtc)");
        }
        eprintln!("skipping: no NVRTC (libnvrtc) on this node");
        return None;
    }
    Some(b)
}

/// An image from a program and the `[[implementation]]` keys of ip.toml
/// that describe it; `artifact` names the program file (`.cu` is source,
/// anything else a binary).
fn image_as(artifact: &str, program: &str, implementation: &str) -> (ImageId, Bytes) {
    let manifest = format!(
        r#"
name = "acme/t"
version = "1.0.0"
summary = "t"
[[object]]
name = "lut"
required = false
[[implementation]]
device = "cuda"
artifact = "{artifact}"
{implementation}
[[test]]
input = "a"
expect = "b"
[pricing]
per_call = 0
"#
    );
    let m = Manifest::parse(&manifest).unwrap();
    let spec = m.implementations[0].kernel.clone().unwrap();
    let bytes = KernelBundle {
        spec,
        program: program.as_bytes().to_vec(),
    }
    .encode();
    let id = ImageId(format!("cuda:{:x}", fxhash(&bytes)));
    (id, Bytes::from(bytes))
}

fn image(source: &str, implementation: &str) -> (ImageId, Bytes) {
    image_as("k.cu", source, implementation)
}

fn fxhash(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, x| {
        (h ^ *x as u64).wrapping_mul(0x100000001b3)
    })
}

fn call(input: &[u8], params: serde_json::Value) -> CallInput {
    CallInput::in_memory(
        Bytes::copy_from_slice(input),
        params.as_object().cloned().unwrap_or_default(),
        Limits::DEFAULT,
    )
}

const ADD: &str = r#"
extern "C" __global__ void add(const unsigned char* in, unsigned char* out, unsigned int n, unsigned int k) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = in[i] + k;
}
"#;

const ADD_TOML: &str = r#"output = "input"
[[implementation.kernel]]
name = "add"
global = ["input"]
local = [64]
args = ["input", "output", "u32 (input)", "u32 k = 1"]"#;

/// `out[i] = in[i] + k`, with `k` a parameter (default 1).
fn add_image() -> (ImageId, Bytes) {
    image(ADD, ADD_TOML)
}

const SEQ_TOML: &str = r#"output = "input * 4"
buffers = { tmp = "input * 4" }
[[implementation.kernel]]
name = "twice"
global = ["input"]
local = [32]
args = ["input", "buffer tmp", "u32 (input)"]
[[implementation.kernel]]
name = "plus"
global = ["input"]
args = ["buffer tmp", "output", "u32 (input)", "u32 k"]"#;

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

const MAP_TOML: &str = r#"output = "input"
[[implementation.kernel]]
name = "map"
global = ["input"]
args = ["input", "output", "object lut", "u32 (input)"]"#;

const FILL_TOML: &str = r#"output = "input"
[[implementation.kernel]]
name = "fill"
global = ["input"]
args = ["output", "u32 (input)", "u32 v = 7"]"#;

/// Runs everywhere: every declaration the GPU tests use is a valid
/// `ip.toml` kernel implementation.
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
        let (id, art) = image(ADD, toml);
        assert!(id.0.starts_with("cuda:"));
        assert!(KernelBundle::decode(&art).is_ok());
    }
    let (_, art) = image_as("fill.ptx", FILL_PTX, FILL_TOML);
    let bundle = KernelBundle::decode(&art).unwrap();
    assert_eq!(
        bundle.spec.format,
        accelhub_domain::kernel::ProgramFormat::Binary
    );
    let (_, art) = image(ADD, ADD_TOML);
    let bundle = KernelBundle::decode(&art).unwrap();
    assert_eq!(
        bundle.spec.format,
        accelhub_domain::kernel::ProgramFormat::Source
    );
}

#[tokio::test]
async fn discovery_reports_the_hardware() {
    let Some(b) = backend(2) else { return };
    let status = b.status();
    assert_eq!(status.class, "cuda");
    assert_eq!(b.slots(), 2 * b.hardware().len());
    for h in b.hardware() {
        assert!(!h.name.is_empty(), "{h:?}");
        assert_eq!(h.vendor, "NVIDIA");
        assert!(h.runtime.starts_with("CUDA driver "), "{h:?}");
        assert!(h.memory_bytes > 0 && h.compute_units > 0, "{h:?}");
        assert_eq!(h.slots, 2);
    }
    assert_eq!(status.hardware, b.hardware());
    eprintln!("{:?}; NVRTC {:?}", b.hardware(), b.nvrtc_version());
}

#[tokio::test]
async fn a_kernel_is_programmed_once_and_called_with_parameters() {
    let Some(b) = nvrtc_backend(1) else { return };
    let (id, art) = add_image();
    assert!(!b.is_loaded(&id));
    let first = b.load(&id, art.clone()).await.unwrap();
    assert!(!first.cached && first.duration.as_nanos() > 0);
    assert!(b.is_loaded(&id));
    assert!(b.status().images.contains(&id));
    let second = b.load(&id, art).await.unwrap();
    assert!(second.cached, "the second load is a warm hit");

    let input: Vec<u8> = (0..200u32).map(|i| i as u8).collect();
    let out = b
        .call(&id, call(&input, serde_json::json!({})))
        .await
        .unwrap();
    let want: Vec<u8> = input.iter().map(|x| x.wrapping_add(1)).collect();
    assert_eq!(out.output.bytes(), want);
    assert!(
        !String::from_utf8_lossy(&out.log).contains("programmed slot"),
        "the call reprogrammed the slot"
    );
    let out = b
        .call(&id, call(&input, serde_json::json!({"k": 7})))
        .await
        .unwrap();
    let want: Vec<u8> = input.iter().map(|x| x.wrapping_add(7)).collect();
    assert_eq!(out.output.bytes(), want);

    // A bad parameter is the caller's error, and the device keeps serving.
    let e = b
        .call(&id, call(&input, serde_json::json!({"k": -1})))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, CallError::Input(m) if m.contains("'k'")),
        "{e}"
    );
    assert!(b
        .call(&id, call(&input, serde_json::json!({})))
        .await
        .is_ok());
}

#[tokio::test]
async fn empty_input_launches_nothing_and_returns_empty_output() {
    let Some(b) = nvrtc_backend(1) else { return };
    let (id, art) = add_image();
    b.load(&id, art).await.unwrap();
    let out = b.call(&id, call(b"", serde_json::json!({}))).await.unwrap();
    assert!(out.output.is_empty());
}

#[tokio::test]
async fn a_kernel_that_does_not_build_reports_its_build_log() {
    let Some(b) = nvrtc_backend(1) else { return };
    let (id, art) = image(
        r#"extern "C" __global__ void add(unsigned char* out) { out[0] = undeclared_thing; }"#,
        ADD_TOML,
    );
    let e = b.load(&id, art).await.unwrap_err().to_string();
    assert!(e.contains("build log"), "{e}");
    assert!(e.contains("undeclared_thing"), "{e}");
    assert!(!b.is_loaded(&id));
}

#[tokio::test]
async fn a_missing_or_mangled_kernel_and_a_wrong_signature_fail_the_load() {
    let Some(b) = nvrtc_backend(1) else { return };
    // Without extern "C" the name is mangled.
    let (id, art) = image(&ADD.replace("extern \"C\" ", ""), ADD_TOML);
    let e = b.load(&id, art).await.unwrap_err().to_string();
    assert!(
        e.contains("no kernel 'add'") && e.contains("extern \"C\""),
        "{e}"
    );
    // Declared with three arguments; the kernel takes four. Drivers from
    // 12.4 on report kernel parameters, so the load catches it.
    let (id, art) = image(ADD, &ADD_TOML.replace(", \"u32 k = 1\"", ""));
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
    let (id, art) = image(ADD, &ADD_TOML.replace("local = [64]", "local = [2048]"));
    let e = b.load(&id, art).await.unwrap_err().to_string();
    assert!(e.contains("threads per block"), "{e}");
}

#[tokio::test]
async fn a_kernel_writing_out_of_bounds_fails_its_call_and_the_device_keeps_serving() {
    let Some(b) = nvrtc_backend(1) else { return };
    // No bounds check: the block of 64 writes past a 10-byte output.
    let (bad, art) = image(
        r#"extern "C" __global__ void add(const unsigned char* in, unsigned char* out, unsigned int n, unsigned int k) {
            unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
            out[i] = 0xEE;
        }"#,
        ADD_TOML,
    );
    b.load(&bad, art).await.unwrap();
    let e = b
        .call(&bad, call(&[0u8; 10], serde_json::json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, CallError::Trap { message, .. } if message.contains("past the end of the output buffer (10 bytes")),
        "{e}"
    );
    let (good, art) = add_image();
    b.load(&good, art).await.unwrap();
    let out = b
        .call(&good, call(&[1u8; 10], serde_json::json!({})))
        .await
        .unwrap();
    assert_eq!(out.output.bytes(), vec![2u8; 10]);
}

#[tokio::test]
async fn a_faulting_kernel_resets_its_slot_and_the_device_keeps_serving() {
    let Some(b) = nvrtc_backend(1) else { return };
    let (good, art) = add_image();
    b.load(&good, art).await.unwrap();
    // A write a terabyte past the output: an illegal address, which leaves
    // the context unusable.
    let (bad, art) = image(
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
async fn kernels_run_in_sequence_over_scratch_buffers() {
    let Some(b) = nvrtc_backend(1) else { return };
    let (id, art) = image(
        r#"
        extern "C" __global__ void twice(const unsigned char* in, unsigned int* tmp, unsigned int n) {
            unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
            if (i < n) tmp[i] = 2u * in[i];
        }
        extern "C" __global__ void plus(const unsigned int* tmp, unsigned int* out, unsigned int n, unsigned int k) {
            unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
            if (i < n) out[i] = tmp[i] + k;
        }"#,
        SEQ_TOML,
    );
    b.load(&id, art).await.unwrap();
    let out = b
        .call(&id, call(&[1, 2, 200], serde_json::json!({"k": 5})))
        .await
        .unwrap();
    let words: Vec<u32> = out
        .output
        .bytes()
        .chunks(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(words, vec![7, 9, 405]);
    // More than one default block (256 threads) for the second kernel.
    let input: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    let out = b
        .call(&id, call(&input, serde_json::json!({"k": 1})))
        .await
        .unwrap();
    let words: Vec<u32> = out
        .output
        .bytes()
        .chunks(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let want: Vec<u32> = input.iter().map(|x| 2 * *x as u32 + 1).collect();
    assert_eq!(words, want);
    let e = b
        .call(&id, call(&[1], serde_json::json!({})))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("'k' (u32) is required"), "{e}");
}

#[tokio::test]
async fn local_arguments_are_dynamic_shared_memory() {
    let Some(b) = nvrtc_backend(1) else { return };
    // Reverse each block of 64 bytes through shared memory; `local 64` is
    // not a kernel parameter.
    let (id, art) = image(
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

fn object(key: &str, bytes: &'static [u8]) -> ObjectArg {
    ObjectArg {
        key: key.into(),
        sha256: content_hash(bytes),
        size: bytes.len() as u64,
        open: Arc::new(move || {
            Box::pin(async move {
                Ok(Box::pin(futures::stream::once(async move {
                    Ok(Bytes::from_static(bytes))
                }))
                    as futures::stream::BoxStream<
                        'static,
                        std::io::Result<Bytes>,
                    >)
            })
        }),
    }
}

/// A stand-in content hash: the backend only compares them.
fn content_hash(b: &[u8]) -> String {
    format!("{:016x}", fxhash(b))
}

#[tokio::test]
async fn object_inputs_stay_resident_in_device_memory() {
    let Some(b) = nvrtc_backend(1) else { return };
    let (id, art) = image(
        r#"extern "C" __global__ void map(const unsigned char* in, unsigned char* out, const unsigned char* lut, unsigned int n) {
            unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
            if (i < n) out[i] = lut[in[i]];
        }"#,
        MAP_TOML,
    );
    b.load(&id, art).await.unwrap();
    static LUT: [u8; 256] = {
        let mut t = [0u8; 256];
        let mut i = 0;
        while i < 256 {
            t[i] = 255 - i as u8;
            i += 1;
        }
        t
    };
    let lut = object("tables/invert", &LUT);
    let mk = || {
        let mut c = call(&[0, 1, 200], serde_json::json!({}));
        c.objects.insert("lut".into(), lut.clone());
        c
    };
    let first = b.call(&id, mk()).await.unwrap();
    assert_eq!(first.output.bytes(), vec![255, 254, 55]);
    assert!(String::from_utf8_lossy(&first.log).contains("now resident"));
    assert!(b.status().resident.contains(&lut.sha256));
    let second = b.call(&id, mk()).await.unwrap();
    assert_eq!(second.output.bytes(), vec![255, 254, 55]);
    assert!(
        !String::from_utf8_lossy(&second.log).contains("now resident"),
        "the table was uploaded again"
    );
    // Without the object: the caller's error.
    let e = b
        .call(&id, call(&[0], serde_json::json!({})))
        .await
        .unwrap_err();
    assert!(matches!(e, CallError::Input(_)), "{e}");
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
    let (id, art) = image_as("fill.ptx", FILL_PTX, FILL_TOML);
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
    let (id, art) = image_as("fill.ptx", "this is not PTX", FILL_TOML);
    let e = b.load(&id, art).await.unwrap_err().to_string();
    assert!(e.contains("neither PTX"), "{e}");
}

#[tokio::test]
async fn a_second_slot_is_programmed_from_the_cached_ptx() {
    let Some(b) = nvrtc_backend(2) else { return };
    let (id, art) = add_image();
    let cold = b.load(&id, art).await.unwrap();
    // Two calls at once: one runs on the programmed slot, the other
    // programs the second slot from the PTX the first compile produced.
    let input = vec![3u8; 1 << 16];
    let (x, y) = tokio::join!(
        b.call(&id, call(&input, serde_json::json!({}))),
        b.call(&id, call(&input, serde_json::json!({})))
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.output.bytes(), vec![4u8; 1 << 16]);
    assert_eq!(y.output.bytes(), vec![4u8; 1 << 16]);
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&x.log),
        String::from_utf8_lossy(&y.log)
    );
    eprintln!("cold build {:?}; {logs}", cold.duration);
    assert_eq!(logs.matches("programmed slot").count(), 1, "{logs}");
}
