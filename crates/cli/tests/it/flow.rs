//! The whole flow through the CLI: a vendor publishes, verification passes,
//! a user deploys and calls (sync and async), and everyone sees the cost.

use crate::common::*;
use std::process::Output;

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "command failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn publish_verify_deploy_invoke_job_and_usage_via_cli() {
    flow(Server::start());
}

/// The same, with the control plane's metadata in PostgreSQL.
#[test]
fn the_same_flow_on_postgres() {
    if let Some(db) = postgres_schema("the_same_flow_on_postgres") {
        flow(Server::start_with(&["--database", &db.url]));
    }
}

/// The same in scale-out form: PostgreSQL and an S3 object store.
#[test]
fn the_same_flow_on_postgres_and_s3() {
    let (Some(db), Some(objects)) = (
        postgres_schema("the_same_flow_on_postgres_and_s3"),
        s3_bucket("the_same_flow_on_postgres_and_s3"),
    ) else {
        return;
    };
    flow(Server::start_with(&[
        "--database",
        &db.url,
        "--objects",
        &objects,
    ]));
}

fn flow(server: Server) {
    let ips = ips_dir();
    let admin = server.admin_token.clone();

    // The operator token file is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(server.data.join("admin.token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(server.log().contains("admin.token"));

    let vendor = ok(server.cli(&admin, &["account", "create", "acme", "--role", "vendor"]))
        .trim()
        .to_string();
    let user = ok(server.cli(&admin, &["account", "create", "alice", "--role", "user"]))
        .trim()
        .to_string();
    assert!(vendor.starts_with("ahk_") && user.starts_with("ahk_"));
    assert_eq!(
        ok(server.cli(&user, &["account", "whoami"])).trim(),
        "alice (user)"
    );

    // Publish and watch verification.
    let out = ok(server.cli(
        &vendor,
        &[
            "ip",
            "publish",
            ips.join("revcomp").to_str().unwrap(),
            "--wait",
        ],
    ));
    assert!(out.contains("acme/revcomp@1.0.0: verified"), "{out}");
    assert!(out.contains("ok    fasta, wrapped at 10"), "{out}");
    let list = ok(server.cli(&user, &["ip", "list"]));
    assert!(
        list.contains("acme/revcomp") && list.contains("0.002000"),
        "{list}"
    );
    let show = ok(server.cli(&user, &["ip", "show", "acme/revcomp"]));
    assert!(show.contains("1.0.0 verified"), "{show}");

    // Deploy and call synchronously.
    let out = ok(server.cli(&user, &["deploy", "acme/revcomp"]));
    assert!(out.contains("deployed acme/revcomp@1.0.0"), "{out}");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.fa");
    std::fs::write(&input, ">r\nAACCGGTTA\n").unwrap();
    let output = dir.path().join("out.fa");
    let o = server.cli(
        &user,
        &[
            "invoke",
            "acme/revcomp",
            "--input",
            input.to_str().unwrap(),
            "--param",
            "width=4",
            "--output",
            output.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    ok(o);
    assert_eq!(
        std::fs::read_to_string(&output).unwrap(),
        ">r\nTAAC\nCGGT\nT\n"
    );
    assert!(stderr.contains("price 0.002000"), "{stderr}");

    // Stdout when no --output.
    let out = ok(server.cli(
        &user,
        &[
            "invoke",
            "acme/revcomp",
            "--input",
            input.to_str().unwrap(),
            "-p",
            "width=0",
        ],
    ));
    assert_eq!(out, ">r\nTAACCGGTT\n");

    // An async job over a larger object: upload, submit, wait, download.
    let mut seq = Vec::new();
    let mut x: u32 = 12345;
    for _ in 0..300_000 {
        x = x.wrapping_mul(1103515245).wrapping_add(12345);
        seq.push(b"ACGT"[(x >> 16) as usize % 4]);
    }
    let big = dir.path().join("big.txt");
    std::fs::write(&big, [&seq[..], b"\n"].concat()).unwrap();
    let key = ok(server.cli(&user, &["object", "put", big.to_str().unwrap()]))
        .trim()
        .to_string();
    assert!(ok(server.cli(&user, &["object", "list"])).contains(&key));
    let job = ok(server.cli(&user, &["job", "submit", "acme/revcomp", "--input", &key]))
        .trim()
        .to_string();
    let waited = ok(server.cli(&user, &["job", "wait", &job]));
    assert!(waited.contains("state     succeeded (100%)"), "{waited}");
    assert!(waited.contains("attempt 1 on local: succeeded"), "{waited}");
    let job_out = dir.path().join("job.out");
    ok(server.cli(
        &user,
        &["job", "output", &job, "--output", job_out.to_str().unwrap()],
    ));
    let expected = [revcomp_reference(&seq), b"\n".to_vec()].concat();
    assert!(
        std::fs::read(&job_out).unwrap() == expected,
        "job output differs"
    );
    assert!(ok(server.cli(&user, &["job", "list"])).contains(&job));

    // A job can also take a local file directly.
    let job2 = ok(server.cli(
        &user,
        &[
            "job",
            "submit",
            "acme/revcomp",
            "--input",
            input.to_str().unwrap(),
        ],
    ))
    .trim()
    .to_string();
    ok(server.cli(&user, &["job", "wait", &job2]));

    // Usage: two sync calls and two jobs billed at 0.002 each for the user...
    let usage = ok(server.cli(&user, &["usage"]));
    assert!(usage.contains("4 records, 4 billed"), "{usage}");
    assert!(usage.contains("amount 0.008000"), "{usage}");
    assert!(usage.contains("alice"), "{usage}");
    // ...and the vendor sees the use of its IP without the user's name.
    let vusage = ok(server.cli(&vendor, &["usage"]));
    assert!(vusage.contains("amount 0.008000"), "{vusage}");
    assert!(!vusage.contains("alice"), "{vusage}");
    // --since in the future filters everything out.
    let none = ok(server.cli(&user, &["usage", "--since", "2999-01-01"]));
    assert!(none.contains("0 records"), "{none}");

    // Deleting a finished job removes its output.
    ok(server.cli(&user, &["job", "rm", &job]));
    let o = server.cli(&user, &["job", "status", &job]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no job"));
}
