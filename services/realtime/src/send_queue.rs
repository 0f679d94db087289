//! A connection's write queue: frames already encoded as complete WebSocket frames,
//! bounded in bytes. One writer drains everything queued at once and writes it with
//! one syscall; a queue that overflows marks a slow consumer, which is closed with 1013
//! and recovers by reconnecting with `since`.

use std::collections::VecDeque;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// Why the writer must close the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close {
    pub code: u16,
    pub reason: &'static str,
}

pub const SLOW_CONSUMER: Close = Close {
    code: 1013,
    reason: "slow consumer: reconnect and recover with since",
};

/// A frame, and the publish time (µs since the epoch) of the message it carries, 0 for
/// other frames: the writer turns it into the delivery latency once written.
pub type Queued = (Bytes, u64);

struct State {
    frames: VecDeque<Queued>,
    bytes: usize,
    close: Option<Close>,
}

pub struct SendQueue {
    state: Mutex<State>,
    notify: Notify,
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
            }),
            notify: Notify::new(),
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
            return Err(Closing);
        }
        s.bytes += frame.len();
        s.frames.push_back((frame, published_us));
        drop(s);
        self.notify.notify_one();
        Ok(())
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
    }

    pub fn is_closing(&self) -> bool {
        self.state.lock().close.is_some()
    }

    /// Moves every queued frame into `out` without waiting; returns the close, if any.
    pub fn take(&self, out: &mut Vec<Queued>) -> Option<Close> {
        drain_into(&mut self.state.lock(), out)
    }

    /// Waits for frames or a close; moves every queued frame into `out`. Cancel-safe:
    /// nothing is taken until the wait is over.
    pub async fn next(&self, out: &mut Vec<Queued>) -> Option<Close> {
        loop {
            {
                let mut s = self.state.lock();
                if !s.frames.is_empty() || s.close.is_some() {
                    return drain_into(&mut s, out);
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
        q.close(Close {
            code: 1012,
            reason: "restart",
        });
        let mut out = Vec::new();
        assert_eq!(q.next(&mut out).await.map(|c| c.code), Some(1012));
        assert_eq!(out.len(), 1);
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
