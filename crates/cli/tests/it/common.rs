//! Shared test fixtures: the real `accelhub` binary serving on
//! 127.0.0.1:0 over a fresh data directory, and the example IPs built for
//! wasm32-wasip1.
#![allow(dead_code)]

use accelhub_client::Client;
use accelhub_domain::{IpVersion, Role, VersionStatus};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Build the example IPs once per test process.
pub fn ips_dir() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = repo_root();
            let status = Command::new("bash")
                .arg(root.join("scripts/build-ips.sh"))
                .status()
                .expect("run scripts/build-ips.sh");
            assert!(status.success(), "building the example IPs failed");
            root.join("ips")
        })
        .clone()
}

/// A copy of example IP `name` in a temporary directory, with `edit`
/// applied to its ip.toml.
pub fn package(name: &str, edit: impl FnOnce(String) -> String) -> tempfile::TempDir {
    let src = ips_dir().join(name);
    let dst = tempfile::tempdir().unwrap();
    copy_dir(&src, dst.path());
    let manifest = dst.path().join("ip.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, edit(text)).unwrap();
    dst
}

fn copy_dir(src: &Path, dst: &Path) {
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name == "src" || name == "Cargo.toml" {
            continue;
        }
        let to = dst.join(&name);
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&to).unwrap();
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_accelhub")
}

/// A running `accelhub serve`.
pub struct Server {
    child: Option<Child>,
    pub url: String,
    pub data: PathBuf,
    pub admin_token: String,
    pub log: Arc<Mutex<String>>,
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL schema this server's data lives in, when the suite
    /// runs on PostgreSQL (dropped with the first server of a data dir).
    _schema: Option<PgSchema>,
}

impl Server {
    pub fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Server::start_in(dir.path(), &[]);
        s._dir = Some(dir);
        s
    }

    pub fn start_with(args: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Server::start_in(dir.path(), args);
        s._dir = Some(dir);
        s
    }

    /// Start on an existing data directory (a restart).
    pub fn start_in(data: &Path, args: &[&str]) -> Server {
        Server::start_in_env(data, args, &[])
    }

    /// Start with these environment variables set for the server.
    pub fn start_in_env(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        // The whole suite on PostgreSQL: with ACCELHUB_TEST_SUITE_POSTGRES
        // set, every data directory gets a schema of its own (kept across
        // restarts of that directory).
        let mut schema = None;
        let mut db_args: Vec<String> = Vec::new();
        if std::env::var_os("ACCELHUB_TEST_SUITE_POSTGRES").is_some()
            && !args.contains(&"--database")
        {
            let file = data.join("test-database.url");
            let url = match std::fs::read_to_string(&file) {
                Ok(url) => url,
                Err(_) => {
                    let db = postgres_schema("the suite on PostgreSQL")
                        .expect("ACCELHUB_TEST_SUITE_POSTGRES needs ACCELHUB_TEST_POSTGRES");
                    std::fs::create_dir_all(data).unwrap();
                    std::fs::write(&file, &db.url).unwrap();
                    let url = db.url.clone();
                    schema = Some(db);
                    url
                }
            };
            db_args = vec!["--database".into(), url];
        }
        let listen: &[&str] = if args.contains(&"--listen") {
            &[]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        let mut child = Command::new(bin())
            .arg("serve")
            .arg("--data")
            .arg(data)
            .args(listen)
            .args(args)
            .args(&db_args)
            .env("RUST_LOG", "info,sqlx=warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start accelhub serve");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut tx = Some(tx);
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(rest) = line.strip_prefix("accelhub listening on ") {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(rest.trim().to_string());
                        }
                    }
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        let url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start:\n{}", log.lock().unwrap());
            }
        };
        let admin_token = std::fs::read_to_string(data.join("admin.token"))
            .unwrap()
            .trim()
            .to_string();
        Server {
            child: Some(child),
            url,
            data: data.to_path_buf(),
            admin_token,
            log,
            _dir: None,
            _schema: schema,
        }
    }

    pub fn client(&self, token: &str) -> Client {
        Client::new(&self.url, Some(token.to_string())).unwrap()
    }

    pub fn admin(&self) -> Client {
        self.client(&self.admin_token)
    }

    /// Create an account and return a client holding its token.
    pub async fn account(&self, name: &str, role: Role) -> Client {
        let created = self.admin().create_account(name, role).await.unwrap();
        self.client(&created.token)
    }

    /// Run the CLI against this server.
    pub fn cli(&self, token: &str, args: &[&str]) -> Output {
        Command::new(bin())
            .args(args)
            .env("ACCELHUB_URL", &self.url)
            .env("ACCELHUB_TOKEN", token)
            .stdin(Stdio::null())
            .output()
            .expect("run accelhub")
    }

    /// SIGKILL: the process dies with no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, and wait for a graceful exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("server running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        c.wait().unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Read a response's body as it streams: its length and SHA-256 (hex).
pub async fn stream_digest(resp: reqwest::Response) -> (usize, String) {
    use futures::StreamExt;
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut n = 0usize;
    let mut s = resp.bytes_stream();
    while let Some(c) = s.next().await {
        let c = c.unwrap();
        n += c.len();
        h.update(&c);
    }
    (n, hex::encode(h.finalize()))
}

/// A process's peak resident memory (VmHWM), in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Poll until the built-in IPs (`genomics/index`, `genomics/align` and
/// the flow after it), which a server publishes at start-up, are verified.
pub async fn wait_builtins_verified(c: &Client) {
    for ip in [
        "genomics/index",
        "genomics/align",
        "genomics/sort",
        "genomics/markdup",
        "genomics/call",
        "genomics/germline",
    ] {
        wait_verified(c, ip, accelhub_native::builtin::VERSION).await;
    }
}

/// Poll until the version's verification finishes.
pub async fn wait_verified(c: &Client, ip: &str, version: &str) -> IpVersion {
    let start = Instant::now();
    loop {
        let d = c.ip(ip).await.unwrap();
        let v = d
            .versions
            .into_iter()
            .find(|v| v.version == version)
            .unwrap();
        if v.status != VersionStatus::Pending {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "verification of {ip}@{version} hangs"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publish a package directory and wait for its verification.
pub async fn publish(c: &Client, dir: &Path) -> IpVersion {
    let v = c.publish_dir(dir).await.unwrap();
    assert_eq!(v.status, VersionStatus::Pending);
    wait_verified(c, &v.ip, &v.version).await
}

/// Reference reverse complement, written independently of the IP.
pub fn revcomp_reference(seq: &[u8]) -> Vec<u8> {
    seq.iter()
        .rev()
        .map(|b| match b {
            b'A' => b'T',
            b'T' => b'A',
            b'C' => b'G',
            b'G' => b'C',
            other => *other,
        })
        .collect()
}

/// `n` pseudo-random bases (A, C, G, T) from seed `x`: a test genome.
#[allow(dead_code)]
pub fn random_bases(n: usize, mut x: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b"ACGT"[(x >> 40) as usize & 3]
        })
        .collect()
}

/// A fresh schema in the test PostgreSQL, dropped when this goes.
pub struct PgSchema {
    admin_url: String,
    schema: String,
    /// The database URL scoped to the schema.
    pub url: String,
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (url, schema) = (self.admin_url.clone(), self.schema.clone());
        // A thread of its own: the test may be inside a runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().ok()?;
            rt.block_on(async {
                let pool = sqlx::PgPool::connect(&url).await.ok()?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "SET lock_timeout = '5s'; DROP SCHEMA IF EXISTS {schema} CASCADE"
                )))
                .execute(&pool)
                .await
                .ok()
            })
        })
        .join();
    }
}

/// A PostgreSQL schema of its own, from `ACCELHUB_TEST_POSTGRES` (which
/// `.ci/run` sets); `None`, with a note, without it.
#[allow(dead_code)]
pub fn postgres_schema(test: &str) -> Option<PgSchema> {
    let Ok(url) = std::env::var("ACCELHUB_TEST_POSTGRES") else {
        eprintln!("skipping {test}: ACCELHUB_TEST_POSTGRES is not set (e.g. postgres://postgres@127.0.0.1:5432/test)");
        return None;
    };
    // Tests of one process start at once: a counter keeps names apart.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let schema = format!(
        "cli{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros()
    );
    let (u, sc) = (url.clone(), schema.clone());
    // A thread of its own: the test may be inside a runtime.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let pool = sqlx::PgPool::connect(&u)
                .await
                .expect("connect to PostgreSQL");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {sc}")))
                .execute(&pool)
                .await
                .expect("create a test schema");
        });
    })
    .join()
    .expect("create a test schema");
    let sep = if url.contains('?') { '&' } else { '?' };
    Some(PgSchema {
        url: format!("{url}{sep}options=-c%20search_path%3D{schema}"),
        admin_url: url,
        schema,
    })
}

/// An `s3://` URL on a fresh bucket of the test S3 server in
/// `ACCELHUB_TEST_S3` (which `.ci/run` starts); `None`, with a note,
/// without it. Servers started afterwards get test credentials.
#[allow(dead_code)]
pub fn s3_bucket(test: &str) -> Option<String> {
    let Ok(endpoint) = std::env::var("ACCELHUB_TEST_S3") else {
        eprintln!("skipping {test}: ACCELHUB_TEST_S3 is not set (an S3 endpoint, e.g. moto_server's http://127.0.0.1:5590)");
        return None;
    };
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ] {
        if std::env::var_os(k).is_none() {
            std::env::set_var(k, v);
        }
    }
    let bucket = format!(
        "cli{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros()
    );
    let target = format!("{endpoint}/{bucket}");
    let status = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            reqwest::Client::new()
                .put(target)
                .send()
                .await
                .expect("reach the S3 server")
                .status()
        })
    })
    .join()
    .expect("create a test bucket");
    assert!(status.is_success(), "create bucket: {status}");
    Some(format!("s3://{bucket}?endpoint={endpoint}"))
}

/// A free TCP port on 127.0.0.1 (for a server that must come back on the
/// same address).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `accelhub agent`.
pub struct AgentProc {
    child: Option<Child>,
    pub node: String,
    pub log: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl AgentProc {
    /// Start an agent for `node` and wait until it has registered.
    pub fn start(server: &str, token: &str, node: &str, args: &[&str]) -> AgentProc {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(bin())
            .arg("agent")
            .arg("--server")
            .arg(server)
            .arg("--node")
            .arg(node)
            .arg("--data")
            .arg(dir.path())
            .args(args)
            .env("ACCELHUB_AGENT_TOKEN", token)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start accelhub agent");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut tx = Some(tx);
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if line.contains("registered with") {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = child.kill();
            panic!("agent {node} did not register:\n{}", log.lock().unwrap());
        }
        AgentProc {
            child: Some(child),
            node: node.to_string(),
            log,
            _dir: dir,
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// What an agent node with one wasm slot, idle, reports.
pub fn wasm_node() -> accelhub_domain::NodeReport {
    accelhub_domain::NodeReport {
        devices: vec![accelhub_domain::FleetDevice {
            class: "wasm".into(),
            slots: 1,
            busy: 0,
            utilisation: 0.0,
            loaded: vec![],
            resident: vec![],
            hardware: vec![],
        }],
    }
}
