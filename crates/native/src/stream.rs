//! Blocking readers and writers for kernels: inputs that stop at the
//! call's deadline or cancellation and count what they read, and outputs
//! that stop at the call's size limit.

use accelhub_device::CallControl;
use bytes::Bytes;
use futures::stream::BoxStream;
use std::fs::File;
use std::io::{BufWriter, Cursor, Read, Write};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::io::{StreamReader, SyncIoBridge};

/// A blocking reader over a call's input or one of its objects.
pub(crate) struct Guarded {
    inner: Box<dyn Read + Send>,
    control: Arc<CallControl>,
    deadline: Instant,
    /// Whether reads count as the call's consumed input (progress).
    counted: bool,
}

impl Guarded {
    pub fn memory(b: Bytes, control: Arc<CallControl>, deadline: Instant) -> Self {
        Guarded {
            inner: Box::new(Cursor::new(b)),
            control,
            deadline,
            counted: true,
        }
    }

    /// Bridge an async stream to a blocking reader (to be read on a
    /// blocking thread, never on the runtime's).
    pub fn stream(
        s: BoxStream<'static, std::io::Result<Bytes>>,
        runtime: &tokio::runtime::Handle,
        control: Arc<CallControl>,
        deadline: Instant,
    ) -> Self {
        Guarded {
            inner: Box::new(SyncIoBridge::new_with_handle(
                StreamReader::new(s),
                runtime.clone(),
            )),
            control,
            deadline,
            counted: true,
        }
    }

    /// The same, for an object input: not counted as the call's input.
    pub fn object(
        s: BoxStream<'static, std::io::Result<Bytes>>,
        runtime: &tokio::runtime::Handle,
        control: Arc<CallControl>,
        deadline: Instant,
    ) -> Self {
        Guarded {
            counted: false,
            ..Self::stream(s, runtime, control, deadline)
        }
    }

    /// An input already taken by the kernel.
    pub fn taken(control: Arc<CallControl>, deadline: Instant) -> Self {
        Guarded {
            inner: Box::new(std::io::empty()),
            control,
            deadline,
            counted: false,
        }
    }
}

impl Read for Guarded {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // Not `Interrupted`: readers retry that kind forever.
        if self.control.cancel.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("the call was cancelled"));
        }
        if Instant::now() >= self.deadline {
            return Err(std::io::Error::other("the call ran past its deadline"));
        }
        let n = self.inner.read(buf)?;
        if self.counted {
            self.control.consumed.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }
}

enum Sink {
    Memory(Vec<u8>),
    File(BufWriter<File>),
}

/// A call's output: memory or a file, refusing bytes past the limit.
pub(crate) struct Capped {
    sink: Sink,
    written: u64,
    limit: u64,
    exceeded: bool,
}

pub(crate) enum Finished {
    Memory(Vec<u8>),
    /// The file's size.
    File(u64),
}

impl Capped {
    pub fn memory(limit: u64) -> Self {
        Capped {
            sink: Sink::Memory(Vec::new()),
            written: 0,
            limit,
            exceeded: false,
        }
    }

    pub fn file(path: &Path, limit: u64) -> std::io::Result<Self> {
        Ok(Capped {
            sink: Sink::File(BufWriter::with_capacity(1 << 20, File::create(path)?)),
            written: 0,
            limit,
            exceeded: false,
        })
    }

    pub fn exceeded(&self) -> bool {
        self.exceeded
    }

    pub fn finish(self) -> std::io::Result<Finished> {
        match self.sink {
            Sink::Memory(v) => Ok(Finished::Memory(v)),
            Sink::File(mut f) => {
                f.flush()?;
                f.get_ref().sync_data()?;
                Ok(Finished::File(self.written))
            }
        }
    }
}

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.written + buf.len() as u64 > self.limit {
            self.exceeded = true;
            return Err(std::io::Error::other(format!(
                "the output exceeds its limit of {} bytes",
                self.limit
            )));
        }
        let n = match &mut self.sink {
            Sink::Memory(v) => {
                v.extend_from_slice(buf);
                buf.len()
            }
            Sink::File(f) => f.write(buf)?,
        };
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.sink {
            Sink::Memory(_) => Ok(()),
            Sink::File(f) => f.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reads_count_and_stop_when_cancelled_or_late() {
        let control = Arc::new(CallControl::default());
        let far = Instant::now() + Duration::from_secs(60);
        let mut g = Guarded::memory(Bytes::from_static(b"hello"), control.clone(), far);
        let mut buf = [0u8; 3];
        assert_eq!(g.read(&mut buf).unwrap(), 3);
        assert_eq!(control.consumed.load(Ordering::Relaxed), 3);
        control.cancel.store(true, Ordering::Relaxed);
        let e = g.read(&mut buf).unwrap_err();
        assert!(e.to_string().contains("cancelled"));

        let control = Arc::new(CallControl::default());
        let mut late = Guarded::memory(Bytes::from_static(b"x"), control, Instant::now());
        assert!(late
            .read(&mut buf)
            .unwrap_err()
            .to_string()
            .contains("deadline"));
    }

    #[test]
    fn output_stops_at_its_limit() {
        let mut c = Capped::memory(4);
        c.write_all(b"abc").unwrap();
        assert!(c.write_all(b"de").is_err());
        assert!(c.exceeded());
        let dir = tempfile::tempdir().unwrap();
        let mut f = Capped::file(&dir.path().join("o"), 10).unwrap();
        f.write_all(b"0123456789").unwrap();
        match f.finish().unwrap() {
            Finished::File(n) => assert_eq!(n, 10),
            Finished::Memory(_) => panic!("a file sink finished in memory"),
        }
    }
}
