//! Accelerator device classes end to end: IPs that ship `wasm` and
//! `opencl` implementations are verified on both, called on each by the
//! deployment's preference, and a kernel that does not build, does not
//! match its declared signature or writes out of bounds fails cleanly.
//!
//! OpenCL runs on PoCL (the CPU) here and in CI. Without an OpenCL
//! runtime these tests skip, saying so, unless `ACCELHUB_TEST_OPENCL` is
//! set (CI sets it): then they fail.

use crate::common::*;
use accelhub_client::Client;
use accelhub_domain::{DeployRequest, Role, VersionStatus};
use bytes::Bytes;
use std::path::Path;

/// A server whose node has an OpenCL device, or `None` (test skipped).
async fn opencl_server() -> Option<Server> {
    let server = Server::start();
    let fleet = server.admin().fleet().await.unwrap();
    let has = fleet
        .nodes
        .iter()
        .flat_map(|n| n.devices.iter())
        .any(|d| d.class == "opencl");
    if has {
        return Some(server);
    }
    let why = format!(
        "the server found no OpenCL device; its log:\n{}",
        server.log()
    );
    if std::env::var_os("ACCELHUB_TEST_OPENCL").is_some() {
        panic!("ACCELHUB_TEST_OPENCL is set but {why}");
    }
    eprintln!("skipping: {why}");
    None
}

async fn deploy_on(c: &Client, ip: &str, devices: &[&str]) -> accelhub_domain::Deployment {
    c.deploy_request(&DeployRequest {
        ip: ip.into(),
        version: None,
        scaling: None,
        devices: Some(devices.iter().map(|d| d.to_string()).collect()),
    })
    .await
    .unwrap()
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn option(s: f32, k: f32, r: f32, sigma: f32, t: f32) -> Vec<u8> {
    [s, k, r, sigma, t]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect()
}

#[tokio::test]
async fn one_version_is_verified_and_called_on_wasm_and_opencl() {
    let Some(server) = opencl_server().await else {
        return;
    };
    let vendor = server.account("acme", Role::Vendor).await;
    let user = server.account("bob", Role::User).await;

    // The fleet shows the device behind the class.
    let fleet = server.admin().fleet().await.unwrap();
    let dev = fleet.nodes[0]
        .devices
        .iter()
        .find(|d| d.class == "opencl")
        .unwrap();
    assert!(!dev.hardware.is_empty(), "{dev:?}");
    assert!(dev.hardware[0].memory_bytes > 0);

    for ip in ["blackscholes", "sha256", "convolve"] {
        let v = publish(&vendor, &ips_dir().join(ip)).await;
        assert_eq!(v.status, VersionStatus::Verified, "{ip}: {:#?}", v.report);
        let report = v.report.unwrap();
        let classes: Vec<&str> = report
            .implementations
            .iter()
            .map(|i| i.device.as_str())
            .collect();
        assert_eq!(classes, ["wasm", "opencl"], "{ip}");
        for imp in &report.implementations {
            assert!(imp.passed && !imp.tests.is_empty(), "{ip} {imp:?}");
            assert!(imp.load_ms > 0.0, "programming is measured: {imp:?}");
        }
    }

    // Black-Scholes: the reference option on each class by preference.
    let input = Bytes::from(option(100.0, 105.0, 0.05, 0.2, 1.0));
    let d = user.deploy("acme/blackscholes", None).await.unwrap();
    assert_eq!(d.devices, ["wasm", "opencl"], "ip.toml order by default");
    for class in ["opencl", "wasm"] {
        let d = deploy_on(&user, "acme/blackscholes", &[class]).await;
        assert_eq!(d.devices, [class]);
        let (info, out) = user
            .invoke("acme/blackscholes", &Default::default(), input.clone())
            .await
            .unwrap();
        assert_eq!(info.device, class);
        let prices = f32s(&out);
        assert!((prices[0] - 8.021352).abs() < 1e-4, "{class}: {prices:?}");
        assert!((prices[1] - 7.900442).abs() < 1e-4, "{class}: {prices:?}");
    }

    // A job on an object runs on the preferred class too.
    deploy_on(&user, "acme/blackscholes", &["opencl", "wasm"]).await;
    let mut book = Vec::new();
    for i in 0..1000 {
        book.extend(option(80.0 + (i % 40) as f32, 100.0, 0.03, 0.25, 0.5));
    }
    user.put_object(Some("book.bin"), book.clone(), None)
        .await
        .unwrap();
    let job = user
        .submit_job("acme/blackscholes", "book.bin", Default::default())
        .await
        .unwrap();
    assert_eq!(job.device, "opencl");
    let started = std::time::Instant::now();
    let job = loop {
        let j = user.job(&job.id).await.unwrap();
        if j.state.is_terminal() {
            break j;
        }
        assert!(started.elapsed().as_secs() < 60, "the job hangs: {j:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(job.state, accelhub_domain::JobState::Succeeded, "{job:?}");
    let out = user
        .job_output(&job.id, None)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let prices = f32s(&out);
    assert_eq!(prices.len(), 2000);
    // Option 20 is at the money: S = K = 100.
    assert!((prices[40] - 7.760257).abs() < 1e-3, "{}", prices[40]);

    // SHA-256 of 1 KiB chunks: both classes agree with each other and
    // with a known digest.
    let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut outs = Vec::new();
    for class in ["opencl", "wasm"] {
        deploy_on(&user, "acme/sha256", &[class]).await;
        let (info, out) = user
            .invoke(
                "acme/sha256",
                &Default::default(),
                Bytes::from(data.clone()),
            )
            .await
            .unwrap();
        assert_eq!(info.device, class);
        assert_eq!(out.len(), 5 * 32);
        outs.push(out);
    }
    assert_eq!(outs[0], outs[1]);
    let (_, abc) = user
        .invoke(
            "acme/sha256",
            &Default::default(),
            Bytes::from_static(b"abc"),
        )
        .await
        .unwrap();
    assert_eq!(
        hex(&abc),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );

    // Convolution: parameters are checked against the declared signature
    // before the kernel runs.
    deploy_on(&user, "acme/convolve", &["opencl"]).await;
    let params = |v: serde_json::Value| v.as_object().cloned().unwrap();
    let img = Bytes::from(vec![100u8; 32 * 8]);
    let (info, out) = user
        .invoke(
            "acme/convolve",
            &params(serde_json::json!({"width": 32, "height": 8})),
            img.clone(),
        )
        .await
        .unwrap();
    assert_eq!(info.device, "opencl");
    assert_eq!(out, vec![100u8; 32 * 8], "a flat image stays flat");
    for (p, says) in [
        (
            serde_json::json!({"width": 32, "height": 9}),
            "exactly 288 bytes",
        ),
        (serde_json::json!({"width": 32}), "'height'"),
        (
            serde_json::json!({"width": 32, "height": 8, "filter": 7}),
            "filter < 3",
        ),
    ] {
        let e = user
            .invoke("acme/convolve", &params(p), img.clone())
            .await
            .unwrap_err();
        assert_eq!(e.status().map(|s| s.as_u16()), Some(422), "{e}");
        assert!(e.to_string().contains(says), "{says}: {e}");
    }
    // …and the device keeps serving.
    assert!(user
        .invoke(
            "acme/convolve",
            &params(serde_json::json!({"width": 32, "height": 8, "filter": 2})),
            img,
        )
        .await
        .is_ok());

    // A class that did not pass verification cannot be preferred.
    let e = user
        .deploy_request(&DeployRequest {
            ip: "acme/convolve".into(),
            version: None,
            scaling: None,
            devices: Some(vec!["cuda".into()]),
        })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no verified 'cuda'"), "{e}");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A one-class OpenCL IP in a temporary directory: `kernel` is the
/// program, `decl` the `[[implementation]]` keys after `artifact`.
fn kernel_package(name: &str, kernel: &str, decl: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir_all(p.join("tests")).unwrap();
    std::fs::write(p.join("k.cl"), kernel).unwrap();
    std::fs::write(p.join("tests/1.in"), b"abcdef").unwrap();
    std::fs::write(p.join("tests/1.out"), b"bcdefg").unwrap();
    std::fs::write(
        p.join("ip.toml"),
        format!(
            r#"name = "acme/{name}"
version = "1.0.0"
summary = "adds one to every byte"
[[implementation]]
device = "opencl"
artifact = "k.cl"
{decl}
[[test]]
input = "tests/1.in"
expect = "tests/1.out"
[pricing]
per_call = 0
"#
        ),
    )
    .unwrap();
    dir
}

const PLUS: &str = r#"
__kernel void plus(__global const uchar* in, __global uchar* out, uint n, uint extra) {
    size_t i = get_global_id(0);
    // `extra` lets a caller make this kernel write past its output.
    if (i < n + extra) out[i] = in[i % n] + 1;
}"#;

const PLUS_DECL: &str = r#"output = "input"
[[implementation.kernel]]
name = "plus"
global = ["input + extra"]
args = ["input", "output", "u32 (input)", "u32 extra = 0"]"#;

async fn published(vendor: &Client, dir: &Path) -> accelhub_domain::IpVersion {
    publish(vendor, dir).await
}

#[tokio::test]
async fn broken_kernels_are_rejected_with_their_build_log_and_bad_calls_fail_cleanly() {
    let Some(mut server) = opencl_server().await else {
        return;
    };
    let vendor = server.account("acme", Role::Vendor).await;
    let user = server.account("bob", Role::User).await;

    // Does not build: the report carries the compiler's log.
    let v = published(
        &vendor,
        kernel_package(
            "nobuild",
            &PLUS.replace("in[i % n] + 1", "in[i % n] + one"),
            PLUS_DECL,
        )
        .path(),
    )
    .await;
    assert_eq!(v.status, VersionStatus::Rejected);
    let imp = &v.report.unwrap().implementations[0];
    let err = imp.load_error.as_deref().unwrap_or_default();
    assert!(err.contains("build log"), "{err}");
    assert!(err.contains("one"), "the log names the culprit: {err}");

    // Declares three arguments for a four-argument kernel.
    let v = published(
        &vendor,
        kernel_package(
            "badsig",
            PLUS,
            &PLUS_DECL.replace(", \"u32 extra = 0\"", ""),
        )
        .path(),
    )
    .await;
    assert_eq!(v.status, VersionStatus::Rejected);
    let err = v.report.unwrap().implementations[0]
        .load_error
        .clone()
        .unwrap_or_default();
    assert!(
        err.contains("takes 4 arguments but ip.toml declares 3"),
        "{err}"
    );

    // Declares a u64 where the kernel takes a uint: every call fails, so
    // the test vector does, with a message that says where.
    let v = published(
        &vendor,
        kernel_package(
            "badtype",
            PLUS,
            &PLUS_DECL.replace("u32 extra = 0", "u64 extra = 0"),
        )
        .path(),
    )
    .await;
    assert_eq!(v.status, VersionStatus::Rejected);
    let t = &v.report.unwrap().implementations[0].tests[0];
    let err = t.error.as_deref().unwrap_or_default();
    assert!(err.contains("argument 3 ('u64 extra = 0')"), "{err}");

    // A kernel that writes out of bounds when asked to: the call fails,
    // nothing is billed as a success, and the device keeps serving.
    let v = published(&vendor, kernel_package("plus", PLUS, PLUS_DECL).path()).await;
    assert_eq!(v.status, VersionStatus::Verified, "{:#?}", v.report);
    user.deploy("acme/plus", None).await.unwrap();
    let params = |v: serde_json::Value| v.as_object().cloned().unwrap();
    let e = user
        .invoke(
            "acme/plus",
            &params(serde_json::json!({"extra": 100})),
            Bytes::from_static(b"hello"),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(422), "{e}");
    assert!(e.to_string().contains("past the end of the output"), "{e}");
    for _ in 0..3 {
        let (info, out) = user
            .invoke(
                "acme/plus",
                &Default::default(),
                Bytes::from_static(b"hello"),
            )
            .await
            .unwrap();
        assert_eq!(info.device, "opencl");
        assert_eq!(&out[..], b"ifmmp");
    }
    let usage = user.usage(None).await.unwrap();
    assert_eq!(usage.totals.billed, 3, "{:?}", usage.totals);
    assert_eq!(usage.totals.failed, 1, "{:?}", usage.totals);

    // The OpenCL runtime compiled kernels with LLVM, which installs signal
    // handlers of its own; the server still shuts down gracefully.
    let status = server.stop();
    assert!(status.success(), "SIGTERM: {status:?}\n{}", server.log());
}

#[tokio::test]
async fn a_node_without_opencl_starts_says_so_and_serves_the_classes_it_has() {
    // No OpenCL platform: the ICD loader is pointed at an empty directory
    // (and, where there is no libOpenCL at all, the same message path).
    let dir = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let empty_path = empty.path().to_string_lossy().to_string();
    let server = Server::start_in_env(dir.path(), &[], &[("OCL_ICD_VENDORS", empty_path.as_str())]);
    let log = server.log();
    assert!(
        log.contains("this node runs without the opencl device class"),
        "{log}"
    );
    let fleet = server.admin().fleet().await.unwrap();
    assert!(fleet.nodes[0].devices.iter().all(|d| d.class != "opencl"));

    // A version shipping wasm and opencl is verified on wasm; opencl is
    // reported as not verified here and takes no calls.
    let vendor = server.account("acme", Role::Vendor).await;
    let user = server.account("bob", Role::User).await;
    let v = publish(&vendor, &ips_dir().join("blackscholes")).await;
    assert_eq!(v.status, VersionStatus::Verified, "{:#?}", v.report);
    let report = v.report.unwrap();
    let opencl = report
        .implementations
        .iter()
        .find(|i| i.device == "opencl")
        .unwrap();
    assert!(!opencl.passed && opencl.tests.is_empty());
    assert!(
        opencl
            .skipped
            .as_deref()
            .unwrap_or_default()
            .contains("not verified"),
        "{opencl:?}"
    );
    let d = user.deploy("acme/blackscholes", None).await.unwrap();
    assert_eq!(d.devices, ["wasm"]);
    let e = user
        .deploy_request(&DeployRequest {
            ip: "acme/blackscholes".into(),
            version: None,
            scaling: None,
            devices: Some(vec!["opencl".into()]),
        })
        .await
        .unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(409), "{e}");
    let (info, out) = user
        .invoke(
            "acme/blackscholes",
            &Default::default(),
            Bytes::from(option(100.0, 105.0, 0.05, 0.2, 1.0)),
        )
        .await
        .unwrap();
    assert_eq!(info.device, "wasm");
    assert!((f32s(&out)[0] - 8.021352).abs() < 1e-4);
}
