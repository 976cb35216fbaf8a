//! Serving connections: the accept loop, a bound on connections, and the
//! timeouts that keep a slow or silent client from holding one forever.
//!
//! - **Connection limit.** A connection holds one of `max_connections`
//!   permits until it closes. When none is free the loop stops accepting,
//!   as HAProxy's `maxconn` and Go's `LimitListener` do: new connections
//!   wait in the kernel's listen backlog and are served as others close,
//!   rather than being refused. The limit is kept below the open-file
//!   limit, so `accept` does not fail with EMFILE because of clients.
//! - **Header timeout.** A request's header must arrive within
//!   `header_timeout` (hyper's `header_read_timeout`); the same timer runs
//!   while a kept-alive connection waits for its next request, so an idle
//!   connection closes after it too.
//! - **Body idle timeout.** A request body that sends nothing for
//!   `body_idle_timeout` while the handler waits for it fails the read;
//!   the request is answered 408 and the connection closed. A client that
//!   reads nothing of a response for as long (a write to it makes no
//!   progress) has its connection closed: slow readers hold no connection
//!   forever either. Except on the agent protocol: an agent streams a
//!   job's input into the device as the device consumes it, and may pause
//!   reading longer while it computes.
//! - **Accept errors** (EMFILE, ENFILE, ENOBUFS: they repeat until
//!   something closes) pause the loop briefly instead of spinning.
//! - **Shutdown.** Accepting stops, every connection finishes its request
//!   in flight and closes (idle ones at once), then `serve` returns.

use crate::{ApiError, HttpConfig};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tower_service::Service;

/// How long the accept loop pauses after an error that repeats until
/// something closes (out of descriptors or buffers).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Serve `app` on `listener` until `shutdown` resolves, then let the
/// connections finish.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    config: &HttpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max = u32::try_from(config.max_connections.max(1)).unwrap_or(u32::MAX);
    let max = max.min(u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX));
    let permits = Arc::new(Semaphore::new(max as usize));
    let timeouts = Timeouts {
        header: config.header_timeout.max(Duration::from_millis(1)),
        body_idle: config.body_idle_timeout.max(Duration::from_millis(1)),
    };
    let (stop_tx, stop_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    let mut last_warned: Option<Instant> = None;
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    accept_failed(e, &mut last_warned).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        tokio::spawn(connection(
            stream,
            peer,
            app.clone(),
            timeouts,
            stop_rx.clone(),
            permit,
        ));
    }
    drop(listener);
    drop(stop_rx);
    // Tell every connection to finish, then wait until each has given its
    // permit back.
    let _ = stop_tx.send(());
    let _ = permits.acquire_many(max).await;
    Ok(())
}

#[derive(Clone, Copy)]
struct Timeouts {
    header: Duration,
    body_idle: Duration,
}

/// An error from `accept`. A peer that gave up is nobody's problem; the
/// others repeat until a descriptor or buffer frees up: pause, and say so
/// at most every few seconds.
async fn accept_failed(e: std::io::Error, last_warned: &mut Option<Instant>) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    ) {
        return;
    }
    if last_warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
        tracing::warn!(
            "cannot accept connections: {e}; retrying (lower --max-connections or raise \
             the open-file limit)"
        );
        *last_warned = Some(Instant::now());
    }
    tokio::time::sleep(ACCEPT_PAUSE).await;
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    timeouts: Timeouts,
    mut stop: watch::Receiver<()>,
    _permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let io = StallIo::new(stream, timeouts.body_idle);
    let exempt = io.exempt.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        // HTTP/1.1 answers in order: this request's response is the next
        // thing written.
        exempt.store(
            req.uri().path().starts_with("/v1/agent/"),
            Ordering::Relaxed,
        );
        request(app.clone(), req, peer, timeouts.body_idle)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header)
        .keep_alive(true);
    let mut conn = pin!(builder.serve_connection(TokioIo::new(io), service));
    tokio::select! {
        done = conn.as_mut() => {
            if let Err(e) = done {
                tracing::debug!("connection from {peer}: {e}");
            }
            return;
        }
        _ = stop.changed() => conn.as_mut().graceful_shutdown(),
    }
    if let Err(e) = conn.await {
        tracing::debug!("connection from {peer}: {e}");
    }
}

/// One request: its body under the idle timeout, its peer's address as
/// `ConnectInfo`.
async fn request(
    mut app: Router,
    req: hyper::Request<Incoming>,
    peer: SocketAddr,
    body_idle: Duration,
) -> Result<Response, Infallible> {
    let stalled = Arc::new(AtomicBool::new(false));
    let mut req = req.map(|b| Body::new(IdleBody::new(b, body_idle, stalled.clone())));
    req.extensions_mut().insert(ConnectInfo(peer));
    let resp = app.call(req).await;
    if stalled.load(Ordering::Relaxed) {
        // Whatever the handler made of the failed read, the answer is
        // that the body stopped coming.
        return Ok(ApiError::body_timeout(body_idle).into_response());
    }
    resp
}

/// A request body that fails when it sends nothing for `idle` while it is
/// being read.
struct IdleBody {
    inner: Incoming,
    idle: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    stalled: Arc<AtomicBool>,
}

impl IdleBody {
    fn new(inner: Incoming, idle: Duration, stalled: Arc<AtomicBool>) -> Self {
        IdleBody {
            inner,
            idle,
            timer: None,
            stalled,
        }
    }
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request body sent nothing for {} s", .0.as_secs())]
    Idle(Duration),
    #[error("cannot read the request body: {0}")]
    Read(#[from] hyper::Error),
}

impl HttpBody for IdleBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if this.stalled.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err(BodyError::Idle(this.idle))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                // The clock runs only while the reader waits.
                this.timer = None;
                Poll::Ready(frame.map(|f| f.map_err(BodyError::Read)))
            }
            Poll::Pending => {
                let idle = this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                if timer.as_mut().poll(cx).is_ready() {
                    this.timer = None;
                    this.stalled.store(true, Ordering::Relaxed);
                    return Poll::Ready(Some(Err(BodyError::Idle(idle))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection whose writes fail once one has made no progress for
/// `limit`: the client stopped reading (unless `exempt`).
struct StallIo {
    inner: TcpStream,
    limit: Duration,
    stalled_since: Option<Pin<Box<tokio::time::Sleep>>>,
    exempt: Arc<AtomicBool>,
}

impl StallIo {
    fn new(inner: TcpStream, limit: Duration) -> Self {
        StallIo {
            inner,
            limit,
            stalled_since: None,
            exempt: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A write's outcome, failing it when it has waited too long.
    fn progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match polled {
            Poll::Ready(r) => {
                self.stalled_since = None;
                Poll::Ready(r)
            }
            Poll::Pending if self.exempt.load(Ordering::Relaxed) => {
                self.stalled_since = None;
                Poll::Pending
            }
            Poll::Pending => {
                let limit = self.limit;
                let timer = self
                    .stalled_since
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                if timer.as_mut().poll(cx).is_ready() {
                    self.stalled_since = None;
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("the client read nothing for {} s", limit.as_secs()),
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncRead for StallIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for StallIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progress(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.progress(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.progress(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
