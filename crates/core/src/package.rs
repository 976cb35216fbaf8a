//! IP packages as uploaded: a tar archive of `ip.toml` and the files it
//! names.

use crate::CoreError;
use accelhub_domain::manifest::validate_package_path;
use accelhub_domain::Manifest;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::io::Read;

/// Most files a package may hold.
const MAX_FILES: usize = 10_000;

/// Largest `ip.toml`: it is parsed in memory, so it is bounded apart from
/// the package (whose other files are data, stored as they are).
const MAX_MANIFEST_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone)]
pub struct Package {
    pub manifest: Manifest,
    pub files: BTreeMap<String, Bytes>,
}

impl Package {
    /// Read a package from a tar archive and check its manifest and files.
    pub fn from_tar(archive: &[u8]) -> Result<Package, CoreError> {
        let bad = |m: String| CoreError::BadRequest(format!("invalid package archive: {m}"));
        let mut files = BTreeMap::new();
        let mut ar = tar::Archive::new(archive);
        let entries = ar.entries().map_err(|e| bad(e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| bad(e.to_string()))?;
            let kind = entry.header().entry_type();
            if kind.is_dir() {
                continue;
            }
            let path = entry
                .path()
                .map_err(|e| bad(e.to_string()))?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string();
            if !kind.is_file() {
                return Err(bad(format!(
                    "'{path}' is not a regular file (links and devices are refused)"
                )));
            }
            validate_package_path("archive entry", &path).map_err(|e| bad(e.to_string()))?;
            if files.contains_key(&path) {
                // Tar readers differ on which copy wins: refuse, so that
                // what was reviewed is what is published.
                return Err(bad(format!(
                    "'{path}' appears more than once in the archive"
                )));
            }
            if path == "ip.toml" && entry.size() > MAX_MANIFEST_BYTES {
                return Err(CoreError::TooLarge(format!(
                    "ip.toml is {} bytes; the limit is {MAX_MANIFEST_BYTES}",
                    entry.size()
                )));
            }
            let mut buf = Vec::with_capacity(entry.size().min(1 << 26) as usize);
            entry
                .read_to_end(&mut buf)
                .map_err(|e| bad(format!("'{path}': {e}")))?;
            files.insert(path, Bytes::from(buf));
            if files.len() > MAX_FILES {
                return Err(bad(format!("more than {MAX_FILES} files")));
            }
        }
        Self::from_files(files)
    }

    /// A package from its files by path (`ip.toml` among them), checked
    /// like an uploaded archive. Built-in IPs are packaged this way.
    pub fn from_files(files: BTreeMap<String, Bytes>) -> Result<Package, CoreError> {
        let manifest_text = files.get("ip.toml").ok_or_else(|| {
            CoreError::BadRequest("the package has no ip.toml at its root".into())
        })?;
        if manifest_text.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(CoreError::TooLarge(format!(
                "ip.toml is {} bytes; the limit is {MAX_MANIFEST_BYTES}",
                manifest_text.len()
            )));
        }
        let text = std::str::from_utf8(manifest_text)
            .map_err(|_| CoreError::BadRequest("ip.toml is not valid UTF-8".into()))?;
        let manifest = Manifest::parse(text).map_err(|e| CoreError::BadRequest(e.to_string()))?;
        for (field, path) in named_files(&manifest) {
            if !files.contains_key(&path) {
                return Err(CoreError::BadRequest(format!(
                    "ip.toml field `{field}` names '{path}', which is not in the package"
                )));
            }
        }
        Ok(Package { manifest, files })
    }
}

/// Each file the manifest names, with the field naming it.
fn named_files(m: &Manifest) -> Vec<(String, String)> {
    let mut v = Vec::new();
    if let Some(d) = &m.description {
        v.push(("description".to_string(), d.clone()));
    }
    for (i, imp) in m.implementations.iter().enumerate() {
        v.push((
            format!("implementation[{i}].artifact"),
            imp.artifact.clone(),
        ));
    }
    for (i, t) in m.tests.iter().enumerate() {
        v.push((format!("test[{i}].input"), t.input.clone()));
        v.push((format!("test[{i}].expect"), t.expect.clone()));
        for (name, path) in &t.objects {
            v.push((format!("test[{i}].objects.{name}"), path.clone()));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, p, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    const MANIFEST: &[u8] = br#"
name = "acme/x"
version = "1.0.0"
summary = "x"
[[implementation]]
device = "wasm"
artifact = "x.wasm"
[[test]]
input = "t.in"
expect = "t.out"
[pricing]
per_call = 0.001
"#;

    /// Issue 14, defect 10: a second entry of the same name used to win
    /// silently, so the package published was not the one reviewed.
    #[test]
    fn refuses_duplicate_entries() {
        let other = b"name = \"acme/y\"\nversion = \"9.0.0\"\n";
        for (a, b) in [
            ("ip.toml", "ip.toml"),
            ("ip.toml", "./ip.toml"),
            ("x.wasm", "x.wasm"),
        ] {
            let t = tar_of(&[
                (a, MANIFEST),
                ("x.wasm", b"w"),
                ("t.in", b"i"),
                ("t.out", b"o"),
                (b, if b.ends_with("toml") { other } else { b"w2" }),
            ]);
            let e = Package::from_tar(&t).unwrap_err().to_string();
            assert!(e.contains("appears more than once"), "{a} + {b}: {e}");
        }
    }

    /// Issue 14, defect 11: a 100 MB ip.toml was parsed, at about 320 MB of
    /// memory per request.
    #[test]
    fn refuses_an_oversized_manifest_before_reading_it() {
        let mut big = MANIFEST.to_vec();
        big.resize(MAX_MANIFEST_BYTES as usize + 1, b'\n');
        let t = tar_of(&[
            ("ip.toml", &big),
            ("x.wasm", b"w"),
            ("t.in", b"i"),
            ("t.out", b"o"),
        ]);
        let e = Package::from_tar(&t).unwrap_err();
        assert!(matches!(e, CoreError::TooLarge(_)), "{e}");
        assert!(e.to_string().contains("ip.toml"), "{e}");
        // At the limit it is read (and this one is valid once trimmed).
        big.truncate(MAX_MANIFEST_BYTES as usize);
        let t = tar_of(&[
            ("ip.toml", &big),
            ("x.wasm", b"w"),
            ("t.in", b"i"),
            ("t.out", b"o"),
        ]);
        assert!(Package::from_tar(&t).is_ok());
    }

    #[test]
    fn reads_a_complete_package() {
        let t = tar_of(&[
            ("ip.toml", MANIFEST),
            ("x.wasm", b"w"),
            ("t.in", b"i"),
            ("./t.out", b"o"),
        ]);
        let p = Package::from_tar(&t).unwrap();
        assert_eq!(p.files.len(), 4);
        assert_eq!(&p.files["t.out"][..], b"o");
    }

    #[test]
    fn names_a_missing_file_and_its_field() {
        let t = tar_of(&[("ip.toml", MANIFEST), ("x.wasm", b"w"), ("t.in", b"i")]);
        let e = Package::from_tar(&t).unwrap_err().to_string();
        assert!(e.contains("test[0].expect") && e.contains("t.out"), "{e}");
    }

    #[test]
    fn refuses_garbage_and_missing_manifest() {
        let e = Package::from_tar(b"garbage that is not tar")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ip.toml") || e.contains("invalid package"),
            "{e}"
        );
        let t = tar_of(&[("x.wasm", b"w")]);
        assert!(Package::from_tar(&t)
            .unwrap_err()
            .to_string()
            .contains("no ip.toml"));
    }
}
