//! Two `serve` processes sharing one PostgreSQL and one S3 store: a job
//! submitted to either runs on one of them, once, and is billed once.
//! Needs `ACCELHUB_TEST_POSTGRES` and `ACCELHUB_TEST_S3` (`.ci/run` sets
//! both); skips, saying so, without them.

use crate::common::*;
use accelhub_domain::{JobState, Params, Role};
use std::collections::BTreeMap;

const MASTER_KEY: &str = "6a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";

fn spin(iters: u64) -> Params {
    let mut p = Params::new();
    p.insert("mode".into(), "spin".into());
    p.insert("iters".into(), iters.into());
    p
}

#[tokio::test]
async fn two_control_planes_share_the_work_and_never_run_a_job_twice() {
    let (Some(db), Some(objects)) = (
        postgres_schema("two_control_planes_share_the_work"),
        s3_bucket("two_control_planes_share_the_work"),
    ) else {
        return;
    };
    let args = |node: &'static str| {
        vec![
            "--database",
            db.url.as_str(),
            "--objects",
            objects.as_str(),
            "--master-key",
            MASTER_KEY,
            "--node",
            node,
            "--wasm-slots",
            "1",
            "--no-builtin-ips",
        ]
    };
    let a = Server::start_with(&args("node-a"));
    // The second finds the operator already there: it gets the token the
    // first one wrote.
    let b_dir = tempfile::tempdir().unwrap();
    std::fs::write(b_dir.path().join("admin.token"), &a.admin_token).unwrap();
    let b = Server::start_in(b_dir.path(), &args("node-b"));

    let vendor = a.account("acme", Role::Vendor).await;
    let user_token = a
        .admin()
        .create_account("gina", Role::User)
        .await
        .unwrap()
        .token;
    publish(&vendor, &ips_dir().join("hostile")).await;
    let (ua, ub) = (a.client(&user_token), b.client(&user_token));
    // Deployed through one, called through the other: they share state.
    ua.deploy("acme/hostile", None).await.unwrap();
    let obj = ub
        .put_object(None, b"payload".to_vec(), None)
        .await
        .unwrap();

    let mut ids = Vec::new();
    for i in 0..8 {
        let c = if i % 2 == 0 { &ua } else { &ub };
        ids.push(
            c.submit_job("acme/hostile", &obj.key, spin(150_000_000))
                .await
                .unwrap()
                .id,
        );
    }
    let mut ran_on: BTreeMap<String, usize> = BTreeMap::new();
    for id in &ids {
        let j = ua.wait_job(id, |_| {}).await.unwrap();
        assert_eq!(j.state, JobState::Succeeded, "{j:?}");
        assert_eq!(j.attempts, 1, "{}: run once", j.id);
        assert_eq!(j.history.len(), 1);
        *ran_on.entry(j.history[0].worker.clone()).or_default() += 1;
        // Its output is readable through either control plane.
        let out = ub
            .job_output(id, None)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&out[..], b"payload");
    }
    assert_eq!(ran_on.values().sum::<usize>(), 8);
    assert_eq!(
        ran_on.keys().cloned().collect::<Vec<_>>(),
        ["node-a", "node-b"],
        "both control planes took work: {ran_on:?}"
    );
    let usage = ub.usage(None).await.unwrap();
    for id in &ids {
        assert_eq!(usage.records.iter().filter(|r| &r.id == id).count(), 1);
    }
    assert_eq!(usage.totals.billed, 8);
    drop(b);
    drop(a);
}
