//! The OpenAPI document declares what the server answers: each error a
//! request can get is declared on its operation, as
//! `application/problem+json`. `scripts/schemathesis.sh` checks this over
//! generated requests; these are the cases it found undeclared (issue 14).

use crate::common::*;
use accelhub_domain::Role;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

struct Case {
    method: Method,
    /// The operation's path in the document.
    template: &'static str,
    path: &'static str,
    token: Option<String>,
    body: Option<Vec<u8>>,
    expect: StatusCode,
}

fn case(
    method: Method,
    template: &'static str,
    path: &'static str,
    token: Option<&str>,
    body: Option<Value>,
    expect: StatusCode,
) -> Case {
    Case {
        method,
        template,
        path,
        token: token.map(str::to_string),
        body: body.map(|b| serde_json::to_vec(&b).unwrap()),
        expect,
    }
}

#[tokio::test]
async fn every_error_answered_is_declared_as_problem_json() {
    let server = Server::start();
    let admin = server.admin();
    let vendor = admin.create_account("acme", Role::Vendor).await.unwrap();
    let user = admin.create_account("erin", Role::User).await.unwrap();
    let (vendor, user) = (vendor.token, user.token);
    let op = Some(server.admin_token.as_str());
    publish(&server.client(&vendor), &ips_dir().join("echo")).await;
    server
        .client(&user)
        .deploy("acme/echo", None)
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let doc: Value = http
        .get(format!("{}/v1/openapi.json", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    let u = Some(user.as_str());
    let v = Some(vendor.as_str());
    let (get, post, put) = (Method::GET, Method::POST, Method::PUT);
    let cases = [
        // No token: every operation declares 401.
        case(
            get.clone(),
            "/v1/deployments",
            "/v1/deployments",
            None,
            None,
            StatusCode::UNAUTHORIZED,
        ),
        case(
            get.clone(),
            "/v1/usage",
            "/v1/usage",
            None,
            None,
            StatusCode::UNAUTHORIZED,
        ),
        case(
            get.clone(),
            "/v1/agent/jobs/{id}/input",
            "/v1/agent/jobs/x/input",
            None,
            None,
            StatusCode::UNAUTHORIZED,
        ),
        // Only users deploy, call and submit jobs: 403 for the others.
        case(
            post.clone(),
            "/v1/deployments",
            "/v1/deployments",
            op,
            Some(json!({"ip": "acme/echo"})),
            StatusCode::FORBIDDEN,
        ),
        case(
            get.clone(),
            "/v1/deployments/{namespace}/{name}",
            "/v1/deployments/acme/echo",
            v,
            None,
            StatusCode::FORBIDDEN,
        ),
        case(
            post.clone(),
            "/v1/invoke/{namespace}/{name}",
            "/v1/invoke/acme/echo",
            op,
            None,
            StatusCode::FORBIDDEN,
        ),
        case(
            post.clone(),
            "/v1/jobs",
            "/v1/jobs",
            v,
            Some(json!({"ip": "acme/echo", "input": "x"})),
            StatusCode::FORBIDDEN,
        ),
        // Bad parameters and bodies: 400.
        case(
            get.clone(),
            "/v1/jobs",
            "/v1/jobs?limit=many",
            u,
            None,
            StatusCode::BAD_REQUEST,
        ),
        case(
            get.clone(),
            "/v1/jobs/{id}",
            "/v1/jobs/x",
            u,
            None,
            StatusCode::NOT_FOUND,
        ),
        case(
            post.clone(),
            "/v1/deployments",
            "/v1/deployments",
            u,
            Some(json!({"ip": 7})),
            StatusCode::BAD_REQUEST,
        ),
        case(
            get.clone(),
            "/v1/invoices",
            "/v1/invoices?month=soon",
            u,
            None,
            StatusCode::BAD_REQUEST,
        ),
        case(
            get.clone(),
            "/v1/ips/{namespace}/{name}/versions/{version}",
            "/v1/ips/acme/echo/versions/9.9.9",
            u,
            None,
            StatusCode::NOT_FOUND,
        ),
        // Over the monthly spending limit (set just below): 402.
        case(
            put.clone(),
            "/v1/account/spending-limit",
            "/v1/account/spending-limit",
            u,
            Some(json!({"monthly": "0.000001"})),
            StatusCode::OK,
        ),
        case(
            post.clone(),
            "/v1/invoke/{namespace}/{name}",
            "/v1/invoke/acme/echo",
            u,
            None,
            StatusCode::PAYMENT_REQUIRED,
        ),
    ];
    for c in cases {
        let what = format!("{} {}", c.method, c.path);
        let mut req = http.request(c.method.clone(), format!("{}{}", server.url, c.path));
        if let Some(t) = &c.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = c.body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let text = resp.text().await.unwrap();
        assert_eq!(status, c.expect, "{what}: {text}");
        let declared = &doc["paths"][c.template][c.method.as_str().to_lowercase()]["responses"]
            [status.as_str()];
        assert!(declared.is_object(), "{what}: {status} is not declared");
        if status.is_client_error() {
            assert_eq!(content_type, "application/problem+json", "{what}");
            let problem: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(problem["status"], status.as_u16(), "{what}");
            let media: Vec<&String> = declared["content"].as_object().unwrap().keys().collect();
            assert_eq!(media, ["application/problem+json"], "{what}");
        }
    }
}
