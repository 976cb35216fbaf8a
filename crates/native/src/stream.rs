//! Blocking readers for kernels: inputs that stop at the call's deadline
//! or cancellation and count what they read. (Outputs are the device
//! crate's `OutputWriter`.)

use accelhub_device::CallControl;
use bytes::Bytes;
use futures::stream::BoxStream;
use std::io::{Cursor, Read};
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
}
