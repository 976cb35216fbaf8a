//! The web console at `/`: served with a strict content security policy,
//! and driven end to end in headless Chromium (`e2e/console.mjs`, Debian's
//! chromium through playwright-core). Without a browser, Node.js or the
//! e2e packages the browser test skips, saying so, unless
//! `ACCELHUB_TEST_BROWSER` is set (CI sets it): then it fails.

use crate::common::*;
use accelhub_domain::{Role, VersionStatus};
use std::path::PathBuf;
use std::process::Command;

#[tokio::test]
async fn the_console_is_served_with_a_strict_content_security_policy() {
    let server = Server::start();
    let http = reqwest::Client::new();
    for (path, kind) in [
        ("/", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/app.css", "text/css"),
    ] {
        let r = http
            .get(format!("{}{path}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        assert!(
            h["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("default-src 'none'"));
        assert_eq!(h["x-content-type-options"], "nosniff");
    }
    let page = http
        .get(&server.url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("/console/app.js"));
    // The page itself needs no token; the API behind it does.
    let r = http
        .get(format!("{}/v1/account", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// What the browser test needs, or why it cannot run here.
fn browser() -> Result<(PathBuf, PathBuf), String> {
    let chromium =
        std::env::var("ACCELHUB_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let chromium = PathBuf::from(chromium);
    if !chromium.exists() {
        return Err(format!(
            "no Chromium at {} (Debian: apt-get install chromium)",
            chromium.display()
        ));
    }
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !node_ok {
        return Err("no Node.js on the PATH".into());
    }
    let e2e = repo_root().join("e2e");
    if !e2e.join("node_modules/playwright-core").exists() {
        return Err(format!(
            "playwright-core is not installed (npm ci --prefix {})",
            e2e.display()
        ));
    }
    Ok((chromium, e2e))
}

/// The browser, or None (the test skips, saying why) unless
/// `ACCELHUB_TEST_BROWSER` is set: then a missing piece fails the test.
fn browser_or_skip() -> Option<(PathBuf, PathBuf)> {
    match browser() {
        Ok(b) => Some(b),
        Err(why) if std::env::var_os("ACCELHUB_TEST_BROWSER").is_some() => {
            panic!("ACCELHUB_TEST_BROWSER is set but {why}")
        }
        Err(why) => {
            eprintln!("skipping: {why}");
            None
        }
    }
}

/// Run the e2e script `script` (in e2e/) against `server` with `env`
/// beside the URL, the browser and the screenshots' directory (under
/// target/, never committed); what it said, once it said `NAME e2e: ok`.
fn run_e2e(
    (chromium, e2e): &(PathBuf, PathBuf),
    script: &str,
    server: &Server,
    env: &[(&str, &std::ffi::OsStr)],
) -> String {
    let out = Command::new("node")
        .arg(e2e.join(script))
        .env("ACCELHUB_URL", &server.url)
        .env("CHROMIUM", chromium)
        .env("SCREENSHOTS", screenshots())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{said}\nserver log:\n{}",
        server.log()
    );
    let name = script.trim_end_matches(".mjs");
    assert!(said.contains(&format!("{name} e2e: ok")), "{said}");
    said
}

/// Where the e2e scripts put their screenshots: test artifacts.
fn screenshots() -> PathBuf {
    repo_root().join("target/e2e-screenshots")
}

#[tokio::test]
async fn a_user_finds_tries_and_pays_for_an_ip_and_its_vendor_sees_it_in_a_browser() {
    let Some(browser) = browser_or_skip() else {
        return;
    };
    let server = Server::start();
    let vendor_token = server
        .admin()
        .create_account("acme", Role::Vendor)
        .await
        .unwrap()
        .token;
    let user_token = server
        .admin()
        .create_account("bob", Role::User)
        .await
        .unwrap()
        .token;
    let vendor = server.client(&vendor_token);
    for ip in ["revcomp", "echo"] {
        let v = publish(&vendor, &ips_dir().join(ip)).await;
        assert_eq!(v.status, VersionStatus::Verified);
    }

    // The package the vendor uploads in the browser: echo 1.1.0.
    let dir = package("echo", |m| {
        m.replace("version = \"1.0.0\"", "version = \"1.1.0\"")
    });
    let mut tar = tar::Builder::new(Vec::new());
    tar.append_dir_all(".", dir.path()).unwrap();
    let archive = dir.path().with_extension("tar");
    std::fs::write(&archive, tar.into_inner().unwrap()).unwrap();

    run_e2e(
        &browser,
        "console.mjs",
        &server,
        &[
            ("USER_TOKEN", user_token.as_ref()),
            ("VENDOR_TOKEN", vendor_token.as_ref()),
            ("ADMIN_TOKEN", server.admin_token.as_ref()),
            ("PACKAGE", archive.as_ref()),
        ],
    );
    assert!(screenshots().join("2-try-it.png").exists());

    // What the browser showed is what the platform recorded.
    let user = server.client(&user_token);
    let usage = user.usage(None).await.unwrap();
    assert_eq!(usage.totals.billed, 1, "{:?}", usage.totals);
    assert_eq!(usage.records[0].ip, "acme/revcomp");
    let reviews = user.reviews("acme/revcomp").await.unwrap();
    assert_eq!(
        (reviews[0].stars, reviews[0].text.as_str()),
        (5, "fast and exact")
    );
    assert_eq!(reviews[0].reply.as_ref().unwrap().text, "thank you, Bob");
    let echo = wait_verified(&vendor, "acme/echo", "1.1.0").await;
    assert_eq!(echo.status, VersionStatus::Verified);
    assert!(screenshots().join("5-operator.png").exists());
    let _ = std::fs::remove_file(&archive);
}

#[tokio::test]
async fn a_user_sees_and_saves_a_jobs_named_outputs_in_a_browser() {
    let Some(browser) = browser_or_skip() else {
        return;
    };
    let server = Server::start();
    let vendor = server.account("acme", Role::Vendor).await;
    let created = server
        .admin()
        .create_account("dora", Role::User)
        .await
        .unwrap();
    let user = server.client(&created.token);
    publish(&vendor, &ips_dir().join("revcomp")).await;
    user.deploy("acme/revcomp", None).await.unwrap();
    let obj = user
        .put_object(Some("r.fa"), b">r\nACGT\n".to_vec(), None)
        .await
        .unwrap();
    let job = user
        .submit_job("acme/revcomp", &obj.key, Default::default())
        .await
        .unwrap();
    let job = user.wait_job(&job.id, |_| {}).await.unwrap();
    assert_eq!(job.outputs.len(), 2, "{job:?}");

    run_e2e(
        &browser,
        "jobs.mjs",
        &server,
        &[
            ("USER_TOKEN", created.token.as_ref()),
            ("EXPECT_STATS", "{\"records\":1,\"bases\":4}\n".as_ref()),
        ],
    );
}
