//! Autoscaling: a deployment's replicas follow its jobs within its bounds,
//! its jobs never run on more slots than it has replicas, it scales to
//! zero when idle, and every decision is visible in `accelhub deploy show`.

use crate::common::*;
use accelhub_domain::{JobState, Params, Role, Scaling};
use std::time::{Duration, Instant};

fn spin(iters: u64) -> Params {
    let mut p = Params::new();
    p.insert("mode".into(), "spin".into());
    p.insert("iters".into(), iters.into());
    p
}

#[tokio::test]
async fn replicas_follow_the_jobs_and_scale_to_zero() {
    let server = Server::start_with(&["--wasm-slots", "4", "--no-builtin-ips"]);
    let vendor = server.account("acme", Role::Vendor).await;
    let token = server
        .admin()
        .create_account("kim", Role::User)
        .await
        .unwrap()
        .token;
    let user = server.client(&token);
    let pkg = package("hostile", |m| {
        m.replace("timeout_ms = 2000", "timeout_ms = 60000")
    });
    publish(&vendor, pkg.path()).await;

    // Bounds that make no sense are refused.
    let bad = user
        .deploy_with(
            "acme/hostile",
            None,
            Some(Scaling {
                min: 3,
                max: 2,
                ..Scaling::default()
            }),
        )
        .await
        .unwrap_err();
    assert_eq!(bad.status().map(|s| s.as_u16()), Some(400), "{bad}");
    assert!(
        bad.to_string().contains("min (3) is above max (2)"),
        "{bad}"
    );

    // Through the CLI: at most 2 replicas, scale to zero after 2 s idle.
    let out = server.cli(
        &token,
        &[
            "deploy",
            "acme/hostile",
            "--min",
            "0",
            "--max",
            "2",
            "--target",
            "1",
            "--scale-down-delay",
            "2",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = user.deployment("acme/hostile").await.unwrap();
    assert_eq!(
        d.scaling,
        Scaling {
            min: 0,
            max: 2,
            target: 1,
            scale_down_delay_secs: 2
        }
    );
    assert_eq!(d.replicas, 0);

    let obj = user
        .put_object(None, b"payload".to_vec(), None)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(
            user.submit_job("acme/hostile", &obj.key, spin(150_000_000))
                .await
                .unwrap()
                .id,
        );
    }
    // Four workers, but never more jobs running than the 2 replicas.
    let start = Instant::now();
    let mut most = 0;
    loop {
        let jobs = user.jobs(Some(20)).await.unwrap();
        let running = jobs.iter().filter(|j| j.state == JobState::Running).count();
        most = most.max(running);
        assert!(running <= 2, "{running} jobs running on 2 replicas");
        if jobs.iter().all(|j| j.state.is_terminal()) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "jobs too slow");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for id in &ids {
        assert_eq!(user.job(id).await.unwrap().state, JobState::Succeeded);
    }
    assert_eq!(most, 2, "the deployment should have scaled out to 2");

    // Idle: back to zero after the delay.
    let start = Instant::now();
    let d = loop {
        let d = user.deployment("acme/hostile").await.unwrap();
        if d.replicas == 0 {
            break d;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never scaled to zero: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reasons: Vec<&str> = d.events.iter().rev().map(|e| e.reason.as_str()).collect();
    assert!(
        reasons[0].starts_with("scale out 0 → 1: 1 jobs queued"),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.starts_with("scale out 1 → 2")),
        "{reasons:?}"
    );
    assert!(
        reasons.last().unwrap().starts_with("scale to zero"),
        "{reasons:?}"
    );
    assert!(d.events.iter().all(|e| e.to <= 2));

    let out = server.cli(&token, &["deploy", "show", "acme/hostile"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("replicas 0 (min 0, max 2, target 1"),
        "{text}"
    );
    assert!(text.contains("scale to zero"), "{text}");
    assert!(text.contains("scale out 0 → 1"), "{text}");
}
