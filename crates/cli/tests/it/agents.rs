//! Remote agents: `accelhub agent` processes on this machine run the jobs
//! of a control plane that runs none itself. A kill -9 of an agent
//! mid-job: the job finishes on another agent, billed once. A restart of
//! the control plane: queued jobs resume. Tokens are checked.

use crate::common::*;
use accelhub_client::AgentClient;
use accelhub_domain::{JobReport, JobState, Params, Renewal, Role};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn wasm_claim(wait_ms: u64) -> accelhub_domain::ClaimRequest {
    accelhub_domain::ClaimRequest {
        devices: vec!["wasm".into()],
        wait_ms,
        ..Default::default()
    }
}

fn spin(iters: u64) -> Params {
    let mut p = Params::new();
    p.insert("mode".into(), "spin".into());
    p.insert("iters".into(), iters.into());
    p
}

/// A control plane that leaves all jobs to agents, with short leases.
const CONTROL_PLANE: &[&str] = &[
    "--no-local-jobs",
    "--job-lease-secs",
    "3",
    "--no-builtin-ips",
];

async fn wait_running(user: &accelhub_client::Client, id: &str) -> accelhub_domain::Job {
    let start = Instant::now();
    loop {
        let j = user.job(id).await.unwrap();
        if j.state == JobState::Running {
            return j;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "job never started: {j:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn agents_share_the_work_and_a_killed_agent_loses_nothing() {
    let server = Server::start_with(CONTROL_PLANE);
    let vendor = server.account("acme", Role::Vendor).await;
    let user = server.account("gina", Role::User).await;
    let pkg = package("hostile", |m| {
        m.replace("timeout_ms = 2000", "timeout_ms = 60000")
    });
    publish(&vendor, pkg.path()).await;
    user.deploy("acme/hostile", None).await.unwrap();
    let obj = user
        .put_object(None, b"payload".to_vec(), None)
        .await
        .unwrap();

    // No node has ever offered a wasm device: nothing can take the job.
    let refused = user
        .submit_job("acme/hostile", &obj.key, Params::new())
        .await
        .unwrap_err();
    assert_eq!(refused.status().map(|s| s.as_u16()), Some(503), "{refused}");
    assert!(
        refused.to_string().contains("no node takes jobs"),
        "{refused}"
    );

    let token = server.admin().create_agent("rack1").await.unwrap().token;
    let a = AgentProc::start(&server.url, &token, "node-a", &["--wasm-slots", "1"]);
    let b = AgentProc::start(&server.url, &token, "node-b", &["--wasm-slots", "1"]);

    let fleet = server.admin().fleet().await.unwrap();
    for name in ["node-a", "node-b"] {
        let n = fleet.nodes.iter().find(|n| n.name == name).unwrap();
        assert_eq!(n.health, "up");
        assert!(n.devices.iter().any(|d| d.class == "wasm" && d.slots == 1));
    }

    // Eight jobs of a few hundred ms each: both agents take work, each job
    // runs once.
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(
            user.submit_job("acme/hostile", &obj.key, spin(30_000_000))
                .await
                .unwrap()
                .id,
        );
    }
    let mut workers = BTreeSet::new();
    for id in &ids {
        let j = user.wait_job(id, |_| {}).await.unwrap();
        assert_eq!(j.state, JobState::Succeeded, "{j:?}");
        assert_eq!(j.attempts, 1);
        workers.insert(j.history[0].worker.clone());
        let out = user
            .job_output(id, None)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&out[..], b"payload");
    }
    assert_eq!(
        workers,
        BTreeSet::from(["node-a".to_string(), "node-b".to_string()]),
        "both agents should take work"
    );

    // A slow job; kill -9 the agent running it.
    let slow = user
        .submit_job("acme/hostile", &obj.key, spin(1_500_000_000))
        .await
        .unwrap();
    let running = wait_running(&user, &slow.id).await;
    let holder = running.history.last().unwrap().worker.clone();
    let mut agents = [a, b];
    let victim = agents.iter().position(|x| x.node == holder).unwrap();
    agents[victim].kill9();
    let survivor = agents[1 - victim].node.clone();

    let done = user.wait_job(&slow.id, |_| {}).await.unwrap();
    assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    assert_eq!(done.attempts, 2, "{done:?}");
    assert_eq!(done.history[0].worker, holder);
    assert_eq!(done.history[0].outcome, "lost");
    let why = done.history[0].error.as_deref().unwrap();
    assert!(
        why.contains("stopped heartbeating") || why.contains("lease"),
        "{why}"
    );
    assert_eq!(done.history[1].worker, survivor);
    assert_eq!(done.history[1].outcome, "succeeded");
    let out = user
        .job_output(&slow.id, None)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&out[..], b"payload");

    // The fleet shows the dead node.
    let fleet = server.admin().fleet().await.unwrap();
    let dead = fleet.nodes.iter().find(|n| n.name == holder).unwrap();
    assert!(dead.health.starts_with("dead"), "{}", dead.health);

    // Billed once per job, whatever the retries.
    let usage = user.usage(None).await.unwrap();
    for id in ids.iter().chain([&slow.id]) {
        assert_eq!(
            usage.records.iter().filter(|r| &r.id == id).count(),
            1,
            "job {id}"
        );
    }
    assert_eq!(usage.totals.billed, 9);

    // The agent comes back under the same name: the node is up again and
    // takes work.
    let _back = AgentProc::start(&server.url, &token, &holder, &["--wasm-slots", "1"]);
    let fleet = server.admin().fleet().await.unwrap();
    let n = fleet.nodes.iter().find(|n| n.name == holder).unwrap();
    assert_eq!(n.health, "up");
}

#[tokio::test]
async fn a_control_plane_restart_resumes_queued_jobs_on_the_agents() {
    let data = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let args: Vec<&str> = CONTROL_PLANE
        .iter()
        .copied()
        .chain(["--listen", listen.as_str()])
        .collect();
    let mut server = Server::start_in(data.path(), &args);
    let vendor = server.account("acme", Role::Vendor).await;
    let user_token = server
        .admin()
        .create_account("hank", Role::User)
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
    let token = server.admin().create_agent("rack1").await.unwrap().token;
    let agent = AgentProc::start(&server.url, &token, "node-a", &["--wasm-slots", "1"]);

    // One job running on the agent, three queued behind it.
    let first = user
        .submit_job("acme/hostile", &obj.key, spin(300_000_000))
        .await
        .unwrap();
    let mut queued = Vec::new();
    for _ in 0..3 {
        queued.push(
            user.submit_job("acme/hostile", &obj.key, Params::new())
                .await
                .unwrap(),
        );
    }
    wait_running(&user, &first.id).await;
    server.kill9();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Same data, same address: the agent reconnects by itself.
    let server = Server::start_in(data.path(), &args);
    let user = server.client(&user_token);
    for id in std::iter::once(&first.id).chain(queued.iter().map(|j| &j.id)) {
        let j = user.wait_job(id, |_| {}).await.unwrap();
        assert_eq!(j.state, JobState::Succeeded, "{j:?}\n{}", agent.log());
        assert!(j.history.iter().all(|h| h.worker == "node-a"));
    }
    let usage = user.usage(None).await.unwrap();
    assert_eq!(usage.totals.billed, 4);
    assert_eq!(usage.records.len(), 4);
}

#[tokio::test]
async fn agent_tokens_and_nodes_are_checked() {
    let server = Server::start_with(CONTROL_PLANE);
    let admin = server.admin();
    let user = server.account("ivan", Role::User).await;

    // Only the operator issues, lists and revokes agent tokens.
    let e = user.create_agent("mine").await.unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(403));
    assert_eq!(
        user.agents()
            .await
            .unwrap_err()
            .status()
            .map(|s| s.as_u16()),
        Some(403)
    );
    let t1 = admin.create_agent("rack1").await.unwrap().token;
    let t2 = admin.create_agent("rack2").await.unwrap().token;
    assert!(t1.starts_with("aha_"));
    let e = admin.create_agent("rack1").await.unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(409));

    // An agent process with a wrong token stops with a clear message.
    let out = std::process::Command::new(bin())
        .args(["agent", "--server", &server.url, "--node", "n9"])
        .env("ACCELHUB_AGENT_TOKEN", "aha_0000")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused the agent token"), "{err}");

    let report = wasm_node();
    let status = |e: accelhub_client::ClientError| e.status().map(|s| s.as_u16());

    // A user token is not an agent token, and an agent token is no user's.
    let as_user = AgentClient::new(&server.url, &server.admin_token, "n1").unwrap();
    assert_eq!(
        status(as_user.register(&report).await.unwrap_err()),
        Some(401)
    );
    assert_eq!(
        status(server.client(&t1).fleet().await.unwrap_err()),
        Some(401)
    );

    // A node belongs to the agent that registered it.
    let a1 = AgentClient::new(&server.url, &t1, "n1").unwrap();
    let hello = a1.register(&report).await.unwrap();
    assert_eq!(hello.lease_ms, 3000);
    let a2_on_n1 = AgentClient::new(&server.url, &t2, "n1").unwrap();
    assert_eq!(
        status(a2_on_n1.register(&report).await.unwrap_err()),
        Some(409)
    );
    assert_eq!(
        status(a2_on_n1.claim(&wasm_claim(0)).await.unwrap_err()),
        Some(403)
    );
    // An unregistered node can do nothing but register.
    let a1_on_n5 = AgentClient::new(&server.url, &t1, "n5").unwrap();
    assert_eq!(
        status(a1_on_n5.claim(&wasm_claim(0)).await.unwrap_err()),
        Some(404)
    );
    // The control plane's own node name is not an agent's.
    let local = AgentClient::new(&server.url, &t1, "local").unwrap();
    assert_eq!(
        status(local.register(&report).await.unwrap_err()),
        Some(409)
    );

    // A job leased to n1 is n1's alone.
    let vendor = server.account("acme", Role::Vendor).await;
    publish(&vendor, package("echo", |m| m).path()).await;
    user.deploy("acme/echo", None).await.unwrap();
    let obj = user.put_object(None, b"abc".to_vec(), None).await.unwrap();
    let job = user
        .submit_job("acme/echo", &obj.key, Params::new())
        .await
        .unwrap();
    let item = a1
        .claim(&wasm_claim(5000))
        .await
        .unwrap()
        .expect("the queued job");
    assert_eq!(item.job, job.id);
    let a2 = AgentClient::new(&server.url, &t2, "n2").unwrap();
    a2.register(&report).await.unwrap();
    assert_eq!(status(a2.input(&job.id).await.unwrap_err()), Some(409));
    assert_eq!(status(a2.artifact(&job.id).await.unwrap_err()), Some(409));
    assert_eq!(
        status(
            a2.put_output(&job.id, None, b"forged".to_vec())
                .await
                .unwrap_err()
        ),
        Some(409)
    );
    assert_eq!(
        status(
            a2.put_output(&job.id, Some("extra"), b"forged".to_vec())
                .await
                .unwrap_err()
        ),
        Some(409)
    );
    // Its own node may not add an output the IP does not declare.
    let e = a1
        .put_output(&job.id, Some("extra"), b"smuggled".to_vec())
        .await
        .unwrap_err();
    assert_eq!(status(e), Some(400));
    let forged = JobReport::Succeeded {
        output_size: 6,
        outputs: vec![],
        log: None,
        items: None,
        unit: None,
        device_time_ms: 1,
    };
    assert!(!a2.finish(&job.id, &forged).await.unwrap());
    assert!(!a2
        .renew(
            &job.id,
            &Renewal {
                progress: 0.5,
                items: None,
                unit: None
            }
        )
        .await
        .unwrap());
    // n1 does the job by hand, through the protocol.
    let input = a1.input(&job.id).await.unwrap().bytes().await.unwrap();
    assert_eq!(&input[..], b"abc");
    assert!(!a1.artifact(&job.id).await.unwrap().is_empty());
    a1.put_output(&job.id, None, input.to_vec()).await.unwrap();
    let report_ok = JobReport::Succeeded {
        output_size: 3,
        outputs: vec![],
        log: None,
        items: None,
        unit: None,
        device_time_ms: 1,
    };
    assert!(a1.finish(&job.id, &report_ok).await.unwrap());
    // Once: a second report is not recorded.
    assert!(!a1.finish(&job.id, &report_ok).await.unwrap());
    let done = user.job(&job.id).await.unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(done.history[0].worker, "n1");
    assert_eq!(
        &user
            .job_output(&job.id, None)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()[..],
        b"abc"
    );
    assert_eq!(user.usage(None).await.unwrap().totals.billed, 1);

    // A revoked token is refused at once.
    admin.revoke_agent("rack1").await.unwrap();
    assert_eq!(status(a1.heartbeat(&report).await.unwrap_err()), Some(401));
    let listed = admin.agents().await.unwrap();
    assert!(listed.iter().any(|a| a.name == "rack1" && a.revoked));
}

/// Placement: a worker whose device already holds a job's image gets that
/// job before an older one that would need a reconfiguration; the
/// placements are counted in /metrics.
#[tokio::test]
async fn a_worker_gets_the_job_its_device_holds_first() {
    let server = Server::start_with(CONTROL_PLANE);
    let vendor = server.account("acme", Role::Vendor).await;
    let user = server.account("judy", Role::User).await;
    publish(&vendor, package("echo", |m| m).path()).await;
    publish(&vendor, package("revcomp", |m| m).path()).await;
    user.deploy("acme/echo", None).await.unwrap();
    user.deploy("acme/revcomp", None).await.unwrap();
    let obj = user
        .put_object(None, b">r\nACGT\n".to_vec(), None)
        .await
        .unwrap();
    let token = server.admin().create_agent("rack1").await.unwrap().token;
    let a = AgentClient::new(&server.url, &token, "n1").unwrap();
    a.register(&wasm_node()).await.unwrap();
    let done = JobReport::Failed {
        error: "not run in this test".into(),
        log: None,
    };

    // The first echo job: nothing is loaded yet.
    let e1 = user
        .submit_job("acme/echo", &obj.key, Params::new())
        .await
        .unwrap();
    let item = a.claim(&wasm_claim(5000)).await.unwrap().unwrap();
    assert_eq!(item.job, e1.id);
    let echo_image = item.image.clone();
    assert!(a.finish(&e1.id, &done).await.unwrap());

    // An older revcomp job and a younger echo job.
    let r1 = user
        .submit_job("acme/revcomp", &obj.key, Params::new())
        .await
        .unwrap();
    let e2 = user
        .submit_job("acme/echo", &obj.key, Params::new())
        .await
        .unwrap();
    let mut warm = wasm_claim(0);
    warm.images = vec![echo_image];
    let item = a.claim(&warm).await.unwrap().unwrap();
    assert_eq!(item.job, e2.id, "the warm job goes first");
    // A device holding nothing gets the oldest.
    let item = a.claim(&wasm_claim(0)).await.unwrap().unwrap();
    assert_eq!(item.job, r1.id);

    let metrics = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("accelhub_job_placements_total{placement=\"warm\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("accelhub_job_placements_total{placement=\"cold\"} 2"),
        "{metrics}"
    );
}
