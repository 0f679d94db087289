//! A channel's continuity on this replica: what it fanned out last, and how a hole in
//! the bus is filled from history.
//!
//! [`ChannelSync`] is plain state with one synchronous method per event (a member went
//! live at a head, a live message, the bus came back, a history read finished). Each
//! returns what to do next, so the rules are tested here without a socket or a store;
//! the hub does the I/O and applies the [`Step`]s in order.
//!
//! The rule it keeps: members that stay connected receive every message of the channel
//! once, in seq order. A seq that skips one, a message of another epoch (the store lost
//! the channel's history and started over) and a bus that was down all make the channel
//! read history before it delivers anything newer. When history cannot give the missing
//! messages (trimmed, or the store does not answer), members are told with [`Step::Lost`]
//! instead of being left to guess.

use chat_engine::{Head, History};
use chat_protocol::Message;

/// `(epoch, seq)`: a place in a channel's stream of messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub epoch: String,
    pub seq: u64,
}

impl Position {
    pub fn of(msg: &Message) -> Position {
        Position {
            epoch: msg.epoch.clone(),
            seq: msg.seq,
        }
    }
}

impl From<&Head> for Position {
    fn from(head: &Head) -> Position {
        Position {
            epoch: head.epoch.clone(),
            seq: head.seq,
        }
    }
}

/// What the hub does, in this order.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Fan this message out to the members.
    Deliver(Message),
    /// Messages before this position cannot be delivered: members are told (the same
    /// `recovered: false` a rejoin gets) and continue after it.
    Lost(Position),
}

/// What a history read for a repair asks for: messages after `after.seq`. An `after` of
/// seq 0 in another epoch than the last delivered reads a new epoch from its start.
pub type Repair = Position;

/// What a finished repair leads to.
#[derive(Debug, Default, PartialEq)]
pub struct Repaired {
    pub steps: Vec<Step>,
    /// Read history again from here: the read ended before the head, the epoch changed
    /// while it ran, or a held message revealed another hole.
    pub again: Option<Repair>,
}

/// A channel's delivery state on this replica.
#[derive(Debug, Default)]
pub struct ChannelSync {
    /// The newest message fanned out (or the head the first member went live at).
    last: Option<Position>,
    /// While history is read, live messages wait here, in bus order.
    repairing: Option<Vec<Message>>,
}

impl ChannelSync {
    /// The first live member starts from `head`: with nothing to compare with, a bus
    /// that dropped a new channel's first messages would deliver the next one and skip
    /// them for good.
    pub fn start_at(&mut self, head: &Head) {
        if self.last.is_none() {
            self.last = Some(head.into());
        }
    }

    pub fn last(&self) -> Option<&Position> {
        self.last.as_ref()
    }

    pub fn is_repairing(&self) -> bool {
        self.repairing.is_some()
    }

    /// A message from the bus. Returns what to deliver now (nothing while a repair
    /// runs, or for a duplicate), and a repair to start.
    pub fn live(&mut self, msg: Message) -> (Option<Message>, Option<Repair>) {
        if let Some(waiting) = &mut self.repairing {
            waiting.push(msg);
            return (None, None);
        }
        match self.next(&msg) {
            Next::Deliver => {
                self.last = Some(Position::of(&msg));
                (Some(msg), None)
            }
            Next::Duplicate => (None, None),
            Next::Hole(from) => {
                self.repairing = Some(vec![msg]);
                (None, Some(from))
            }
        }
    }

    /// The bus was down and is back; `head` is the channel's head now. Returns the
    /// repair to run when messages were published meanwhile or the epoch changed.
    pub fn restored(&mut self, head: &Head) -> Option<Repair> {
        if self.repairing.is_some() {
            return None;
        }
        let last = self.last.as_ref()?;
        let from = if head.epoch != last.epoch {
            Position {
                epoch: head.epoch.clone(),
                seq: 0,
            }
        } else if head.seq > last.seq {
            last.clone()
        } else {
            return None;
        };
        self.repairing = Some(Vec::new());
        Some(from)
    }

    /// The history read that `asked` started finished (`None`: the store did not
    /// answer). Returns what to deliver, in order, and whether to read again.
    pub fn repaired(&mut self, asked: &Repair, read: Option<History>) -> Repaired {
        let mut out = Repaired::default();
        let waiting = self.repairing.take().unwrap_or_default();
        let Some(history) = read else {
            // Without history the held messages cannot be placed: say so at the newest
            // of them. With none held, the next live message checks again.
            if let Some(newest) = waiting.last() {
                let at = Position::of(newest);
                self.last = Some(at.clone());
                out.steps.push(Step::Lost(at));
            }
            return out;
        };
        let head = Position::from(&history.head);
        let same_epoch = self.last.as_ref().is_some_and(|l| l.epoch == head.epoch);
        let mut cursor = match &self.last {
            Some(l) if same_epoch => l.clone(),
            // The epoch changed since `asked`: its seqs before `asked.seq` were not read.
            _ if asked.epoch != head.epoch || asked.seq != 0 => {
                self.repairing = Some(waiting);
                out.again = Some(Position {
                    epoch: head.epoch,
                    seq: 0,
                });
                return out;
            }
            _ => Position {
                epoch: head.epoch.clone(),
                seq: 0,
            },
        };
        let first = history.messages.first().map(|m| m.seq);
        if head.seq > cursor.seq && first != Some(cursor.seq + 1) {
            // Trimmed: what came between is no longer in history.
            cursor = head.clone();
            out.steps.push(Step::Lost(head.clone()));
        } else {
            for m in history.messages {
                if m.epoch == cursor.epoch && m.seq == cursor.seq + 1 {
                    cursor.seq = m.seq;
                    out.steps.push(Step::Deliver(m));
                }
            }
        }
        self.last = Some(cursor.clone());
        if head.seq > cursor.seq {
            // The read stopped at its limit: the rest comes in the next one.
            self.repairing = Some(waiting);
            out.again = Some(cursor);
            return out;
        }
        let mut held = waiting.into_iter();
        while let Some(msg) = held.next() {
            if msg.epoch != head.epoch && asked.seq == 0 && asked.epoch == msg.epoch {
                // This read was for the message's epoch, and the store has another:
                // that epoch's history is gone with it.
                continue;
            }
            match self.next(&msg) {
                Next::Deliver => {
                    self.last = Some(Position::of(&msg));
                    out.steps.push(Step::Deliver(msg));
                }
                Next::Duplicate => {}
                Next::Hole(from) => {
                    let mut rest = vec![msg];
                    rest.extend(held);
                    self.repairing = Some(rest);
                    out.again = Some(from);
                    break;
                }
            }
        }
        out
    }

    fn next(&self, msg: &Message) -> Next {
        match &self.last {
            None => Next::Deliver,
            Some(last) if last.epoch != msg.epoch => Next::Hole(Position {
                epoch: msg.epoch.clone(),
                seq: 0,
            }),
            Some(last) if msg.seq <= last.seq => Next::Duplicate,
            Some(last) if msg.seq == last.seq + 1 => Next::Deliver,
            Some(last) => Next::Hole(last.clone()),
        }
    }
}

enum Next {
    Deliver,
    Duplicate,
    /// Read history after this position before delivering.
    Hole(Repair),
}

/// Fixtures shared with the hub's channel tests.
#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn msg(epoch: &str, seq: u64) -> Message {
        Message {
            room: "r".into(),
            seq,
            epoch: epoch.into(),
            from: "a".into(),
            text: format!("{epoch}{seq}"),
            ts: 0,
            to: None,
            cid: None,
        }
    }

    pub(crate) fn head(epoch: &str, seq: u64) -> Head {
        Head {
            epoch: epoch.into(),
            seq,
        }
    }

    fn at(epoch: &str, seq: u64) -> Position {
        Position {
            epoch: epoch.into(),
            seq,
        }
    }

    /// History of `epoch` holding `seqs`, with the head at the last of them.
    fn history(epoch: &str, seqs: impl IntoIterator<Item = u64>, head_seq: u64) -> History {
        History {
            head: head(epoch, head_seq),
            messages: seqs.into_iter().map(|s| msg(epoch, s)).collect(),
        }
    }

    fn delivered(steps: &[Step]) -> Vec<(String, u64)> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Deliver(m) => Some((m.epoch.clone(), m.seq)),
                Step::Lost(_) => None,
            })
            .collect()
    }

    fn seqs(epoch: &str, range: std::ops::RangeInclusive<u64>) -> Vec<(String, u64)> {
        range.map(|s| (epoch.to_owned(), s)).collect()
    }

    #[test]
    fn in_order_messages_are_delivered_and_duplicates_dropped() {
        let mut s = ChannelSync::default();
        s.start_at(&head("E", 2));
        assert_eq!(s.live(msg("E", 3)).0.map(|m| m.seq), Some(3));
        assert_eq!(s.live(msg("E", 3)), (None, None));
        assert_eq!(s.live(msg("E", 1)), (None, None));
        assert_eq!(s.last(), Some(&at("E", 3)));
    }

    #[test]
    fn a_skipped_seq_holds_live_messages_until_history_fills_the_hole() {
        let mut s = ChannelSync::default();
        s.start_at(&head("E", 1));
        assert_eq!(s.live(msg("E", 4)), (None, Some(at("E", 1))));
        assert_eq!(s.live(msg("E", 5)), (None, None), "held while repairing");
        let r = s.repaired(&at("E", 1), Some(history("E", 2..=4, 4)));
        assert_eq!(delivered(&r.steps), seqs("E", 2..=5));
        assert_eq!(r.again, None);
        assert!(!s.is_repairing());
    }

    #[test]
    fn a_new_epoch_is_delivered_from_its_first_message() {
        let mut s = ChannelSync::default();
        s.start_at(&head("E1", 57));
        // The store restarted empty; the bus shows E2 seq 4 first.
        assert_eq!(s.live(msg("E2", 4)), (None, Some(at("E2", 0))));
        let r = s.repaired(&at("E2", 0), Some(history("E2", 1..=4, 4)));
        assert_eq!(delivered(&r.steps), seqs("E2", 1..=4));
        assert_eq!(s.live(msg("E2", 5)).0.map(|m| m.seq), Some(5));
    }

    #[test]
    fn the_bus_coming_back_repairs_within_the_epoch_and_across_a_new_one() {
        let mut s = ChannelSync::default();
        s.start_at(&head("E1", 3));
        assert_eq!(s.restored(&head("E1", 3)), None, "nothing missed");
        assert_eq!(s.restored(&head("E1", 5)), Some(at("E1", 3)));
        let r = s.repaired(&at("E1", 3), Some(history("E1", 4..=5, 5)));
        assert_eq!(delivered(&r.steps), seqs("E1", 4..=5));

        assert_eq!(s.restored(&head("E2", 2)), Some(at("E2", 0)));
        // A live message while the head is read waits for the repair.
        assert_eq!(s.live(msg("E2", 3)), (None, None));
        let r = s.repaired(&at("E2", 0), Some(history("E2", 1..=2, 2)));
        assert_eq!(delivered(&r.steps), seqs("E2", 1..=3));
    }

    #[test]
    fn a_new_epoch_with_no_message_yet_delivers_from_seq_one() {
        let mut s = ChannelSync::default();
        s.start_at(&head("E1", 9));
        assert_eq!(s.restored(&head("E2", 0)), Some(at("E2", 0)));
        let r = s.repaired(&at("E2", 0), Some(history("E2", [], 0)));
        assert!(r.steps.is_empty());
        assert_eq!(s.live(msg("E2", 1)).0.map(|m| m.seq), Some(1));
    }

    #[test]
    fn trimmed_history_is_reported_lost_then_live_messages_follow() {
        let mut s = ChannelSync::default();
        s.start_at(&head("E1", 9));
        assert_eq!(s.live(msg("E2", 8)), (None, Some(at("E2", 0))));
        // History keeps 5: seqs 1..3 of the new epoch are gone.
        let r = s.repaired(&at("E2", 0), Some(history("E2", 4..=8, 8)));
        assert_eq!(r.steps, vec![Step::Lost(at("E2", 8))]);
        assert_eq!(s.live(msg("E2", 9)).0.map(|m| m.seq), Some(9));

        // Within an epoch too.
        assert_eq!(s.live(msg("E2", 20)), (None, Some(at("E2", 9))));
        let r = s.repaired(&at("E2", 9), Some(history("E2", 15..=20, 20)));
        assert_eq!(r.steps, vec![Step::Lost(at("E2", 20))]);
    }

    #[test]
    fn an_epoch_change_during_a_repair_reads_the_new_epoch_from_its_start() {
        let mut s = ChannelSync::default();
        s.start_at(&head("E1", 1));
        assert_eq!(s.live(msg("E1", 3)), (None, Some(at("E1", 1))));
        // Meanwhile the store restarted: the read after seq 1 sees E2 from seq 2 on.
        let r = s.repaired(&at("E1", 1), Some(history("E2", 2..=3, 3)));
        assert_eq!(
            r,
            Repaired {
                steps: vec![],
                again: Some(at("E2", 0))
            }
        );
        let r = s.repaired(&at("E2", 0), Some(history("E2", 1..=3, 3)));
        // E1 seq 3 was held: it belongs to a lost epoch and is not delivered after E2.
        assert_eq!(delivered(&r.steps), seqs("E2", 1..=3));
        assert_eq!(
            r.again,
            Some(at("E1", 0)),
            "another epoch's message is a hole"
        );
        // The store has no E1 any more: the held message is dropped, not looped on.
        let r = s.repaired(&at("E1", 0), Some(history("E2", 1..=3, 3)));
        assert_eq!(r, Repaired::default());
        assert!(!s.is_repairing());
        assert_eq!(s.live(msg("E2", 4)).0.map(|m| m.seq), Some(4));
    }

    #[test]
    fn a_read_cut_at_its_limit_goes_on_from_where_it_stopped() {
        let mut s = ChannelSync::default();
        s.start_at(&head("E", 0));
        assert_eq!(s.live(msg("E", 7)), (None, Some(at("E", 0))));
        let r = s.repaired(&at("E", 0), Some(history("E", 1..=3, 7)));
        assert_eq!(delivered(&r.steps), seqs("E", 1..=3));
        assert_eq!(r.again, Some(at("E", 3)));
        let r = s.repaired(&at("E", 3), Some(history("E", 4..=7, 7)));
        assert_eq!(delivered(&r.steps), seqs("E", 4..=7), "held seq 7 once");
    }

    #[test]
    fn a_store_that_does_not_answer_reports_the_held_messages_lost() {
        let mut s = ChannelSync::default();
        s.start_at(&head("E", 1));
        s.live(msg("E", 4));
        s.live(msg("E", 5));
        let r = s.repaired(&at("E", 1), None);
        assert_eq!(r.steps, vec![Step::Lost(at("E", 5))]);
        assert_eq!(s.live(msg("E", 6)).0.map(|m| m.seq), Some(6));

        // With nothing held, the next live message checks again.
        assert_eq!(s.restored(&head("E", 8)), Some(at("E", 6)));
        assert_eq!(s.repaired(&at("E", 6), None), Repaired::default());
        assert_eq!(s.live(msg("E", 9)), (None, Some(at("E", 6))));
    }
}
