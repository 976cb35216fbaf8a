//! The call's stdout when it goes to a file: written as it comes, capped.

use bytes::Bytes;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

#[derive(Clone)]
pub(crate) struct FileSink {
    file: Arc<Mutex<Option<BufWriter<File>>>>,
    written: Arc<AtomicU64>,
    cap: u64,
    exceeded: Arc<AtomicBool>,
}

impl FileSink {
    pub(crate) fn new(file: File, cap: u64) -> Self {
        FileSink {
            file: Arc::new(Mutex::new(Some(BufWriter::with_capacity(1 << 20, file)))),
            written: Arc::new(AtomicU64::new(0)),
            cap,
            exceeded: Arc::new(AtomicBool::new(false)),
        }
    }

    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Relaxed)
    }

    /// Flush and close; returns the bytes written.
    pub(crate) fn finish(&self) -> std::io::Result<u64> {
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mut w) = guard.take() {
            w.flush()?;
            w.get_ref().sync_all()?;
        }
        Ok(self.written.load(Ordering::Relaxed))
    }

    fn put(&self, bytes: &[u8]) -> Result<(), String> {
        let before = self.written.load(Ordering::Relaxed);
        if before + bytes.len() as u64 > self.cap {
            self.exceeded.store(true, Ordering::Relaxed);
            return Err(format!("output beyond its limit of {} bytes", self.cap));
        }
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let w = guard.as_mut().ok_or("output closed")?;
        w.write_all(bytes)
            .map_err(|e| format!("cannot write the output: {e}"))?;
        self.written
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

impl IsTerminal for FileSink {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for FileSink {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for FileSink {
    async fn ready(&mut self) {}
}

impl OutputStream for FileSink {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.put(&bytes).map_err(|e| StreamError::trap(&e))
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(1 << 20)
    }
}

impl AsyncWrite for FileSink {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(
            self.put(buf)
                .map(|_| buf.len())
                .map_err(std::io::Error::other),
        )
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
