//! Named outputs (`[[output]]` in `ip.toml`): a wasm IP writes
//! `/outputs/NAME` beside its stdout; a job keeps every output as an object
//! of its owner, lists them, serves each by name (API and CLI), refuses
//! other tenants, and deletes them with the job. The same through an agent
//! on another node, which uploads each by name.

use crate::common::*;
use accelhub_client::Client;
use accelhub_domain::{JobState, Params, Role};

const FASTA: &[u8] = b">r1\nAACGTTTG\n>r2\nGGGA\n";

/// Submit a revcomp job on `FASTA` and check its outputs; its id.
async fn revcomp_job(user: &Client) -> String {
    let obj = user
        .put_object(Some("reads.fa"), FASTA.to_vec(), None)
        .await
        .unwrap();
    let job = user
        .submit_job("acme/revcomp", &obj.key, Params::new())
        .await
        .unwrap();
    let done = user.wait_job(&job.id, |_| {}).await.unwrap();
    assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    let names: Vec<&str> = done.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["sequences", "stats"], "{done:?}");
    assert_eq!(done.outputs[0].key, done.output_key.clone().unwrap());

    let main = user.job_output(&job.id, None).await.unwrap().bytes().await;
    let by_name = user
        .job_output(&job.id, Some("sequences"))
        .await
        .unwrap()
        .bytes()
        .await;
    assert_eq!(main.unwrap(), by_name.unwrap());
    let stats = user
        .job_output(&job.id, Some("stats"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&stats[..], b"{\"records\":2,\"bases\":12}\n");
    assert_eq!(done.outputs[1].size, stats.len() as u64);
    job.id
}

#[tokio::test]
async fn a_job_keeps_lists_and_serves_its_named_outputs() {
    let server = Server::start();
    let vendor = server.account("acme", Role::Vendor).await;
    let olga = server
        .admin()
        .create_account("olga", Role::User)
        .await
        .unwrap();
    let user = server.client(&olga.token);
    let other = server.account("piet", Role::User).await;
    let v = publish(&vendor, &ips_dir().join("revcomp")).await;
    let declared: Vec<&str> = v.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(declared, ["sequences", "stats"]);
    user.deploy("acme/revcomp", None).await.unwrap();
    let id = revcomp_job(&user).await;
    // Usage counts every output's bytes.
    let job = user.job(&id).await.unwrap();
    let usage = user.usage(None).await.unwrap();
    let rec = usage.records.iter().find(|r| r.id == id).unwrap();
    assert_eq!(
        rec.bytes_out,
        job.outputs.iter().map(|o| o.size).sum::<u64>()
    );

    // A name the job lacks: 404, saying which it has.
    let e = user.job_output(&id, Some("bam")).await.unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(404), "{e}");
    assert!(e.to_string().contains("sequences, stats"), "{e}");
    // Another tenant sees neither the job nor any output of it.
    for name in [None, Some("stats"), Some("sequences")] {
        let e = other.job_output(&id, name).await.unwrap_err();
        assert_eq!(e.status().map(|s| s.as_u16()), Some(404), "{e}");
    }

    // The CLI: `job status` lists them, `job output --name` fetches one.
    let status = server.cli(&olga.token, &["job", "status", &id]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{status:?}");
    assert!(
        text.contains("stats") && text.contains("sequences"),
        "{text}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stats.json");
    let got = server.cli(
        &olga.token,
        &[
            "job",
            "output",
            &id,
            "--name",
            "stats",
            "-o",
            file.to_str().unwrap(),
        ],
    );
    assert!(got.status.success(), "{got:?}");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        b"{\"records\":2,\"bases\":12}\n"
    );
    let bad = server.cli(&olga.token, &["job", "output", &id, "--name", "vcf"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("no output 'vcf'"),
        "{bad:?}"
    );

    // Deleting the job deletes every output.
    let keys: Vec<String> = user
        .job(&id)
        .await
        .unwrap()
        .outputs
        .into_iter()
        .map(|o| o.key)
        .collect();
    user.delete_job(&id).await.unwrap();
    let left: Vec<String> = user
        .objects()
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    for k in keys {
        assert!(!left.contains(&k), "{k} outlived its job: {left:?}");
    }
}

#[tokio::test]
async fn an_agent_uploads_named_outputs_by_name() {
    let server = Server::start_with(&["--no-local-jobs", "--no-builtin-ips"]);
    let vendor = server.account("acme", Role::Vendor).await;
    let user = server.account("rosa", Role::User).await;
    let token = server.admin().create_agent("rack1").await.unwrap().token;
    let agent = AgentProc::start(&server.url, &token, "node-a", &["--wasm-slots", "1"]);
    publish(&vendor, &ips_dir().join("revcomp")).await;
    user.deploy("acme/revcomp", None).await.unwrap();
    let id = revcomp_job(&user).await;
    let j = user.job(&id).await.unwrap();
    assert_eq!(j.history[0].worker, "node-a", "{}", agent.log());
}

#[tokio::test]
async fn a_named_output_the_succeeding_attempt_did_not_write_is_dropped() {
    use accelhub_client::AgentClient;
    use accelhub_domain::{ClaimRequest, JobReport};
    let server = Server::start_with(&["--no-local-jobs", "--no-builtin-ips"]);
    let vendor = server.account("acme", Role::Vendor).await;
    let user = server.account("sven", Role::User).await;
    publish(&vendor, &ips_dir().join("revcomp")).await;
    user.deploy("acme/revcomp", None).await.unwrap();
    let token = server.admin().create_agent("rack1").await.unwrap().token;
    let a = AgentClient::new(&server.url, &token, "hand").unwrap();
    a.register(&wasm_node()).await.unwrap();
    let obj = user.put_object(None, FASTA.to_vec(), None).await.unwrap();
    let job = user
        .submit_job("acme/revcomp", &obj.key, Params::new())
        .await
        .unwrap();
    let item = a
        .claim(&ClaimRequest {
            devices: vec!["wasm".into()],
            wait_ms: 5000,
            ..Default::default()
        })
        .await
        .unwrap()
        .expect("the queued job");
    assert_eq!(item.outputs, ["stats"]);
    // As if an earlier attempt had left `stats`; this one writes only the
    // main output.
    a.put_output(&job.id, Some("stats"), b"old".to_vec())
        .await
        .unwrap();
    a.put_output(&job.id, None, b"main".to_vec()).await.unwrap();
    let done = JobReport::Succeeded {
        output_size: 4,
        outputs: vec![],
        log: None,
        items: None,
        unit: None,
        device_time_ms: 1,
    };
    assert!(a.finish(&job.id, &done).await.unwrap());
    let j = user.job(&job.id).await.unwrap();
    let names: Vec<&str> = j.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["sequences"]);
    let keys: Vec<String> = user
        .objects()
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert!(!keys.iter().any(|k| k.ends_with(".out.stats")), "{keys:?}");
}
