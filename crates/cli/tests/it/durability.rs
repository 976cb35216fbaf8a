//! Jobs survive the server: a kill -9 mid-job loses nothing and bills
//! once; a graceful restart resumes the queue.

use crate::common::*;
use accelhub_domain::{JobState, Params, Role};
use std::time::{Duration, Instant};

fn spin(iters: u64) -> Params {
    let mut p = Params::new();
    p.insert("mode".into(), "spin".into());
    p.insert("iters".into(), iters.into());
    p
}

#[tokio::test]
async fn kill_9_mid_job_retries_it_and_bills_once() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start_in(data.path(), &["--wasm-slots", "1"]);
    let vendor = server.account("acme", Role::Vendor).await;
    let user_token = server
        .admin()
        .create_account("gina", Role::User)
        .await
        .unwrap()
        .token;
    let user = server.client(&user_token);
    let pkg = package("hostile", |m| {
        m.replace("timeout_ms = 2000", "timeout_ms = 60000")
    });
    publish(&vendor, pkg.path()).await;
    user.deploy("acme/hostile", None).await.unwrap();
    let obj = user
        .put_object(None, b"payload".to_vec(), None)
        .await
        .unwrap();

    // A slow job, and one queued behind it (one worker).
    let slow = user
        .submit_job("acme/hostile", &obj.key, spin(1_500_000_000))
        .await
        .unwrap();
    let queued = user
        .submit_job("acme/hostile", &obj.key, Params::new())
        .await
        .unwrap();
    let start = Instant::now();
    loop {
        let j = user.job(&slow.id).await.unwrap();
        if j.state == JobState::Running {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "job never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill9();

    // Same data directory, new process.
    let server = Server::start_in(data.path(), &["--wasm-slots", "1"]);
    let user = server.client(&user_token);
    let done = user.wait_job(&slow.id, |_| {}).await.unwrap();
    assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    assert_eq!(done.attempts, 2);
    assert_eq!(done.history.len(), 2);
    assert_eq!(done.history[0].outcome, "lost");
    assert!(done.history[0]
        .error
        .as_deref()
        .unwrap()
        .contains("stopped"));
    assert_eq!(done.history[1].outcome, "succeeded");
    let out = user
        .job_output(&slow.id, None)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&out[..], b"payload");

    let q = user.wait_job(&queued.id, |_| {}).await.unwrap();
    assert_eq!(q.state, JobState::Succeeded);
    assert_eq!(q.attempts, 1);

    // One usage record per job, whatever the retries.
    let usage = user.usage(None).await.unwrap();
    let ids: Vec<_> = usage.records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.iter().filter(|i| **i == slow.id).count(), 1);
    assert_eq!(ids.iter().filter(|i| **i == queued.id).count(), 1);
    assert_eq!(usage.totals.billed, 2);
}

#[tokio::test]
async fn graceful_restart_resumes_queued_jobs_and_cancel_stops_a_running_one() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start_in(data.path(), &["--wasm-slots", "1"]);
    let vendor = server.account("acme", Role::Vendor).await;
    let token = server
        .admin()
        .create_account("hank", Role::User)
        .await
        .unwrap()
        .token;
    let user = server.client(&token);
    let pkg = package("hostile", |m| {
        m.replace("timeout_ms = 2000", "timeout_ms = 60000")
    });
    publish(&vendor, pkg.path()).await;
    user.deploy("acme/hostile", None).await.unwrap();
    let obj = user.put_object(None, b"abc".to_vec(), None).await.unwrap();

    // Cancel a running job: it stops, is not billed, and has no output.
    let long = user
        .submit_job("acme/hostile", &obj.key, spin(u64::MAX / 4))
        .await
        .unwrap();
    let start = Instant::now();
    while user.job(&long.id).await.unwrap().state != JobState::Running {
        assert!(start.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cancelled = user.cancel_job(&long.id).await.unwrap();
    assert_eq!(cancelled.state, JobState::Cancelled);
    let err = user.cancel_job(&long.id).await.unwrap_err();
    assert_eq!(err.status(), Some(reqwest::StatusCode::CONFLICT));

    // The worker is free again soon: the next job runs.
    let next = user
        .submit_job("acme/hostile", &obj.key, Params::new())
        .await
        .unwrap();
    let t = Instant::now();
    let done = user.wait_job(&next.id, |_| {}).await.unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "the cancelled job kept the worker busy"
    );

    // Queue jobs, stop gracefully before they can all run, restart.
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            user.submit_job("acme/hostile", &obj.key, spin(200_000_000))
                .await
                .unwrap()
                .id,
        );
    }
    let status = server.stop();
    assert!(status.success(), "graceful shutdown failed: {status:?}");
    let server = Server::start_in(data.path(), &["--wasm-slots", "1"]);
    let user = server.client(&token);
    for id in &ids {
        let j = user.wait_job(id, |_| {}).await.unwrap();
        assert_eq!(j.state, JobState::Succeeded, "{j:?}");
    }
    let usage = user.usage(None).await.unwrap();
    assert_eq!(usage.totals.billed, 4, "{:?}", usage.records);
    assert!(usage.records.iter().all(|r| r.id != long.id || !r.billed));
}

/// A sync call answers once its usage record is in the usage journal; the
/// database catches up in batches. Killing the server right after the
/// calls loses none of them, and the restart bills each exactly once.
#[tokio::test]
async fn kill_9_right_after_sync_calls_loses_no_usage() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start_in(data.path(), &[]);
    let vendor = server.account("acme", Role::Vendor).await;
    let user_token = server
        .admin()
        .create_account("hal", Role::User)
        .await
        .unwrap()
        .token;
    let user = server.client(&user_token);
    let pkg = package("echo", |m| m);
    publish(&vendor, pkg.path()).await;
    user.deploy("acme/echo", None).await.unwrap();

    let mut calls = Vec::new();
    for i in 0..40 {
        let (info, out) = user
            .invoke("acme/echo", &Params::new(), format!("call {i}").into())
            .await
            .unwrap();
        assert_eq!(out, format!("call {i}"));
        calls.push(info.call_id);
    }
    // No reader has asked for usage: most records are still only in the
    // journal when the process dies.
    server.kill9();

    let server = Server::start_in(data.path(), &[]);
    let user = server.client(&user_token);
    let usage = user.usage(None).await.unwrap();
    for id in &calls {
        assert_eq!(
            usage.records.iter().filter(|r| &r.id == id).count(),
            1,
            "call {id} is billed once"
        );
    }
    assert_eq!(usage.totals.billed, 40);
}
