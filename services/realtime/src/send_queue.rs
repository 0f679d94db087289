//! A connection's write queue: frames already encoded as complete WebSocket frames,
//! bounded in bytes. One writer drains everything queued at once and writes it with
//! one syscall; a queue that overflows marks a slow consumer, which is closed with 1013
//! and recovers by reconnecting with `since`.

use std::collections::VecDeque;

use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::Notify;

pub use crate::close::Close;
use crate::close::Code;

pub const SLOW_CONSUMER: Close = Close::new(
    Code::TryAgainLater,
    "slow consumer: reconnect and recover with since",
);

/// A frame, and the publish time (µs since the epoch) of the message it carries, 0 for
/// other frames: the writer turns it into the delivery latency once written.
pub type Queued = (Bytes, u64);

struct State {
    frames: VecDeque<Queued>,
    bytes: usize,
    close: Option<Close>,
    /// A paced push waits for the writer to take frames.
    space_wanted: bool,
}

pub struct SendQueue {
    state: Mutex<State>,
    notify: Notify,
    /// Wakes [`SendQueue::push_paced`] when the writer took frames or the queue closed.
    space: Notify,
    max_bytes: usize,
}

/// The queue refused a frame: the connection is closing.
#[derive(Debug, PartialEq, Eq)]
pub struct Closing;

impl SendQueue {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            state: Mutex::new(State {
                frames: VecDeque::new(),
                bytes: 0,
                close: None,
                space_wanted: false,
            }),
            notify: Notify::new(),
            space: Notify::new(),
            max_bytes,
        }
    }

    /// Queues a frame. Past the bound the queue is dropped and the connection closes
    /// with 1013: holding more would let one slow reader grow the server's memory.
    pub fn push(&self, frame: Bytes) -> Result<(), Closing> {
        self.push_message(frame, 0)
    }

    /// Queues a message frame published at `published_us`.
    pub fn push_message(&self, frame: Bytes, published_us: u64) -> Result<(), Closing> {
        let mut s = self.state.lock();
        if s.close.is_some() {
            return Err(Closing);
        }
        if s.bytes + frame.len() > self.max_bytes {
            s.frames.clear();
            s.bytes = 0;
            s.close = Some(SLOW_CONSUMER);
            drop(s);
            self.notify.notify_one();
            self.space.notify_waiters();
            return Err(Closing);
        }
        self.enqueue(s, frame, published_us);
        Ok(())
    }

    /// Appends a frame that fits and wakes the writer.
    fn enqueue(&self, mut s: MutexGuard<'_, State>, frame: Bytes, published_us: u64) {
        s.bytes += frame.len();
        s.frames.push_back((frame, published_us));
        drop(s);
        self.notify.notify_one();
    }

    /// Queues a frame of a backlog (the messages a `join` with `since` recovers) at the
    /// pace the client reads: waits while the frame would not fit, instead of counting
    /// the client slow. A backlog larger than the queue is recovered whole, and the
    /// memory it takes stays within the bound. A frame larger than the whole bound goes
    /// in alone. A client that stops reading is closed by the writer's write timeout.
    pub async fn push_paced(&self, frame: Bytes, published_us: u64) -> Result<(), Closing> {
        loop {
            let space = self.space.notified();
            tokio::pin!(space);
            // Registered before the check: a drain right after it still wakes us.
            space.as_mut().enable();
            {
                let mut s = self.state.lock();
                if s.close.is_some() {
                    return Err(Closing);
                }
                if s.bytes == 0 || s.bytes + frame.len() <= self.max_bytes {
                    self.enqueue(s, frame, published_us);
                    return Ok(());
                }
                s.space_wanted = true;
            }
            space.await;
        }
    }

    /// Asks the writer to send what is queued, then close with `close`. The first close
    /// wins.
    pub fn close(&self, close: Close) {
        let mut s = self.state.lock();
        if s.close.is_none() {
            s.close = Some(close);
        }
        drop(s);
        self.notify.notify_one();
        self.space.notify_waiters();
    }

    pub fn is_closing(&self) -> bool {
        self.state.lock().close.is_some()
    }

    /// Moves every queued frame into `out` without waiting; returns the close, if any.
    pub fn take(&self, out: &mut Vec<Queued>) -> Option<Close> {
        let mut s = self.state.lock();
        let close = drain_into(&mut s, out);
        self.wake_paced(s);
        close
    }

    /// Wakes a paced push after frames were taken; costs nothing when none waits (the
    /// common case, on every write).
    fn wake_paced(&self, mut s: MutexGuard<'_, State>) {
        let wanted = std::mem::take(&mut s.space_wanted);
        drop(s);
        if wanted {
            self.space.notify_waiters();
        }
    }

    /// Waits for frames or a close; moves every queued frame into `out`. Cancel-safe:
    /// nothing is taken until the wait is over.
    pub async fn next(&self, out: &mut Vec<Queued>) -> Option<Close> {
        loop {
            {
                let mut s = self.state.lock();
                if !s.frames.is_empty() || s.close.is_some() {
                    let close = drain_into(&mut s, out);
                    self.wake_paced(s);
                    return close;
                }
            }
            self.notify.notified().await;
        }
    }
}

fn drain_into(s: &mut State, out: &mut Vec<Queued>) -> Option<Close> {
    out.extend(s.frames.drain(..));
    s.bytes = 0;
    s.close
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drains_everything_queued_in_one_batch() {
        let q = SendQueue::new(100);
        q.push(Bytes::from_static(b"a")).unwrap();
        q.push(Bytes::from_static(b"b")).unwrap();
        let mut out = Vec::new();
        assert_eq!(q.next(&mut out).await, None);
        assert_eq!(
            out,
            vec![(Bytes::from_static(b"a"), 0), (Bytes::from_static(b"b"), 0)]
        );
    }

    #[tokio::test]
    async fn overflow_drops_the_backlog_and_closes_with_1013() {
        let q = SendQueue::new(10);
        q.push(Bytes::from(vec![0; 8])).unwrap();
        assert_eq!(q.push(Bytes::from(vec![0; 8])), Err(Closing));
        assert_eq!(q.push(Bytes::from_static(b"x")), Err(Closing));
        let mut out = Vec::new();
        assert_eq!(q.next(&mut out).await, Some(SLOW_CONSUMER));
        assert!(out.is_empty());
    }

    #[tokio::test]
    async fn close_keeps_frames_queued_before_it() {
        let q = SendQueue::new(10);
        q.push(Bytes::from_static(b"bye")).unwrap();
        q.close(Close::new(Code::Restart, "restart"));
        let mut out = Vec::new();
        assert_eq!(q.next(&mut out).await.map(|c| c.code), Some(Code::Restart));
        assert_eq!(out.len(), 1);
    }

    #[tokio::test]
    async fn a_paced_backlog_waits_for_the_writer_instead_of_overflowing() {
        let q = std::sync::Arc::new(SendQueue::new(10));
        let q2 = q.clone();
        let backlog = tokio::spawn(async move {
            for i in 0..20u8 {
                q2.push_paced(Bytes::from(vec![i; 4]), 0).await.unwrap();
            }
        });
        let mut got = Vec::new();
        while got.len() < 20 {
            let mut out = Vec::new();
            assert_eq!(q.next(&mut out).await, None, "never a slow consumer");
            assert!(out.iter().map(|(b, _)| b.len()).sum::<usize>() <= 10);
            got.extend(out.into_iter().map(|(b, _)| b[0]));
        }
        backlog.await.unwrap();
        assert_eq!(got, (0..20).collect::<Vec<u8>>(), "in order");
        // A frame larger than the bound goes in alone; a closed queue refuses.
        q.push_paced(Bytes::from(vec![0; 50]), 0).await.unwrap();
        q.close(Close::new(Code::Echo(1000), ""));
        assert_eq!(
            q.push_paced(Bytes::from_static(b"x"), 0).await,
            Err(Closing)
        );
    }

    #[tokio::test]
    async fn a_waiting_writer_wakes_on_push() {
        let q = std::sync::Arc::new(SendQueue::new(10));
        let q2 = q.clone();
        let waiter = tokio::spawn(async move {
            let mut out = Vec::new();
            q2.next(&mut out).await;
            out.len()
        });
        tokio::task::yield_now().await;
        q.push(Bytes::from_static(b"x")).unwrap();
        assert_eq!(waiter.await.unwrap(), 1);
    }
}
