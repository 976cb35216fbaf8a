//! Every denial, proven: authentication, roles, ownership, IP protection,
//! and bad input that gets a clear 4xx.

use crate::common::*;
use accelhub_domain::{Params, Role};
use bytes::Bytes;
use reqwest::StatusCode;

async fn problem(resp: reqwest::Response) -> (StatusCode, serde_json::Value) {
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert_eq!(ct, "application/problem+json", "status {status}");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(!body["detail"].as_str().unwrap().is_empty());
    (status, body)
}

#[tokio::test]
async fn authentication_and_roles() {
    let server = Server::start();
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", server.url);

    // No token, a malformed token, an unknown token.
    for auth in [None, Some("Bearer nope"), Some("Bearer ahk_0000")] {
        let mut r = http.get(url("/v1/account"));
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        let (status, body) = problem(r.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert!(body["detail"].as_str().unwrap().contains("ACCELHUB_TOKEN"));
    }

    let vendor = server.account("acme", Role::Vendor).await;
    let other_vendor = server.account("globex", Role::Vendor).await;
    let user = server.account("erin", Role::User).await;

    // Only the operator creates and lists accounts.
    for c in [&vendor, &user] {
        let err = c
            .create_account("mallory", Role::Operator)
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(StatusCode::FORBIDDEN));
        assert_eq!(
            c.accounts().await.unwrap_err().status(),
            Some(StatusCode::FORBIDDEN)
        );
    }
    // Names are unique.
    let err = server
        .admin()
        .create_account("acme", Role::User)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::CONFLICT));

    // Users do not publish; vendors publish only into their namespace.
    let err = user.publish_dir(&ips_dir().join("echo")).await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::FORBIDDEN));
    let err = other_vendor
        .publish_dir(&ips_dir().join("echo"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::FORBIDDEN));
    assert!(err.to_string().contains("own namespace"), "{err}");
    publish(&vendor, &ips_dir().join("echo")).await;

    // Vendors and operators do not deploy or call.
    let err = vendor.deploy("acme/echo", None).await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::FORBIDDEN));
    let err = vendor
        .invoke("acme/echo", &Params::new(), Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::FORBIDDEN));

    // A user calls only what it deployed.
    let err = user
        .invoke("acme/echo", &Params::new(), Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
    assert!(
        err.to_string().contains("accelhub deploy acme/echo"),
        "{err}"
    );

    // Tokens are stored hashed: no file of the data directory holds one.
    let tokens = [server.admin_token.clone()];
    for entry in walk(&server.data) {
        if entry.ends_with("admin.token") {
            continue;
        }
        let bytes = std::fs::read(&entry).unwrap();
        for t in &tokens {
            assert!(
                !bytes.windows(t.len()).any(|w| w == t.as_bytes()),
                "{} holds a token in clear",
                entry.display()
            );
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn tenants_never_see_each_other_and_nobody_gets_an_artifact() {
    let server = Server::start();
    let vendor = server.account("acme", Role::Vendor).await;
    let alice = server.account("alice", Role::User).await;
    let bob = server.account("bob", Role::User).await;
    publish(&vendor, &ips_dir().join("echo")).await;
    alice.deploy("acme/echo", None).await.unwrap();
    bob.deploy("acme/echo", None).await.unwrap();

    let secret = alice
        .put_object(Some("secret.txt"), b"alice's data".to_vec(), None)
        .await
        .unwrap();
    let job = alice
        .submit_job("acme/echo", &secret.key, Params::new())
        .await
        .unwrap();
    alice.wait_job(&job.id, |_| {}).await.unwrap();

    // Bob sees none of it, and cannot tell it exists.
    assert!(bob.objects().await.unwrap().is_empty());
    assert!(bob.jobs(None).await.unwrap().is_empty());
    for err in [
        bob.get_object("secret.txt").await.unwrap_err(),
        bob.delete_object("secret.txt").await.unwrap_err(),
        bob.job(&job.id).await.map(|_| ()).unwrap_err(),
        bob.job_output(&job.id, None).await.map(|_| ()).unwrap_err(),
        bob.cancel_job(&job.id).await.map(|_| ()).unwrap_err(),
        bob.delete_job(&job.id).await.unwrap_err(),
        bob.submit_job("acme/echo", "secret.txt", Params::new())
            .await
            .map(|_| ())
            .unwrap_err(),
    ] {
        assert_eq!(err.status(), Some(StatusCode::NOT_FOUND), "{err}");
    }
    // Bob's own object of the same name is his, not hers.
    bob.put_object(Some("secret.txt"), b"bob's".to_vec(), None)
        .await
        .unwrap();
    let mine = bob
        .get_object("secret.txt")
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&mine[..], b"bob's");
    let hers = alice
        .get_object("secret.txt")
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&hers[..], b"alice's data");
    // Usage is per account.
    assert_eq!(bob.usage(None).await.unwrap().records.len(), 0);
    assert_eq!(alice.usage(None).await.unwrap().records.len(), 1);

    // No endpoint returns an artifact, to anyone, its vendor included.
    for c in [&vendor, &alice] {
        assert!(c
            .objects()
            .await
            .unwrap()
            .iter()
            .all(|o| !o.key.contains("wasm")));
    }
    let details = alice.ip("acme/echo").await.unwrap();
    let json = serde_json::to_string(&details).unwrap();
    assert!(
        !json.contains("packages/"),
        "artifact locations leak: {json}"
    );
    for path in [
        "/v1/objects/packages",
        "/v1/ips/acme/echo/artifact",
        "/v1/ips/acme/echo/versions/1.0.0/echo.wasm",
    ] {
        let resp = vendor
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
    }

    // At rest, artifacts are encrypted: no stored file is the module.
    let module = std::fs::read(ips_dir().join("echo/echo.wasm")).unwrap();
    let mut sealed = 0;
    for f in walk(&server.data.join("objects")) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.starts_with(b"\0asm"),
            "{} is a clear module",
            f.display()
        );
        assert!(
            !bytes
                .windows(64)
                .any(|w| w == &module[module.len() / 2..module.len() / 2 + 64]),
            "{} holds module bytes in clear",
            f.display()
        );
        if f.to_string_lossy().ends_with("echo.wasm") {
            sealed += 1;
        }
    }
    assert_eq!(sealed, 1);
}

#[tokio::test]
async fn bad_requests_get_a_clear_4xx() {
    let server = Server::start_with(&["--max-sync-bytes", "1024"]);
    let vendor = server.account("acme", Role::Vendor).await;
    let user = server.account("frank", Role::User).await;
    publish(&vendor, &ips_dir().join("echo")).await;
    user.deploy("acme/echo", None).await.unwrap();
    let post = |path: &str, body: &'static [u8]| {
        user.request(reqwest::Method::POST, path)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    // Malformed and unexpected JSON.
    for (path, body) in [
        ("/v1/deployments", &b"{not json"[..]),
        ("/v1/deployments", &br#"{"ip": 3}"#[..]),
        (
            "/v1/deployments",
            &br#"{"ip": "acme/echo", "extra": 1}"#[..],
        ),
        ("/v1/jobs", &br#"{"ip": "acme/echo"}"#[..]),
        ("/v1/deployments", &br#"{"ip": "no-slash"}"#[..]),
    ] {
        let (status, body) = problem(post(path, body).await.unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
    }

    // Parameters must be a JSON object.
    let resp = user
        .request(reqwest::Method::POST, "/v1/invoke/acme/echo?params=%5B1%5D")
        .body("x")
        .send()
        .await
        .unwrap();
    let (status, body) = problem(resp).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["detail"].as_str().unwrap().contains("JSON object"));

    // Oversized sync input: 413 pointing at objects and jobs.
    let err = user
        .invoke("acme/echo", &Params::new(), Bytes::from(vec![b'a'; 4096]))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::PAYLOAD_TOO_LARGE));
    assert!(err.to_string().contains("accelhub job submit"), "{err}");
    // ...and the same data as a job works.
    let obj = user.put_object(None, vec![b'a'; 4096], None).await.unwrap();
    let job = user
        .submit_job("acme/echo", &obj.key, Params::new())
        .await
        .unwrap();
    let done = user.wait_job(&job.id, |_| {}).await.unwrap();
    assert_eq!(done.output_size, Some(4096));

    // A corrupted upload is refused and leaves nothing behind.
    let err = user
        .put_object(Some("x.bin"), b"hello".to_vec(), Some(&"0".repeat(64)))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST));
    assert!(err.to_string().contains("corrupted in transit"), "{err}");
    assert!(user
        .objects()
        .await
        .unwrap()
        .iter()
        .all(|o| o.key != "x.bin"));
    // Invalid keys.
    let err = user
        .put_object(Some("has space"), b"x".to_vec(), None)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST), "{err}");
    assert!(err.to_string().contains("invalid object key"), "{err}");

    // Unknown routes and bad dates.
    let resp = user
        .request(reqwest::Method::GET, "/v1/nowhere")
        .send()
        .await
        .unwrap();
    let (status, _) = problem(resp).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let err = user.usage(Some("yesterday")).await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST));

    // Unknown IPs and versions.
    let err = user.deploy("acme/nothing", None).await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
    let err = user.deploy("acme/echo", Some("9.9.9")).await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
}

/// axum's own rejections (query string, path segment, JSON body, method)
/// answer as problems that say what to fix, like every other error.
#[tokio::test]
async fn malformed_requests_get_problems_that_name_the_fix() {
    let server = Server::start();
    let user = server.account("grace", Role::User).await;
    let send = |method: reqwest::Method, path: &str, body: &'static str| {
        user.request(method, path)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let detail = |body: &serde_json::Value| body["detail"].as_str().unwrap_or_default().to_string();

    // A query string that does not parse: names the parameter.
    let resp = send(reqwest::Method::GET, "/v1/jobs?limit=many", "")
        .await
        .unwrap();
    let (status, body) = problem(resp).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["status"], 400, "{body}");
    assert!(
        body["type"].as_str().unwrap().ends_with("/bad-request"),
        "{body}"
    );
    let d = detail(&body);
    assert!(d.contains("query string") && d.contains("limit"), "{d}");

    // A path segment of the wrong type.
    let resp = send(
        reqwest::Method::POST,
        "/v1/ips/acme/echo/reviews/first/reply",
        r#"{"text": "thanks"}"#,
    )
    .await
    .unwrap();
    let (status, body) = problem(resp).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(detail(&body).contains("path segment"), "{body}");

    // A JSON body that is not JSON, and one with a field of the wrong type.
    for (path, json, names) in [
        ("/v1/deployments", "{\"ip\": ", "invalid JSON"),
        (
            "/v1/jobs",
            r#"{"ip": "a/b", "input": 7}"#,
            "expected a string",
        ),
    ] {
        let resp = send(reqwest::Method::POST, path, json).await.unwrap();
        let (status, body) = problem(resp).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert!(detail(&body).contains(names), "{path}: {body}");
    }

    // A method a path does not serve.
    let resp = send(reqwest::Method::DELETE, "/v1/usage", "")
        .await
        .unwrap();
    let (status, body) = problem(resp).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    assert!(detail(&body).contains("DELETE"), "{body}");
}

#[tokio::test]
async fn health_metrics_and_openapi() {
    let server = Server::start();
    let get = |p: &str| reqwest::get(format!("{}{p}", server.url));
    let health = get("/healthz").await.unwrap().text().await.unwrap();
    assert!(health.starts_with("ok\ndisk: "), "{health}");
    let doc: serde_json::Value = get("/v1/openapi.json").await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/v1/invoke/{namespace}/{name}",
        "/v1/jobs/{id}",
        "/v1/objects",
        "/v1/usage",
        "/v1/ips",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from OpenAPI"
        );
    }
    let ui = get("/v1/docs/").await.unwrap();
    assert_eq!(ui.status(), StatusCode::OK);
    assert!(ui.text().await.unwrap().contains("swagger"));
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("accelhub_http_requests_total"),
        "{metrics}"
    );
}
