//! The write side of a connection: drains the send queue into the socket, one write per
//! batch, pings the client and closes a connection that stopped answering. Every frame
//! in the queue is already a complete WebSocket frame, so no framing library is needed.
//!
//! The loop writes to a [`Sink`]: the socket in production, memory in the tests.

use std::time::Duration;

use chat_telemetry::Metrics;

use crate::Timing;
use crate::close::{Close, Code};
use crate::frame;
use crate::send_queue::{Queued, SendQueue};
use crate::socket::Socket;

/// Why a write failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// The connection is gone (reset, broken pipe).
    Lost,
    /// The client did not take the bytes in time.
    TimedOut,
}

/// Where the writer writes.
pub trait Sink {
    /// Writes all of `bytes`, giving up after `limit`.
    fn write_all_within(
        &self,
        bytes: &[u8],
        limit: Duration,
    ) -> impl Future<Output = Result<(), WriteError>> + Send;

    /// Ends the stream after the last frame (the close frame); reading goes on.
    fn shutdown_write(&self);
}

impl Sink for Socket {
    async fn write_all_within(&self, bytes: &[u8], limit: Duration) -> Result<(), WriteError> {
        match Socket::write_all_within(self, bytes, limit).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(WriteError::Lost),
            Err(_) => Err(WriteError::TimedOut),
        }
    }

    fn shutdown_write(&self) {
        Socket::shutdown_write(self)
    }
}

/// What the writer needs besides its sink and queue.
pub struct Writer<'a> {
    pub timing: Timing,
    /// How long to wait for more frames to share a write (0: write at once).
    pub write_delay: Duration,
    /// How long the client has been silent.
    pub idle: &'a (dyn Fn() -> Duration + Sync),
    pub metrics: &'a Metrics,
}

impl Writer<'_> {
    /// Drains `queue` into `sink` until the connection closes; returns the close, which
    /// was sent unless the connection was lost (1006 is never sent) or a write failed.
    pub async fn run(&self, sink: &impl Sink, queue: &SendQueue) -> Close {
        let Timing {
            ping_every,
            idle_timeout,
            write_timeout,
            ..
        } = self.timing;
        let mut batch: Vec<Queued> = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
        loop {
            let mut close = tokio::select! {
                close = queue.next(&mut batch) => close,
                _ = ping.tick() => {
                    if (self.idle)() > idle_timeout {
                        Some(Close::new(Code::GoingAway, "no answer to pings"))
                    } else {
                        batch.push((frame::ping(), 0));
                        None
                    }
                }
            };
            if close.is_none() && !self.write_delay.is_zero() && !batch.is_empty() {
                // Frames that arrive meanwhile share this write.
                // Boxed, as every timer a quiet connection does not need.
                Box::pin(tokio::time::sleep(self.write_delay)).await;
                close = queue.take(&mut batch);
            }
            if !batch.is_empty() {
                let bytes: &[u8] = if batch.len() == 1 {
                    &batch[0].0
                } else {
                    buf.clear();
                    for (b, _) in &batch {
                        buf.extend_from_slice(b);
                    }
                    &buf
                };
                if let Err(e) = sink.write_all_within(bytes, write_timeout).await {
                    let failed = match e {
                        WriteError::Lost => Close::new(Code::Lost, "connection lost"),
                        WriteError::TimedOut => Close::new(Code::TryAgainLater, "write timed out"),
                    };
                    let c = close.unwrap_or(failed);
                    // Nothing more is queued for a connection that is gone.
                    queue.close(c);
                    return c;
                }
                crate::trace::written(self.metrics, &batch);
                batch.clear();
                if buf.capacity() > 1 << 20 {
                    buf = Vec::new();
                }
            }
            if let Some(c) = close {
                // 1006 is never sent: it names a connection that ended without a close.
                if c.code != Code::Lost {
                    let close_frame = frame::close(c.code.number(), c.reason);
                    let _ = sink
                        .write_all_within(&close_frame, Duration::from_secs(1))
                        .await;
                }
                sink.shutdown_write();
                return c;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use parking_lot::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    /// Records every write; fails them all with `fail` when set.
    #[derive(Default)]
    struct Memory {
        writes: Mutex<Vec<Vec<u8>>>,
        shut: AtomicBool,
        fail: Option<WriteError>,
    }

    impl Sink for Memory {
        async fn write_all_within(&self, bytes: &[u8], _: Duration) -> Result<(), WriteError> {
            if let Some(e) = self.fail {
                return Err(e);
            }
            self.writes.lock().push(bytes.to_vec());
            Ok(())
        }

        fn shutdown_write(&self) {
            self.shut.store(true, Ordering::Relaxed);
        }
    }

    async fn run(sink: &Memory, queue: &SendQueue) -> Close {
        let metrics = Metrics::new();
        let writer = Writer {
            timing: Timing::default(),
            write_delay: Duration::ZERO,
            idle: &|| Duration::ZERO,
            metrics: &metrics,
        };
        tokio::time::timeout(Duration::from_secs(5), writer.run(sink, queue))
            .await
            .expect("the writer ends at the close")
    }

    #[tokio::test]
    async fn queued_frames_go_out_in_one_write_and_the_close_after_them() {
        let queue = SendQueue::new(1024);
        for f in [&b"a"[..], b"bc", b"d"] {
            queue.push(Bytes::copy_from_slice(f)).unwrap();
        }
        let restart = Close::new(Code::Restart, "restart");
        queue.close(restart);
        let sink = Memory::default();
        assert_eq!(run(&sink, &queue).await, restart);
        let writes = sink.writes.lock().clone();
        assert_eq!(
            writes,
            vec![b"abcd".to_vec(), frame::close(1012, "restart").to_vec()]
        );
        assert!(sink.shut.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn a_write_that_times_out_closes_with_1013() {
        let queue = SendQueue::new(1024);
        queue.push(Bytes::from_static(b"frame")).unwrap();
        let sink = Memory {
            fail: Some(WriteError::TimedOut),
            ..Memory::default()
        };
        let close = run(&sink, &queue).await;
        assert_eq!(close.code, Code::TryAgainLater);
        assert_eq!(close.code.number(), 1013);
        // The queue refuses what the session would still queue.
        assert!(queue.push(Bytes::from_static(b"late")).is_err());
    }

    #[tokio::test]
    async fn a_lost_connection_never_gets_a_close_frame() {
        // The reader saw the stream end: the writer only shuts its side.
        let queue = SendQueue::new(1024);
        queue.close(Close::new(Code::Lost, "connection lost"));
        let sink = Memory::default();
        assert_eq!(run(&sink, &queue).await.code, Code::Lost);
        assert!(sink.writes.lock().is_empty(), "1006 is never sent");
        assert!(sink.shut.load(Ordering::Relaxed));

        // A write that finds the socket gone ends the same way.
        let queue = SendQueue::new(1024);
        queue.push(Bytes::from_static(b"frame")).unwrap();
        let sink = Memory {
            fail: Some(WriteError::Lost),
            ..Memory::default()
        };
        assert_eq!(run(&sink, &queue).await.code, Code::Lost);
        assert!(sink.writes.lock().is_empty());
    }

    #[tokio::test]
    async fn pings_a_listening_client_and_closes_a_silent_one_with_1001() {
        let queue = SendQueue::new(1024);
        let sink = Memory::default();
        let metrics = Metrics::new();
        let idle_ms = AtomicU64::new(0);
        let idle = || Duration::from_millis(idle_ms.load(Ordering::Relaxed));
        let writer = Writer {
            timing: Timing {
                ping_every: Duration::from_millis(10),
                idle_timeout: Duration::from_secs(60),
                ..Timing::default()
            },
            write_delay: Duration::ZERO,
            idle: &idle,
            metrics: &metrics,
        };
        let silence = async {
            while sink.writes.lock().is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            idle_ms.store(61_000, Ordering::Relaxed);
            std::future::pending::<()>().await
        };
        let close = tokio::select! {
            close = writer.run(&sink, &queue) => close,
            _ = silence => unreachable!(),
            _ = tokio::time::sleep(Duration::from_secs(5)) => panic!("no close"),
        };
        assert_eq!(close.code, Code::GoingAway);
        let writes = sink.writes.lock().clone();
        assert_eq!(writes.first(), Some(&frame::ping().to_vec()));
        assert_eq!(
            writes.last(),
            Some(&frame::close(1001, close.reason).to_vec())
        );
    }
}
