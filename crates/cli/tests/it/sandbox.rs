//! Hostile WebAssembly fails its own calls, within its limits, and the
//! platform keeps serving everyone else.

use crate::common::*;
use accelhub_domain::{Params, Role};
use bytes::Bytes;
use reqwest::StatusCode;
use std::time::{Duration, Instant};

fn mode(m: &str) -> Params {
    let mut p = Params::new();
    p.insert("mode".into(), m.into());
    p
}

#[tokio::test]
async fn hostile_modules_fail_cleanly_while_others_are_served() {
    let server = Server::start_with(&["--wasm-slots", "4"]);
    let vendor = server.account("acme", Role::Vendor).await;
    let user = server.account("carol", Role::User).await;
    publish(&vendor, &ips_dir().join("hostile")).await;
    publish(&vendor, &ips_dir().join("echo")).await;
    user.deploy("acme/hostile", None).await.unwrap();
    user.deploy("acme/echo", None).await.unwrap();

    // Healthy calls keep flowing while the hostile ones run.
    let healthy = {
        let user = user.clone();
        tokio::spawn(async move {
            let mut n = 0;
            let until = Instant::now() + Duration::from_secs(3);
            while Instant::now() < until {
                let t = Instant::now();
                let (_, out) = user
                    .invoke("acme/echo", &Params::new(), Bytes::from_static(b"ping"))
                    .await
                    .expect("a healthy call must succeed");
                assert_eq!(&out[..], b"ping");
                assert!(
                    t.elapsed() < Duration::from_secs(1),
                    "healthy call took {:?}",
                    t.elapsed()
                );
                n += 1;
            }
            n
        })
    };

    let cases = [
        ("loop", "deadline", "deadline of 2000 ms"),
        ("alloc", "memory", "memory limit"),
        ("flood", "output", "output exceeded"),
        ("fail", "exit", "exited with code 3"),
        ("trap", "trap", "trapped"),
    ];
    let mut tasks = Vec::new();
    for (m, kind, text) in cases {
        let user = user.clone();
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            let err = user
                .invoke("acme/hostile", &mode(m), Bytes::from_static(b"x"))
                .await
                .unwrap_err();
            let took = start.elapsed();
            assert_eq!(
                err.status(),
                Some(StatusCode::UNPROCESSABLE_ENTITY),
                "{m}: {err}"
            );
            let p = err.problem().unwrap();
            assert_eq!(p.failure.as_deref(), Some(kind), "{m}: {p:?}");
            assert!(p.detail.contains(text), "{m}: {}", p.detail);
            assert!(p.call_id.as_deref().unwrap_or("").starts_with("call_"));
            assert!(took < Duration::from_secs(4), "{m} took {took:?}");
            (m, p.log.clone().unwrap_or_default())
        }));
    }
    for t in tasks {
        let (m, log) = t.await.unwrap();
        if m == "fail" {
            assert!(log.contains("failing on purpose"), "{log}");
        }
    }
    let served = healthy.await.unwrap();
    assert!(served >= 10, "only {served} healthy calls were served");

    // The hostile module still works when asked nicely.
    let (_, out) = user
        .invoke(
            "acme/hostile",
            &Params::new(),
            Bytes::from_static(b"still here"),
        )
        .await
        .unwrap();
    assert_eq!(&out[..], b"still here");

    // Failures are metered unbilled.
    let usage = user.usage(None).await.unwrap();
    let failed: Vec<_> = usage.records.iter().filter(|r| !r.billed).collect();
    assert_eq!(failed.len(), 5);
    assert!(failed.iter().all(|r| r.price.micros() == 0));
    let billed_hostile = usage
        .records
        .iter()
        .filter(|r| r.billed && r.ip == "acme/hostile")
        .count();
    assert_eq!(billed_hostile, 1);
    assert_eq!(
        usage.totals.amount.micros(),
        1000 + 100 * (usage.totals.billed as i64 - 1)
    );

    // Metrics count the outcomes.
    let metrics = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"accelhub_calls_total{device="wasm",ip="acme/hostile",outcome="deadline"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_hostile_job_fails_without_billing_and_keeps_its_log() {
    let server = Server::start();
    let vendor = server.account("acme", Role::Vendor).await;
    let user = server.account("dave", Role::User).await;
    publish(&vendor, &ips_dir().join("hostile")).await;
    user.deploy("acme/hostile", None).await.unwrap();
    let obj = user.put_object(None, b"data".to_vec(), None).await.unwrap();
    let job = user
        .submit_job("acme/hostile", &obj.key, mode("fail"))
        .await
        .unwrap();
    let done = user.wait_job(&job.id, |_| {}).await.unwrap();
    assert_eq!(done.state, accelhub_domain::JobState::Failed);
    assert!(done
        .error
        .as_deref()
        .unwrap()
        .contains("exited with code 3"));
    assert!(done.log.as_deref().unwrap().contains("failing on purpose"));
    assert_eq!(done.attempts, 1, "an IP error is not retried");
    let err = user.job_output(&job.id, None).await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::CONFLICT));
    let usage = user.usage(None).await.unwrap();
    assert_eq!(usage.totals.billed, 0);
    assert_eq!(usage.totals.failed, 1);
}

#[tokio::test]
async fn a_job_whose_input_vanished_fails_clearly_and_unbilled() {
    let server = Server::start_with(&["--wasm-slots", "1"]);
    let vendor = server.account("acme", Role::Vendor).await;
    let user = server.account("judy", Role::User).await;
    let pkg = package("hostile", |m| {
        m.replace("timeout_ms = 2000", "timeout_ms = 60000")
    });
    publish(&vendor, pkg.path()).await;
    user.deploy("acme/hostile", None).await.unwrap();
    let a = user.put_object(None, b"a".to_vec(), None).await.unwrap();
    let b = user.put_object(None, b"b".to_vec(), None).await.unwrap();

    // Keep the only worker busy, queue a job, then delete its input.
    let mut spin = mode("spin");
    spin.insert("iters".into(), 300_000_000u64.into());
    let first = user.submit_job("acme/hostile", &a.key, spin).await.unwrap();
    let second = user
        .submit_job("acme/hostile", &b.key, Params::new())
        .await
        .unwrap();
    user.delete_object(&b.key).await.unwrap();

    let done = user.wait_job(&second.id, |_| {}).await.unwrap();
    assert_eq!(done.state, accelhub_domain::JobState::Failed, "{done:?}");
    let error = done.error.unwrap();
    assert!(
        error.contains("cannot read input object") && error.contains(&b.key),
        "{error}"
    );
    // Named as the user knows it, not by where it is stored (issue 14,
    // defect 9).
    assert!(
        !error.contains("accounts/") && !error.contains("packages/"),
        "{error}"
    );
    assert!(done.output_key.is_none());
    let first = user.wait_job(&first.id, |_| {}).await.unwrap();
    assert_eq!(first.state, accelhub_domain::JobState::Succeeded);
    let usage = user.usage(None).await.unwrap();
    assert_eq!(usage.totals.billed, 1);
    assert_eq!(usage.totals.failed, 1);
}
