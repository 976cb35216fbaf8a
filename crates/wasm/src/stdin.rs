//! A stdin that serves the call's input from memory and counts what the IP
//! has read, so long jobs can report progress.

use accelhub_device::CallControl;
use bytes::Bytes;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};
use wasmtime_wasi::cli::{IsTerminal, StdinStream};
use wasmtime_wasi::p2::{InputStream, Pollable, StreamError, StreamResult};

#[derive(Clone)]
pub(crate) struct CountingInput {
    rest: Arc<Mutex<Bytes>>,
    control: Arc<CallControl>,
}

impl CountingInput {
    pub(crate) fn new(input: Bytes, control: Arc<CallControl>) -> Self {
        CountingInput {
            rest: Arc::new(Mutex::new(input)),
            control,
        }
    }

    fn take(&self, size: usize) -> Bytes {
        let mut rest = self.rest.lock().unwrap_or_else(|p| p.into_inner());
        let n = size.min(rest.len());
        let chunk = rest.split_to(n);
        self.control
            .consumed
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        chunk
    }
}

impl IsTerminal for CountingInput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdinStream for CountingInput {
    fn async_stream(&self) -> Box<dyn AsyncRead + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn InputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CountingInput {
    async fn ready(&mut self) {}
}

impl InputStream for CountingInput {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        let chunk = self.take(size);
        if chunk.is_empty() && size > 0 {
            return Err(StreamError::Closed);
        }
        Ok(chunk)
    }
}

impl AsyncRead for CountingInput {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let chunk = self.take(buf.remaining());
        buf.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}
