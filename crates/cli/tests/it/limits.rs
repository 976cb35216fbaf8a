//! Connection limits, header and body timeouts, per-token rate limits
//! (issue 14, defect 3). Slow clients are raw TCP sockets. The limits are
//! given as `ACCELHUB_*` variables, so a server without them still starts
//! and the test fails on the behaviour, not on an unknown flag.

use crate::common::*;
use reqwest::StatusCode;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn start(env: &[(&str, &str)]) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in_env(dir.path(), &["--no-builtin-ips"], env);
    (server, dir)
}

fn addr(server: &Server) -> String {
    server.url.trim_start_matches("http://").to_string()
}

/// Read until the server closes the connection; what it sent, or `None`
/// when it is still open after `wait`.
async fn read_to_close(s: &mut TcpStream, wait: Duration) -> Option<String> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(wait, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&got).into_owned())
}

#[tokio::test]
async fn a_partial_header_is_cut_after_the_header_timeout() {
    let (server, _dir) = start(&[("ACCELHUB_HEADER_TIMEOUT_SECS", "1")]);
    let mut slow = TcpStream::connect(addr(&server)).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let sent = read_to_close(&mut slow, Duration::from_secs(8)).await;
    assert!(
        sent.is_some(),
        "a connection with a partial header is still open after 8 s"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(800),
        "cut too early"
    );

    // A connection that sends nothing at all is cut too.
    let mut silent = TcpStream::connect(addr(&server)).await.unwrap();
    assert!(
        read_to_close(&mut silent, Duration::from_secs(8))
            .await
            .is_some(),
        "a silent connection is still open after 8 s"
    );

    // A kept-alive connection idle after its request is closed as well.
    let mut idle = TcpStream::connect(addr(&server)).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let sent = read_to_close(&mut idle, Duration::from_secs(8)).await;
    let sent = sent.expect("an idle kept-alive connection is still open after 8 s");
    assert!(sent.starts_with("HTTP/1.1 200"), "{sent}");
}

#[tokio::test]
async fn half_open_connections_beyond_the_limit_do_not_starve_healthz() {
    let (server, _dir) = start(&[
        ("ACCELHUB_HEADER_TIMEOUT_SECS", "1"),
        ("ACCELHUB_MAX_CONNECTIONS", "16"),
    ]);
    // Few file descriptors, as in the report: the server's own files plus
    // 40 sockets. Without a connection limit below that, accepting fails
    // with EMFILE while half-open requests hold every descriptor.
    let fds = std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
        .unwrap()
        .count();
    let limit = fds + 40;
    let ok = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", server.pid()))
        .arg(format!("--nofile={limit}:{limit}"))
        .status();
    let Ok(status) = ok else {
        eprintln!("skipped: prlimit (util-linux) is not installed");
        return;
    };
    assert!(status.success());

    // 80 half-open requests: twice the descriptors the server has left.
    let mut slow = Vec::new();
    for _ in 0..80 {
        let mut s = TcpStream::connect(addr(&server)).await.unwrap();
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
        slow.push(s);
    }
    let start = Instant::now();
    let http = reqwest::Client::new();
    let resp = tokio::time::timeout(
        Duration::from_secs(20),
        http.get(format!("{}/healthz", server.url)).send(),
    )
    .await
    .expect("/healthz did not answer in 20 s behind 80 half-open connections")
    .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // 80 connections, 16 at a time, each cut after 1 s: about 5 s.
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    assert!(
        !server.log().contains("Too many open files"),
        "{}",
        server.log()
    );

    // Graceful shutdown still ends while slow connections exist.
    let mut again = Vec::new();
    for _ in 0..8 {
        let mut s = TcpStream::connect(addr(&server)).await.unwrap();
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\n").await;
        again.push(s);
    }
    let mut server = server;
    let stopped = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::task::spawn_blocking(move || server.stop()),
    )
    .await
    .expect("the server did not stop in 20 s")
    .unwrap();
    assert!(stopped.success(), "{stopped:?}");
}

#[tokio::test]
async fn a_body_that_stalls_is_cut_after_the_body_idle_timeout() {
    let (server, _dir) = start(&[("ACCELHUB_BODY_IDLE_TIMEOUT_SECS", "1")]);
    let mut s = TcpStream::connect(addr(&server)).await.unwrap();
    let head = format!(
        "PUT /v1/objects/stalled HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Length: 100000\r\n\r\n",
        server.admin_token
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&[7u8; 1000]).await.unwrap();
    let start = Instant::now();
    let sent = read_to_close(&mut s, Duration::from_secs(8))
        .await
        .expect("a stalled upload is still open after 8 s");
    assert!(
        start.elapsed() >= Duration::from_millis(800),
        "cut too early"
    );
    assert!(sent.starts_with("HTTP/1.1 408"), "{sent}");
    assert!(sent.contains("application/problem+json"), "{sent}");

    // Nothing of it was stored.
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/objects/stalled", server.url))
        .bearer_auth(&server.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_token_over_its_rate_gets_429_and_others_do_not() {
    let (server, _dir) = start(&[("ACCELHUB_RATE_LIMIT", "1"), ("ACCELHUB_RATE_BURST", "5")]);
    let other = server
        .admin()
        .create_account("other", accelhub_domain::Role::User)
        .await
        .unwrap()
        .token;
    let agent = server.admin().create_agent("rack1").await.unwrap().token;
    let http = reqwest::Client::new();
    let get = |token: &str| {
        http.get(format!("{}/v1/account", server.url))
            .bearer_auth(token)
            .send()
    };
    let mut limited = None;
    for _ in 0..20 {
        let resp = get(&server.admin_token).await.unwrap();
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(resp);
            break;
        }
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let resp = limited.expect("20 requests at once, rate 1/s burst 5: never limited");
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After: {retry}");
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], 429);
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("Retry-After"), "{detail}");

    // Another token has its own budget; health and metrics are not limited.
    assert_eq!(get(&other).await.unwrap().status(), StatusCode::OK);
    let health = http
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    // The agent protocol is paced by the agents, not limited.
    for _ in 0..20 {
        let resp = http
            .post(format!("{}/v1/agent/heartbeat", server.url))
            .bearer_auth(&agent)
            .header("accelhub-node", "n1")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_ne!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    }

    // After Retry-After, the token is served again.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(
        get(&server.admin_token).await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_a_response_is_disconnected() {
    let (server, _dir) = start(&[("ACCELHUB_BODY_IDLE_TIMEOUT_SECS", "1")]);
    // Larger than what the socket buffers of both ends hold.
    let size = 64 << 20;
    server
        .admin()
        .put_object(Some("big"), vec![5u8; size], None)
        .await
        .unwrap();
    let mut s = TcpStream::connect(addr(&server)).await.unwrap();
    let head = format!(
        "GET /v1/objects/big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        server.admin_token
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // Read nothing for a while, then everything there is.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let got = read_to_close(&mut s, Duration::from_secs(20))
        .await
        .expect("the connection is still open 20 s after the response");
    assert!(
        got.starts_with("HTTP/1.1 200"),
        "{}",
        &got[..got.len().min(200)]
    );
    assert!(
        got.len() < size,
        "the whole response came: the stalled reader was never cut"
    );
}
