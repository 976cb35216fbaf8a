//! What the benchmarks under `bench/` share: the release `accelhub`
//! binary, the example IPs built, child processes that are stopped when
//! dropped, a fresh `accelhub serve` with one vendor, one user and
//! `acme/echo` verified and deployed, and the small statistics they print.
//! A benchmark keeps only what it measures.

use accelhub_client::Client;
use accelhub_domain::{Role, VersionStatus};
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `accelhub` binary to measure: `explicit`, or the release build in
/// the target directory (`CARGO_TARGET_DIR`, or `target/`).
pub fn accelhub_bin(explicit: Option<PathBuf>) -> Result<PathBuf> {
    let bin = explicit.unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root().join("target"))
            .join("release/accelhub")
    });
    if !bin.exists() {
        bail!(
            "{} not found: run `cargo build --release -p accelhub` first",
            bin.display()
        );
    }
    Ok(bin)
}

/// Build the example IPs (`scripts/build-ips.sh`).
pub fn build_ips() -> Result<()> {
    let status = Command::new("bash")
        .arg(root().join("scripts/build-ips.sh"))
        .status()
        .context("running scripts/build-ips.sh")?;
    if !status.success() {
        bail!("building the example IPs failed");
    }
    Ok(())
}

/// A child process, killed and reaped when dropped.
pub struct Proc {
    pub child: Child,
    /// What followed the marker on the line [`spawn`] waited for.
    pub said: String,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `cmd` (stdout discarded, `RUST_LOG=warn` unless set) and wait up
/// to a minute for a line of its stderr containing `marker`. Later
/// warnings and errors on its stderr are echoed, prefixed with its name.
pub fn spawn(cmd: &mut Command, marker: &str) -> Result<Proc> {
    let name = Path::new(cmd.get_program())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !cmd.get_envs().any(|(k, _)| k == "RUST_LOG") {
        cmd.env("RUST_LOG", "warn");
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    let stderr = child.stderr.take().context("no stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    let wanted = marker.to_string();
    let who = name.clone();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            match line.find(&wanted) {
                Some(i) if tx.is_some() => {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(line[i + wanted.len()..].trim().to_string());
                    }
                }
                _ if line.contains("ERROR") || line.contains("WARN") => {
                    eprintln!("{who}: {line}");
                }
                _ => {}
            }
        }
    });
    let said = rx
        .recv_timeout(Duration::from_secs(60))
        .with_context(|| format!("{name} never said '{marker}'"))?;
    Ok(Proc { child, said })
}

/// `accelhub serve` on a free port over `data`, with `extra` arguments,
/// measured flat out (the per-token rate limit off). Its URL is `said`.
pub fn serve(bin: &Path, data: &Path, extra: &[&str]) -> Result<Proc> {
    spawn(
        Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--rate-limit", "0"])
            .args(extra)
            .arg("--data")
            .arg(data),
        "accelhub listening on ",
    )
}

/// A platform to measure: the admin, a vendor `acme` and a user, with
/// `acme/echo` published, verified and deployed for the user.
pub struct Echo {
    pub admin: Client,
    pub vendor: Client,
    pub user: Client,
    pub user_token: String,
}

/// Set up [`Echo`] on the server at `url` whose data directory is `data`.
pub async fn deploy_echo(url: &str, data: &Path, user: &str) -> Result<Echo> {
    let token = std::fs::read_to_string(data.join("admin.token"))
        .context("reading the admin token")?
        .trim()
        .to_string();
    let admin = Client::new(url, Some(token))?;
    let vendor = admin.create_account("acme", Role::Vendor).await?;
    let user = admin.create_account(user, Role::User).await?;
    let vendor = admin.with_token(vendor.token);
    let user_token = user.token.clone();
    let user = admin.with_token(user.token);
    let v = vendor.publish_dir(&root().join("ips/echo")).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let details = vendor.ip("acme/echo").await?;
        match details
            .versions
            .iter()
            .find(|x| x.version == v.version)
            .map(|x| x.status)
        {
            Some(VersionStatus::Verified) => break,
            Some(VersionStatus::Rejected) => bail!("acme/echo was rejected"),
            _ if Instant::now() > deadline => bail!("acme/echo was not verified in 2 min"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    user.deploy("acme/echo", None).await?;
    Ok(Echo {
        admin,
        vendor,
        user,
        user_token,
    })
}

/// The median of `v` (the upper one of an even count; 0 when empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// A process's resident set (`VmRSS`), in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}
