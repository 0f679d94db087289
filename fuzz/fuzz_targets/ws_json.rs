//! A WebSocket text frame, as `chat-realtime` / `chat` decode it (JSON). The same bytes
//! also go through `decode_server`, the decoder of the web client's and the load
//! tester's side. Any input must give `Ok` or `Err`, never a panic.
#![no_main]

use chat_protocol::codec::{decode_client, decode_server};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_client(data, false);
    let _ = decode_server(data, false);
});
