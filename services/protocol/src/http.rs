//! Bodies of the HTTP routes (PROTOCOL.md §4).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{ErrorCode, Message, ProtocolError};

/// Decodes a request body: MessagePack when the client said
/// `Content-Type: application/msgpack`, JSON otherwise.
pub fn decode_body<T: DeserializeOwned>(bytes: &[u8], msgpack: bool) -> Result<T, ProtocolError> {
    if msgpack {
        crate::codec::from_msgpack(bytes)
            .map_err(|e| ProtocolError::bad_request(format!("malformed MessagePack body: {e}")))
    } else {
        serde_json::from_slice(bytes)
            .map_err(|e| ProtocolError::bad_request(format!("malformed JSON body: {e}")))
    }
}

/// `POST /chat/send`: the original proof-of-concept contract.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChatSendRequest {
    pub sender: String,
    /// A room, or `@user` for a direct message.
    pub receiver: String,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub event: ChatSendEvent,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChatSendEvent {
    #[default]
    Message,
    Join,
    Leave,
}

/// `POST /v1/rooms/{room}/messages` and `POST /v1/users/{user}/messages`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PublishRequest {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cid: Option<String>,
    /// Only with a server API key: who the message is from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PublishResponse {
    pub room: String,
    pub seq: u64,
    pub epoch: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<u64>,
}

/// `GET /v1/rooms/{room}/messages`
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Messages with a seq greater than this, ascending.
    pub since: Option<u64>,
    /// Messages with a seq smaller than this, newest first.
    pub before: Option<u64>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HistoryResponse {
    pub room: String,
    pub epoch: String,
    /// The channel's head: the seq of its newest message.
    pub seq: u64,
    pub messages: Vec<Message>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PresenceResponse {
    pub room: String,
    pub users: Vec<String>,
}

/// `POST /v1/rooms/{room}/members`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MemberRequest {
    pub user: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DevTokenRequest {
    pub user: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DevTokenResponse {
    pub token: String,
}

/// Every HTTP error: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
}
