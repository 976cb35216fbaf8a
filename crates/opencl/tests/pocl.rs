//! The OpenCL backend on a real OpenCL runtime (PoCL on the CPU here and
//! in CI). Without one these tests skip, saying so, unless
//! `ACCELHUB_TEST_OPENCL` is set (CI sets it): then a missing runtime fails.
#![allow(clippy::unwrap_used)] // a test: a panic is a failure

use accelhub_device::{Backend, CallError, CallInput, ImageId, ObjectArg};
use accelhub_domain::kernel::KernelBundle;
use accelhub_domain::{Limits, Manifest};
use accelhub_opencl::{OpenClBackend, OpenClConfig};
use bytes::Bytes;
use std::sync::Arc;

fn backend(slots: usize) -> Option<OpenClBackend> {
    match OpenClBackend::discover(OpenClConfig {
        slots_per_device: slots,
        ..Default::default()
    }) {
        Ok(b) => Some(b),
        Err(e) if std::env::var_os("ACCELHUB_TEST_OPENCL").is_some() => {
            panic!("ACCELHUB_TEST_OPENCL is set but {e}")
        }
        Err(e) => {
            eprintln!("skipping: {e}");
            None
        }
    }
}

/// An image from kernel source and the `[[implementation]]` keys of
/// ip.toml that describe it.
fn image(source: &str, implementation: &str) -> (ImageId, Bytes) {
    let manifest = format!(
        r#"
name = "acme/t"
version = "1.0.0"
summary = "t"
[[object]]
name = "lut"
required = false
[[implementation]]
device = "opencl"
artifact = "k.cl"
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
        program: source.as_bytes().to_vec(),
    }
    .encode();
    let id = ImageId(format!("opencl:{:x}", fxhash(&bytes)));
    (id, Bytes::from(bytes))
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
__kernel void add(__global const uchar* in, __global uchar* out, uint n, uchar k) {
    size_t i = get_global_id(0);
    if (i < n) out[i] = in[i] + k;
}
"#;

const ADD_TOML: &str = r#"output = "input"
[[implementation.kernel]]
name = "add"
global = ["input"]
local = [64]
args = ["input", "output", "u32 (input)", "u8k"]"#;

/// The add kernel's declaration with `k` declared as `k`.
fn add_toml(k: &str) -> String {
    ADD_TOML.replace("\"u8k\"", k)
}

/// `out[i] = in[i] + k`, with `k` a parameter (default 1).
fn add_image() -> (ImageId, Bytes) {
    image(
        &ADD.replace("uchar k", "uint k"),
        &ADD_TOML.replace("\"u8k\"", "\"u32 k = 1\""),
    )
}

#[tokio::test]
async fn a_kernel_is_programmed_once_and_called_with_parameters() {
    let Some(b) = backend(1) else { return };
    assert!(!b.hardware().is_empty());
    let status = b.status();
    assert_eq!(status.class, "opencl");
    assert!(!status.hardware[0].name.is_empty(), "{status:?}");

    let (id, art) = add_image();
    assert!(!b.is_loaded(&id));
    let first = b.load(&id, art.clone()).await.unwrap();
    assert!(!first.cached && first.duration.as_nanos() > 0);
    assert!(b.is_loaded(&id));
    assert!(b.status().images.contains(&id));

    let input: Vec<u8> = (0..200u32).map(|i| i as u8).collect();
    let out = b
        .call(&id, call(&input, serde_json::json!({})))
        .await
        .unwrap();
    let want: Vec<u8> = input.iter().map(|x| x.wrapping_add(1)).collect();
    assert_eq!(out.output.bytes(), want);
    let out = b
        .call(&id, call(&input, serde_json::json!({"k": 7})))
        .await
        .unwrap();
    let want: Vec<u8> = input.iter().map(|x| x.wrapping_add(7)).collect();
    assert_eq!(out.output.bytes(), want);
    // Empty input: no launch, empty output.
    let out = b.call(&id, call(b"", serde_json::json!({}))).await.unwrap();
    assert!(out.output.is_empty());

    // A bad parameter is the caller's error, and the device keeps serving.
    let e = b
        .call(&id, call(&input, serde_json::json!({"k": -1})))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, CallError::Invalid(m) if m.contains("'k'")),
        "{e}"
    );
    assert!(b
        .call(&id, call(&input, serde_json::json!({})))
        .await
        .is_ok());
}

#[tokio::test]
async fn a_kernel_that_does_not_build_reports_its_build_log() {
    let Some(b) = backend(1) else { return };
    let (id, art) = image(
        "__kernel void add(__global uchar* out) { out[0] = undeclared_thing; }",
        &ADD_TOML.replace("\"u8k\"", "\"u32 k\""),
    );
    let e = b.load(&id, art).await.unwrap_err().to_string();
    assert!(e.contains("build log"), "{e}");
    assert!(e.contains("undeclared_thing"), "{e}");
    assert!(!b.is_loaded(&id));
}

#[tokio::test]
async fn a_wrong_signature_fails_cleanly() {
    let Some(b) = backend(1) else { return };
    // Declared with three arguments; the kernel takes four.
    let (id, art) = image(
        &ADD.replace("uchar k", "uint k"),
        &ADD_TOML.replace(", \"u8k\"", ""),
    );
    let e = b.load(&id, art).await.unwrap_err().to_string();
    assert!(
        e.contains("takes 4 arguments but ip.toml declares 3"),
        "{e}"
    );
    // A kernel name the program lacks.
    let (id, art) = image(
        ADD,
        &add_toml("\"u32 k\"").replace("name = \"add\"", "name = \"sub\""),
    );
    let e = b.load(&id, art).await.unwrap_err().to_string();
    assert!(e.contains("no kernel 'sub'"), "{e}");
    // A scalar of the wrong size (u64 for a uint) fails the call, not the
    // device.
    let (id, art) = image(
        &ADD.replace("uchar k", "uint k"),
        &ADD_TOML.replace("\"u8k\"", "\"u64 k = 1\""),
    );
    b.load(&id, art).await.unwrap();
    let e = b
        .call(&id, call(b"abc", serde_json::json!({})))
        .await
        .unwrap_err();
    assert!(matches!(e, CallError::Device(_)), "{e}");
    assert!(e.to_string().contains("argument 3 ('u64 k = 1')"), "{e}");
    let (good, art) = add_image();
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

#[tokio::test]
async fn a_kernel_writing_out_of_bounds_fails_its_call_and_the_device_keeps_serving() {
    let Some(b) = backend(1) else { return };
    // No bounds check: the work-group of 64 writes past a 10-byte output.
    let (bad, art) = image(
        "__kernel void add(__global const uchar* in, __global uchar* out, uint n, uint k) {
            size_t i = get_global_id(0);
            out[i] = 0xEE;
        }",
        &ADD_TOML.replace("\"u8k\"", "\"u32 k = 1\""),
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
async fn kernels_run_in_sequence_over_scratch_buffers() {
    let Some(b) = backend(1) else { return };
    let (id, art) = image(
        r#"
        __kernel void twice(__global const uchar* in, __global uint* tmp, uint n) {
            size_t i = get_global_id(0);
            if (i < n) tmp[i] = 2u * in[i];
        }
        __kernel void plus(__global const uint* tmp, __global uint* out, uint n, uint k) {
            size_t i = get_global_id(0);
            if (i < n) out[i] = tmp[i] + k;
        }"#,
        r#"output = "input * 4"
buffers = { tmp = "input * 4" }
[[implementation.kernel]]
name = "twice"
global = ["input"]
local = [32]
args = ["input", "buffer tmp", "u32 (input)"]
[[implementation.kernel]]
name = "plus"
global = ["input"]
args = ["buffer tmp", "output", "u32 (input)", "u32 k"]"#,
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
    let e = b
        .call(&id, call(&[1], serde_json::json!({})))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("'k' (u32) is required"), "{e}");
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

fn content_hash(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

#[tokio::test]
async fn object_inputs_stay_resident_in_device_memory() {
    let Some(b) = backend(1) else { return };
    let (id, art) = image(
        r#"__kernel void map(__global const uchar* in, __global uchar* out, __global const uchar* lut, uint n) {
            size_t i = get_global_id(0);
            if (i < n) out[i] = lut[in[i]];
        }"#,
        r#"output = "input"
[[implementation.kernel]]
name = "map"
global = ["input"]
args = ["input", "output", "object lut", "u32 (input)"]"#,
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
    // An object whose bytes do not match its key is refused, not kept.
    let mut c = call(&[0], serde_json::json!({}));
    let mut stale = object("tables/invert", &LUT[..255]);
    stale.sha256 = content_hash(b"something else");
    c.objects.insert("lut".into(), stale);
    let e = b.call(&id, c).await.unwrap_err();
    assert!(e.to_string().contains("changed while it was read"), "{e}");
    // Without the object: the caller's error.
    let e = b
        .call(&id, call(&[0], serde_json::json!({})))
        .await
        .unwrap_err();
    assert!(matches!(e, CallError::Invalid(_)), "{e}");
}

#[tokio::test]
async fn a_second_slot_is_programmed_from_the_cached_binary() {
    let Some(b) = backend(2) else { return };
    let (id, art) = add_image();
    let cold = b.load(&id, art).await.unwrap();
    // Two calls at once: one runs on the programmed slot, the other
    // programs the second slot from the binary the first build produced.
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
        let program =
            Program::create_and_build_from_source(&context, &ADD.replace("uchar k", "uint k"), "")
                .unwrap();
        program.get_binaries().unwrap().remove(0)
    };
    let decl = add_toml("\"u32 k = 1\"").replace(
        "output = \"input\"",
        "format = \"binary\"\noutput = \"input\"",
    );
    let (id, _) = image("", &decl);
    let bundle = |program: Vec<u8>| {
        let mut parsed = KernelBundle::decode(&image("", &decl).1).unwrap();
        parsed.program = program;
        Bytes::from(parsed.encode())
    };
    b.load(&id, bundle(binary)).await.unwrap();
    let out = b
        .call(&id, call(b"HAL", serde_json::json!({})))
        .await
        .unwrap();
    assert_eq!(out.output.bytes(), Bytes::from_static(b"IBM"));
    // Bytes that are no binary for this device: a clear load error.
    let (junk, _) = image("junk", &decl);
    let e = b
        .load(&junk, bundle(b"\x7fELF not really".to_vec()))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not take this binary"), "{e}");
}
