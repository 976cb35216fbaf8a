//! The call's stdin: serves the input from memory or streams it from a
//! reader, and counts what the IP has read so long jobs can report
//! progress.

use accelhub_device::{CallControl, CallData};
use bytes::Bytes;
use std::io::Read;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};
use wasmtime_wasi::cli::{IsTerminal, StdinStream};
use wasmtime_wasi::p2::{InputStream, Pollable, StreamError, StreamResult};

/// Largest chunk read from a streamed input at once.
const CHUNK: usize = 256 * 1024;

#[derive(Clone)]
pub(crate) struct CountingInput {
    source: Arc<Mutex<CallData>>,
    control: Arc<CallControl>,
    error: Arc<Mutex<Option<String>>>,
}

impl CountingInput {
    pub(crate) fn new(input: CallData, control: Arc<CallControl>) -> Self {
        CountingInput {
            source: Arc::new(Mutex::new(input)),
            control,
            error: Arc::new(Mutex::new(None)),
        }
    }

    /// Why reading the input failed, if it did.
    pub(crate) fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn take(&self, size: usize) -> Result<Bytes, String> {
        let mut source = self.source.lock().unwrap_or_else(|p| p.into_inner());
        let chunk = match &mut *source {
            CallData::Bytes(rest) => {
                let n = size.min(rest.len());
                rest.split_to(n)
            }
            CallData::Reader(r) => {
                let mut buf = vec![0u8; size.min(CHUNK)];
                loop {
                    match r.read(&mut buf) {
                        Ok(n) => {
                            buf.truncate(n);
                            break Bytes::from(buf);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            let msg = e.to_string();
                            *self.error.lock().unwrap_or_else(|p| p.into_inner()) =
                                Some(msg.clone());
                            return Err(msg);
                        }
                    }
                }
            }
        };
        self.control
            .consumed
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        Ok(chunk)
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
        let chunk = self
            .take(size)
            .map_err(|e| StreamError::trap(&format!("cannot read the input: {e}")))?;
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
        let chunk = self.take(buf.remaining()).map_err(std::io::Error::other)?;
        buf.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}
