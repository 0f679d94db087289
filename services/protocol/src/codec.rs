//! JSON for humans, MessagePack on the wire. The subprotocol picks the encoding of the
//! server's frames; a client may send either kind of frame whatever it picked.

use serde::Serialize;

use crate::{ClientFrame, Message, ProtocolError, ServerFrame};

pub const SUBPROTOCOL_MSGPACK: &str = "chat.v1.msgpack";
pub const SUBPROTOCOL_JSON: &str = "chat.v1.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Text frames of JSON (`chat.v1.json`, or no subprotocol).
    Json,
    /// Binary frames, each one MessagePack map with string keys (`chat.v1.msgpack`).
    MsgPack,
}

impl Encoding {
    /// Picks the encoding from the client's `Sec-WebSocket-Protocol` offer; returns the
    /// subprotocol to echo back, if any.
    pub fn negotiate(offer: Option<&str>) -> (Encoding, Option<&'static str>) {
        let offered = |p: &str| {
            offer
                .into_iter()
                .flat_map(|o| o.split(','))
                .any(|o| o.trim() == p)
        };
        if offered(SUBPROTOCOL_MSGPACK) {
            (Encoding::MsgPack, Some(SUBPROTOCOL_MSGPACK))
        } else if offered(SUBPROTOCOL_JSON) {
            (Encoding::Json, Some(SUBPROTOCOL_JSON))
        } else {
            (Encoding::Json, None)
        }
    }

    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Vec<u8> {
        match self {
            // Serializing our own types into memory cannot fail: no maps with non-string
            // keys, no I/O.
            Encoding::Json => serde_json::to_vec(value).expect("frame serializes to JSON"),
            Encoding::MsgPack => {
                rmp_serde::to_vec_named(value).expect("frame serializes to MessagePack")
            }
        }
    }

    pub fn encode_frame(self, frame: &ServerFrame) -> Vec<u8> {
        self.encode(frame)
    }

    /// The `message` frame, from a borrowed message: the fan-out path encodes each
    /// message once per encoding, without cloning it into a `ServerFrame`.
    pub fn encode_message(self, message: &Message) -> Vec<u8> {
        #[derive(Serialize)]
        struct Tagged<'a> {
            r#type: &'static str,
            #[serde(flatten)]
            message: &'a Message,
        }
        self.encode(&Tagged {
            r#type: "message",
            message,
        })
    }
}

/// Nesting allowed in a MessagePack document. rmp-serde allows 1024 levels, which
/// overflows a 2 MiB thread stack in a debug build (found by the fuzz harness); no frame
/// of the contract nests deeper than a few levels.
pub const MAX_MSGPACK_DEPTH: usize = 32;

/// `rmp_serde::from_slice` with a depth limit safe for any thread's stack, refusing
/// bytes after the value (as `serde_json::from_slice` does for JSON).
pub fn from_msgpack<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
) -> Result<T, rmp_serde::decode::Error> {
    let mut de = rmp_serde::Deserializer::new(std::io::Cursor::new(bytes));
    de.set_max_depth(MAX_MSGPACK_DEPTH);
    let value = T::deserialize(&mut de)?;
    let used = de.position();
    if used != bytes.len() as u64 {
        return Err(rmp_serde::decode::Error::Syntax(format!(
            "{} bytes after the MessagePack value",
            bytes.len() as u64 - used
        )));
    }
    Ok(value)
}

/// Decodes one client frame: text frames are JSON, binary frames MessagePack.
pub fn decode_client(payload: &[u8], binary: bool) -> Result<ClientFrame, ProtocolError> {
    if binary {
        from_msgpack(payload)
            .map_err(|e| ProtocolError::bad_request(format!("malformed MessagePack frame: {e}")))
    } else {
        serde_json::from_slice(payload)
            .map_err(|e| ProtocolError::bad_request(format!("malformed JSON frame: {e}")))
    }
}

/// Decodes a server frame (clients, tests and the load tester use this).
pub fn decode_server(payload: &[u8], binary: bool) -> Result<ServerFrame, ProtocolError> {
    if binary {
        from_msgpack(payload)
            .map_err(|e| ProtocolError::bad_request(format!("malformed MessagePack frame: {e}")))
    } else {
        serde_json::from_slice(payload)
            .map_err(|e| ProtocolError::bad_request(format!("malformed JSON frame: {e}")))
    }
}

/// The text limit: what the gateway's publishes and the WebSocket's `publish` frames
/// both enforce (through [`check_text`] and [`max_frame_bytes`]). Each hit is counted in
/// `chat_limit_hits_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct TextLimit {
    /// Max `text` size in bytes (UTF-8). A WebSocket frame may be 4 KiB larger.
    #[arg(long, env = "CHAT_MAX_MESSAGE_BYTES", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    pub max_message_bytes: u32,
}

impl TextLimit {
    /// The largest `text`, in UTF-8 bytes.
    pub fn max_bytes(&self) -> usize {
        self.max_message_bytes as usize
    }

    /// The largest client frame this limit allows: see [`max_frame_bytes`].
    pub fn max_frame_bytes(&self) -> usize {
        max_frame_bytes(self.max_bytes())
    }
}

impl Default for TextLimit {
    fn default() -> Self {
        crate::settings::declared_defaults()
    }
}

/// `CHAT_MAX_MESSAGE_BYTES` applies to `text`, counted in UTF-8 bytes.
pub fn check_text(text: &str, max_bytes: usize) -> Result<(), ProtocolError> {
    if text.len() > max_bytes {
        return Err(ProtocolError::too_large(format!(
            "text is {} bytes, the limit is {max_bytes}",
            text.len()
        )));
    }
    if text.is_empty() {
        return Err(ProtocolError::bad_request("text is empty"));
    }
    Ok(())
}

/// The largest client frame (or reassembled message): a text of `max_text_bytes` as
/// JSON may write it at worst (`\u0001` is 6 bytes for each byte of text), plus 4 KiB
/// for the other fields. Any text the contract accepts fits, so a too long one is
/// answered with `too_large` instead of costing the connection; past this a frame is
/// refused before it is decoded.
pub fn max_frame_bytes(max_text_bytes: usize) -> usize {
    max_text_bytes.saturating_mul(6).saturating_add(4096)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::PresenceEvent;
    use crate::{ErrorCode, Since};

    fn client_frames() -> Vec<ClientFrame> {
        vec![
            ClientFrame::Connect {
                token: None,
                user: Some("alice".into()),
                since: Some(Since {
                    epoch: "e1".into(),
                    seq: 4,
                }),
            },
            ClientFrame::Connect {
                token: Some("t.o.k".into()),
                user: None,
                since: None,
            },
            ClientFrame::Join {
                room: "general".into(),
                since: None,
            },
            ClientFrame::Join {
                room: "general".into(),
                since: Some(Since {
                    epoch: "e".into(),
                    seq: u64::MAX,
                }),
            },
            ClientFrame::Leave {
                room: "general".into(),
            },
            ClientFrame::Send {
                room: Some("general".into()),
                to: None,
                text: "hi ✓".into(),
                cid: Some("c1".into()),
            },
            ClientFrame::Send {
                room: None,
                to: Some("bob".into()),
                text: "psst".into(),
                cid: None,
            },
            ClientFrame::Typing {
                room: "general".into(),
            },
            ClientFrame::Ping,
        ]
    }

    fn message() -> Message {
        Message {
            room: "general".into(),
            seq: 7,
            epoch: "abc".into(),
            from: "alice".into(),
            text: "hello".into(),
            ts: 1_700_000_000_000,
            to: None,
            cid: Some("c1".into()),
        }
    }

    fn server_frames() -> Vec<ServerFrame> {
        vec![
            ServerFrame::Connected {
                user: "alice".into(),
                conn: "c-1".into(),
                channel: "@alice".into(),
                epoch: "e".into(),
                seq: 0,
                missed: None,
                recovered: None,
            },
            ServerFrame::Joined {
                room: "general".into(),
                epoch: "e".into(),
                seq: 3,
                missed: 2,
                recovered: Some(true),
            },
            ServerFrame::Left {
                room: "general".into(),
            },
            ServerFrame::Message(message()),
            ServerFrame::Ack {
                cid: Some("c1".into()),
                room: "general".into(),
                seq: 9,
            },
            ServerFrame::Presence {
                room: "general".into(),
                user: "bob".into(),
                event: PresenceEvent::Leave,
            },
            ServerFrame::Typing {
                room: "general".into(),
                user: "bob".into(),
            },
            ServerFrame::Reconnect { after_ms: 1500 },
            ServerFrame::Pong,
            ServerFrame::Error {
                code: ErrorCode::TooLarge,
                message: "big".into(),
                cid: None,
            },
        ]
    }

    #[test]
    fn every_client_frame_round_trips_in_both_encodings() {
        for frame in client_frames() {
            let json = serde_json::to_vec(&frame).unwrap();
            assert_eq!(decode_client(&json, false).unwrap(), frame);
            let mp = rmp_serde::to_vec_named(&frame).unwrap();
            assert_eq!(decode_client(&mp, true).unwrap(), frame);
        }
    }

    #[test]
    fn every_server_frame_round_trips_in_both_encodings() {
        for frame in server_frames() {
            for enc in [Encoding::Json, Encoding::MsgPack] {
                let bytes = enc.encode_frame(&frame);
                let back = decode_server(&bytes, enc == Encoding::MsgPack).unwrap();
                assert_eq!(back, frame, "{enc:?}");
            }
        }
    }

    #[test]
    fn server_frames_are_maps_with_a_string_type() {
        let json: serde_json::Value =
            serde_json::from_slice(&Encoding::Json.encode_frame(&ServerFrame::Pong)).unwrap();
        assert_eq!(json, serde_json::json!({"type": "pong"}));
        // MessagePack: a map (fixmap 0x8N) whose first key is "type".
        let mp = Encoding::MsgPack.encode_frame(&ServerFrame::Pong);
        assert_eq!(mp[0] & 0xf0, 0x80);
        let v: serde_json::Value = rmp_serde::from_slice(&mp).unwrap();
        assert_eq!(v["type"], "pong");
    }

    #[test]
    fn the_borrowed_message_encoding_equals_the_frame_encoding() {
        for enc in [Encoding::Json, Encoding::MsgPack] {
            let frame = enc.encode_frame(&ServerFrame::Message(message()));
            let fast = enc.encode_message(&message());
            assert_eq!(
                decode_server(&frame, enc == Encoding::MsgPack).unwrap(),
                decode_server(&fast, enc == Encoding::MsgPack).unwrap()
            );
        }
        let json: serde_json::Value =
            serde_json::from_slice(&Encoding::Json.encode_message(&message())).unwrap();
        assert_eq!(json["type"], "message");
        assert_eq!(json["seq"], 7);
        assert!(
            json.get("to").is_none(),
            "absent optional fields are omitted"
        );
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let f = decode_client(br#"{"type":"join","room":"r","extra":[1,2]}"#, false).unwrap();
        assert_eq!(
            f,
            ClientFrame::Join {
                room: "r".into(),
                since: None
            }
        );
    }

    #[test]
    fn rejections_are_bad_request() {
        let cases: Vec<(&[u8], bool)> = vec![
            (b"{not json", false),
            (br#"{"type":"dance"}"#, false),
            (br#"{"room":"r"}"#, false),
            (br#"{"type":"join"}"#, false),
            (br#"{"type":"join","room":5}"#, false),
            (br#"[1,2,3]"#, false),
            (b"\xc1\xff\x00", true),
            (b"", true),
        ];
        for (payload, binary) in cases {
            let err = decode_client(payload, binary).unwrap_err();
            assert_eq!(err.code, ErrorCode::BadRequest, "{payload:?}");
        }
        // A MessagePack map with an unknown type.
        let mp = rmp_serde::to_vec_named(&serde_json::json!({"type": "dance"})).unwrap();
        assert_eq!(
            decode_client(&mp, true).unwrap_err().code,
            ErrorCode::BadRequest
        );
    }

    #[test]
    fn deep_msgpack_nesting_is_refused_not_a_stack_overflow() {
        // {"type":"ping","x":[[[…0…]]]} with 1030 levels: aborted debug servers once.
        let mut frame = vec![0x82, 0xa4];
        frame.extend(b"type");
        frame.push(0xa4);
        frame.extend(b"ping");
        frame.extend([0xa1, b'x']);
        frame.extend(std::iter::repeat_n(0x91, 1030));
        frame.push(0);
        let run = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || decode_client(&frame, true).map_err(|e| e.code))
            .unwrap();
        assert_eq!(run.join().unwrap(), Err(ErrorCode::BadRequest));
    }

    #[test]
    fn bytes_after_the_value_are_refused_in_both_encodings() {
        let ping = rmp_serde::to_vec_named(&ClientFrame::Ping).unwrap();
        assert_eq!(decode_client(&ping, true).unwrap(), ClientFrame::Ping);
        let mut two = ping.clone();
        two.extend(&ping);
        let err = decode_client(&two, true).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
        assert!(err.message.contains("bytes after"), "{}", err.message);
        assert_eq!(
            decode_client(br#"{"type":"ping"} x"#, false)
                .unwrap_err()
                .code,
            ErrorCode::BadRequest
        );
        let body: Result<crate::http::ChatSendRequest, _> =
            crate::http::decode_body(&[ping.as_slice(), &[0xc0]].concat(), true);
        assert_eq!(body.unwrap_err().code, ErrorCode::BadRequest);
    }

    #[test]
    fn text_limits_count_utf8_bytes() {
        assert!(check_text("ok", 2).is_ok());
        assert_eq!(check_text("éé", 3).unwrap_err().code, ErrorCode::TooLarge);
        assert_eq!(check_text("", 3).unwrap_err().code, ErrorCode::BadRequest);
        assert_eq!(TextLimit::default().max_bytes(), 4096);
    }

    #[test]
    fn negotiation_prefers_msgpack_and_defaults_to_json() {
        assert_eq!(
            Encoding::negotiate(Some("chat.v1.json, chat.v1.msgpack")),
            (Encoding::MsgPack, Some(SUBPROTOCOL_MSGPACK))
        );
        assert_eq!(
            Encoding::negotiate(Some("chat.v1.json")),
            (Encoding::Json, Some(SUBPROTOCOL_JSON))
        );
        assert_eq!(Encoding::negotiate(Some("mqtt")), (Encoding::Json, None));
        assert_eq!(Encoding::negotiate(None), (Encoding::Json, None));
    }
}
