//! The call's stdin: serves the input from memory or streams it as the IP
//! reads, and counts what the IP has read so long jobs can report progress.

use accelhub_device::{CallControl, CallData};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};
use wasmtime_wasi::cli::{IsTerminal, StdinStream};
use wasmtime_wasi::p2::{InputStream, Pollable, StreamError, StreamResult};

type Chunks = BoxStream<'static, std::io::Result<Bytes>>;

enum Source {
    /// The rest of an in-memory input.
    Bytes(Bytes),
    /// A stream, with the part of its current chunk not read yet. `stream`
    /// is `None` while a chunk is being awaited, or once the stream ended.
    Stream {
        stream: Option<Chunks>,
        pending: Bytes,
        ended: bool,
    },
}

#[derive(Clone)]
pub(crate) struct CountingInput {
    source: Arc<Mutex<Source>>,
    control: Arc<CallControl>,
    error: Arc<Mutex<Option<String>>>,
}

impl CountingInput {
    pub(crate) fn new(input: CallData, control: Arc<CallControl>) -> Self {
        let source = match input {
            CallData::Bytes(b) => Source::Bytes(b),
            CallData::Stream(s) => Source::Stream {
                stream: Some(s),
                pending: Bytes::new(),
                ended: false,
            },
        };
        CountingInput {
            source: Arc::new(Mutex::new(source)),
            control,
            error: Arc::new(Mutex::new(None)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Source> {
        self.source.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Why reading the input failed, if it did.
    pub(crate) fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn fail(&self, e: &std::io::Error) {
        *self.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
    }

    /// Up to `size` bytes that are ready now. `None`: the input has ended.
    fn take(&self, size: usize) -> Result<Option<Bytes>, String> {
        if let Some(e) = self.error() {
            return Err(e);
        }
        let mut source = self.lock();
        let chunk = match &mut *source {
            Source::Bytes(rest) if rest.is_empty() => return Ok(None),
            Source::Bytes(rest) => {
                let n = size.min(rest.len());
                rest.split_to(n)
            }
            Source::Stream { pending, ended, .. } => {
                if pending.is_empty() {
                    return Ok(if *ended { None } else { Some(Bytes::new()) });
                }
                let n = size.min(pending.len());
                pending.split_to(n)
            }
        };
        self.control
            .consumed
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        Ok(Some(chunk))
    }

    /// Store the outcome of waiting for the next chunk.
    fn arrived(&self, stream: Chunks, next: Option<std::io::Result<Bytes>>) {
        let mut source = self.lock();
        if let Source::Stream {
            stream: slot,
            pending,
            ended,
        } = &mut *source
        {
            match next {
                Some(Ok(chunk)) => {
                    *pending = chunk;
                    *slot = Some(stream);
                }
                Some(Err(e)) => {
                    self.fail(&e);
                    *ended = true;
                }
                None => *ended = true,
            }
        }
    }

    /// The stream, if the next chunk should be fetched now.
    fn needs_chunk(&self) -> Option<Chunks> {
        match &mut *self.lock() {
            Source::Stream {
                stream,
                pending,
                ended: false,
            } if pending.is_empty() => stream.take(),
            _ => None,
        }
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
    async fn ready(&mut self) {
        if let Some(mut stream) = self.needs_chunk() {
            let next = stream.next().await;
            self.arrived(stream, next);
        }
    }
}

impl InputStream for CountingInput {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        match self.take(size) {
            Ok(Some(chunk)) => Ok(chunk),
            Ok(None) => Err(StreamError::Closed),
            Err(e) => Err(StreamError::trap(&format!("cannot read the input: {e}"))),
        }
    }
}

impl AsyncRead for CountingInput {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            match self.take(buf.remaining()) {
                Err(e) => return Poll::Ready(Err(std::io::Error::other(e))),
                Ok(None) => return Poll::Ready(Ok(())),
                Ok(Some(chunk)) if !chunk.is_empty() => {
                    buf.put_slice(&chunk);
                    return Poll::Ready(Ok(()));
                }
                Ok(Some(_)) => {
                    let Some(mut stream) = self.needs_chunk() else {
                        return Poll::Ready(Ok(()));
                    };
                    match stream.poll_next_unpin(cx) {
                        Poll::Ready(next) => self.arrived(stream, next),
                        Poll::Pending => {
                            self.arrived_pending(stream);
                            return Poll::Pending;
                        }
                    }
                }
            }
        }
    }
}

impl CountingInput {
    /// Put the stream back after a poll that found no chunk yet.
    fn arrived_pending(&self, stream: Chunks) {
        if let Source::Stream { stream: slot, .. } = &mut *self.lock() {
            *slot = Some(stream);
        }
    }
}
