//! `accelhub ip …`: publish, browse the catalog, review.

use crate::cli::Conn;
use crate::cmd::transfer::spinner;
use crate::output::{emit, note, table, Text};
use accelhub_domain::{IpVersion, RatingSummary, VersionStatus};
use anyhow::bail;
use clap::Subcommand;
use std::fmt::Write;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum IpCmd {
    /// Publish the package in DIR (ip.toml and the files it names).
    Publish {
        dir: PathBuf,
        /// Wait for verification to finish and print its result.
        #[arg(long)]
        wait: bool,
    },
    /// List the catalog.
    List {
        /// Search names, summaries and tags (every word must match).
        query: Option<String>,
        /// Only IPs with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Only IPs whose newest version targets this device class.
        #[arg(long)]
        device: Option<String>,
        /// Only this vendor's IPs.
        #[arg(long)]
        vendor: Option<String>,
        /// newest, rating, usage or name.
        #[arg(long)]
        sort: Option<String>,
    },
    /// Show an IP's versions, status and verification reports, ratings
    /// and reviews.
    Show { name: String },
    /// Rate (1-5) and review an IP you have used; again to change it.
    Review {
        name: String,
        #[arg(long)]
        stars: u8,
        #[arg(long, default_value = "")]
        text: String,
    },
    /// Reply to a review of one of your IPs (vendor).
    Reply {
        name: String,
        /// The review's id (`accelhub ip show NAME` lists them).
        id: i64,
        #[arg(long)]
        text: String,
    },
}

pub async fn ip(conn: &Conn, cmd: IpCmd) -> anyhow::Result<()> {
    let c = conn.client()?;
    match cmd {
        IpCmd::Publish { dir, wait } => {
            let mut v = c.publish_dir(&dir).await?;
            if wait {
                let bar = spinner(&format!("verifying {}@{}", v.ip, v.version));
                loop {
                    let details = c.ip(&v.ip).await?;
                    if let Some(now) = details
                        .versions
                        .into_iter()
                        .find(|x| x.version == v.version)
                    {
                        v = now;
                    }
                    if v.status != VersionStatus::Pending {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                bar.finish_and_clear();
            }
            emit(conn.json, &v, |v, out| {
                writeln!(out, "{}@{}: {}", v.ip, v.version, status_mark(v.status))?;
                if wait {
                    write_report(out, v)?;
                }
                Ok(())
            })?;
            if !wait {
                if !conn.json {
                    note(format_args!(
                        "verification runs now; see `accelhub ip show {}`",
                        v.ip
                    ));
                }
            } else if v.status == VersionStatus::Rejected && !conn.json {
                bail!("{}@{} was rejected by verification", v.ip, v.version);
            }
            Ok(())
        }
        IpCmd::List {
            query,
            tag,
            device,
            vendor,
            sort,
        } => {
            let entries = c
                .search(
                    query.as_deref(),
                    tag.as_deref(),
                    device.as_deref(),
                    vendor.as_deref(),
                    sort.as_deref(),
                )
                .await?;
            emit(conn.json, &entries, |entries, out| {
                out.push_str(&table(
                    &[
                        "IP", "LATEST", "STATUS", "PRICE", "DEVICES", "RATING", "USES", "SUMMARY",
                    ],
                    &[6],
                    entries.iter().map(|e| {
                        [
                            e.ip.clone(),
                            e.latest.version.clone(),
                            status_mark(e.latest.status).to_string(),
                            e.latest.price_per_call.to_string(),
                            e.latest.devices.join(","),
                            rating_text(&e.stats.rating),
                            e.stats.uses.to_string(),
                            e.latest.summary.clone(),
                        ]
                    }),
                ));
                Ok(())
            })
        }
        IpCmd::Review { name, stars, text } => emit(
            conn.json,
            &c.review(&name, stars, &text).await?,
            |r, out| writeln!(out, "review {} of {}: {} stars", r.id, r.ip, r.stars),
        ),
        IpCmd::Reply { name, id, text } => {
            emit(conn.json, &c.reply(&name, id, &text).await?, |r, out| {
                writeln!(out, "replied to review {} of {}", r.id, r.ip)
            })
        }
        IpCmd::Show { name } => emit(conn.json, &c.ip(&name).await?, |d, out| {
            writeln!(out, "{}", d.ip)?;
            if let Some(latest) = d.versions.first() {
                writeln!(out, "  {}", latest.summary)?;
            }
            writeln!(
                out,
                "  rated {}; {} uses by {} users",
                rating_text(&d.stats.rating),
                d.stats.uses,
                d.stats.users
            )?;
            for v in &d.versions {
                writeln!(
                    out,
                    "  {} {} price/call {} devices {} published {}",
                    v.version,
                    status_mark(v.status),
                    v.price_per_call,
                    v.devices.join(","),
                    v.published_at.format("%Y-%m-%d %H:%M")
                )?;
                write_report(out, v)?;
            }
            if !d.reviews.is_empty() {
                writeln!(out, "  reviews:")?;
            }
            for r in &d.reviews {
                writeln!(
                    out,
                    "    #{} {} {} ({}): {}",
                    r.id,
                    "*".repeat(usize::from(r.stars)),
                    r.author,
                    r.updated_at.format("%Y-%m-%d"),
                    r.text
                )?;
                if let Some(reply) = &r.reply {
                    writeln!(out, "      vendor reply: {}", reply.text)?;
                }
            }
            Ok(())
        }),
    }
}

fn status_mark(s: VersionStatus) -> &'static str {
    match s {
        VersionStatus::Pending => "pending",
        VersionStatus::Verified => "verified",
        VersionStatus::Rejected => "REJECTED",
    }
}

fn rating_text(r: &RatingSummary) -> String {
    match r.average {
        Some(a) => format!("{a:.1} ({})", r.count),
        None => "-".into(),
    }
}

/// A version's verification report: each implementation, each test.
fn write_report(out: &mut Text, v: &IpVersion) -> std::fmt::Result {
    let Some(report) = &v.report else {
        return writeln!(out, "    verification: not finished");
    };
    for imp in &report.implementations {
        writeln!(
            out,
            "    device {}: {} (load {:.1} ms)",
            imp.device,
            if imp.passed { "passed" } else { "FAILED" },
            imp.load_ms
        )?;
        if let Some(e) = &imp.load_error {
            writeln!(out, "      load error: {e}")?;
        }
        for t in &imp.tests {
            if t.passed {
                writeln!(out, "      ok    {} ({:.2} ms)", t.name, t.device_time_ms)?;
                continue;
            }
            writeln!(out, "      FAIL  {}", t.name)?;
            if let Some(e) = &t.error {
                writeln!(out, "            {e}")?;
            }
            match t.actual_size {
                Some(a) => writeln!(
                    out,
                    "            expected {} bytes, got {a}{}",
                    t.expected_size,
                    t.first_difference
                        .map(|o| format!("; first difference at byte {o}"))
                        .unwrap_or_default()
                )?,
                None => writeln!(
                    out,
                    "            expected {} bytes, got no output",
                    t.expected_size
                )?,
            }
            if let Some(code) = t.exit_code {
                writeln!(out, "            exit code {code}")?;
            }
            if !t.stderr_tail.trim().is_empty() {
                writeln!(out, "            stderr:")?;
                let lines: Vec<&str> = t.stderr_tail.trim_end().lines().collect();
                for line in &lines[lines.len().saturating_sub(10)..] {
                    writeln!(out, "              {line}")?;
                }
            }
        }
    }
    Ok(())
}
