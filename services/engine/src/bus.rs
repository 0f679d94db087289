//! What travels on the bus, and who receives it.
//!
//! On Redis each channel `C` has a pub/sub channel `{prefix}:bus:C`, and the replicas
//! share `{prefix}:ctl` for control commands. Payloads are small and framed so that a
//! replica decodes each one once:
//!
//! - `m<seq> <epoch> <body>`: a stored message; `body` is MessagePack of [`Stored`].
//! - `t<user>`: a typing notice.
//! - `pj<user>` / `pl<user>`: a user's first connection joined / last one left.
//! - control: `j<user> <room>` (join) and `l<user> <room>` (leave).
//!
//! User ids, room names and epochs never contain a space, so the framing is unambiguous.

use std::collections::HashMap;

use chat_protocol::Message;
pub use chat_protocol::frames::PresenceEvent;
use serde::{Deserialize, Serialize};

/// A W3C trace context (`traceparent`, `tracestate`): the publisher's span, so every
/// replica's delivery joins the message's trace.
pub type TraceContext = HashMap<String, String>;

/// What a stored message's envelope carries besides the message itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    pub trace: Option<TraceContext>,
    /// Publish time in microseconds since the Unix epoch (finer than the message's
    /// `ts`), for the delivery latency.
    pub published_us: Option<u64>,
}

/// Receives what the bus delivers. The hub implements it; calls must not block.
pub trait BusHandler: Send + Sync + 'static {
    /// A message of a subscribed channel, in seq order per channel, with its envelope.
    fn on_published(&self, message: Message, envelope: Envelope);
    /// A typing notice on a subscribed channel.
    fn on_typing(&self, channel: &str, user: &str);
    /// A user came online in a room (first connection) or went offline (last one).
    fn on_presence(&self, channel: &str, user: &str, event: PresenceEvent);
    /// A control command for every replica.
    fn on_control(&self, control: Control);
    /// The bus was down and is back: messages may have been missed in between.
    fn on_bus_restored(&self);
}

/// Commands the gateway sends to every realtime replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Every live connection of `user` joins `room`.
    Join { user: String, room: String },
    /// Every live connection of `user` leaves `room`.
    Leave { user: String, room: String },
}

impl Control {
    pub fn encode(&self) -> String {
        match self {
            Control::Join { user, room } => format!("j{user} {room}"),
            Control::Leave { user, room } => format!("l{user} {room}"),
        }
    }

    pub fn decode(payload: &[u8]) -> Option<Control> {
        let s = std::str::from_utf8(payload).ok()?;
        let (user, room) = s.get(1..)?.split_once(' ')?;
        let (user, room) = (user.to_owned(), room.to_owned());
        match s.as_bytes()[0] {
            b'j' => Some(Control::Join { user, room }),
            b'l' => Some(Control::Leave { user, room }),
            _ => None,
        }
    }
}

/// The part of a message that is stored; channel, seq and epoch come from where it is
/// stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored {
    pub from: String,
    pub text: String,
    pub ts: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cid: Option<String>,
    /// The publisher's trace context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tc: Option<TraceContext>,
    /// Publish time in microseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub us: Option<u64>,
}

impl Stored {
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("stored message serializes")
    }

    pub fn decode(body: &[u8]) -> Option<Stored> {
        rmp_serde::from_slice(body).ok()
    }

    /// The message and its envelope.
    pub fn into_parts(mut self, channel: &str, seq: u64, epoch: &str) -> (Message, Envelope) {
        let envelope = Envelope {
            trace: self.tc.take(),
            published_us: self.us,
        };
        (self.into_message(channel, seq, epoch), envelope)
    }

    pub fn into_message(self, channel: &str, seq: u64, epoch: &str) -> Message {
        Message {
            room: channel.to_owned(),
            seq,
            epoch: epoch.to_owned(),
            from: self.from,
            text: self.text,
            ts: self.ts,
            to: self.to,
            cid: self.cid,
        }
    }
}

/// One decoded bus payload of a channel.
#[derive(Debug)]
pub enum Event {
    Message(Message, Envelope),
    Typing(String),
    Presence(String, PresenceEvent),
}

pub fn encode_presence(user: &str, event: PresenceEvent) -> String {
    match event {
        PresenceEvent::Join => format!("pj{user}"),
        PresenceEvent::Leave => format!("pl{user}"),
    }
}

/// Decodes `m<seq> <epoch> <body>` or `t<user>`; `None` for anything else (logged by
/// the caller, never fatal).
pub fn decode_event(channel: &str, payload: &[u8]) -> Option<Event> {
    match *payload.first()? {
        b'm' => {
            let rest = &payload[1..];
            let sp1 = rest.iter().position(|&b| b == b' ')?;
            let seq: u64 = std::str::from_utf8(&rest[..sp1]).ok()?.parse().ok()?;
            let rest = &rest[sp1 + 1..];
            let sp2 = rest.iter().position(|&b| b == b' ')?;
            let epoch = std::str::from_utf8(&rest[..sp2]).ok()?;
            let stored = Stored::decode(&rest[sp2 + 1..])?;
            let (message, envelope) = stored.into_parts(channel, seq, epoch);
            Some(Event::Message(message, envelope))
        }
        b't' => Some(Event::Typing(
            std::str::from_utf8(&payload[1..]).ok()?.to_owned(),
        )),
        b'p' => {
            let event = match *payload.get(1)? {
                b'j' => PresenceEvent::Join,
                b'l' => PresenceEvent::Leave,
                _ => return None,
            };
            let user = std::str::from_utf8(&payload[2..]).ok()?;
            (!user.is_empty()).then(|| Event::Presence(user.to_owned(), event))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_round_trips() {
        for c in [
            Control::Join {
                user: "alice".into(),
                room: "a:b".into(),
            },
            Control::Leave {
                user: "bob".into(),
                room: "general".into(),
            },
        ] {
            assert_eq!(Control::decode(c.encode().as_bytes()), Some(c));
        }
        assert_eq!(Control::decode(b"x"), None);
        assert_eq!(Control::decode(b""), None);
    }

    #[test]
    fn message_payload_decodes_with_binary_body() {
        let stored = Stored {
            from: "alice".into(),
            text: "a b c".into(),
            ts: 5,
            to: None,
            cid: None,
            tc: None,
            us: None,
        };
        let mut payload = b"m42 EPOCH ".to_vec();
        payload.extend(stored.encode());
        match decode_event("general", &payload) {
            Some(Event::Message(m, envelope)) => {
                assert_eq!(envelope, Envelope::default());
                assert_eq!(
                    (m.seq, m.epoch.as_str(), m.text.as_str()),
                    (42, "EPOCH", "a b c")
                );
                assert_eq!(m.room, "general");
            }
            other => panic!("{other:?}"),
        }
        assert!(decode_event("general", b"m42").is_none());
        assert!(matches!(
            decode_event("r", encode_presence("bo", PresenceEvent::Leave).as_bytes()),
            Some(Event::Presence(u, PresenceEvent::Leave)) if u == "bo"
        ));
        assert!(decode_event("r", b"px").is_none());
        assert!(decode_event("general", b"mx E \x80").is_none());
    }

    #[test]
    fn the_envelope_carries_trace_context_and_publish_time_and_old_bodies_still_decode() {
        let tc: TraceContext = [("traceparent".to_owned(), "00-ab-cd-01".to_owned())].into();
        let stored = Stored {
            from: "alice".into(),
            text: "hi".into(),
            ts: 5,
            to: None,
            cid: None,
            tc: Some(tc.clone()),
            us: Some(5_123),
        };
        let mut payload = b"m1 E ".to_vec();
        payload.extend(stored.encode());
        match decode_event("general", &payload) {
            Some(Event::Message(m, envelope)) => {
                assert_eq!(m.text, "hi");
                assert_eq!(envelope.trace, Some(tc));
                assert_eq!(envelope.published_us, Some(5_123));
            }
            other => panic!("{other:?}"),
        }
        // A body written before the envelope fields existed.
        #[derive(Serialize)]
        struct Old {
            from: String,
            text: String,
            ts: u64,
        }
        let mut payload = b"m2 E ".to_vec();
        payload.extend(
            rmp_serde::to_vec_named(&Old {
                from: "bob".into(),
                text: "old".into(),
                ts: 1,
            })
            .unwrap(),
        );
        assert!(matches!(
            decode_event("general", &payload),
            Some(Event::Message(m, e)) if m.text == "old" && e == Envelope::default()
        ));
    }
}
