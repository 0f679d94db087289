//! The WebSocket frames of PROTOCOL.md §3. Every frame is a map with a string `type`;
//! unknown fields are ignored, so clients may add their own.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ErrorCode;

/// Where a client stopped: it has seen every message of a channel up to `seq` in `epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Since {
    pub epoch: String,
    pub seq: u64,
}

/// Client → server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    Connect {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<Since>,
    },
    Join {
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<Since>,
    },
    Leave {
        room: String,
    },
    Send {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cid: Option<String>,
    },
    Typing {
        room: String,
    },
    Ping,
}

/// A stored message: the `message` frame, and an item of history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Message {
    /// The channel: a room name or `@user`.
    pub room: String,
    pub seq: u64,
    pub epoch: String,
    pub from: String,
    pub text: String,
    /// Milliseconds since the Unix epoch, set by the server that stored it.
    pub ts: u64,
    /// The receiver of a direct message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cid: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceEvent {
    Join,
    Leave,
}

/// Server → client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Connected {
        user: String,
        conn: String,
        channel: String,
        epoch: String,
        seq: u64,
        /// With `since` only: how many recovered messages of the personal channel follow.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        missed: Option<u64>,
        /// With `since` only: every message after `since` follows.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
    },
    Joined {
        room: String,
        epoch: String,
        seq: u64,
        missed: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
    },
    Left {
        room: String,
    },
    Message(Message),
    Ack {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cid: Option<String>,
        room: String,
        seq: u64,
    },
    Presence {
        room: String,
        user: String,
        event: PresenceEvent,
    },
    Typing {
        room: String,
        user: String,
    },
    Reconnect {
        after_ms: u64,
    },
    Pong,
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cid: Option<String>,
    },
}

impl ServerFrame {
    pub fn error(err: &crate::ProtocolError, cid: Option<String>) -> Self {
        ServerFrame::Error {
            code: err.code,
            message: err.message.clone(),
            cid,
        }
    }
}
