//! The conformance suite of kernel backends (feature `testing`): one set of
//! cases that every [`KernelHost`](crate::kernel_host::KernelHost) backend
//! runs on its own devices, so that what callers see (errors, logs,
//! residency, slot reuse) is the same on OpenCL and on CUDA and cannot
//! drift again.
//!
//! A backend's test file gives a [`Kit`] (how to open the backend, and the
//! same small kernels in its language) and expands
//! [`kernel_conformance!`](crate::kernel_conformance) once: every case here
//! becomes a `#[tokio::test]` of that backend. Without a device the kit's
//! `backend` returns `None` and the cases skip. The helpers ([`image`],
//! [`call`], [`object`]…) serve the backend's own cases too.
// Test support, compiled only for backends' test suites (feature
// `testing`): a panic here is a failing test.
#![allow(clippy::unwrap_used)]

use crate::{Backend, CallError, CallInput, ImageId, ObjectArg, OutputSink};
use accelhub_domain::kernel::KernelBundle;
use accelhub_domain::{Limits, Manifest};
use bytes::Bytes;
use std::sync::Arc;

/// What the suite needs of a backend: how to open it, and the suite's
/// kernels written in its language.
pub struct Kit<B> {
    /// The device class, as `ip.toml` names it.
    pub class: &'static str,
    /// The file name of a source program (`k.cl`, `k.cu`).
    pub source_file: &'static str,
    /// The backend with this many slots per device, or `None` to skip
    /// (having said why).
    pub backend: fn(usize) -> Option<B>,
    /// `add(in, out, n, k)`: `out[i] = in[i] + k` for `i < n` (bytes, `n`
    /// and `k` 32-bit unsigned); see [`ADD_TOML`].
    pub add: &'static str,
    /// `add` without its bound check: every thread writes `out[i]`.
    pub add_unbounded: &'static str,
    /// `add` with a compile error naming `undeclared_thing`.
    pub broken: &'static str,
    /// `twice(in, tmp, n)`: `tmp[i] = 2 * in[i]` (32-bit words), then
    /// `plus(tmp, out, n, k)`: `out[i] = tmp[i] + k`; see [`SEQ_TOML`].
    pub sequence: &'static str,
    /// `map(in, out, lut, n)`: `out[i] = lut[in[i]]`; see [`MAP_TOML`].
    pub map: &'static str,
}

/// The backend `found`, or `None` (saying why) when this node has no such
/// device, so that the cases skip; unless the environment variable
/// `required` is set (CI sets it on nodes that have the device), which
/// makes a missing device a failure.
pub fn present<B, E: std::fmt::Display>(found: Result<B, E>, required: &str) -> Option<B> {
    match found {
        Ok(b) => Some(b),
        Err(e) if std::env::var_os(required).is_some() => panic!("{required} is set but {e}"),
        Err(e) => {
            eprintln!("skipping: {e}");
            None
        }
    }
}

/// The declaration of [`Kit::add`], `k` defaulting to 1.
pub const ADD_TOML: &str = r#"output = "input"
[[implementation.kernel]]
name = "add"
global = ["input"]
local = [64]
args = ["input", "output", "u32 (input)", "u32 k = 1"]"#;

/// The declaration of [`Kit::sequence`].
pub const SEQ_TOML: &str = r#"output = "input * 4"
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

/// The declaration of [`Kit::map`].
pub const MAP_TOML: &str = r#"output = "input"
[[implementation.kernel]]
name = "map"
global = ["input"]
args = ["input", "output", "object lut", "u32 (input)"]"#;

/// An image of `program` for device class `class`, stored as `artifact`
/// (its extension says source or binary), with the `[[implementation]]`
/// keys of `ip.toml` in `implementation`.
pub fn image_as(
    class: &str,
    artifact: &str,
    program: &[u8],
    implementation: &str,
) -> (ImageId, Bytes) {
    let manifest = format!(
        r#"
name = "acme/t"
version = "1.0.0"
summary = "t"
[[object]]
name = "lut"
required = false
[[implementation]]
device = "{class}"
artifact = "{artifact}"
{implementation}
[[test]]
input = "a"
expect = "b"
[pricing]
per_call = 0
"#
    );
    let m = match Manifest::parse(&manifest) {
        Ok(m) => m,
        Err(e) => panic!("not a valid test manifest ({e}):\n{manifest}"),
    };
    let Some(spec) = m.implementations[0].kernel.clone() else {
        panic!("not a kernel implementation:\n{manifest}")
    };
    let bytes = KernelBundle {
        spec,
        program: program.to_vec(),
    }
    .encode();
    let id = ImageId(format!("{class}:{:x}", fxhash(&bytes)));
    (id, Bytes::from(bytes))
}

/// An image of source `program` for the kit's backend.
pub fn image<B>(kit: &Kit<B>, program: &str, implementation: &str) -> (ImageId, Bytes) {
    image_as(
        kit.class,
        kit.source_file,
        program.as_bytes(),
        implementation,
    )
}

fn fxhash(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, x| {
        (h ^ *x as u64).wrapping_mul(0x100000001b3)
    })
}

/// A call on in-memory `input` with JSON `params` and default limits.
pub fn call(input: &[u8], params: serde_json::Value) -> CallInput {
    CallInput::in_memory(
        Bytes::copy_from_slice(input),
        params.as_object().cloned().unwrap_or_default(),
        Limits::DEFAULT,
    )
}

/// An object input holding `bytes`, keyed by their SHA-256.
pub fn object(key: &str, bytes: &'static [u8]) -> ObjectArg {
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

/// The SHA-256 of `b`, in hex.
pub fn content_hash(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// Little-endian 32-bit words.
pub fn words(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn log_of(log: &[u8]) -> String {
    String::from_utf8_lossy(log).into_owned()
}

/// The image of the kit's `program` declared by `implementation`, loaded
/// into `b`.
async fn loaded<B: Backend>(b: &B, kit: &Kit<B>, program: &str, implementation: &str) -> ImageId {
    let (id, art) = image(kit, program, implementation);
    b.load(&id, art).await.unwrap();
    id
}

/// Assert that `b` refuses call `c` as the caller's mistake
/// ([`CallError::Invalid`], kind `invalid`) with a message containing `says`.
async fn refused_as_invalid<B: Backend>(b: &B, id: &ImageId, c: CallInput, says: &str) {
    let e = b.call(id, c).await.unwrap_err();
    assert!(
        matches!(&e, CallError::Invalid(m) if m.contains(says)),
        "{e:?}"
    );
    assert_eq!(e.kind(), "invalid");
}

/// The backend's status and hardware agree, with the slots asked for.
pub async fn discovery_reports_the_hardware<B: Backend>(kit: &Kit<B>) {
    let Some(b) = (kit.backend)(2) else { return };
    let status = b.status();
    assert_eq!(status.class, kit.class);
    assert_eq!(b.class(), kit.class);
    assert!(!status.hardware.is_empty(), "{status:?}");
    assert_eq!(b.slots(), 2 * status.hardware.len());
    assert_eq!(status.slots, b.slots());
    assert_eq!(status.busy, 0);
    for h in &status.hardware {
        assert!(!h.name.is_empty(), "{h:?}");
        assert!(!h.runtime.is_empty(), "{h:?}");
        assert_eq!(h.slots, 2);
    }
}

/// Loading programs a slot once (a second load is a warm hit); calls
/// take parameters with their defaults; a parameter the plan refuses is
/// the caller's mistake, [`CallError::Invalid`], and the device keeps
/// serving.
pub async fn a_kernel_is_programmed_once_and_called_with_parameters<B: Backend>(kit: &Kit<B>) {
    let Some(b) = (kit.backend)(1) else { return };
    let (id, art) = image(kit, kit.add, ADD_TOML);
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
        !log_of(&out.log).contains("programmed slot"),
        "the call reprogrammed the slot"
    );
    let out = b
        .call(&id, call(&input, serde_json::json!({"k": 7})))
        .await
        .unwrap();
    let want: Vec<u8> = input.iter().map(|x| x.wrapping_add(7)).collect();
    assert_eq!(out.output.bytes(), want);

    refused_as_invalid(&b, &id, call(&input, serde_json::json!({"k": -1})), "'k'").await;
    assert!(b
        .call(&id, call(&input, serde_json::json!({})))
        .await
        .is_ok());
}

/// Empty input: no launch, empty output.
pub async fn empty_input_launches_nothing_and_returns_empty_output<B: Backend>(kit: &Kit<B>) {
    let Some(b) = (kit.backend)(1) else { return };
    let id = loaded(&b, kit, kit.add, ADD_TOML).await;
    let out = b.call(&id, call(b"", serde_json::json!({}))).await.unwrap();
    assert!(out.output.is_empty());
}

/// A call on an image that was never loaded is refused as such.
pub async fn a_call_on_an_image_not_loaded_is_refused<B: Backend>(kit: &Kit<B>) {
    let Some(b) = (kit.backend)(1) else { return };
    let (id, _) = image(kit, kit.add, ADD_TOML);
    let e = b
        .call(&id, call(b"abc", serde_json::json!({})))
        .await
        .unwrap_err();
    assert!(matches!(e, CallError::NotLoaded(_)), "{e:?}");
}

/// A call needing more device memory than its limit fails before it runs,
/// saying how much it needs.
pub async fn a_call_over_its_memory_limit_fails_before_it_runs<B: Backend>(kit: &Kit<B>) {
    let Some(b) = (kit.backend)(1) else { return };
    let id = loaded(&b, kit, kit.add, ADD_TOML).await;
    let mut c = call(&[1u8; 600], serde_json::json!({}));
    // The input fits; input and output together do not.
    c.limits.memory_bytes = 1000;
    match b.call(&id, c).await.unwrap_err() {
        CallError::Memory { limit_bytes, log } => {
            assert_eq!(limit_bytes, 1000);
            assert!(
                log_of(&log).contains("needs 1200 bytes of device memory"),
                "{}",
                log_of(&log)
            );
        }
        e => panic!("{e:?}"),
    }
}

/// A job's output goes to its file.
pub async fn the_output_goes_to_a_file_when_asked<B: Backend>(kit: &Kit<B>) {
    let Some(b) = (kit.backend)(1) else { return };
    let id = loaded(&b, kit, kit.add, ADD_TOML).await;
    let path = std::env::temp_dir().join(format!(
        "accelhub-conformance-{}-{}.out",
        kit.class,
        std::process::id()
    ));
    let mut c = call(b"HAL", serde_json::json!({}));
    c.output = OutputSink::File(path.clone());
    let out = b.call(&id, c).await.unwrap();
    assert_eq!(out.output.len(), 3);
    let written = std::fs::read(&path);
    let _ = std::fs::remove_file(&path);
    assert_eq!(written.unwrap(), b"IBM");
}

/// A program that does not build fails its load with the build log.
pub async fn a_kernel_that_does_not_build_reports_its_build_log<B: Backend>(kit: &Kit<B>) {
    let Some(b) = (kit.backend)(1) else { return };
    let (id, art) = image(kit, kit.broken, ADD_TOML);
    let e = b.load(&id, art).await.unwrap_err().to_string();
    assert!(e.contains("build log"), "{e}");
    assert!(e.contains("undeclared_thing"), "{e}");
    assert!(!b.is_loaded(&id));
}

/// A kernel `ip.toml` names but the program lacks fails the load.
pub async fn a_kernel_the_program_lacks_fails_the_load<B: Backend>(kit: &Kit<B>) {
    let Some(b) = (kit.backend)(1) else { return };
    let (id, art) = image(
        kit,
        kit.add,
        &ADD_TOML.replace("name = \"add\"", "name = \"sub\""),
    );
    let e = b.load(&id, art).await.unwrap_err().to_string();
    assert!(e.contains("no kernel 'sub'"), "{e}");
    assert!(!b.is_loaded(&id));
}

/// A kernel that writes past its output fails its call with a trap; the
/// slot keeps serving.
pub async fn a_kernel_writing_out_of_bounds_fails_its_call_and_the_device_keeps_serving<
    B: Backend,
>(
    kit: &Kit<B>,
) {
    let Some(b) = (kit.backend)(1) else { return };
    // No bounds check: the work-group of 64 writes past a 10-byte output.
    let bad = loaded(&b, kit, kit.add_unbounded, ADD_TOML).await;
    let e = b
        .call(&bad, call(&[0u8; 10], serde_json::json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, CallError::Trap { message, .. } if message.contains("past the end of the output buffer (10 bytes")),
        "{e}"
    );
    let good = loaded(&b, kit, kit.add, ADD_TOML).await;
    let out = b
        .call(&good, call(&[1u8; 10], serde_json::json!({})))
        .await
        .unwrap();
    assert_eq!(out.output.bytes(), vec![2u8; 10]);
}

/// Kernels run in sequence over a scratch buffer; a required parameter
/// left out is the caller's mistake.
pub async fn kernels_run_in_sequence_over_scratch_buffers<B: Backend>(kit: &Kit<B>) {
    let Some(b) = (kit.backend)(1) else { return };
    let id = loaded(&b, kit, kit.sequence, SEQ_TOML).await;
    let out = b
        .call(&id, call(&[1, 2, 200], serde_json::json!({"k": 5})))
        .await
        .unwrap();
    assert_eq!(words(&out.output.bytes()), vec![7, 9, 405]);
    // More than one default work-group for the second kernel.
    let input: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    let out = b
        .call(&id, call(&input, serde_json::json!({"k": 1})))
        .await
        .unwrap();
    let want: Vec<u32> = input.iter().map(|x| 2 * *x as u32 + 1).collect();
    assert_eq!(words(&out.output.bytes()), want);
    let c = call(&[1], serde_json::json!({}));
    refused_as_invalid(&b, &id, c, "'k' (u32) is required").await;
}

/// An object input is uploaded once and stays resident in the slot; bytes
/// that do not match their SHA-256 are refused; a missing one is the
/// caller's mistake.
pub async fn object_inputs_stay_resident_in_device_memory<B: Backend>(kit: &Kit<B>) {
    let Some(b) = (kit.backend)(1) else { return };
    let id = loaded(&b, kit, kit.map, MAP_TOML).await;
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
    assert!(log_of(&first.log).contains("now resident"));
    assert!(b.status().resident.contains(&lut.sha256));
    let second = b.call(&id, mk()).await.unwrap();
    assert_eq!(second.output.bytes(), vec![255, 254, 55]);
    assert!(
        !log_of(&second.log).contains("now resident"),
        "the table was uploaded again"
    );
    // An object whose bytes do not match its key is refused, not kept.
    let mut c = call(&[0], serde_json::json!({}));
    let mut stale = object("tables/invert", &LUT[..255]);
    stale.sha256 = content_hash(b"something else");
    let stale_key = stale.sha256.clone();
    c.objects.insert("lut".into(), stale);
    let e = b.call(&id, c).await.unwrap_err();
    assert!(e.to_string().contains("changed while it was read"), "{e}");
    assert!(!b.status().resident.contains(&stale_key));
    // Without the object: the caller's mistake.
    let c = call(&[0], serde_json::json!({}));
    refused_as_invalid(&b, &id, c, "the object input 'lut' is required").await;
}

/// Two calls at once: one runs on the programmed slot, the other programs
/// the second slot from the code the first build produced.
pub async fn a_second_slot_is_programmed_from_the_cached_build<B: Backend>(kit: &Kit<B>) {
    let Some(b) = (kit.backend)(2) else { return };
    let (id, art) = image(kit, kit.add, ADD_TOML);
    let cold = b.load(&id, art).await.unwrap();
    let input = vec![3u8; 1 << 16];
    let (x, y) = futures::join!(
        b.call(&id, call(&input, serde_json::json!({}))),
        b.call(&id, call(&input, serde_json::json!({})))
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.output.bytes(), vec![4u8; 1 << 16]);
    assert_eq!(y.output.bytes(), vec![4u8; 1 << 16]);
    let logs = format!("{}{}", log_of(&x.log), log_of(&y.log));
    eprintln!("cold build {:?}; {logs}", cold.duration);
    assert_eq!(logs.matches("programmed slot").count(), 1, "{logs}");
}

/// Every case of the suite as a `#[tokio::test]` in a module
/// `conformance`, each calling the case with the [`Kit`] the given
/// function returns (a path in scope where the macro expands).
#[macro_export]
macro_rules! kernel_conformance {
    ($kit:path) => {
        /// The kernel backend conformance suite
        /// (`accelhub_device::conformance`) on this backend.
        mod conformance {
            use super::*;
            $crate::kernel_conformance!(@cases $kit;
                discovery_reports_the_hardware,
                a_kernel_is_programmed_once_and_called_with_parameters,
                empty_input_launches_nothing_and_returns_empty_output,
                a_call_on_an_image_not_loaded_is_refused,
                a_call_over_its_memory_limit_fails_before_it_runs,
                the_output_goes_to_a_file_when_asked,
                a_kernel_that_does_not_build_reports_its_build_log,
                a_kernel_the_program_lacks_fails_the_load,
                a_kernel_writing_out_of_bounds_fails_its_call_and_the_device_keeps_serving,
                kernels_run_in_sequence_over_scratch_buffers,
                object_inputs_stay_resident_in_device_memory,
                a_second_slot_is_programmed_from_the_cached_build
            );
        }
    };
    (@cases $kit:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                $crate::conformance::$case(&$kit()).await
            }
        )*
    };
}
