//! Packing an IP directory into the archive `POST /v1/ips` takes.

use crate::{ClientError, Result};
use accelhub_domain::Manifest;
use std::path::Path;

/// Read `DIR/ip.toml`, check it, and pack it with every file it names into
/// a tar archive. Manifest errors are reported before anything is sent.
pub fn pack_dir(dir: &Path) -> Result<Vec<u8>> {
    let manifest_path = dir.join("ip.toml");
    let text = std::fs::read_to_string(&manifest_path).map_err(|e| {
        ClientError::Invalid(format!("cannot read {}: {e}", manifest_path.display()))
    })?;
    let manifest = Manifest::parse(&text)
        .map_err(|e| ClientError::Invalid(format!("{}: {e}", manifest_path.display())))?;
    let mut builder = tar::Builder::new(Vec::new());
    append(&mut builder, "ip.toml", text.as_bytes())?;
    for rel in manifest.referenced_files() {
        let path = dir.join(rel);
        let data = std::fs::read(&path).map_err(|e| {
            ClientError::Invalid(format!(
                "ip.toml names '{rel}' but {} cannot be read: {e}",
                path.display()
            ))
        })?;
        append(&mut builder, rel, &data)?;
    }
    Ok(builder.into_inner()?)
}

fn append(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, path, data)?;
    Ok(())
}
