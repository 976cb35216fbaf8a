//! The call's stdout: the shared [`OutputWriter`] (memory, a file, or
//! memory that spills to a file), as WASI's output stream.

use accelhub_device::output::OutputWriter;
use accelhub_device::Output;
use bytes::Bytes;
use std::io::Write;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

#[derive(Clone)]
pub(crate) struct Stdout {
    writer: Arc<Mutex<Option<OutputWriter>>>,
}

impl Stdout {
    pub(crate) fn new(writer: OutputWriter) -> Self {
        Stdout {
            writer: Arc::new(Mutex::new(Some(writer))),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<OutputWriter>> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the IP wrote past its output limit.
    pub(crate) fn exceeded(&self) -> bool {
        self.lock().as_ref().is_some_and(OutputWriter::exceeded)
    }

    /// Whether a write of the output failed for a full disk.
    pub(crate) fn disk_full(&self) -> bool {
        self.lock().as_ref().is_some_and(OutputWriter::disk_full)
    }

    /// Flush and close; where the output is.
    pub(crate) fn finish(&self) -> std::io::Result<Output> {
        match self.lock().take() {
            Some(w) => w.finish(),
            None => Err(std::io::Error::other("the output was already closed")),
        }
    }

    fn put(&self, bytes: &[u8]) -> Result<(), String> {
        let mut guard = self.lock();
        let w = guard.as_mut().ok_or("output closed")?;
        w.write_all(bytes)
            .map_err(|e| format!("cannot write the output: {e}"))
    }
}

impl IsTerminal for Stdout {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Stdout {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Stdout {
    async fn ready(&mut self) {}
}

impl OutputStream for Stdout {
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

impl AsyncWrite for Stdout {
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
