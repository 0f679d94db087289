//! Round trip: whatever decodes, as a JSON text frame or a MessagePack binary frame,
//! encodes again with `serde_json` and `rmp_serde::to_vec_named` (what the servers and
//! clients use) and decodes back to an equal value, in both encodings.
//!
//! Checked for client frames (`decode_client`, the contract's client → server side) and
//! for server frames (`decode_server`, the web client's and load tester's side).
#![no_main]

use chat_protocol::codec::{decode_client, decode_server};
use chat_protocol::{ClientFrame, ServerFrame};
use libfuzzer_sys::fuzz_target;

fn client(frame: ClientFrame) {
    let json = serde_json::to_vec(&frame).expect("a decoded client frame serializes to JSON");
    let back = decode_client(&json, false).expect("re-encoded JSON client frame decodes");
    assert_eq!(back, frame, "JSON round trip of a client frame");

    let mp =
        rmp_serde::to_vec_named(&frame).expect("a decoded client frame serializes to MessagePack");
    let back = decode_client(&mp, true).expect("re-encoded MessagePack client frame decodes");
    assert_eq!(back, frame, "MessagePack round trip of a client frame");
}

fn server(frame: ServerFrame) {
    let json = serde_json::to_vec(&frame).expect("a decoded server frame serializes to JSON");
    let back = decode_server(&json, false).expect("re-encoded JSON server frame decodes");
    assert_eq!(back, frame, "JSON round trip of a server frame");

    let mp =
        rmp_serde::to_vec_named(&frame).expect("a decoded server frame serializes to MessagePack");
    let back = decode_server(&mp, true).expect("re-encoded MessagePack server frame decodes");
    assert_eq!(back, frame, "MessagePack round trip of a server frame");
}

fuzz_target!(|data: &[u8]| {
    for binary in [false, true] {
        if let Ok(frame) = decode_client(data, binary) {
            client(frame);
        }
        if let Ok(frame) = decode_server(data, binary) {
            server(frame);
        }
    }
});
