//! Jobs stream: an input larger than the memory the server uses goes
//! through, and comes back intact.

use crate::common::*;
use accelhub_domain::{JobState, Params, Role};
use sha2::{Digest, Sha256};

#[tokio::test]
async fn a_large_job_streams_with_bounded_memory() {
    const SIZE: usize = 192 << 20;
    let server = Server::start_with(&["--wasm-slots", "1"]);
    let vendor = server.account("acme", Role::Vendor).await;
    let user = server.account("ivan", Role::User).await;
    publish(&vendor, &ips_dir().join("echo")).await;
    user.deploy("acme/echo", None).await.unwrap();
    // What the server has used so far: start-up, built-in verification.
    wait_builtins_verified(&user).await;
    let before = peak_rss_kib(server.pid()) / 1024;

    // Upload in chunks, as a stream, without holding it all here either.
    let chunk: Vec<u8> = (0..(1 << 20)).map(|i| (i * 7 % 251) as u8).collect();
    let mut hasher = Sha256::new();
    for _ in 0..SIZE / chunk.len() {
        hasher.update(&chunk);
    }
    let digest = hex::encode(hasher.finalize());
    let body_chunk = bytes::Bytes::from(chunk);
    let stream = futures::stream::iter(
        (0..SIZE / body_chunk.len()).map(move |_| Ok::<_, std::io::Error>(body_chunk.clone())),
    );
    let obj = user
        .put_object(
            Some("big.bin"),
            reqwest::Body::wrap_stream(stream),
            Some(&digest),
        )
        .await
        .unwrap();
    assert_eq!(obj.size, SIZE as u64);

    let job = user
        .submit_job("acme/echo", &obj.key, Params::new())
        .await
        .unwrap();
    let mut seen_progress = Vec::new();
    let done = user
        .wait_job(&job.id, |j| seen_progress.push(j.progress))
        .await
        .unwrap();
    assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    assert_eq!(done.output_size, Some(SIZE as u64));
    assert!(
        seen_progress.windows(2).all(|w| w[0] <= w[1]),
        "{seen_progress:?}"
    );

    // Download and check the content, streaming.
    let resp = user.job_output(&job.id, None).await.unwrap();
    assert_eq!(
        resp.headers()
            .get("accelhub-sha256")
            .unwrap()
            .to_str()
            .unwrap(),
        digest
    );
    let (n, got) = stream_digest(resp).await;
    assert_eq!(n, SIZE);
    assert_eq!(got, digest);

    // The server never held the data in memory: the job raised its peak
    // by far less than the data's size.
    let peak = peak_rss_kib(server.pid()) / 1024;
    assert!(
        peak < before + 64,
        "server peak RSS {peak} MiB (from {before} MiB) for a {} MiB job",
        SIZE >> 20
    );
}
