//! Bodies: JSON for humans, MessagePack when `Content-Type: application/msgpack`; answers
//! in MessagePack when `Accept: application/msgpack`.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chat_protocol::{Encoding, ProtocolError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ApiError;

pub const MSGPACK: &str = "application/msgpack";

/// The largest body any route takes: a message's text plus its envelope.
const MAX_BODY: usize = 1 << 20;

fn wants(headers: &HeaderMap, name: header::HeaderName) -> bool {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(MSGPACK))
}

/// A request body decoded by its `Content-Type`.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let msgpack = wants(req.headers(), header::CONTENT_TYPE);
        let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY)
            .await
            .map_err(|_| ProtocolError::too_large(format!("body over {MAX_BODY} bytes")))?;
        Ok(Body(chat_protocol::http::decode_body(&bytes, msgpack)?))
    }
}

/// The encoding the client asked answers in.
#[derive(Clone, Copy)]
pub struct Accept(pub Encoding);

impl<S: Send + Sync> FromRequestParts<S> for Accept {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Accept(if wants(&parts.headers, header::ACCEPT) {
            Encoding::MsgPack
        } else {
            Encoding::Json
        }))
    }
}

impl Accept {
    pub fn reply<T: Serialize>(self, status: StatusCode, value: &T) -> Response {
        let content_type = match self.0 {
            Encoding::Json => "application/json",
            Encoding::MsgPack => MSGPACK,
        };
        (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
            self.0.encode(value),
        )
            .into_response()
    }
}
