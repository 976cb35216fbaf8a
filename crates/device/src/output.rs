//! A call's output as a backend writes it: one capped writer for every
//! backend, going where the call's [`OutputSink`] says. Past its limit it
//! refuses bytes (and remembers it did); a spilling sink keeps small
//! outputs in memory and moves a large one to a file in its folder as soon
//! as it outgrows its memory share, so that no output of any size is held
//! in memory whole.

use crate::{Output, OutputSink};
use bytes::Bytes;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

enum Sink {
    Memory(Vec<u8>),
    File(BufWriter<File>, PathBuf),
}

/// Writes a call's output, capped at its limit.
pub struct OutputWriter {
    sink: Sink,
    /// Where to spill, and past how many bytes in memory.
    spill: Option<(PathBuf, usize)>,
    written: u64,
    limit: u64,
    exceeded: bool,
    full: bool,
}

impl OutputWriter {
    /// A writer for `sink`, refusing bytes past `limit`. A file sink's file
    /// is created now.
    pub fn new(sink: &OutputSink, limit: u64) -> std::io::Result<OutputWriter> {
        let (sink, spill) = match sink {
            OutputSink::Memory => (Sink::Memory(Vec::new()), None),
            OutputSink::File(path) => (file(path.clone())?, None),
            OutputSink::Spill { dir, memory_bytes } => {
                (Sink::Memory(Vec::new()), Some((dir.clone(), *memory_bytes)))
            }
        };
        Ok(OutputWriter {
            sink,
            spill,
            written: 0,
            limit,
            exceeded: false,
            full: false,
        })
    }

    /// Whether a write was refused for the limit.
    pub fn exceeded(&self) -> bool {
        self.exceeded
    }

    /// Whether a write failed because the disk is full.
    pub fn disk_full(&self) -> bool {
        self.full
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Flush, and say where the output is.
    pub fn finish(mut self) -> std::io::Result<Output> {
        match std::mem::replace(&mut self.sink, Sink::Memory(Vec::new())) {
            Sink::Memory(v) => Ok(Output::Bytes(Bytes::from(v))),
            Sink::File(mut f, path) => {
                f.flush()?;
                f.get_ref().sync_data()?;
                Ok(Output::File {
                    path,
                    size: self.written,
                })
            }
        }
    }
}

/// A spilled output nobody finished (the call failed) takes its file
/// with it; a sink's own file is its owner's.
impl Drop for OutputWriter {
    fn drop(&mut self) {
        if let (Sink::File(_, path), Some(_)) = (&self.sink, &self.spill) {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn file(path: PathBuf) -> std::io::Result<Sink> {
    Ok(Sink::File(
        BufWriter::with_capacity(1 << 20, File::create(&path)?),
        path,
    ))
}

/// Whether `e` says the disk (or the user's quota on it) is full.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

impl Write for OutputWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.put(buf);
        if let Err(e) = &written {
            self.full |= is_disk_full(e);
        }
        written
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let flushed = match &mut self.sink {
            Sink::Memory(_) => Ok(()),
            Sink::File(f, _) => f.flush(),
        };
        if let Err(e) = &flushed {
            self.full |= is_disk_full(e);
        }
        flushed
    }
}

impl OutputWriter {
    /// Make the file `src` (an IP's finished result) the output, capped
    /// like any write: moved into place where the sink is a file and
    /// nothing was written yet (a rename, not a copy of what may be
    /// gigabytes), else copied in.
    pub fn put_file(&mut self, src: &std::path::Path) -> std::io::Result<()> {
        let len = std::fs::metadata(src)?.len();
        if self.written + len > self.limit {
            self.exceeded = true;
            return Err(std::io::Error::other(format!(
                "the output exceeds its limit of {} bytes",
                self.limit
            )));
        }
        if let (Sink::File(_, path), 0) = (&self.sink, self.written) {
            if std::fs::rename(src, path).is_ok() {
                let f = std::fs::OpenOptions::new().append(true).open(path)?;
                self.sink = Sink::File(BufWriter::with_capacity(1 << 20, f), path.clone());
                self.written = len;
                return Ok(());
            }
        }
        std::io::copy(&mut File::open(src)?, self).map(|_| ())
    }

    fn put(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.written + buf.len() as u64 > self.limit {
            self.exceeded = true;
            return Err(std::io::Error::other(format!(
                "the output exceeds its limit of {} bytes",
                self.limit
            )));
        }
        if let (Sink::Memory(v), Some((dir, memory))) = (&self.sink, &self.spill) {
            if v.len() + buf.len() > *memory {
                static NEXT: AtomicU64 = AtomicU64::new(0);
                let path = dir.join(format!(
                    "output-{}-{}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(dir)?;
                // The file is the sink's before anything is written to it,
                // so that a failed write (a full disk) leaves it to `Drop`.
                let memory = std::mem::replace(&mut self.sink, file(path)?);
                if let (Sink::File(f, _), Sink::Memory(v)) = (&mut self.sink, memory) {
                    f.write_all(&v)?;
                }
            }
        }
        let n = match &mut self.sink {
            Sink::Memory(v) => {
                v.extend_from_slice(buf);
                buf.len()
            }
            Sink::File(f, _) => f.write(buf)?,
        };
        self.written += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_told_from_other_failures() {
        // /dev/full answers every write with ENOSPC.
        let sink = OutputSink::File("/dev/full".into());
        let mut w = OutputWriter::new(&sink, 1 << 30).unwrap();
        let e = w.write_all(&vec![0u8; 4 << 20]).unwrap_err();
        assert!(is_disk_full(&e), "{e}");
        assert!(w.disk_full());
        assert!(!w.exceeded());
        let mut w = OutputWriter::new(&OutputSink::Memory, 4).unwrap();
        assert!(!is_disk_full(&w.write_all(b"12345").unwrap_err()));
        assert!(!w.disk_full());
    }

    #[test]
    fn a_finished_file_is_moved_into_a_file_sink_and_copied_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("result");
        std::fs::write(&src, b"0123456789").unwrap();
        let out = dir.path().join("out");
        let mut w = OutputWriter::new(&OutputSink::File(out.clone()), 100).unwrap();
        w.put_file(&src).unwrap();
        w.write_all(b"!").unwrap();
        assert_eq!(
            w.finish().unwrap(),
            Output::File {
                path: out.clone(),
                size: 11
            }
        );
        assert!(!src.exists(), "moved, not copied");
        assert_eq!(std::fs::read(&out).unwrap(), b"0123456789!");
        // Into memory: a copy; past the limit: refused, and said so.
        std::fs::write(&src, b"0123456789").unwrap();
        let mut w = OutputWriter::new(&OutputSink::Memory, 100).unwrap();
        w.put_file(&src).unwrap();
        assert_eq!(
            w.finish().unwrap(),
            Output::Bytes(Bytes::from_static(b"0123456789"))
        );
        let mut w = OutputWriter::new(&OutputSink::File(out), 9).unwrap();
        assert!(w.put_file(&src).is_err());
        assert!(w.exceeded());
        assert!(src.exists());
    }

    #[test]
    fn small_outputs_stay_in_memory_and_large_ones_spill_to_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let sink = OutputSink::Spill {
            dir: dir.path().to_path_buf(),
            memory_bytes: 10,
        };
        let mut w = OutputWriter::new(&sink, 100).unwrap();
        w.write_all(b"0123456789").unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(matches!(w.finish().unwrap(), Output::Bytes(b) if b.as_ref() == b"0123456789"));

        let mut w = OutputWriter::new(&sink, 100).unwrap();
        w.write_all(b"01234567").unwrap();
        w.write_all(b"89abcdef").unwrap();
        let Output::File { path, size } = w.finish().unwrap() else {
            panic!("not spilled")
        };
        assert_eq!(size, 16);
        assert_eq!(std::fs::read(&path).unwrap(), b"0123456789abcdef");

        // A spilled output that is never finished leaves no file.
        let mut w = OutputWriter::new(&sink, 100).unwrap();
        w.write_all(&[7u8; 50]).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        // Past the limit: refused, and said so.
        let mut w = OutputWriter::new(&sink, 12).unwrap();
        w.write_all(b"0123456789").unwrap();
        assert!(w.write_all(b"abc").is_err());
        assert!(w.exceeded());
        assert_eq!(w.written(), 10);
    }
}

/// Files an IP wrote in a directory of its own, named as its declared
/// outputs: the way a backend that runs code writing files (a wasm module
/// under `/outputs`, a native kernel through a library that writes paths)
/// hands over its named outputs. Each is capped at the output limit, as
/// the main output; the directory goes with the value.
pub struct NamedFiles {
    dir: tempfile::TempDir,
    sinks: std::collections::BTreeMap<String, OutputSink>,
    limit: u64,
}

/// Why named outputs could not be taken.
#[derive(Debug)]
pub enum NamedError {
    /// One is larger than the output limit.
    TooLarge,
    Io(std::io::Error),
}

impl NamedFiles {
    /// A fresh directory for `sinks`' files, beside the first file sink
    /// (so that taking a file is a rename), else in the temporary
    /// directory.
    pub fn new(
        sinks: std::collections::BTreeMap<String, OutputSink>,
        limit: u64,
    ) -> std::io::Result<NamedFiles> {
        let beside = sinks.values().find_map(|s| match s {
            OutputSink::File(p) => p.parent().map(std::path::Path::to_path_buf),
            OutputSink::Spill { dir, .. } => Some(dir.clone()),
            OutputSink::Memory => None,
        });
        let dir = match beside {
            Some(d) => {
                std::fs::create_dir_all(&d)?;
                tempfile::Builder::new().prefix("outputs-").tempdir_in(d)?
            }
            None => tempfile::Builder::new().prefix("outputs-").tempdir()?,
        };
        Ok(NamedFiles { dir, sinks, limit })
    }

    /// Where the IP writes: `DIR/NAME` for each output.
    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Whether the directory holds more than its outputs may (checked while
    /// the IP runs, so that a runaway writer is stopped): more bytes than
    /// the limit of every output together, or more entries than outputs
    /// beside a few of the IP's own.
    pub fn overgrown(&self) -> bool {
        let Ok(entries) = std::fs::read_dir(self.dir.path()) else {
            return false;
        };
        let cap = self.limit.saturating_mul(self.sinks.len().max(1) as u64);
        let (mut n, mut bytes) = (0usize, 0u64);
        for e in entries.flatten() {
            n += 1;
            bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
        }
        n > self.sinks.len() + 64 || bytes > cap
    }

    /// The declared outputs the IP wrote (regular files named as them),
    /// moved into their sinks; anything else in the directory is dropped.
    pub fn take(self) -> Result<std::collections::BTreeMap<String, Output>, NamedError> {
        let mut out = std::collections::BTreeMap::new();
        for (name, sink) in &self.sinks {
            let src = self.dir.path().join(name);
            let Ok(meta) = std::fs::symlink_metadata(&src) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let mut w = OutputWriter::new(sink, self.limit).map_err(NamedError::Io)?;
            if let Err(e) = w.put_file(&src) {
                return Err(if w.exceeded() {
                    NamedError::TooLarge
                } else {
                    NamedError::Io(e)
                });
            }
            out.insert(name.clone(), w.finish().map_err(NamedError::Io)?);
        }
        Ok(out)
    }
}

impl NamedError {
    /// The call's error for this, with its log.
    pub fn into_call_error(self, limit_bytes: u64, log: Bytes) -> crate::CallError {
        match self {
            NamedError::TooLarge => crate::CallError::OutputTooLarge { limit_bytes, log },
            NamedError::Io(e) => crate::CallError::output(e, log),
        }
    }
}
