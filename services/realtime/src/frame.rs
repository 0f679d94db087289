//! Server frames, framed once. The fan-out path builds each message's complete
//! WebSocket frame (header and payload) once per encoding and hands the same bytes to
//! every recipient's queue; the writer only copies them to the socket.

use bytes::{BufMut, Bytes, BytesMut};
use chat_protocol::{Encoding, Message, ServerFrame};

const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// A complete unmasked (server → client) frame with FIN set.
pub fn raw(opcode: u8, payload: &[u8]) -> Bytes {
    let len = payload.len();
    let mut buf = BytesMut::with_capacity(len + 10);
    buf.put_u8(0x80 | opcode);
    if len < 126 {
        buf.put_u8(len as u8);
    } else if len < 65536 {
        buf.put_u8(126);
        buf.put_u16(len as u16);
    } else {
        buf.put_u8(127);
        buf.put_u64(len as u64);
    }
    buf.put_slice(payload);
    buf.freeze()
}

fn data(encoding: Encoding, payload: &[u8]) -> Bytes {
    match encoding {
        Encoding::Json => raw(OP_TEXT, payload),
        Encoding::MsgPack => raw(OP_BINARY, payload),
    }
}

pub fn server(encoding: Encoding, frame: &ServerFrame) -> Bytes {
    data(encoding, &encoding.encode_frame(frame))
}

pub fn message(encoding: Encoding, message: &Message) -> Bytes {
    data(encoding, &encoding.encode_message(message))
}

pub fn close(code: u16, reason: &str) -> Bytes {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(&reason.as_bytes()[..reason.len().min(120)]);
    raw(OP_CLOSE, &payload)
}

pub fn ping() -> Bytes {
    raw(OP_PING, b"")
}

pub fn pong(payload: &[u8]) -> Bytes {
    raw(OP_PONG, payload)
}

/// A message encoded lazily, at most once per encoding, for one fan-out.
pub struct Prepared<'a> {
    message: &'a Message,
    json: Option<Bytes>,
    msgpack: Option<Bytes>,
}

impl<'a> Prepared<'a> {
    pub fn new(message: &'a Message) -> Self {
        Self {
            message,
            json: None,
            msgpack: None,
        }
    }

    pub fn get(&mut self, encoding: Encoding) -> Bytes {
        let slot = match encoding {
            Encoding::Json => &mut self.json,
            Encoding::MsgPack => &mut self.msgpack,
        };
        slot.get_or_insert_with(|| message(encoding, self.message))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_follow_rfc6455_length_forms() {
        assert_eq!(&raw(OP_TEXT, b"hi")[..], &[0x81, 2, b'h', b'i']);
        let mid = raw(OP_BINARY, &[0; 300]);
        assert_eq!(&mid[..4], &[0x82, 126, 1, 44]);
        assert_eq!(mid.len(), 304);
        let big = raw(OP_BINARY, &vec![0; 70_000]);
        assert_eq!(big[1], 127);
        assert_eq!(big.len(), 70_010);
        assert_eq!(&close(1013, "slow")[..4], &[0x88, 6, 0x03, 0xF5]);
    }
}
