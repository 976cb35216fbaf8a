//! Moving bytes: uploads with a progress bar and a SHA-256 the server
//! checks, downloads to a file (atomically) or standard output.

use accelhub_client::Client;
use accelhub_domain::ObjectInfo;
use anyhow::{bail, Context};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;
use tokio::io::AsyncWriteExt;

/// A spinner on standard error while something runs.
pub fn spinner(msg: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_message(msg.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    bar
}

/// A progress bar on standard error, drawn with `template`.
pub fn progress_bar(len: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

/// Write a response body to `output` (through a temporary file renamed at
/// the end, so no partial file claims success) or standard output.
/// Returns the number of bytes written.
pub async fn write_response(resp: reqwest::Response, output: Option<&Path>) -> anyhow::Result<u64> {
    let mut stream = resp.bytes_stream();
    let mut n = 0u64;
    match output {
        Some(path) => {
            let tmp = path.with_extension("accelhub-partial");
            let mut f = tokio::fs::File::create(&tmp)
                .await
                .with_context(|| format!("cannot create {}", tmp.display()))?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.context("the download was interrupted")?;
                n += chunk.len() as u64;
                f.write_all(&chunk).await?;
            }
            f.sync_all().await?;
            drop(f);
            tokio::fs::rename(&tmp, path).await?;
        }
        None => {
            let mut out = tokio::io::stdout();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.context("the download was interrupted")?;
                n += chunk.len() as u64;
                out.write_all(&chunk).await?;
            }
            out.flush().await?;
        }
    }
    Ok(n)
}

/// Upload a file with a progress bar; the SHA-256 is computed first and
/// checked by the server.
pub async fn upload(c: &Client, path: &Path, key: Option<&str>) -> anyhow::Result<ObjectInfo> {
    use sha2::{Digest, Sha256};
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a file", path.display());
    }
    let size = meta.len();
    let sha = {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || -> std::io::Result<String> {
            let mut f = std::fs::File::open(path)?;
            let mut h = Sha256::new();
            std::io::copy(&mut f, &mut h)?;
            Ok(hex::encode(h.finalize()))
        })
        .await??
    };
    let bar = progress_bar(
        size,
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    );
    bar.set_message("uploading");
    let file = tokio::fs::File::open(path).await?;
    let b2 = bar.clone();
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).inspect(move |c| {
        if let Ok(c) = c {
            b2.inc(c.len() as u64);
        }
    });
    let info = c
        .put_object(key, reqwest::Body::wrap_stream(stream), Some(&sha))
        .await?;
    bar.finish_and_clear();
    Ok(info)
}
