//! Joining and leaving: exactly one engine subscription per channel that has local
//! members, and the seam between a joiner's history and the live messages, with no gap
//! and no duplicate.

use std::sync::Arc;

use chat_engine::PresenceEvent;
use chat_engine::{Head, Range};
use chat_protocol::{Message, ProtocolError, ServerFrame, Since};
use parking_lot::Mutex;

use super::channel::{Channel, after_head};
use super::{Conn, Hub};
use crate::frame;
use crate::trace::stored_us;

/// What a join found: the channel's head, and whether `since` was honoured.
pub struct Joined {
    pub head: Head,
    pub missed: u64,
    pub recovered: Option<bool>,
}

impl Hub {
    /// Joins `conn` to `channel`: subscribe (if first here), read the head or the
    /// history after `since`, queue `answer`, the recovered messages, then whatever
    /// arrived live meanwhile.
    pub async fn join(
        &self,
        conn: &Arc<Conn>,
        channel: &str,
        since: Option<&Since>,
        answer: impl FnOnce(&Joined) -> ServerFrame,
    ) -> Result<(), ProtocolError> {
        self.add_buffering_member(conn, channel).await?;
        let read = match since {
            None => self
                .engine
                .head(channel)
                .await
                .map(|head| (head, Vec::new())),
            Some(s) => chat_telemetry::timed(
                &self.metrics.history_read_duration,
                self.engine.history(
                    channel,
                    Range::After {
                        seq: s.seq,
                        limit: self.history_limit,
                    },
                ),
            )
            .await
            .map(|h| (h.head, h.messages)),
        };
        let (head, messages) = match read {
            Ok(r) => r,
            Err(e) => {
                self.leave(conn, channel).await;
                return Err(e.into());
            }
        };
        let (messages, recovered) = match since {
            None => (Vec::new(), None),
            Some(s) if recoverable(s, &head, &messages) => (messages, Some(true)),
            Some(_) => (Vec::new(), Some(false)),
        };
        let joined = Joined {
            head,
            missed: messages.len() as u64,
            recovered,
        };
        let _ = conn.send(&answer(&joined));
        // At the client's pace: a backlog larger than the send queue is not a slow
        // consumer. Live messages wait in the member's buffer meanwhile.
        for m in &messages {
            if conn
                .queue
                .push_paced(frame::message(conn.encoding, m), 0)
                .await
                .is_err()
            {
                break;
            }
        }
        self.catch_up(conn, channel, &joined.head).await;
        if let Some(ch) = self.channel(channel) {
            let delivered = ch.lock().go_live(&conn.id, &joined.head);
            self.metrics.deliveries.inc_by(delivered);
        }
        self.metrics.joins.inc();
        self.presence_changed(conn, channel, PresenceEvent::Join)
            .await;
        Ok(())
    }

    /// Removes the membership; unsubscribes when the channel has no local member left.
    /// Returns whether `conn` was a member.
    pub async fn leave(&self, conn: &Arc<Conn>, channel: &str) -> bool {
        let one_at_a_time = self.subscriptions.lock().await;
        conn.channels.lock().remove(channel);
        let Some(ch) = self.channel(channel) else {
            return false;
        };
        let (was_member, empty) = {
            let mut ch = ch.lock();
            (ch.remove(&conn.id), ch.is_empty())
        };
        if empty {
            self.channels.write().remove(channel);
            if let Err(e) = self.engine.unsubscribe(channel).await {
                tracing::warn!(channel, error = %e, "unsubscribe failed");
            }
        }
        drop(one_at_a_time);
        if was_member {
            self.metrics.leaves.inc();
            self.presence_changed(conn, channel, PresenceEvent::Leave)
                .await;
        }
        was_member
    }

    /// Removes the connection and all its memberships.
    pub async fn disconnect(&self, conn: &Arc<Conn>) {
        self.registry.remove(conn);
        let channels: Vec<String> = conn.channels.lock().iter().cloned().collect();
        for channel in channels {
            self.leave(conn, &channel).await;
        }
    }

    /// The member is added before the subscription, so nothing published after the
    /// subscription took effect can pass it by.
    async fn add_buffering_member(
        &self,
        conn: &Arc<Conn>,
        channel: &str,
    ) -> Result<(), ProtocolError> {
        let _one_at_a_time = self.subscriptions.lock().await;
        let ch = self
            .channels
            .write()
            .entry(channel.to_owned())
            .or_insert_with(|| Arc::new(Mutex::new(Channel::new(channel))))
            .clone();
        let first = {
            let mut ch = ch.lock();
            let first = ch.is_empty();
            ch.add_buffering(conn);
            first
        };
        conn.channels.lock().insert(channel.to_owned());
        if first && let Err(e) = self.engine.subscribe(channel).await {
            conn.channels.lock().remove(channel);
            let empty = {
                let mut ch = ch.lock();
                ch.remove(&conn.id);
                ch.is_empty()
            };
            if empty {
                self.channels.write().remove(channel);
            }
            return Err(e.into());
        }
        Ok(())
    }

    /// Sends the live messages buffered while a backlog went out, at the client's pace,
    /// round after round while the rounds shrink (the client reads faster than the room
    /// publishes). A round that does not shrink is forgiven twice in a row, since one
    /// slow moment (a busy CPU, a GC pause in the client) is not a slow consumer. What
    /// is left, and a client that does not keep up, go live with the channel's
    /// `go_live`, where the send queue's bound decides.
    async fn catch_up(&self, conn: &Arc<Conn>, channel: &str, head: &Head) {
        const FORGIVEN: u32 = 2;
        let mut previous = usize::MAX;
        let mut not_shrinking = 0;
        loop {
            let Some(pending) = self.take_buffered(conn, channel) else {
                return;
            };
            if pending.is_empty() {
                return;
            }
            let round = pending.len();
            let mut delivered = 0;
            for msg in pending.iter().filter(|m| after_head(m, head)) {
                let frame = frame::message(conn.encoding, msg);
                if conn.queue.push_paced(frame, stored_us(msg)).await.is_err() {
                    return;
                }
                delivered += 1;
            }
            self.metrics.deliveries.inc_by(delivered);
            if round >= previous {
                not_shrinking += 1;
                if not_shrinking > FORGIVEN {
                    return;
                }
            } else {
                not_shrinking = 0;
            }
            previous = round;
        }
    }

    fn take_buffered(&self, conn: &Conn, channel: &str) -> Option<Vec<Message>> {
        self.channel(channel)?.lock().take_buffered(&conn.id)
    }
}

/// `since` can be honoured when it names this epoch, is not ahead of the head, and
/// history still holds every message after it.
fn recoverable(since: &Since, head: &Head, messages: &[Message]) -> bool {
    if since.epoch != head.epoch || since.seq > head.seq {
        return false;
    }
    if since.seq == head.seq {
        return true;
    }
    messages.first().map(|m| m.seq) == Some(since.seq + 1)
        && messages.last().map(|m| m.seq) == Some(head.seq)
}
