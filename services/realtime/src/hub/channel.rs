//! One channel's state on this replica: its members, each buffering while it joins and
//! then live, and the channel's [`ChannelSync`]. It is the only writer of that state:
//! the join path, the bus path and the repair path all go through these synchronous
//! methods, under the channel's lock, so no message slips between two of them. Each
//! returns how many messages it delivered; the hub counts them and does the I/O.

use std::collections::HashMap;
use std::sync::Arc;

use chat_engine::{Head, History};
use chat_protocol::{Message, ServerFrame};

use super::registry::Conn;
use crate::frame::{self, Prepared};
use crate::recovery::{ChannelSync, Position, Repair, Step};
use crate::trace::stored_us;

enum State {
    /// Joining: live messages wait here until history has been sent.
    Buffering(Vec<Message>),
    /// Receives messages newer than `after` (or of another epoch).
    Live { epoch: String, after: u64 },
}

struct Member {
    conn: Arc<Conn>,
    state: State,
    /// Set while joining when the channel lost messages (see [`Step::Lost`]): the
    /// member is told when it goes live unless its join head is already past it.
    lost: Option<Position>,
}

pub(super) struct Channel {
    name: String,
    members: HashMap<String, Member>,
    /// What was fanned out last, and the repair of any hole in the bus.
    sync: ChannelSync,
}

impl Channel {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            members: HashMap::new(),
            sync: ChannelSync::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its members, buffering or live.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Whether anything was fanned out here yet (a bus that comes back has something
    /// to compare with).
    pub fn has_delivered(&self) -> bool {
        self.sync.last().is_some()
    }

    pub fn conns(&self) -> impl Iterator<Item = &Arc<Conn>> {
        self.members.values().map(|m| &m.conn)
    }

    /// `conn` starts joining: live messages are buffered for it from now on.
    pub fn add_buffering(&mut self, conn: &Arc<Conn>) {
        self.members.insert(
            conn.id.clone(),
            Member {
                conn: conn.clone(),
                state: State::Buffering(Vec::new()),
                lost: None,
            },
        );
    }

    /// Returns whether `conn_id` was a member.
    pub fn remove(&mut self, conn_id: &str) -> bool {
        self.members.remove(conn_id).is_some()
    }

    /// What a buffering member holds so far; it goes on buffering. `None` when it is
    /// no longer a buffering member.
    pub fn take_buffered(&mut self, conn_id: &str) -> Option<Vec<Message>> {
        match &mut self.members.get_mut(conn_id)?.state {
            State::Buffering(buffered) => Some(std::mem::take(buffered)),
            State::Live { .. } => None,
        }
    }

    /// Queues what was buffered during the join (only what is newer than the head the
    /// client was given) and switches the member to live delivery.
    pub fn go_live(&mut self, conn_id: &str, head: &Head) -> u64 {
        self.sync.start_at(head);
        let Some(member) = self.members.get_mut(conn_id) else {
            return 0;
        };
        let conn = &member.conn;
        // Messages were lost while it joined, after the head it was given: it is told,
        // and goes live from where the channel goes on.
        let head = match member.lost.take() {
            Some(at) if at.epoch != head.epoch || at.seq > head.seq => {
                let _ = conn.send(&lost_frame(&self.name, &at));
                Head {
                    epoch: at.epoch,
                    seq: at.seq,
                }
            }
            _ => head.clone(),
        };
        let live = State::Live {
            epoch: head.epoch.clone(),
            after: head.seq,
        };
        let mut delivered = 0;
        if let State::Buffering(buffered) = std::mem::replace(&mut member.state, live) {
            for msg in buffered {
                if after_head(&msg, &head)
                    && conn
                        .queue
                        .push_message(frame::message(conn.encoding, &msg), stored_us(&msg))
                        .is_ok()
                {
                    delivered += 1;
                }
            }
        }
        delivered
    }

    /// A message from the bus: fanned out now, or held while a hole before it is
    /// repaired. Returns the deliveries and the repair to start.
    pub fn live(&mut self, msg: Message, published_us: u64) -> (u64, Option<Repair>) {
        let (now, repair) = self.sync.live(msg);
        let delivered = now.map_or(0, |msg| self.deliver(&msg, published_us));
        (delivered, repair)
    }

    /// The bus was down and is back; `head` is the channel's head now.
    pub fn restored(&mut self, head: &Head) -> Option<Repair> {
        self.sync.restored(head)
    }

    /// The history read for `asked` finished (`None`: the store did not answer):
    /// delivers what the bus skipped and what was held meanwhile, in seq order, or
    /// tells members what is lost. Returns the deliveries and whether to read again.
    pub fn repaired(&mut self, asked: &Repair, read: Option<History>) -> (u64, Option<Repair>) {
        let repaired = self.sync.repaired(asked, read);
        let mut delivered = 0;
        for step in &repaired.steps {
            match step {
                Step::Deliver(msg) => delivered += self.deliver(msg, stored_us(msg)),
                Step::Lost(at) => self.report_lost(at),
            }
        }
        (delivered, repaired.again)
    }

    /// Queues a frame to every live member (encoded once per encoding), except
    /// `skip_user`'s connections.
    pub fn broadcast(&self, frame: &ServerFrame, skip_user: Option<&str>) {
        let mut encoded: [Option<bytes::Bytes>; 2] = [None, None];
        for member in self.members.values() {
            if skip_user == Some(member.conn.user.as_str())
                || matches!(member.state, State::Buffering(_))
            {
                continue;
            }
            let enc = member.conn.encoding;
            let bytes = encoded[enc as usize]
                .get_or_insert_with(|| frame::server(enc, frame))
                .clone();
            let _ = member.conn.queue.push(bytes);
        }
    }

    /// Fans one message out: the same bytes to every live member that has not seen
    /// it, a copy into the buffer of each joining one.
    fn deliver(&mut self, msg: &Message, published_us: u64) -> u64 {
        let mut prepared = Prepared::new(msg);
        let mut delivered = 0;
        for member in self.members.values_mut() {
            match &mut member.state {
                State::Buffering(buffer) => buffer.push(msg.clone()),
                State::Live { epoch, after } => {
                    if msg.seq > *after || msg.epoch != *epoch {
                        let conn = &member.conn;
                        let frame = prepared.get(conn.encoding);
                        if conn.queue.push_message(frame, published_us).is_ok() {
                            delivered += 1;
                        }
                    }
                }
            }
        }
        delivered
    }

    /// Tells every member that the messages before `at` cannot be delivered: live
    /// members get `joined` with `recovered: false` (they reload history and go on
    /// after `at`); joining ones are told when they go live.
    fn report_lost(&mut self, at: &Position) {
        tracing::warn!(
            channel = self.name,
            epoch = at.epoch,
            seq = at.seq,
            "messages missed on the bus are not in history: members are told"
        );
        for member in self.members.values_mut() {
            match &mut member.state {
                State::Buffering(buffer) => {
                    buffer.clear();
                    member.lost = Some(at.clone());
                }
                State::Live { epoch, after } => {
                    let _ = member.conn.send(&lost_frame(&self.name, at));
                    (*epoch, *after) = (at.epoch.clone(), at.seq);
                }
            }
        }
    }
}

/// The `recovered: false` signal for messages of `channel` before `at` that cannot be
/// delivered: the same frame a rejoin with a stale `since` gets.
fn lost_frame(channel: &str, at: &Position) -> ServerFrame {
    ServerFrame::Joined {
        room: channel.to_owned(),
        epoch: at.epoch.clone(),
        seq: at.seq,
        missed: 0,
        recovered: Some(false),
    }
}

/// Whether a message buffered during a join is newer than the head the client was
/// given (older ones reached it as the recovered backlog, or predate its join).
pub(super) fn after_head(msg: &Message, head: &Head) -> bool {
    msg.epoch != head.epoch || msg.seq > head.seq
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recovery::tests::{head, msg};
    use crate::send_queue::SendQueue;
    use chat_protocol::Encoding;

    fn conn(id: &str, user: &str) -> Arc<Conn> {
        let queue = Arc::new(SendQueue::new(1 << 20));
        Arc::new(Conn::new(id.into(), user.into(), Encoding::Json, queue))
    }

    /// What `conn` was sent, as (kind, seq): `m` for a message, `j` for a `joined`.
    fn sent(conn: &Conn) -> Vec<(char, u64)> {
        let mut batch = Vec::new();
        conn.queue.take(&mut batch);
        batch
            .iter()
            .map(|(bytes, _)| {
                // Server frames are unmasked text frames shorter than 126 bytes here.
                let v: serde_json::Value = serde_json::from_slice(&bytes[2..]).unwrap();
                let kind = if v["type"] == "message" { 'm' } else { 'j' };
                assert!(v["type"] == "message" || v["type"] == "joined", "{v}");
                (kind, v["seq"].as_u64().unwrap())
            })
            .collect()
    }

    #[test]
    fn a_joining_member_gets_what_arrived_meanwhile_after_its_head_once() {
        let mut ch = Channel::new("r");
        let (old, new) = (conn("1", "ann"), conn("2", "bob"));
        ch.add_buffering(&old);
        ch.go_live("1", &head("e", 2));
        ch.add_buffering(&new);
        // 3 is before bob's head (he read it as history); 4 arrives while he joins.
        assert_eq!(ch.live(msg("e", 3), 0).0, 1, "only the live member");
        assert_eq!(ch.live(msg("e", 4), 0).0, 1);
        assert_eq!(ch.go_live("2", &head("e", 3)), 1);
        assert_eq!(sent(&old), [('m', 3), ('m', 4)]);
        assert_eq!(sent(&new), [('m', 4)]);
        ch.live(msg("e", 5), 0);
        assert_eq!(sent(&new), [('m', 5)], "live now");
    }

    #[test]
    fn a_hole_is_held_then_filled_from_history_in_order() {
        let mut ch = Channel::new("r");
        let ann = conn("1", "ann");
        ch.add_buffering(&ann);
        ch.go_live("1", &head("e", 1));
        let (delivered, repair) = ch.live(msg("e", 4), 0);
        assert_eq!(
            (delivered, repair.clone()),
            (0, Some(Position::of(&msg("e", 1))))
        );
        // 5 arrives while history is read: held too.
        assert_eq!(ch.live(msg("e", 5), 0), (0, None));
        let read = History {
            head: head("e", 4),
            messages: vec![msg("e", 2), msg("e", 3), msg("e", 4)],
        };
        assert_eq!(ch.repaired(&repair.unwrap(), Some(read)), (4, None));
        assert_eq!(sent(&ann), [('m', 2), ('m', 3), ('m', 4), ('m', 5)]);
    }

    #[test]
    fn a_loss_tells_live_members_at_once_and_joining_ones_when_they_go_live() {
        let mut ch = Channel::new("r");
        let (live, joining) = (conn("1", "ann"), conn("2", "bob"));
        ch.add_buffering(&live);
        ch.go_live("1", &head("e", 1));
        ch.add_buffering(&joining);
        let (_, repair) = ch.live(msg("e", 9), 0);
        // History was trimmed: it starts at 8, not 2.
        let read = History {
            head: head("e", 9),
            messages: vec![msg("e", 8), msg("e", 9)],
        };
        ch.repaired(&repair.unwrap(), Some(read));
        assert_eq!(sent(&live), [('j', 9)], "told, and goes on after 9");
        assert!(sent(&joining).is_empty(), "a joining member waits");
        // Its join read the head at 1: it is told as it goes live, and gets nothing old.
        assert_eq!(ch.go_live("2", &head("e", 1)), 0);
        assert_eq!(sent(&joining), [('j', 9)]);
        ch.live(msg("e", 10), 0);
        assert_eq!(sent(&live), [('m', 10)]);
        assert_eq!(sent(&joining), [('m', 10)]);
    }

    #[test]
    fn broadcasts_skip_joining_members_and_the_sender() {
        let mut ch = Channel::new("r");
        let (ann, bob, cy) = (conn("1", "ann"), conn("2", "bob"), conn("3", "cy"));
        for c in [&ann, &bob, &cy] {
            ch.add_buffering(c);
        }
        ch.go_live("1", &head("e", 0));
        ch.go_live("2", &head("e", 0));
        let typing = ServerFrame::Typing {
            room: "r".into(),
            user: "ann".into(),
        };
        ch.broadcast(&typing, Some("ann"));
        let count = |c: &Conn| {
            let mut batch = Vec::new();
            c.queue.take(&mut batch);
            batch.len()
        };
        assert_eq!((count(&ann), count(&bob), count(&cy)), (0, 1, 0));
    }
}
