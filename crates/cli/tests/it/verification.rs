//! Online verification: only versions whose every test vector matches are
//! deployable, and a rejection says why.

use crate::common::*;
use accelhub_domain::{Role, VersionStatus};
use reqwest::StatusCode;

#[tokio::test]
async fn a_wrong_expectation_is_rejected_with_a_useful_report() {
    let server = Server::start();
    let vendor = server.account("acme", Role::Vendor).await;
    let user = server.account("bob", Role::User).await;

    // Same artifact, but the second expectation is wrong from byte 2.
    let dir = package("revcomp", |m| {
        m.replace("version = \"1.0.0\"", "version = \"1.1.0\"")
    });
    std::fs::write(dir.path().join("tests/lines.out"), "ACXT\nTGTAATC\nCAAAA\n").unwrap();
    let v = publish(&vendor, dir.path()).await;
    assert_eq!(v.status, VersionStatus::Rejected);
    let report = v.report.expect("a rejected version has a report");
    assert!(!report.passed);
    let imp = &report.implementations[0];
    assert_eq!(imp.device, "wasm");
    assert!(imp.load_error.is_none());
    let good = imp
        .tests
        .iter()
        .find(|t| t.name == "fasta, wrapped at 10")
        .unwrap();
    assert!(good.passed);
    let bad = imp
        .tests
        .iter()
        .find(|t| t.name == "one sequence per line")
        .unwrap();
    assert!(!bad.passed);
    assert_eq!(bad.expected_size, 19);
    assert_eq!(bad.actual_size, Some(19));
    assert_eq!(bad.first_difference, Some(2));
    assert!(
        bad.stderr_tail.contains("revcomp: 3 sequence(s)"),
        "{:?}",
        bad.stderr_tail
    );

    // Other accounts see the verdict, not the IP's log on the test vectors.
    let seen = user.ip("acme/revcomp").await.unwrap();
    let t = &seen.versions[0].report.as_ref().unwrap().implementations[0].tests;
    assert!(t.iter().all(|t| t.stderr_tail.is_empty()));
    assert_eq!(t[1].first_difference, Some(2));
    let listed = user.catalog(Some("revcomp")).await.unwrap();
    assert_eq!(listed.len(), 1);
    let r = listed[0].latest.report.as_ref().unwrap();
    assert!(r.implementations[0]
        .tests
        .iter()
        .all(|t| t.stderr_tail.is_empty()));
    assert!(user
        .catalog(Some("no-such-thing"))
        .await
        .unwrap()
        .is_empty());

    // A rejected version cannot be deployed, and nothing else is verified.
    let err = user
        .deploy("acme/revcomp", Some("1.1.0"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::CONFLICT));
    assert!(err.to_string().contains("only verified versions"), "{err}");
    let err = user.deploy("acme/revcomp", None).await.unwrap_err();
    assert!(err.to_string().contains("no verified version"), "{err}");

    // The CLI shows the report.
    let out = server.cli(&server.admin_token, &["ip", "show", "acme/revcomp"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("REJECTED"), "{text}");
    assert!(text.contains("first difference at byte 2"), "{text}");

    // Publishing the correct 1.0.0 makes it deployable; the default
    // deployment picks the newest *verified* version.
    let v = publish(&vendor, &ips_dir().join("revcomp")).await;
    assert_eq!(v.status, VersionStatus::Verified);
    let d = user.deploy("acme/revcomp", None).await.unwrap();
    assert_eq!(d.version, "1.0.0");
}

#[tokio::test]
async fn failing_and_broken_implementations_are_reported() {
    let server = Server::start();
    let vendor = server.account("acme", Role::Vendor).await;

    // An IP whose test vector makes it exit non-zero.
    let dir = package("hostile", |m| {
        m.replace("[[test]]\n", "[[test]]\nparams = { mode = \"fail\" }\n")
    });
    let v = publish(&vendor, dir.path()).await;
    assert_eq!(v.status, VersionStatus::Rejected);
    let t = &v.report.as_ref().unwrap().implementations[0].tests[0];
    assert_eq!(t.exit_code, Some(3));
    assert!(t.stderr_tail.contains("failing on purpose"), "{t:?}");
    assert!(t.actual_size.is_none());

    // A test vector that never finishes hits the deadline.
    let dir = package("hostile", |m| {
        m.replace("version = \"1.0.0\"", "version = \"1.0.1\"")
            .replace("timeout_ms = 2000", "timeout_ms = 300")
            .replace("[[test]]\n", "[[test]]\nparams = { mode = \"loop\" }\n")
    });
    let start = std::time::Instant::now();
    let v = publish(&vendor, dir.path()).await;
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(v.status, VersionStatus::Rejected);
    let t = &v.report.as_ref().unwrap().implementations[0].tests[0];
    assert!(
        t.error.as_deref().unwrap().contains("deadline of 300 ms"),
        "{t:?}"
    );

    // An artifact that is not WebAssembly fails to load, for every test.
    let dir = package("echo", |m| m);
    std::fs::write(dir.path().join("echo.wasm"), b"\x7fELF not wasm").unwrap();
    let v = publish(&vendor, dir.path()).await;
    assert_eq!(v.status, VersionStatus::Rejected);
    let imp = &v.report.as_ref().unwrap().implementations[0];
    assert!(
        imp.load_error
            .as_deref()
            .unwrap()
            .contains("not a valid WebAssembly module"),
        "{imp:?}"
    );
}

#[tokio::test]
async fn manifest_and_package_errors_name_the_problem() {
    let server = Server::start();
    let vendor = server.account("acme", Role::Vendor).await;

    // (text in ip.toml, replacement, what the error must mention)
    let cases = [
        ("version = \"1.0.0\"", "version = \"1.0\"", "`version`"),
        (
            "per_call = 0.002",
            "per_call = \"free\"",
            "`pricing.per_call`",
        ),
        (
            "device = \"wasm\"",
            "device = \"fpga\"",
            "device class 'fpga' is not a device class of this platform",
        ),
        ("summary =", "sumary =", "sumary"),
        ("tests/lines.out", "tests/missing.out", "test[1].expect"),
        (
            "[pricing]",
            "[limits]\nmemory_mb = 99999999\n[pricing]",
            "limits.memory_mb",
        ),
    ];
    for (from, to, needle) in cases {
        let dir = package("revcomp", |m| m.replace(from, to));
        // The CLI checks the manifest before sending; the server checks
        // again. Send the raw archive to exercise the server.
        let archive = raw_tar(dir.path());
        let err = vendor.publish(archive).await.unwrap_err();
        assert_eq!(
            err.status(),
            Some(StatusCode::BAD_REQUEST),
            "{needle}: {err}"
        );
        assert!(
            err.to_string().contains(needle),
            "expected '{needle}' in: {err}"
        );
    }

    // Garbage instead of a tar archive.
    let err = vendor
        .publish(b"definitely not a tar archive".to_vec())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST));

    // A published version is immutable.
    publish(&vendor, &ips_dir().join("echo")).await;
    let err = vendor
        .publish_dir(&ips_dir().join("echo"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::CONFLICT));
    assert!(err.to_string().contains("immutable"), "{err}");
}

/// Every file of a package directory as a tar archive, unchecked.
fn raw_tar(dir: &std::path::Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.append_dir_all(".", dir).unwrap();
    b.into_inner().unwrap()
}
