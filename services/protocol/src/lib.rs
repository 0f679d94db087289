//! Chat protocol v1: everything a client, a server and a test agree on, without I/O.
//!
//! - [`names`]: user ids, room names and the channels they make (`general`, `@alice`).
//! - [`frames`]: the WebSocket frames, client to server and server to client.
//! - [`http`]: the bodies of the HTTP routes.
//! - [`codec`]: JSON and MessagePack encodings, and the frame-size and text-size checks
//!   ([`codec::TextLimit`], `CHAT_MAX_MESSAGE_BYTES`).
//! - [`error`]: the contract's error codes, one enum for frames and HTTP alike.
//! - [`rate`]: the token bucket behind every `rate_limited`.
//! - [`settings`]: a config's defaults, read back from its declared settings.

pub mod codec;
pub mod error;
pub mod frames;
pub mod http;
pub mod names;
pub mod rate;
pub mod settings;

pub use codec::Encoding;
pub use error::{ErrorCode, ProtocolError};
pub use frames::{ClientFrame, Message, ServerFrame, Since};
pub use names::Channel;

/// Milliseconds since the Unix epoch: the `ts` of every message.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
