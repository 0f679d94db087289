//! The wire formats of the peer servers chat is compared with (`--dialect bun|socketio`,
//! issue #16; the servers are in `loadtest/peers/`). Encoders build the text frames the
//! load tester sends; decoders read what the servers send, borrowing from the frame when
//! the JSON has no escapes (the common case: the texts are stamps and padding).
//!
//! - Bun (`bun-server.js`): JSON text frames, `{"type":"join","room":R}` answered with
//!   `{"type":"joined","room":R}`, `{"type":"send","room":R,"text":T}`, and
//!   `{"type":"message","room":R,"from":U,"text":T}` to every member.
//! - Socket.IO 4 (`socketio-server.js`): Engine.IO v4 on the WebSocket transport, one
//!   packet per WebSocket text frame, its type in the first character: `0` open (with
//!   the handshake JSON), `1` close, `2` ping (the server pings in v4), `3` pong (the
//!   client's answer), `4` message, `6` noop. A message carries a Socket.IO v5 packet:
//!   `<type>[<attachments>-][<namespace>,][<ack id>][JSON]` with types `0` CONNECT,
//!   `1` DISCONNECT, `2` EVENT, `3` ACK, `4` CONNECT_ERROR, `5`/`6` binary. The main
//!   namespace `/` is left out, so `40{"user":U}` connects with an auth payload,
//!   the server answers `40{"sid":…}`, and `42["event",arg]` is an event.
//!
//! Neither peer numbers its messages: the load tester counts losses and duplicates from
//! the message indices in the stamps (see [`crate::stamp`]).

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::IgnoredAny;

/// What a peer's frame means to the load tester.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// A room message.
    Message {
        room: Cow<'a, str>,
        text: Cow<'a, str>,
    },
    /// The join of a room was taken.
    Joined(Cow<'a, str>),
    /// Engine.IO open: the session exists, the client may connect to a namespace.
    Open,
    /// Socket.IO CONNECT answer: connected to the main namespace.
    Connected,
    /// Engine.IO ping: answer with [`sio::PONG`].
    Ping,
    /// The server ended the session or refused it.
    Closed(String),
    /// Anything else (pongs, noops, other events).
    Other,
}

#[derive(Deserialize)]
struct Borrowed<'a> {
    #[serde(rename = "type", default)]
    kind: Option<&'a str>,
    #[serde(default)]
    room: Option<&'a str>,
    #[serde(default)]
    text: Option<&'a str>,
}

#[derive(Deserialize)]
struct Owned {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    room: Option<String>,
    #[serde(default)]
    text: Option<String>,
}

/// `type`, `room` and `text` of a JSON object, borrowed when they can be.
struct Fields<'a> {
    kind: Option<Cow<'a, str>>,
    room: Option<Cow<'a, str>>,
    text: Option<Cow<'a, str>>,
}

fn fields(json: &[u8]) -> Option<Fields<'_>> {
    if let Ok(b) = serde_json::from_slice::<Borrowed<'_>>(json) {
        return Some(Fields {
            kind: b.kind.map(Cow::Borrowed),
            room: b.room.map(Cow::Borrowed),
            text: b.text.map(Cow::Borrowed),
        });
    }
    let o: Owned = serde_json::from_slice(json).ok()?;
    Some(Fields {
        kind: o.kind.map(Cow::Owned),
        room: o.room.map(Cow::Owned),
        text: o.text.map(Cow::Owned),
    })
}

pub mod bun {
    use super::*;

    pub fn join(room: &str) -> String {
        serde_json::json!({"type": "join", "room": room}).to_string()
    }

    pub fn send(room: &str, text: &str) -> String {
        serde_json::json!({"type": "send", "room": room, "text": text}).to_string()
    }

    pub fn decode(frame: &[u8]) -> Incoming<'_> {
        let Some(Fields {
            kind: Some(kind),
            room: Some(room),
            text,
        }) = fields(frame)
        else {
            return Incoming::Other;
        };
        match (kind.as_ref(), text) {
            ("message", Some(text)) => Incoming::Message { room, text },
            ("joined", _) => Incoming::Joined(room),
            _ => Incoming::Other,
        }
    }
}

pub mod sio {
    use super::*;

    /// The query the WebSocket transport is opened with.
    pub const QUERY: &str = "EIO=4&transport=websocket";
    /// Engine.IO pong, the answer to a ping.
    pub const PONG: &str = "3";

    /// Socket.IO CONNECT to the main namespace with an auth payload.
    pub fn connect(user: &str) -> String {
        format!("40{}", serde_json::json!({ "user": user }))
    }

    /// Socket.IO EVENT on the main namespace: `42[name,arg]`.
    pub fn event(name: &str, arg: &serde_json::Value) -> String {
        format!("42{}", serde_json::json!([name, arg]))
    }

    pub fn join(room: &str) -> String {
        event("join", &serde_json::json!(room))
    }

    pub fn send(room: &str, text: &str) -> String {
        event("send", &serde_json::json!({"room": room, "text": text}))
    }

    /// Reads one Engine.IO packet (one WebSocket text frame).
    pub fn decode(frame: &[u8]) -> Incoming<'_> {
        match frame.split_first() {
            Some((b'0', _)) => Incoming::Open,
            Some((b'1', _)) => Incoming::Closed("engine.io close packet".into()),
            Some((b'2', _)) => Incoming::Ping,
            Some((b'4', packet)) => socket_io(packet),
            _ => Incoming::Other,
        }
    }

    /// A Socket.IO packet: `<type>[<attachments>-][<namespace>,][<ack id>][JSON]`.
    fn socket_io(packet: &[u8]) -> Incoming<'_> {
        let Some((&kind, mut rest)) = packet.split_first() else {
            return Incoming::Other;
        };
        if matches!(kind, b'5' | b'6') {
            // Binary attachments: not used by the peers' JSON frames.
            return Incoming::Other;
        }
        if rest.first() == Some(&b'/') {
            let comma = rest.iter().position(|&c| c == b',');
            let (nsp, after) = match comma {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &rest[rest.len()..]),
            };
            if nsp != b"/" {
                return Incoming::Other;
            }
            rest = after;
        }
        let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        let json = &rest[digits..];
        match kind {
            b'0' => Incoming::Connected,
            b'1' => Incoming::Closed("socket.io disconnect packet".into()),
            b'4' => {
                let why = serde_json::from_slice::<serde_json::Value>(json)
                    .ok()
                    .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
                    .unwrap_or_else(|| String::from_utf8_lossy(json).into_owned());
                Incoming::Closed(format!("socket.io connect error: {why}"))
            }
            b'2' => decode_event(json),
            _ => Incoming::Other,
        }
    }

    /// `["message",{room,text,…}]` or `["joined",room]`.
    fn decode_event(json: &[u8]) -> Incoming<'_> {
        let Ok((name, _)) = serde_json::from_slice::<(Cow<'_, str>, IgnoredAny)>(json) else {
            return Incoming::Other;
        };
        match name.as_ref() {
            "message" => {
                if let Ok((_, m)) = serde_json::from_slice::<(IgnoredAny, Borrowed<'_>)>(json)
                    && let (Some(room), Some(text)) = (m.room, m.text)
                {
                    return Incoming::Message {
                        room: Cow::Borrowed(room),
                        text: Cow::Borrowed(text),
                    };
                }
                match serde_json::from_slice::<(IgnoredAny, Owned)>(json) {
                    Ok((
                        _,
                        Owned {
                            room: Some(room),
                            text: Some(text),
                            ..
                        },
                    )) => Incoming::Message {
                        room: Cow::Owned(room),
                        text: Cow::Owned(text),
                    },
                    _ => Incoming::Other,
                }
            }
            "joined" => match serde_json::from_slice::<(IgnoredAny, Cow<'_, str>)>(json) {
                Ok((_, room)) => Incoming::Joined(Cow::Owned(room.into_owned())),
                Err(_) => Incoming::Other,
            },
            _ => Incoming::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg<'a>(room: &'a str, text: &'a str) -> Incoming<'a> {
        Incoming::Message {
            room: room.into(),
            text: text.into(),
        }
    }

    #[test]
    fn engine_io_packets_are_told_apart_by_their_first_character() {
        let open = br#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
        assert_eq!(sio::decode(open), Incoming::Open);
        assert_eq!(sio::decode(b"2"), Incoming::Ping);
        assert_eq!(sio::decode(b"3"), Incoming::Other);
        assert_eq!(sio::decode(b"6"), Incoming::Other);
        assert!(matches!(sio::decode(b"1"), Incoming::Closed(_)));
        assert_eq!(sio::decode(b""), Incoming::Other);
        assert_eq!(sio::PONG, "3");
    }

    #[test]
    fn socket_io_connect_and_its_answers() {
        assert_eq!(sio::connect("lt1-u0"), r#"40{"user":"lt1-u0"}"#);
        assert_eq!(
            sio::decode(br#"40{"sid":"wZX3oN0bSVIhsaknAAAI"}"#),
            Incoming::Connected
        );
        // The main namespace may also be named explicitly.
        assert_eq!(sio::decode(br#"40/,{"sid":"x"}"#), Incoming::Connected);
        assert_eq!(
            sio::decode(br#"44{"message":"Not authorized"}"#),
            Incoming::Closed("socket.io connect error: Not authorized".into())
        );
        assert!(matches!(sio::decode(b"41"), Incoming::Closed(_)));
    }

    #[test]
    fn socket_io_events_encode_and_decode() {
        assert_eq!(sio::join("r1"), r#"42["join","r1"]"#);
        let send = sio::send("r1", "ab.1.2|xx");
        assert_eq!(send, r#"42["send",{"room":"r1","text":"ab.1.2|xx"}]"#);
        let frame = br#"42["message",{"room":"r1","from":"u","text":"ab.1.2|xx"}]"#;
        let m = sio::decode(frame);
        assert_eq!(m, msg("r1", "ab.1.2|xx"));
        // Borrowed from the frame: no allocation for the common message.
        assert!(matches!(
            m,
            Incoming::Message {
                text: Cow::Borrowed(_),
                ..
            }
        ));
        assert_eq!(
            sio::decode(br#"42["joined","r1"]"#),
            Incoming::Joined("r1".into())
        );
        // An escape in the text: still read, owned.
        assert_eq!(
            sio::decode(br#"42["message",{"room":"r1","text":"a\"b"}]"#),
            msg("r1", "a\"b")
        );
        // With an ack id, or another namespace (not ours), or another event.
        assert_eq!(
            sio::decode(br#"4212["message",{"room":"r","text":"t"}]"#),
            msg("r", "t")
        );
        assert_eq!(sio::decode(br#"42/admin,["joined","r"]"#), Incoming::Other);
        assert_eq!(sio::decode(br#"42["typing","r"]"#), Incoming::Other);
        assert_eq!(sio::decode(b"42[not json"), Incoming::Other);
        assert_eq!(
            sio::decode(b"451-[\"message\",{\"_placeholder\":true,\"num\":0}]"),
            Incoming::Other
        );
    }

    #[test]
    fn bun_frames_encode_and_decode() {
        assert_eq!(bun::join("r1"), r#"{"room":"r1","type":"join"}"#);
        let s: serde_json::Value = serde_json::from_str(&bun::send("r1", "t")).unwrap();
        assert_eq!(
            s,
            serde_json::json!({"type": "send", "room": "r1", "text": "t"})
        );
        assert_eq!(
            bun::decode(br#"{"type":"message","room":"r1","from":"u","text":"t"}"#),
            msg("r1", "t")
        );
        assert_eq!(
            bun::decode(br#"{"type":"message","room":"r1","text":"t\n"}"#),
            msg("r1", "t\n")
        );
        assert_eq!(
            bun::decode(br#"{"type":"joined","room":"r1"}"#),
            Incoming::Joined("r1".into())
        );
        assert_eq!(bun::decode(b"nope"), Incoming::Other);
    }
}
