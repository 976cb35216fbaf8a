//! `accelhub object …`: your private object space.

use crate::cli::Conn;
use crate::cmd::transfer::{upload, write_response};
use crate::output::{emit, note, table};
use clap::Subcommand;
use std::fmt::Write;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum ObjectCmd {
    /// Upload a file (any size, streamed, SHA-256 checked); prints its key.
    Put {
        file: PathBuf,
        /// Key to store it under (default: a new unique key).
        #[arg(long)]
        key: Option<String>,
    },
    /// Download an object.
    Get {
        key: String,
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// List your objects.
    List,
    /// Delete an object.
    Rm { key: String },
}

pub async fn object(conn: &Conn, cmd: ObjectCmd) -> anyhow::Result<()> {
    let c = conn.client()?;
    match cmd {
        ObjectCmd::Put { file, key } => {
            let info = upload(&c, &file, key.as_deref()).await?;
            if !conn.json {
                note(format_args!(
                    "stored {} bytes, sha256 {}",
                    info.size, info.sha256
                ));
            }
            emit(conn.json, &info, |info, out| writeln!(out, "{}", info.key))
        }
        ObjectCmd::Get { key, output } => {
            let resp = c.get_object(&key).await?;
            let n = write_response(resp, output.as_deref()).await?;
            if let Some(p) = output {
                note(format_args!("wrote {n} bytes to {}", p.display()));
            }
            Ok(())
        }
        ObjectCmd::List => emit(conn.json, &c.objects().await?, |objs, out| {
            out.push_str(&table(
                &["KEY", "BYTES", "CREATED"],
                &[1],
                objs.iter().map(|o| {
                    [
                        o.key.clone(),
                        o.size.to_string(),
                        o.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                    ]
                }),
            ));
            Ok(())
        }),
        ObjectCmd::Rm { key } => {
            c.delete_object(&key).await?;
            note(format_args!("deleted {key}"));
            Ok(())
        }
    }
}
