//! The wasm device on real modules (the example IPs): streamed input and
//! file output, their failure paths, and calls that share their thread.
#![allow(clippy::unwrap_used)] // a test: a panic is a failure

use accelhub_device::{
    Backend, CallControl, CallData, CallError, CallInput, ImageId, Output, OutputSink,
};
use accelhub_domain::{Limits, Params};
use accelhub_wasm::{WasmBackend, WasmConfig};
use bytes::Bytes;
use futures::StreamExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

fn module(name: &str) -> Bytes {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let ips = BUILT.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let ok = std::process::Command::new("bash")
            .arg(root.join("scripts/build-ips.sh"))
            .status()
            .expect("run scripts/build-ips.sh")
            .success();
        assert!(ok, "building the example IPs failed");
        root.join("ips")
    });
    Bytes::from(std::fs::read(ips.join(name).join(format!("{name}.wasm"))).unwrap())
}

async fn backend(name: &str) -> (WasmBackend, ImageId) {
    let b = WasmBackend::new(WasmConfig {
        slots: 2,
        max_memory_bytes: 256 << 20,
        image_cache: 4,
    })
    .unwrap();
    let image = ImageId(name.into());
    b.load(&image, module(name)).await.unwrap();
    (b, image)
}

fn streamed(chunks: Vec<std::io::Result<Bytes>>, out: PathBuf, limits: Limits) -> CallInput {
    CallInput {
        input: CallData::Stream(Box::pin(futures::stream::iter(chunks))),
        input_name: "input".into(),
        output: OutputSink::File(out),
        named_outputs: Default::default(),
        params: Params::new(),
        objects: Default::default(),
        limits,
        control: Arc::new(CallControl::default()),
    }
}

#[tokio::test]
async fn a_streamed_input_goes_to_a_file_and_is_counted() {
    let (b, image) = backend("echo").await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let chunks: Vec<_> = (0..64u8)
        .map(|i| Ok(Bytes::from(vec![i; 10_000])))
        .collect();
    let call = streamed(chunks, out.clone(), Limits::DEFAULT);
    let control = call.control.clone();
    let result = b.call(&image, call).await.unwrap();
    assert_eq!(
        result.output,
        Output::File {
            path: out.clone(),
            size: 640_000
        }
    );
    let written = std::fs::read(&out).unwrap();
    assert_eq!(written.len(), 640_000);
    assert_eq!(written[639_999], 63);
    assert_eq!(control.consumed.load(Ordering::Relaxed), 640_000);
}

#[tokio::test]
async fn a_failing_input_stream_fails_the_call_as_an_input_error() {
    let (b, image) = backend("echo").await;
    let dir = tempfile::tempdir().unwrap();
    let chunks = vec![
        Ok(Bytes::from_static(b"first part")),
        Err(std::io::Error::other("object store unreachable")),
    ];
    let err = b
        .call(
            &image,
            streamed(chunks, dir.path().join("o"), Limits::DEFAULT),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Input(_)), "{err:?}");
    assert!(
        err.to_string().contains("object store unreachable"),
        "{err}"
    );
}

#[tokio::test]
async fn file_output_is_capped() {
    let (b, image) = backend("echo").await;
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        output_bytes: 4096,
        ..Limits::DEFAULT
    };
    let chunks = vec![Ok(Bytes::from(vec![b'x'; 100_000]))];
    let err = b
        .call(&image, streamed(chunks, dir.path().join("o"), limits))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CallError::OutputTooLarge {
                limit_bytes: 4096,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_spinning_call_yields_its_thread_until_its_deadline() {
    let (b, image) = backend("hostile").await;
    // On a single-threaded runtime, this ticker only advances if the
    // spinning call yields.
    let ticks = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let t = ticks.clone();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            t.fetch_add(1, Ordering::Relaxed);
        }
    });
    let mut params = Params::new();
    params.insert("mode".into(), "loop".into());
    let limits = Limits {
        timeout_ms: 300,
        ..Limits::DEFAULT
    };
    let start = std::time::Instant::now();
    let err = b
        .call(&image, CallInput::in_memory(Bytes::new(), params, limits))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CallError::Deadline {
                timeout_ms: 300,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(2));
    ticker.abort();
    assert!(
        ticks.load(Ordering::Relaxed) >= 10,
        "the runtime was starved: {} ticks",
        ticks.load(Ordering::Relaxed)
    );
}

fn sleeper(secs: u64, timeout_ms: u64) -> CallInput {
    let mut params = Params::new();
    params.insert("mode".into(), "sleep".into());
    params.insert("secs".into(), secs.to_string().into());
    let limits = Limits {
        timeout_ms,
        ..Limits::DEFAULT
    };
    CallInput::in_memory(Bytes::from_static(b"late"), params, limits)
}

/// Issue 14, defect 1: a guest asleep in `poll_oneoff` runs no guest code,
/// so no epoch fires; the deadline must still end it, and free its slot.
#[tokio::test]
async fn a_deadline_ends_a_call_asleep_in_a_host_call_and_frees_its_slot() {
    let (b, image) = backend("hostile").await; // two slots
    let start = std::time::Instant::now();
    let (r1, r2) = tokio::join!(
        b.call(&image, sleeper(120, 300)),
        b.call(&image, sleeper(120, 300))
    );
    for r in [r1, r2] {
        let err = r.unwrap_err();
        assert!(
            matches!(
                err,
                CallError::Deadline {
                    timeout_ms: 300,
                    ..
                }
            ),
            "{err:?}"
        );
    }
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "the deadline waited for the sleep: {:?}",
        start.elapsed()
    );
    // Both slots are free again: an honest call gets through at once.
    let out = b.call(&image, sleeper(0, 5_000)).await.unwrap();
    assert_eq!(out.output.bytes().as_ref(), b"late");
    assert_eq!(b.status().busy, 0);
}

#[tokio::test]
async fn a_cancel_ends_a_call_asleep_in_a_host_call() {
    let (b, image) = backend("hostile").await;
    let call = sleeper(120, 600_000);
    let control = call.control.clone();
    let start = std::time::Instant::now();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        control.cancel.store(true, Ordering::Relaxed);
    });
    let err = b.call(&image, call).await.unwrap_err();
    canceller.await.unwrap();
    assert!(matches!(err, CallError::Cancelled { .. }), "{err:?}");
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}

/// A guest reading stdin from an uploader that stalls waits in the host:
/// the deadline covers that wait too.
#[tokio::test]
async fn a_deadline_ends_a_call_waiting_for_stdin() {
    let (b, image) = backend("echo").await;
    let dir = tempfile::tempdir().unwrap();
    let stalled = futures::stream::iter(vec![Ok(Bytes::from_static(b"first"))])
        .chain(futures::stream::pending());
    let call = CallInput {
        input: CallData::Stream(Box::pin(stalled)),
        input_name: "input".into(),
        output: OutputSink::File(dir.path().join("out")),
        named_outputs: Default::default(),
        params: Params::new(),
        objects: Default::default(),
        limits: Limits {
            timeout_ms: 300,
            ..Limits::DEFAULT
        },
        control: Arc::new(CallControl::default()),
    };
    let start = std::time::Instant::now();
    let err = tokio::time::timeout(std::time::Duration::from_secs(30), b.call(&image, call))
        .await
        .expect("the call outlived its deadline by far")
        .unwrap_err();
    assert!(
        matches!(
            err,
            CallError::Deadline {
                timeout_ms: 300,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}

/// A call offering the named outputs `names`, each to a file in `dir`.
fn with_named(mut call: CallInput, dir: &std::path::Path, names: &[&str]) -> CallInput {
    call.named_outputs = names
        .iter()
        .map(|n| {
            (
                n.to_string(),
                OutputSink::File(dir.join(format!("named-{n}"))),
            )
        })
        .collect();
    call
}

#[tokio::test]
async fn named_outputs_are_the_declared_files_under_outputs() {
    let (b, image) = backend("revcomp").await;
    let dir = tempfile::tempdir().unwrap();
    let chunks = vec![Ok(Bytes::from_static(b">a\nACGTN\n"))];
    let call = with_named(
        streamed(chunks, dir.path().join("out"), Limits::DEFAULT),
        dir.path(),
        &["stats", "absent"],
    );
    let result = b.call(&image, call).await.unwrap();
    let stats = dir.path().join("named-stats");
    assert_eq!(
        result.named.keys().collect::<Vec<_>>(),
        ["stats"],
        "an output the module did not write is not there"
    );
    assert_eq!(
        result.named["stats"],
        Output::File {
            path: stats.clone(),
            size: 24
        }
    );
    assert_eq!(
        std::fs::read(&stats).unwrap(),
        b"{\"records\":1,\"bases\":5}\n"
    );
    // The call's own directory is gone: nothing but the outputs is left.
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["named-stats", "out"]);

    // Without named outputs offered, the module sees no /outputs.
    let call = streamed(
        vec![Ok(Bytes::from_static(b">a\nACGT\n"))],
        dir.path().join("out2"),
        Limits::DEFAULT,
    );
    assert!(b.call(&image, call).await.unwrap().named.is_empty());
}

#[tokio::test]
async fn named_outputs_are_capped_while_the_module_writes() {
    let (b, image) = backend("hostile").await;
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        output_bytes: 4 << 20,
        timeout_ms: 20_000,
        ..Limits::DEFAULT
    };
    let mut call = with_named(
        streamed(vec![], dir.path().join("out"), limits),
        dir.path(),
        &["extra"],
    );
    call.params
        .insert("mode".into(), serde_json::json!("flood-outputs"));
    let started = std::time::Instant::now();
    let err = b.call(&image, call).await.unwrap_err();
    assert!(
        matches!(err, CallError::OutputTooLarge { limit_bytes, .. } if limit_bytes == 4 << 20),
        "{err:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    // Nothing is left behind but the (empty) main output.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
}
