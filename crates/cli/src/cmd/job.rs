//! `accelhub job …`: asynchronous jobs on objects.

use crate::cli::{parse_params, Conn};
use crate::cmd::transfer::{progress_bar, upload, write_response};
use crate::output::{emit, note, table, Text};
use accelhub_domain::{Job, JobState};
use anyhow::bail;
use clap::Subcommand;
use std::fmt::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum JobCmd {
    /// Queue a job; prints its id.
    Submit {
        ip: String,
        /// An object key, or a local file to upload first.
        #[arg(long, short)]
        input: String,
        #[arg(long = "param", short = 'p')]
        params: Vec<String>,
    },
    /// Show a job.
    Status { id: String },
    /// Wait for a job to finish, showing progress.
    Wait { id: String },
    /// Download a succeeded job's output: the main one, or the one named
    /// (`job status` lists them).
    Output {
        id: String,
        /// Which output, by name (e.g. `vcf`, `bai`).
        #[arg(long, short)]
        name: Option<String>,
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// List your jobs, newest first.
    List {
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Cancel a queued or running job.
    Cancel { id: String },
    /// Delete a finished job and its output.
    Rm { id: String },
}

pub async fn job(conn: &Conn, cmd: JobCmd) -> anyhow::Result<()> {
    let c = conn.client()?;
    match cmd {
        JobCmd::Submit { ip, input, params } => {
            let params = parse_params(&params)?;
            let key = if Path::new(&input).is_file() {
                let info = upload(&c, Path::new(&input), None).await?;
                note(format_args!("uploaded {input} as object {}", info.key));
                info.key
            } else {
                input
            };
            let job = c.submit_job(&ip, &key, params).await?;
            emit(conn.json, &job, |job, out| writeln!(out, "{}", job.id))
        }
        JobCmd::Status { id } => emit(conn.json, &c.job(&id).await?, write_job),
        JobCmd::Wait { id } => {
            let bar = progress_bar(1000, "{msg:<24} [{bar:30}] {percent}% {elapsed}");
            let job = c
                .wait_job(&id, |j| {
                    bar.set_position((j.progress * 1000.0) as u64);
                    let done = match (j.items, &j.unit) {
                        (Some(n), Some(unit)) => format!(", {n} {unit}"),
                        _ => String::new(),
                    };
                    bar.set_message(format!("{} (attempt {}{done})", j.state, j.attempts));
                })
                .await?;
            bar.finish_and_clear();
            emit(conn.json, &job, write_job)?;
            if job.state != JobState::Succeeded {
                bail!("job {} {}", job.id, job.state);
            }
            Ok(())
        }
        JobCmd::Output { id, name, output } => {
            let resp = c.job_output(&id, name.as_deref()).await?;
            let n = write_response(resp, output.as_deref()).await?;
            if let Some(p) = output {
                note(format_args!("wrote {n} bytes to {}", p.display()));
            }
            Ok(())
        }
        JobCmd::List { limit } => emit(conn.json, &c.jobs(Some(limit)).await?, |jobs, out| {
            out.push_str(&table(
                &["JOB", "IP", "STATE", "PROG", "TRY", "CREATED"],
                &[3, 4],
                jobs.iter().map(|j| {
                    [
                        j.id.clone(),
                        format!("{}@{}", j.ip, j.version),
                        j.state.to_string(),
                        format!("{:.0}%", j.progress * 100.0),
                        j.attempts.to_string(),
                        j.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                    ]
                }),
            ));
            Ok(())
        }),
        JobCmd::Cancel { id } => {
            let job = c.cancel_job(&id).await?;
            note(format_args!("job {} is {}", job.id, job.state));
            Ok(())
        }
        JobCmd::Rm { id } => {
            c.delete_job(&id).await?;
            note(format_args!("deleted job {id}"));
            Ok(())
        }
    }
}

/// A job's state, attempts and log, one field a line.
fn write_job(job: &Job, out: &mut Text) -> std::fmt::Result {
    writeln!(out, "job       {}", job.id)?;
    writeln!(
        out,
        "ip        {}@{} on {}",
        job.ip, job.version, job.device
    )?;
    writeln!(
        out,
        "input     {} ({} bytes)",
        job.input_key, job.input_size
    )?;
    match (job.items, &job.unit) {
        (Some(n), Some(unit)) => writeln!(
            out,
            "state     {} ({:.0}%, {n} {unit})",
            job.state,
            job.progress * 100.0
        )?,
        _ => writeln!(
            out,
            "state     {} ({:.0}%)",
            job.state,
            job.progress * 100.0
        )?,
    }
    writeln!(out, "attempts  {}/{}", job.attempts, job.max_attempts)?;
    for (i, o) in job.outputs.iter().enumerate() {
        let label = if i == 0 { "outputs" } else { "" };
        writeln!(
            out,
            "{label:<9} {:<10} {} ({} bytes)",
            o.name, o.key, o.size
        )?;
    }
    if let Some(e) = &job.error {
        writeln!(out, "error     {e}")?;
    }
    for a in &job.history {
        writeln!(
            out,
            "  attempt {} on {}: {}{}",
            a.attempt,
            a.worker,
            a.outcome,
            a.error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        )?;
    }
    if let Some(log) = job.log.as_deref().filter(|l| !l.trim().is_empty()) {
        writeln!(out, "log:\n{}", log.trim_end())?;
    }
    Ok(())
}
