//! Reading an object stream from blocking code (a device's call thread).

use crate::ByteStream;
use bytes::{Buf, Bytes};
use futures::StreamExt;
use std::io::Read;
use std::sync::mpsc::{sync_channel, Receiver};

/// Chunks buffered between the stream and the reader.
const DEPTH: usize = 8;

/// A blocking [`Read`] over an object stream. A helper thread drives the
/// stream on the current Tokio runtime and hands chunks over a bounded
/// channel, so the reader never enters the runtime itself: it works from
/// threads that are already inside a `block_on`, where bridging with
/// `Handle::block_on` would panic. Dropping the reader stops the helper.
///
/// Must be called from within a Tokio runtime.
pub fn blocking_reader(stream: ByteStream) -> Result<ChannelReader, std::io::Error> {
    let handle = tokio::runtime::Handle::try_current().map_err(std::io::Error::other)?;
    let (tx, rx) = sync_channel(DEPTH);
    std::thread::Builder::new()
        .name("object-reader".into())
        .spawn(move || {
            let mut stream = stream;
            while let Some(item) = handle.block_on(stream.next()) {
                let failed = item.is_err();
                if tx.send(item).is_err() || failed {
                    break;
                }
            }
        })?;
    Ok(ChannelReader {
        rx,
        current: Bytes::new(),
    })
}

pub struct ChannelReader {
    rx: Receiver<std::io::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => self.current = chunk,
                Ok(Err(e)) => return Err(e),
                // The stream ended.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_everything_then_eof_and_reports_errors() {
        let chunks: Vec<std::io::Result<Bytes>> = (0..100)
            .map(|i| Ok(Bytes::from(vec![i as u8; 1000])))
            .collect();
        let mut r = blocking_reader(Box::pin(futures::stream::iter(chunks))).unwrap();
        let all = tokio::task::spawn_blocking(move || {
            let mut v = Vec::new();
            r.read_to_end(&mut v).map(|_| v)
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(all.len(), 100_000);
        assert_eq!(all[99_999], 99);

        let bad: Vec<std::io::Result<Bytes>> = vec![
            Ok(Bytes::from_static(b"ok")),
            Err(std::io::Error::other("disk on fire")),
        ];
        let mut r = blocking_reader(Box::pin(futures::stream::iter(bad))).unwrap();
        let err = tokio::task::spawn_blocking(move || {
            let mut v = Vec::new();
            r.read_to_end(&mut v)
        })
        .await
        .unwrap()
        .unwrap_err();
        assert!(err.to_string().contains("disk on fire"));
    }
}
