//! An HTTP request body as the gateway decodes it with
//! `Content-Type: application/msgpack` (MessagePack), for every request body type. Any input
//! must give `Ok` or `Err`, never a panic; a body that decodes must serialize again.
#![no_main]

use chat_protocol::http::{
    ChatSendRequest, DevTokenRequest, MemberRequest, PublishRequest, decode_body,
};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

fn check<T: DeserializeOwned + Serialize>(data: &[u8]) {
    if let Ok(body) = decode_body::<T>(data, true) {
        rmp_serde::to_vec_named(&body).expect("a decoded body serializes to MessagePack");
    }
}

fuzz_target!(|data: &[u8]| {
    check::<ChatSendRequest>(data);
    check::<PublishRequest>(data);
    check::<MemberRequest>(data);
    check::<DevTokenRequest>(data);
});
