//! The OpenCL backend on a real OpenCL runtime (PoCL on the CPU here and
//! in CI). Without one these tests skip, saying so, unless
//! `ACCELHUB_TEST_OPENCL` is set (CI sets it): then a missing runtime fails.
//!
//! The cases every kernel backend shares are the conformance suite
//! (`accelhub_device::conformance`), run here with OpenCL C kernels; this
//! file adds what only OpenCL does (argument checks, vendor binaries).
#![allow(clippy::unwrap_used)] // a test: a panic is a failure

use accelhub_device::conformance::{call, image, image_as, present, Kit, ADD_TOML};
use accelhub_device::{Backend, CallError};
use accelhub_domain::kernel::KernelBundle;
use accelhub_opencl::{OpenClBackend, OpenClConfig};
use bytes::Bytes;

fn backend(slots: usize) -> Option<OpenClBackend> {
    let config = OpenClConfig {
        slots_per_device: slots,
        ..Default::default()
    };
    present(OpenClBackend::discover(config), "ACCELHUB_TEST_OPENCL")
}

fn kit() -> Kit<OpenClBackend> {
    Kit {
        class: "opencl",
        source_file: "k.cl",
        backend,
        add: r#"
__kernel void add(__global const uchar* in, __global uchar* out, uint n, uint k) {
    size_t i = get_global_id(0);
    if (i < n) out[i] = in[i] + k;
}
"#,
        add_unbounded: r#"
__kernel void add(__global const uchar* in, __global uchar* out, uint n, uint k) {
    size_t i = get_global_id(0);
    out[i] = 0xEE;
}"#,
        broken: "__kernel void add(__global uchar* out) { out[0] = undeclared_thing; }",
        sequence: r#"
__kernel void twice(__global const uchar* in, __global uint* tmp, uint n) {
    size_t i = get_global_id(0);
    if (i < n) tmp[i] = 2u * in[i];
}
__kernel void plus(__global const uint* tmp, __global uint* out, uint n, uint k) {
    size_t i = get_global_id(0);
    if (i < n) out[i] = tmp[i] + k;
}"#,
        map: r#"
__kernel void map(__global const uchar* in, __global uchar* out, __global const uchar* lut, uint n) {
    size_t i = get_global_id(0);
    if (i < n) out[i] = lut[in[i]];
}"#,
    }
}

accelhub_device::kernel_conformance!(kit);

#[tokio::test]
async fn discovery_names_the_platform_and_device() {
    let Some(b) = backend(1) else { return };
    assert!(!b.hardware().is_empty());
    let status = b.status();
    assert_eq!(status.class, "opencl");
    assert!(!status.hardware[0].name.is_empty(), "{status:?}");
    assert_eq!(status.hardware, b.hardware());
}

#[tokio::test]
async fn a_wrong_signature_fails_cleanly() {
    let Some(b) = backend(1) else { return };
    let kit = kit();
    // Declared with three arguments; the kernel takes four.
    let (id, art) = image(&kit, kit.add, &ADD_TOML.replace(", \"u32 k = 1\"", ""));
    let e = b.load(&id, art).await.unwrap_err().to_string();
    assert!(
        e.contains("takes 4 arguments but ip.toml declares 3"),
        "{e}"
    );
    // A scalar of the wrong size (u64 for a uint) fails the call, not the
    // device.
    let (id, art) = image(&kit, kit.add, &ADD_TOML.replace("u32 k = 1", "u64 k = 1"));
    b.load(&id, art).await.unwrap();
    let e = b
        .call(&id, call(b"abc", serde_json::json!({})))
        .await
        .unwrap_err();
    assert!(matches!(e, CallError::Device(_)), "{e}");
    assert!(e.to_string().contains("argument 3 ('u64 k = 1')"), "{e}");
    let (good, art) = image(&kit, kit.add, ADD_TOML);
    b.load(&good, art).await.unwrap();
    assert_eq!(
        b.call(&good, call(b"abc", serde_json::json!({})))
            .await
            .unwrap()
            .output
            .bytes(),
        Bytes::from_static(b"bcd")
    );
}

/// A device binary compiled offline (here: by the same runtime, as a
/// vendor's toolchain would for its card) is loaded as is.
#[tokio::test]
async fn a_vendor_binary_is_loaded_with_create_program_with_binary() {
    let Some(b) = backend(1) else { return };
    // Compile the add kernel to this device's binary, as `xocc`/`aoc` would.
    let binary = {
        use opencl3::context::Context;
        use opencl3::device::{Device, CL_DEVICE_TYPE_ALL};
        use opencl3::program::Program;
        let platform = opencl3::platform::get_platforms().unwrap().remove(0);
        let id = platform.get_devices(CL_DEVICE_TYPE_ALL).unwrap()[0];
        let context = Context::from_device(&Device::new(id)).unwrap();
        let program = Program::create_and_build_from_source(&context, kit().add, "").unwrap();
        program.get_binaries().unwrap().remove(0)
    };
    let decl = ADD_TOML.replace(
        "output = \"input\"",
        "format = \"binary\"\noutput = \"input\"",
    );
    let bundle = |program: &[u8]| image_as("opencl", "k.cl", program, &decl);
    let (id, art) = bundle(&binary);
    assert_eq!(
        KernelBundle::decode(&art).unwrap().spec.format,
        accelhub_domain::kernel::ProgramFormat::Binary
    );
    b.load(&id, art).await.unwrap();
    let out = b
        .call(&id, call(b"HAL", serde_json::json!({})))
        .await
        .unwrap();
    assert_eq!(out.output.bytes(), Bytes::from_static(b"IBM"));
    // Bytes that are no binary for this device: a clear load error.
    let (junk, art) = bundle(b"\x7fELF not really");
    let e = b.load(&junk, art).await.unwrap_err().to_string();
    assert!(e.contains("does not take this binary"), "{e}");
}
