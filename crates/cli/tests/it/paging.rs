//! Issue 14: every list endpoint pages by cursor and limit (at most 1000),
//! with a `Link: <…>; rel="next"` header to the next page.

use crate::common::*;
use accelhub_client::{AgentClient, Client};
use accelhub_domain::Role;
use bytes::Bytes;
use reqwest::Method;
use serde_json::Value;

/// Walk a list `limit` items a page, following the `Link` headers from
/// `first`: every item, and how many pages there were.
async fn walk(c: &Client, first: &str, limit: u32) -> (Vec<Value>, usize) {
    let sep = if first.contains('?') { '&' } else { '?' };
    let mut next = Some(format!("{first}{sep}limit={limit}"));
    let (mut items, mut pages) = (Vec::new(), 0);
    while let Some(path) = next.take() {
        let resp = c.request(Method::GET, &path).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        next = resp
            .headers()
            .get("link")
            .map(|l| l.to_str().unwrap())
            .map(|l| {
                let target = l
                    .strip_prefix('<')
                    .and_then(|l| l.split_once(">; rel=\"next\""));
                target
                    .unwrap_or_else(|| panic!("{path}: link {l}"))
                    .0
                    .to_string()
            });
        let page: Vec<Value> = resp.json().await.unwrap();
        assert!(page.len() <= limit as usize, "{path}: {} items", page.len());
        assert!(
            !page.is_empty() || pages == 0,
            "{path}: an empty page after a link"
        );
        pages += 1;
        items.extend(page);
    }
    (items, pages)
}

/// The field `key` of each item, as text.
fn field(items: &[Value], key: &str) -> Vec<String> {
    items
        .iter()
        .map(|v| match &v[key] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

/// One request's status and content type.
async fn answer(c: &Client, path: &str) -> (u16, String) {
    let r = c.request(Method::GET, path).send().await.unwrap();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (r.status().as_u16(), ct)
}

#[tokio::test]
async fn every_list_endpoint_pages_by_cursor_and_limit() {
    let server = Server::start();
    let admin = server.admin();
    let acme = server.account("acme", Role::Vendor).await;
    // Five IPs, each verified before the next is published.
    for i in 0..5 {
        let dir = package("echo", |m| {
            m.replace("name = \"acme/echo\"", &format!("name = \"acme/echo{i}\""))
        });
        publish(&acme, dir.path()).await;
    }
    // Five users who ran echo0 and reviewed it; the first deploys all five
    // (not in name order) and subscribes to each.
    let mut users = Vec::new();
    for i in 0..5 {
        let u = server.account(&format!("u{i}"), Role::User).await;
        u.deploy("acme/echo0", None).await.unwrap();
        u.invoke("acme/echo0", &Default::default(), Bytes::from_static(b"hi"))
            .await
            .unwrap();
        u.review("acme/echo0", 4, &format!("review {i}"))
            .await
            .unwrap();
        users.push(u);
    }
    let bob = &users[0];
    for i in [3, 1, 4, 2] {
        bob.deploy(&format!("acme/echo{i}"), None).await.unwrap();
    }
    for i in 0..5 {
        bob.subscribe(&format!("acme/echo{i}"), "per-call")
            .await
            .unwrap();
    }
    // Five agent tokens, one node each.
    for i in 0..5 {
        let token = admin.create_agent(&format!("a{i}")).await.unwrap().token;
        AgentClient::new(&server.url, &token, &format!("n{}", 4 - i))
            .unwrap()
            .register(&wasm_node())
            .await
            .unwrap();
    }
    let echoes = |order: &[usize]| -> Vec<String> {
        order.iter().map(|i| format!("acme/echo{i}")).collect()
    };

    // Accounts, oldest first.
    let (accounts, pages) = walk(&admin, "/v1/accounts", 2).await;
    assert!(pages >= 4, "{pages} pages");
    let names = field(&accounts, "name");
    assert_eq!(
        names[names.len() - 6..],
        ["acme", "u0", "u1", "u2", "u3", "u4"]
    );
    let all = admin.accounts().await.unwrap();
    assert_eq!(
        names,
        all.iter().map(|a| a.name.clone()).collect::<Vec<_>>()
    );
    let ids: Vec<i64> = all.iter().map(|a| a.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    // The catalog, newest first, and searched by name (the link keeps the
    // search and the order).
    let (catalog, _) = walk(bob, "/v1/ips", 2).await;
    let ips = field(&catalog, "ip");
    let whole: Vec<String> = bob
        .catalog(None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.ip)
        .collect();
    assert_eq!(ips, whole);
    assert_eq!(ips[..5], echoes(&[4, 3, 2, 1, 0]));
    let (named, pages) = walk(bob, "/v1/ips?q=echo&sort=name", 2).await;
    assert_eq!(pages, 3);
    assert_eq!(field(&named, "ip"), echoes(&[0, 1, 2, 3, 4]));

    // An IP's reviews, newest first.
    let (reviews, pages) = walk(bob, "/v1/ips/acme/echo0/reviews", 2).await;
    assert_eq!(pages, 3);
    assert_eq!(field(&reviews, "author"), ["u4", "u3", "u2", "u1", "u0"]);
    assert_eq!(bob.reviews("acme/echo0").await.unwrap().len(), 5);

    // The caller's deployments, by IP name.
    let (deps, pages) = walk(bob, "/v1/deployments", 2).await;
    assert_eq!(pages, 3);
    assert_eq!(field(&deps, "ip"), echoes(&[0, 1, 2, 3, 4]));
    assert_eq!(bob.deployments().await.unwrap().len(), 5);
    assert_eq!(walk(&users[1], "/v1/deployments", 2).await.0.len(), 1);

    // The caller's subscriptions, oldest first.
    let (subs, pages) = walk(bob, "/v1/subscriptions", 2).await;
    assert_eq!(pages, 3);
    assert_eq!(field(&subs, "ip"), echoes(&[0, 1, 2, 3, 4]));
    assert_eq!(bob.subscriptions().await.unwrap().len(), 5);

    // The fleet's nodes, by name: the agents' and this process's own.
    let (nodes, _) = walk(&admin, "/v1/fleet", 2).await;
    let names = field(&nodes, "name");
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names, sorted, "by name, each once");
    for i in 0..5 {
        assert!(names.contains(&format!("n{i}")), "{names:?}");
    }
    let fleet = admin.fleet().await.unwrap();
    assert_eq!(
        fleet
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .collect::<Vec<_>>(),
        names
    );

    // Agent tokens, oldest first.
    let (agents, pages) = walk(&admin, "/v1/agents", 2).await;
    assert_eq!(pages, 3);
    assert_eq!(field(&agents, "name"), ["a0", "a1", "a2", "a3", "a4"]);
    assert_eq!(admin.agents().await.unwrap().len(), 5);

    // Limits out of range and cursors that are not this list's: 400,
    // as problem+json.
    let lists: [(&Client, &str); 7] = [
        (&admin, "/v1/accounts"),
        (bob, "/v1/ips"),
        (bob, "/v1/ips/acme/echo0/reviews"),
        (bob, "/v1/deployments"),
        (bob, "/v1/subscriptions"),
        (&admin, "/v1/fleet"),
        (&admin, "/v1/agents"),
    ];
    for (c, path) in lists {
        for q in [
            "limit=0",
            "limit=1001",
            "limit=many",
            "cursor=x",
            "cursor=12.",
        ] {
            let (status, ct) = answer(c, &format!("{path}?{q}")).await;
            assert_eq!(
                (status, ct.as_str()),
                (400, "application/problem+json"),
                "{path}?{q}"
            );
        }
        assert_eq!(
            answer(c, &format!("{path}?limit=1000")).await.0,
            200,
            "{path}"
        );
    }
    // Lists keyed by number refuse a cursor whose id is not one; the
    // catalog one that names no IP of the listing.
    for (c, path) in [
        (&admin, "/v1/accounts"),
        (bob, "/v1/ips/acme/echo0/reviews"),
        (bob, "/v1/subscriptions"),
        (&admin, "/v1/agents"),
        (bob, "/v1/ips"),
    ] {
        let (status, ct) = answer(c, &format!("{path}?cursor=5.nope")).await;
        assert_eq!(
            (status, ct.as_str()),
            (400, "application/problem+json"),
            "{path}"
        );
    }
    // Only the operator lists accounts, agent tokens and the fleet.
    for path in ["/v1/accounts", "/v1/agents", "/v1/fleet"] {
        assert_eq!(
            answer(bob, &format!("{path}?limit=2")).await.0,
            403,
            "{path}"
        );
    }
}
