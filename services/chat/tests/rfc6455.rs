//! RFC 6455 to the letter: the project's own conformance suite, after the families of
//! Autobahn|Testsuite (1 framing, 2 ping/pong, 3 reserved bits, 4 opcodes,
//! 5 fragmentation, 6 UTF-8, 7 close, 9 limits) plus unmasked frames and the opening
//! handshake. Every case writes its frames by hand over raw TCP and states the
//! outcome the RFC demands: the answers, then the close code, then the end of TCP.
//! The same table runs against `chat-realtime` (over a real Redis) and `chat`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use chat_testkit::RedisServer;
use chat_testkit::topology::Topology;
use common::raw::{self, BINARY, CLOSE, CONT, FIN, PING, PONG, RawWs, SAMPLE_ACCEPT, TEXT};
use futures_util::StreamExt;

/// `CHAT_MAX_MESSAGE_BYTES` of the servers under test (the default).
const MAX_TEXT: usize = 4096;
/// How long a case waits for the server's next frame, or for TCP to end.
const WAIT: Duration = Duration::from_secs(5);

fn frame_limit() -> usize {
    chat_protocol::codec::max_frame_bytes(MAX_TEXT)
}

/// What the server must send after the case's bytes.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    /// A WebSocket pong carrying this payload.
    Pong(Vec<u8>),
    /// A text frame holding a JSON map of this `type`.
    Json(&'static str),
    /// An `error` frame with this code.
    Error(&'static str),
}

/// The case's outcome.
enum Want {
    /// These answers, the connection stays open: the client's close 1000 is echoed.
    Open(Vec<Answer>),
    /// These answers (usually none), then the server closes with one of these codes.
    Closed(Vec<Answer>, &'static [u16]),
}

struct Case {
    id: &'static str,
    what: &'static str,
    /// Sent before the case: `connect`, answered with `connected`.
    connect: bool,
    bytes: Vec<u8>,
    /// Written in writes of this many bytes.
    chop: Option<usize>,
    want: Want,
}

fn case(id: &'static str, what: &'static str, bytes: Vec<u8>, want: Want) -> Case {
    Case {
        id,
        what,
        connect: true,
        bytes,
        chop: None,
        want,
    }
}

impl Case {
    fn chopped(mut self, n: usize) -> Case {
        self.chop = Some(n);
        self
    }

    fn before_connect(mut self) -> Case {
        self.connect = false;
        self
    }
}

fn open(answers: Vec<Answer>) -> Want {
    Want::Open(answers)
}

fn closed(code: u16) -> Want {
    Want::Closed(vec![], Box::leak(Box::new([code])))
}

fn closed_after(answers: Vec<Answer>, code: u16) -> Want {
    Want::Closed(answers, Box::leak(Box::new([code])))
}

fn pong(payload: &[u8]) -> Answer {
    Answer::Pong(payload.to_vec())
}

fn json_pong() -> Answer {
    Answer::Json("pong")
}

/// A masked frame.
fn f(head: u8, payload: &[u8]) -> Vec<u8> {
    raw::frame(head, payload, true)
}

/// An unmasked frame.
fn unmasked(head: u8, payload: &[u8]) -> Vec<u8> {
    raw::frame(head, payload, false)
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// A JSON `ping` frame padded to exactly `len` bytes (len ≥ 24).
fn ping_json(len: usize) -> Vec<u8> {
    let base = r#"{"type":"ping","pad":""}"#;
    assert!(len >= base.len());
    format!(
        r#"{{"type":"ping","pad":"{}"}}"#,
        "x".repeat(len - base.len())
    )
    .into_bytes()
}

/// A JSON `ping` whose padding is `pad` (raw bytes, valid UTF-8 or not).
fn ping_with(pad: &[u8]) -> Vec<u8> {
    cat(&[
        br#"{"type":"ping","pad":""#.to_vec(),
        pad.to_vec(),
        br#""}"#.to_vec(),
    ])
}

/// A MessagePack `ping` map of exactly `len` bytes.
fn ping_msgpack(len: usize) -> Vec<u8> {
    for pad in (0..len).rev() {
        let v = serde_json::json!({"type": "ping", "pad": "x".repeat(pad)});
        let bytes = rmp_serde::to_vec_named(&v).unwrap();
        if bytes.len() == len {
            return bytes;
        }
    }
    panic!("no msgpack ping of {len} bytes")
}

/// `s` as a JSON string the way Python's `json.dumps` writes it (`ensure_ascii`): every
/// non-ASCII character and control character escaped.
fn py_json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A `send` to room `lobby` whose text is written as `json.dumps` writes it.
fn send_escaped(text: &str) -> Vec<u8> {
    format!(
        r#"{{"type": "send", "room": "lobby", "text": {}, "cid": "c1"}}"#,
        py_json_string(text)
    )
    .into_bytes()
}

fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    cat(&[code.to_be_bytes().to_vec(), reason.to_vec()])
}

/// Splits `payload` into a fragmented message of `op` (first fragment `op`, then
/// continuations) at the given byte offsets.
fn fragments(op: u8, payload: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut bounds = vec![0];
    bounds.extend_from_slice(cuts);
    bounds.push(payload.len());
    let n = bounds.len() - 1;
    (0..n)
        .map(|i| {
            let opcode = if i == 0 { op } else { CONT };
            let fin = if i == n - 1 { FIN } else { 0 };
            f(fin | opcode, &payload[bounds[i]..bounds[i + 1]])
        })
        .collect::<Vec<_>>()
        .concat()
}

/// A frame header claiming `len` bytes with the 8-byte length form (mask included,
/// no payload).
fn long_header(head: u8, len: u64) -> Vec<u8> {
    cat(&[
        vec![head, 0x80 | 127],
        len.to_be_bytes().to_vec(),
        vec![1, 2, 3, 4],
    ])
}

fn cases() -> Vec<Case> {
    let limit = frame_limit();
    let ping125: Vec<u8> = (0..125u8).collect();
    let binary_payload: Vec<u8> = (0..=255u8).cycle().skip(200).take(125).collect();
    let small = ping_json(40);
    let mut c = vec![
        // 1 Framing: every length form, text and binary.
        case(
            "1.1.1",
            "empty text frame: not a frame of ours, error frame",
            f(FIN | TEXT, b""),
            open(vec![Answer::Error("bad_request")]),
        ),
        case(
            "1.1.2",
            "text, 125 bytes (7-bit length)",
            f(FIN | TEXT, &ping_json(125)),
            open(vec![json_pong()]),
        ),
        case(
            "1.1.3",
            "text, 126 bytes (16-bit length)",
            f(FIN | TEXT, &ping_json(126)),
            open(vec![json_pong()]),
        ),
        case(
            "1.1.4",
            "text, 127 bytes",
            f(FIN | TEXT, &ping_json(127)),
            open(vec![json_pong()]),
        ),
        case(
            "1.1.5",
            "text, 128 bytes",
            f(FIN | TEXT, &ping_json(128)),
            open(vec![json_pong()]),
        ),
        case(
            "1.1.6",
            "text, 8,000 bytes",
            f(FIN | TEXT, &ping_json(8000)),
            open(vec![json_pong()]),
        ),
        case(
            "1.1.7",
            "text, 1,000 bytes written one byte at a time",
            f(FIN | TEXT, &ping_json(1000)),
            open(vec![json_pong()]),
        )
        .chopped(1),
        case(
            "1.1.8",
            "two text frames in one write",
            cat(&[f(FIN | TEXT, &small), f(FIN | TEXT, &small)]),
            open(vec![json_pong(), json_pong()]),
        ),
        case(
            "1.2.1",
            "binary (MessagePack), 125 bytes",
            f(FIN | BINARY, &ping_msgpack(125)),
            open(vec![json_pong()]),
        ),
        case(
            "1.2.2",
            "binary, 126 bytes",
            f(FIN | BINARY, &ping_msgpack(126)),
            open(vec![json_pong()]),
        ),
        case(
            "1.2.3",
            "binary, 8,000 bytes",
            f(FIN | BINARY, &ping_msgpack(8000)),
            open(vec![json_pong()]),
        ),
        case(
            "1.2.4",
            "binary, 2,000 bytes in writes of 7",
            f(FIN | BINARY, &ping_msgpack(2000)),
            open(vec![json_pong()]),
        )
        .chopped(7),
        case(
            "1.3.2",
            "64-bit length with the most significant bit set",
            long_header(FIN | BINARY, 1 << 63),
            closed(1002),
        ),
        // Unmasked client frames (RFC 6455 §5.1): close 1002 and process nothing.
        case(
            "U.1",
            "unmasked connect: no connected",
            unmasked(FIN | TEXT, br#"{"type":"connect","user":"bare"}"#),
            closed(1002),
        )
        .before_connect(),
        case(
            "U.2",
            "unmasked ping frame: no pong",
            unmasked(FIN | PING, b"hi"),
            closed(1002),
        ),
        case(
            "U.3",
            "unmasked pong frame",
            unmasked(FIN | PONG, b""),
            closed(1002),
        ),
        case(
            "U.4",
            "unmasked join: no joined",
            unmasked(FIN | TEXT, br#"{"type":"join","room":"lobby"}"#),
            closed(1002),
        ),
        case(
            "U.5",
            "unmasked JSON ping: no pong",
            unmasked(FIN | TEXT, &small),
            closed(1002),
        ),
        case(
            "U.6",
            "unmasked close",
            unmasked(FIN | CLOSE, &close_payload(1000, b"")),
            closed(1002),
        ),
        case(
            "U.7",
            "unmasked continuation of a masked start",
            cat(&[f(TEXT, &small[..10]), unmasked(FIN | CONT, &small[10..])]),
            closed(1002),
        ),
        case(
            "U.8",
            "unmasked binary",
            unmasked(FIN | BINARY, &ping_msgpack(40)),
            closed(1002),
        ),
        case(
            "U.9",
            "masked frames after an unmasked one: not answered, the close arrives",
            cat(&[
                unmasked(FIN | PING, b"u"),
                f(FIN | TEXT, &small),
                f(FIN | PING, b"m"),
                f(FIN | TEXT, &ping_json(2000)),
            ]),
            closed(1002),
        ),
        // 2 Pings and pongs.
        case(
            "2.1",
            "ping, no payload",
            f(FIN | PING, b""),
            open(vec![pong(b"")]),
        ),
        case(
            "2.2",
            "ping with a text payload",
            f(FIN | PING, b"Hello, world!"),
            open(vec![pong(b"Hello, world!")]),
        ),
        case(
            "2.3",
            "ping with a binary payload",
            f(FIN | PING, &binary_payload),
            open(vec![pong(&binary_payload)]),
        ),
        case(
            "2.4",
            "ping, 125 bytes",
            f(FIN | PING, &ping125),
            open(vec![pong(&ping125)]),
        ),
        case(
            "2.5",
            "ping, 126 bytes",
            f(FIN | PING, &[b'x'; 126]),
            closed(1002),
        ),
        case(
            "2.6",
            "ping, 125 bytes, one byte per write",
            f(FIN | PING, &ping125),
            open(vec![pong(&ping125)]),
        )
        .chopped(1),
        case(
            "2.7",
            "unsolicited pong, no payload",
            f(FIN | PONG, b""),
            open(vec![]),
        ),
        case(
            "2.8",
            "unsolicited pong with payload",
            f(FIN | PONG, b"unsolicited"),
            open(vec![]),
        ),
        case(
            "2.9",
            "unsolicited pong, then ping",
            cat(&[f(FIN | PONG, b"a"), f(FIN | PING, b"b")]),
            open(vec![pong(b"b")]),
        ),
        case(
            "2.10",
            "ten pings",
            (0..10u8)
                .map(|i| f(FIN | PING, &[b'0' + i]))
                .collect::<Vec<_>>()
                .concat(),
            open((0..10u8).map(|i| pong(&[b'0' + i])).collect()),
        ),
        case(
            "2.11",
            "ten pings, in writes of 3 bytes",
            (0..10u8)
                .map(|i| f(FIN | PING, &[b'0' + i]))
                .collect::<Vec<_>>()
                .concat(),
            open((0..10u8).map(|i| pong(&[b'0' + i])).collect()),
        )
        .chopped(3),
        case(
            "2.12",
            "pong, 126 bytes",
            f(FIN | PONG, &[b'x'; 126]),
            closed(1002),
        ),
    ];
    // 3 Reserved bits: no extension is negotiated, so any set bit fails the connection.
    for (i, rsv) in (1..=7u8).enumerate() {
        let id: &'static str = Box::leak(format!("3.{}", i + 1).into_boxed_str());
        c.push(case(
            id,
            "text with reserved bits set: nothing answered",
            f(FIN | (rsv << 4) | TEXT, &small),
            closed(1002),
        ));
    }
    c.extend([
        case(
            "3.8",
            "text, then text with RSV2, then ping",
            cat(&[
                f(FIN | TEXT, &small),
                f(FIN | 0x20 | TEXT, &small),
                f(FIN | PING, b"p"),
            ]),
            closed_after(vec![json_pong()], 1002),
        ),
        case(
            "3.9",
            "binary with RSV3",
            f(FIN | 0x10 | BINARY, &ping_msgpack(40)),
            closed(1002),
        ),
        case(
            "3.10",
            "ping with RSV1",
            f(FIN | 0x40 | PING, b"p"),
            closed(1002),
        ),
        case(
            "3.11",
            "close with RSV2",
            f(FIN | 0x20 | CLOSE, &close_payload(1000, b"")),
            closed(1002),
        ),
        case(
            "3.12",
            "continuation with RSV1",
            cat(&[f(TEXT, &small[..5]), f(FIN | 0x40 | CONT, &small[5..])]),
            closed(1002),
        ),
    ]);
    // 4 Opcodes: reserved data (3-7) and control (B-F) opcodes.
    for (i, op) in [3u8, 4, 5, 6, 7].into_iter().enumerate() {
        let id: &'static str = Box::leak(format!("4.1.{}", i + 1).into_boxed_str());
        c.push(case(
            id,
            "reserved data opcode",
            f(FIN | op, b"reserved"),
            closed(1002),
        ));
    }
    for (i, op) in [0xBu8, 0xC, 0xD, 0xE, 0xF].into_iter().enumerate() {
        let id: &'static str = Box::leak(format!("4.2.{}", i + 1).into_boxed_str());
        c.push(case(
            id,
            "reserved control opcode",
            f(FIN | op, b""),
            closed(1002),
        ));
    }
    c.push(case(
        "4.3.1",
        "text, reserved opcode 5, ping",
        cat(&[f(FIN | TEXT, &small), f(FIN | 5, b""), f(FIN | PING, b"p")]),
        closed_after(vec![json_pong()], 1002),
    ));
    // 5 Fragmentation.
    let frag = ping_json(300);
    let bin = ping_msgpack(300);
    c.extend([
        case(
            "5.1",
            "fragmented ping",
            cat(&[f(PING, b"frag"), f(FIN | CONT, b"ment")]),
            closed(1002),
        ),
        case(
            "5.2",
            "fragmented pong",
            cat(&[f(PONG, b"frag"), f(FIN | CONT, b"ment")]),
            closed(1002),
        ),
        case(
            "5.3",
            "text in two fragments",
            fragments(TEXT, &frag, &[150]),
            open(vec![json_pong()]),
        ),
        case(
            "5.4",
            "text in two fragments, one byte per write",
            fragments(TEXT, &frag, &[150]),
            open(vec![json_pong()]),
        )
        .chopped(1),
        case(
            "5.5",
            "text in 300 one-byte fragments",
            fragments(TEXT, &frag, &(1..300).collect::<Vec<_>>()),
            open(vec![json_pong()]),
        ),
        case(
            "5.6",
            "text fragments with a ping between",
            cat(&[
                f(TEXT, &frag[..100]),
                f(FIN | PING, b"mid"),
                f(FIN | CONT, &frag[100..]),
            ]),
            open(vec![pong(b"mid"), json_pong()]),
        ),
        case(
            "5.7",
            "text fragments with a pong between",
            cat(&[
                f(TEXT, &frag[..100]),
                f(FIN | PONG, b"mid"),
                f(FIN | CONT, &frag[100..]),
            ]),
            open(vec![json_pong()]),
        ),
        case(
            "5.8",
            "text fragments, pings between, in writes of 1 byte",
            cat(&[
                f(TEXT, &frag[..100]),
                f(FIN | PING, b"1"),
                f(CONT, &frag[100..200]),
                f(FIN | PING, b"2"),
                f(FIN | CONT, &frag[200..]),
            ]),
            open(vec![pong(b"1"), pong(b"2"), json_pong()]),
        )
        .chopped(1),
        case(
            "5.9",
            "continuation (FIN) with nothing to continue",
            f(FIN | CONT, &small),
            closed(1002),
        ),
        case(
            "5.10",
            "continuation (no FIN) with nothing to continue",
            f(CONT, &small),
            closed(1002),
        ),
        case(
            "5.11",
            "continuation with nothing to continue, then the rest",
            cat(&[f(CONT, &frag[..100]), f(FIN | CONT, &frag[100..])]),
            closed(1002),
        ),
        case(
            "5.12",
            "a message, then a stray continuation",
            cat(&[fragments(TEXT, &frag, &[100]), f(FIN | CONT, &small)]),
            closed_after(vec![json_pong()], 1002),
        ),
        case(
            "5.13",
            "a new text frame inside a fragmented text",
            cat(&[f(TEXT, &frag[..100]), f(FIN | TEXT, &small)]),
            closed(1002),
        ),
        case(
            "5.14",
            "a new fragmented text inside a fragmented text",
            cat(&[f(TEXT, &frag[..100]), f(TEXT, &frag[..100])]),
            closed(1002),
        ),
        case(
            "5.15",
            "a binary frame inside a fragmented text",
            cat(&[f(TEXT, &frag[..100]), f(FIN | BINARY, &ping_msgpack(40))]),
            closed(1002),
        ),
        case(
            "5.16",
            "binary in three fragments",
            fragments(BINARY, &bin, &[1, 150]),
            open(vec![json_pong()]),
        ),
        case(
            "5.17",
            "empty fragments around the text",
            cat(&[f(TEXT, b""), f(CONT, &frag), f(FIN | CONT, b"")]),
            open(vec![json_pong()]),
        ),
        case(
            "5.18",
            "three empty fragments: an empty text",
            cat(&[f(TEXT, b""), f(CONT, b""), f(FIN | CONT, b"")]),
            open(vec![Answer::Error("bad_request")]),
        ),
        case(
            "5.19",
            "close inside a fragmented message",
            cat(&[
                f(TEXT, &frag[..100]),
                f(FIN | CLOSE, &close_payload(1000, b"")),
            ]),
            closed(1000),
        ),
    ]);
    // 6 UTF-8: valid text however it is cut; invalid text fails at once (1007).
    let kosme = "κόσμε".as_bytes().to_vec();
    let kosme_msg = ping_with(&kosme);
    let mut valid_cuts = Vec::new();
    for cut in 1..kosme_msg.len() {
        valid_cuts.push(fragments(TEXT, &kosme_msg, &[cut]));
    }
    c.extend([
        case(
            "6.1.1",
            "valid UTF-8 in one frame",
            f(FIN | TEXT, &kosme_msg),
            open(vec![json_pong()]),
        ),
        case(
            "6.1.2",
            "valid UTF-8 cut at every byte (one message per cut)",
            valid_cuts.concat(),
            open(vec![json_pong(); kosme_msg.len() - 1]),
        ),
        case(
            "6.1.3",
            "valid UTF-8 in one-byte fragments",
            fragments(TEXT, &kosme_msg, &(1..kosme_msg.len()).collect::<Vec<_>>()),
            open(vec![json_pong()]),
        ),
        case(
            "6.1.4",
            "boundary code points U+007F U+07FF U+FFFF U+10FFFF U+D7FF U+E000",
            f(
                FIN | TEXT,
                &ping_with("\u{7f}\u{7ff}\u{ffff}\u{10ffff}\u{d7ff}\u{e000}".as_bytes()),
            ),
            open(vec![json_pong()]),
        ),
        case(
            "6.1.5",
            "four-byte code point cut in every fragment",
            fragments(TEXT, &ping_with("\u{1F600}".as_bytes()), &[22, 23, 24, 25]),
            open(vec![json_pong()]),
        ),
    ]);
    let invalid: &[(&str, &[u8])] = &[
        (
            "6.2.1",
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
        ),
        ("6.2.2", b"\x80"),
        ("6.2.3", b"\xbf"),
        ("6.2.4", b"\xc0\xaf"),
        ("6.2.5", b"\xe0\x80\xaf"),
        ("6.2.6", b"\xf0\x80\x80\xaf"),
        ("6.2.7", b"\xed\xa0\x80"),
        ("6.2.8", b"\xed\xbf\xbf"),
        ("6.2.9", b"\xf4\x90\x80\x80"),
        ("6.2.10", b"\xfe"),
        ("6.2.11", b"\xff"),
        ("6.2.12", b"\xc1\xbf"),
    ];
    for (id, bad) in invalid {
        c.push(case(
            id,
            "invalid UTF-8 in a text frame",
            f(FIN | TEXT, &ping_with(bad)),
            closed(1007),
        ));
    }
    c.extend([
        case(
            "6.3.1",
            "text ends inside a code point",
            f(FIN | TEXT, b"{\"type\":\"ping\"}\xce"),
            closed(1007),
        ),
        case(
            "6.3.2",
            "fail fast: invalid first fragment, the rest never sent",
            f(TEXT, &ping_with(b"\xed\xa0\x80")),
            closed(1007),
        ),
        case(
            "6.3.3",
            "fail fast: valid first fragment, invalid second, no FIN yet",
            cat(&[f(TEXT, &kosme_msg[..10]), f(CONT, b"\xf4\x90\x80\x80")]),
            closed(1007),
        ),
        case(
            "6.3.4",
            "fail fast: a code point cut by fragments goes wrong in the next",
            cat(&[
                f(TEXT, &[&kosme_msg[..22], b"\xce".as_slice()].concat()),
                f(CONT, b"x"),
            ]),
            closed(1007),
        ),
        case(
            "6.3.5",
            "a fragmented text ends inside a code point",
            cat(&[f(TEXT, &small), f(FIN | CONT, b"\xe2\x82")]),
            closed(1007),
        ),
        case(
            "6.3.6",
            "invalid UTF-8 in a binary frame is no UTF-8 matter",
            f(FIN | BINARY, b"\xff\xfe"),
            open(vec![Answer::Error("bad_request")]),
        ),
    ]);
    // 7 Close.
    let reason123 = vec![b'r'; 123];
    let reason124 = vec![b'r'; 124];
    c.extend([
        case(
            "7.1.1",
            "close 1000 is echoed",
            f(FIN | CLOSE, &close_payload(1000, b"")),
            closed(1000),
        ),
        case(
            "7.1.2",
            "close, then ping: nothing after the echo",
            cat(&[
                f(FIN | CLOSE, &close_payload(1000, b"")),
                f(FIN | PING, b"late"),
            ]),
            closed(1000),
        ),
        case(
            "7.1.3",
            "close, then text: nothing after the echo",
            cat(&[
                f(FIN | CLOSE, &close_payload(1000, b"")),
                f(FIN | TEXT, &small),
            ]),
            closed(1000),
        ),
        case(
            "7.1.4",
            "text, then close: the answer, then the echo",
            cat(&[
                f(FIN | TEXT, &small),
                f(FIN | CLOSE, &close_payload(1000, b"")),
            ]),
            closed_after(vec![json_pong()], 1000),
        ),
        case(
            "7.1.5",
            "close twice: one echo",
            cat(&[
                f(FIN | CLOSE, &close_payload(1000, b"")),
                f(FIN | CLOSE, &close_payload(1000, b"")),
            ]),
            closed(1000),
        ),
        case(
            "7.3.1",
            "close without payload",
            f(FIN | CLOSE, b""),
            closed(1000),
        ),
        case(
            "7.3.2",
            "close with a 1-byte payload",
            f(FIN | CLOSE, b"\x03"),
            closed(1002),
        ),
        case(
            "7.3.3",
            "close with a reason",
            f(FIN | CLOSE, &close_payload(1000, b"bye")),
            closed(1000),
        ),
        case(
            "7.3.4",
            "close with a 123-byte reason (125 bytes)",
            f(FIN | CLOSE, &close_payload(1000, &reason123)),
            closed(1000),
        ),
        case(
            "7.3.5",
            "close with a 124-byte reason (126 bytes)",
            f(FIN | CLOSE, &close_payload(1000, &reason124)),
            closed(1002),
        ),
        case(
            "7.3.6",
            "fragmented close",
            cat(&[f(CLOSE, &[0x03]), f(FIN | CONT, &[0xe8])]),
            closed(1002),
        ),
        case(
            "7.5.1",
            "close reason that is not UTF-8",
            f(
                FIN | CLOSE,
                &close_payload(
                    1000,
                    b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80",
                ),
            ),
            closed(1007),
        ),
    ]);
    for (i, code) in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
        4000, 4999,
    ]
    .into_iter()
    .enumerate()
    {
        let id: &'static str = Box::leak(format!("7.7.{}", i + 1).into_boxed_str());
        c.push(case(
            id,
            "valid close code: echoed",
            f(FIN | CLOSE, &close_payload(code, b"")),
            closed(code),
        ));
    }
    for (i, code) in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ]
    .into_iter()
    .enumerate()
    {
        let id: &'static str = Box::leak(format!("7.9.{}", i + 1).into_boxed_str());
        c.push(case(
            id,
            "invalid close code",
            f(FIN | CLOSE, &close_payload(code, b"")),
            closed(1002),
        ));
    }
    // 9 Limits: one rule for whole and fragmented messages, and a text the contract
    // accepts never costs the connection however JSON escapes it.
    let at_limit = ping_json(limit);
    let over_limit = ping_json(limit + 1);
    let cuts: Vec<usize> = (1..limit).step_by(1000).skip(1).collect();
    c.extend([
        case(
            "9.1.1",
            "text of exactly the frame limit",
            f(FIN | TEXT, &at_limit),
            open(vec![json_pong()]),
        ),
        case(
            "9.1.2",
            "the same bytes in fragments",
            fragments(TEXT, &at_limit, &cuts),
            open(vec![json_pong()]),
        ),
        case(
            "9.1.3",
            "one byte over the limit, whole",
            f(FIN | TEXT, &over_limit),
            closed(1009),
        ),
        case(
            "9.1.4",
            "one byte over the limit, in fragments",
            fragments(TEXT, &over_limit, &cuts),
            closed(1009),
        ),
        case(
            "9.1.5",
            "binary of exactly the limit",
            f(FIN | BINARY, &ping_msgpack(limit)),
            open(vec![json_pong()]),
        ),
        case(
            "9.1.6",
            "binary over the limit",
            f(FIN | BINARY, &ping_msgpack(limit + 1)),
            closed(1009),
        ),
        case(
            "9.1.7",
            "a header claiming 2^62 bytes is refused before any payload",
            long_header(FIN | BINARY, 1 << 62),
            closed(1009),
        ),
        case(
            "9.2.1",
            "'€'×1365 (4,095 bytes) escaped as json.dumps does",
            f(FIN | TEXT, &send_escaped(&"€".repeat(1365))),
            open(vec![Answer::Json("ack")]),
        ),
        case(
            "9.2.2",
            "'\\n'×4096 escaped",
            f(FIN | TEXT, &send_escaped(&"\n".repeat(4096))),
            open(vec![Answer::Json("ack")]),
        ),
        case(
            "9.2.3",
            "'\\u0001'×4096 escaped (6 bytes each)",
            f(FIN | TEXT, &send_escaped(&"\u{1}".repeat(4096))),
            open(vec![Answer::Json("ack")]),
        ),
        case(
            "9.2.4",
            "text of 4,096 ASCII bytes",
            f(FIN | TEXT, &send_escaped(&"a".repeat(4096))),
            open(vec![Answer::Json("ack")]),
        ),
        case(
            "9.2.5",
            "text one byte over: error too_large, the connection stays",
            f(FIN | TEXT, &send_escaped(&"a".repeat(4097))),
            open(vec![Answer::Error("too_large")]),
        ),
        case(
            "9.2.6",
            "'\\u0001'×4097 escaped: error too_large, connection stays",
            f(FIN | TEXT, &send_escaped(&"\u{1}".repeat(4097))),
            open(vec![Answer::Error("too_large")]),
        ),
        case(
            "9.2.7",
            "'€'×1366 escaped: error too_large, then a ping still works",
            cat(&[
                f(FIN | TEXT, &send_escaped(&"€".repeat(1366))),
                f(FIN | PING, b"still"),
            ]),
            open(vec![Answer::Error("too_large"), pong(b"still")]),
        ),
        case(
            "9.2.8",
            "'\\u0001'×4096 escaped, fragmented",
            fragments(
                TEXT,
                &send_escaped(&"\u{1}".repeat(4096)),
                &[5000, 10000, 20000],
            ),
            open(vec![Answer::Json("ack")]),
        ),
    ]);
    c
}

/// Frames the server sent: data frames as answers, until its close.
fn answer_of(head: u8, payload: &[u8]) -> Result<Answer, String> {
    match head {
        h if h == FIN | PONG => Ok(Answer::Pong(payload.to_vec())),
        h if h == FIN | TEXT => {
            let v: serde_json::Value = serde_json::from_slice(payload)
                .map_err(|e| format!("a text frame that is not JSON: {e}"))?;
            match v["type"].as_str() {
                Some("error") => Ok(Answer::Error(leak(v["code"].as_str().unwrap_or("?")))),
                Some(t) => Ok(Answer::Json(leak(t))),
                None => Err(format!("a JSON frame without type: {v}")),
            }
        }
        h => Err(format!(
            "an unexpected frame {h:#04x} ({} bytes)",
            payload.len()
        )),
    }
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

/// Runs one case on a fresh connection; `Err` says how the server got it wrong.
async fn run(addr: SocketAddr, n: usize, case: &Case) -> Result<(), String> {
    let mut ws = RawWs::open(addr).await?;
    let io = |e: std::io::Error| e.to_string();
    if case.connect {
        let connect = format!(r#"{{"type":"connect","user":"case{n}"}}"#);
        ws.write(&f(FIN | TEXT, connect.as_bytes()), None)
            .await
            .map_err(io)?;
        match ws.next_frame(WAIT).await? {
            Some((h, p)) if answer_of(h, &p) == Ok(Answer::Json("connected")) => {}
            other => return Err(format!("connect was answered with {other:?}")),
        }
    }
    ws.write(&case.bytes, case.chop).await.map_err(io)?;
    let (wanted, codes): (&[Answer], &[u16]) = match &case.want {
        Want::Open(a) => (a, &[1000]),
        Want::Closed(a, codes) => (a, codes),
    };
    let mut got = Vec::new();
    let mut sent_close = false;
    let close_code = loop {
        if matches!(case.want, Want::Open(_)) && got.len() == wanted.len() && !sent_close {
            ws.write(&f(FIN | CLOSE, &close_payload(1000, b"")), None)
                .await
                .map_err(io)?;
            sent_close = true;
        }
        let frame = ws
            .next_frame(WAIT)
            .await
            .map_err(|e| format!("{e}; answers so far {got:?}"))?;
        match frame {
            None => return Err(format!("TCP ended without a close frame; answers {got:?}")),
            Some((h, p)) if h == FIN | CLOSE => {
                break match p.len() {
                    0 => None,
                    1 => return Err("a close frame with a 1-byte payload".into()),
                    _ => Some(u16::from_be_bytes([p[0], p[1]])),
                };
            }
            Some((h, p)) => got.push(answer_of(h, &p)?),
        }
    };
    if got != wanted {
        return Err(format!("answers {got:?}, wanted {wanted:?}"));
    }
    // An empty close is answered in kind or with 1000.
    let code = close_code.unwrap_or(1000);
    if !codes.contains(&code) {
        return Err(format!("closed with {code}, wanted {codes:?}"));
    }
    // After its close the server sends nothing more, and ends TCP.
    match ws.next_frame(WAIT).await {
        Ok(None) => Ok(()),
        Ok(Some((h, p))) => Err(format!(
            "sent a frame {h:#04x} ({} bytes) after its close",
            p.len()
        )),
        Err(e) => Err(format!("TCP not closed after the close: {e}")),
    }
}

/// An opening handshake case: the request and what its answer must carry.
struct Handshake {
    id: &'static str,
    what: &'static str,
    request: String,
    status: u16,
    /// Headers the answer must carry (value compared without case).
    headers: Vec<(&'static str, &'static str)>,
    /// Headers it must not carry.
    absent: Vec<&'static str>,
    /// The contract's error code in a JSON body, for a refusal.
    error: Option<&'static str>,
}

fn handshakes(addr: SocketAddr) -> Vec<Handshake> {
    let req = |extra: &str, drop: &[&str]| raw::upgrade_request(addr, extra, drop);
    let h = |id, what, request, status, headers, error| Handshake {
        id,
        what,
        request,
        status,
        headers,
        absent: vec![],
        error,
    };
    let version = vec![("sec-websocket-version", "13")];
    vec![
        h(
            "H.1",
            "a valid upgrade: 101 with the RFC's accept value",
            req("", &[]),
            101,
            vec![
                ("upgrade", "websocket"),
                ("connection", "upgrade"),
                ("sec-websocket-accept", SAMPLE_ACCEPT),
            ],
            None,
        ),
        h(
            "H.2",
            "Sec-WebSocket-Version 8: 400 naming version 13",
            req("Sec-WebSocket-Version: 8\r\n", &["Sec-WebSocket-Version"]),
            400,
            version.clone(),
            Some("bad_request"),
        ),
        h(
            "H.3",
            "no Sec-WebSocket-Version: 400 naming version 13",
            req("", &["Sec-WebSocket-Version"]),
            400,
            version.clone(),
            Some("bad_request"),
        ),
        h(
            "H.4",
            "no Sec-WebSocket-Key",
            req("", &["Sec-WebSocket-Key"]),
            400,
            vec![],
            Some("bad_request"),
        ),
        h(
            "H.5",
            "a key of 10 bytes",
            req(
                "Sec-WebSocket-Key: dGhlIHNhbXBsZQ==\r\n",
                &["Sec-WebSocket-Key"],
            ),
            400,
            vec![],
            Some("bad_request"),
        ),
        h(
            "H.6",
            "a key that is not base64",
            req(
                "Sec-WebSocket-Key: not base64 at all!!!!!\r\n",
                &["Sec-WebSocket-Key"],
            ),
            400,
            vec![],
            Some("bad_request"),
        ),
        h(
            "H.7",
            "a key of 17 bytes",
            req(
                "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA=\r\n",
                &["Sec-WebSocket-Key"],
            ),
            400,
            vec![],
            Some("bad_request"),
        ),
        h(
            "H.8",
            "no Upgrade header: 426 naming websocket",
            req("", &["Upgrade"]),
            426,
            vec![("upgrade", "websocket")],
            Some("bad_request"),
        ),
        h(
            "H.9",
            "Upgrade to another protocol: 426",
            req("Upgrade: h2c\r\n", &["Upgrade"]),
            426,
            vec![("upgrade", "websocket")],
            Some("bad_request"),
        ),
        h(
            "H.10",
            "Connection without upgrade",
            req("Connection: keep-alive\r\n", &["Connection"]),
            400,
            vec![],
            Some("bad_request"),
        ),
        h(
            "H.11",
            "POST instead of GET",
            req("", &[]).replacen("GET", "POST", 1),
            405,
            vec![],
            Some("bad_request"),
        ),
        h(
            "H.12",
            "a forbidden Origin",
            req("Origin: https://evil.example\r\n", &[]),
            403,
            vec![],
            Some("forbidden"),
        ),
        h(
            "H.13",
            "the msgpack subprotocol is chosen",
            req("Sec-WebSocket-Protocol: chat.v1.msgpack\r\n", &[]),
            101,
            vec![("sec-websocket-protocol", "chat.v1.msgpack")],
            None,
        ),
        h(
            "H.14",
            "a key in lower-case header name, tokens in other case",
            req(
                "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n",
                &["Sec-WebSocket-Key", "Upgrade", "Connection"],
            ),
            101,
            vec![("sec-websocket-accept", SAMPLE_ACCEPT)],
            None,
        ),
        Handshake {
            absent: vec!["sec-websocket-extensions", "sec-websocket-protocol"],
            ..h(
                "H.15",
                "an offered extension and unknown subprotocol are not taken",
                req(
                    "Sec-WebSocket-Extensions: permessage-deflate\r\nSec-WebSocket-Protocol: mqtt\r\n",
                    &[],
                ),
                101,
                vec![],
                None,
            )
        },
    ]
}

async fn run_handshake(addr: SocketAddr, case: &Handshake) -> Result<(), String> {
    let mut ws = RawWs::connect(addr).await.map_err(|e| e.to_string())?;
    ws.write(case.request.as_bytes(), None)
        .await
        .map_err(|e| e.to_string())?;
    let answer = tokio::time::timeout(WAIT, ws.read_answer())
        .await
        .map_err(|_| "no answer".to_string())?
        .map_err(|e| e.to_string())?;
    let mut wrong = Vec::new();
    if answer.status != case.status {
        wrong.push(format!("status {}, wanted {}", answer.status, case.status));
    }
    for (name, value) in &case.headers {
        match answer.header(name) {
            Some(v) if v.eq_ignore_ascii_case(value) => {}
            other => wrong.push(format!("{name}: {other:?}, wanted {value}")),
        }
    }
    for name in &case.absent {
        if let Some(v) = answer.header(name) {
            wrong.push(format!("{name}: {v} should be absent"));
        }
    }
    if let Some(code) = case.error {
        let body: Option<serde_json::Value> = serde_json::from_slice(&answer.body).ok();
        let ok = body.as_ref().is_some_and(|b| {
            b["error"]["code"] == code
                && b["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
        });
        if !ok {
            wrong.push(format!(
                "body {:?}, wanted {{\"error\":{{\"code\":\"{code}\",\"message\":…}}}}",
                String::from_utf8_lossy(&answer.body)
            ));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}

/// Runs every case against the server at `addr`; panics listing each failure.
async fn conformance(addr: SocketAddr, deployment: &str) {
    let cases = cases();
    let frame_results: Vec<(String, Result<(), String>)> =
        futures_util::stream::iter(cases.iter().enumerate())
            .map(|(n, c)| async move {
                let r = tokio::time::timeout(WAIT * 4, run(addr, n, c))
                    .await
                    .unwrap_or_else(|_| Err("the case hung".into()));
                (format!("{} {}", c.id, c.what), r)
            })
            .buffer_unordered(8)
            .collect()
            .await;
    let mut results = frame_results;
    for h in handshakes(addr) {
        let r = run_handshake(addr, &h).await;
        results.push((format!("{} {}", h.id, h.what), r));
    }
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(name, r)| r.as_ref().err().map(|e| format!("  {name}: {e}")))
        .collect();
    println!(
        "rfc6455: {} passed, {} failed ({deployment})",
        results.len() - failed.len(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "rfc6455 ({deployment}), {} of {} cases failed:\n{}",
        failed.len(),
        results.len(),
        failed.join("\n")
    );
}

#[test]
fn python_json_dumps_escaping_is_what_the_limit_cases_send() {
    assert_eq!(
        py_json_string("€\n\u{1}a\"😀"),
        r#""\u20ac\n\u0001a\"\ud83d\ude00""#
    );
    // 1365 '€' (4,095 bytes of text) are a frame larger than 8,192 bytes once escaped.
    assert!(send_escaped(&"€".repeat(1365)).len() > 8192);
    assert_eq!(ping_json(300).len(), 300);
    assert_eq!(ping_msgpack(300).len(), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_realtime_follows_rfc6455() {
    let redis = RedisServer::start();
    let addr = Topology::builder().realtime(&redis.url()).await.addr;
    conformance(addr, "chat-realtime").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_follows_rfc6455() {
    let addr = Topology::builder().chat(None).await.addr;
    conformance(addr, "chat").await;
}

#[tokio::test]
async fn an_upgrade_past_the_ip_limit_is_refused_with_the_json_body_too() {
    let addr = Topology::builder()
        .options(|o| o.limits.max_connections_per_ip = 1)
        .chat(None)
        .await
        .addr;
    let _held = RawWs::open(addr).await.unwrap();
    let refused = Handshake {
        id: "H.16",
        what: "a second connection from one IP past its limit of 1",
        request: raw::upgrade_request(addr, "", &[]),
        status: 429,
        headers: vec![],
        absent: vec![],
        error: Some("rate_limited"),
    };
    run_handshake(addr, &refused).await.unwrap();
}
