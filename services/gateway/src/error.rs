//! Every failure answers `{"error": {"code": "...", "message": "..."}}` with the status
//! that matches the code.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chat_protocol::http::{ErrorBody, ErrorDetail};
use chat_protocol::{ErrorCode, ProtocolError};

#[derive(Debug)]
pub struct ApiError {
    pub error: ProtocolError,
    /// Seconds for `Retry-After` (a 429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ProtocolError::new(code, message).into()
    }

    /// 429 `rate_limited`, with the seconds after which a retry is let through.
    pub fn rate_limited(retry_after: u64, message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(ErrorCode::RateLimited, message)
        }
    }
}

impl<E: Into<ProtocolError>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError {
            error: e.into(),
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.error.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.error.code,
                message: self.error.message,
            },
        };
        // The code rides along for the `chat_errors_total` count in the route layer.
        let code = body.error.code;
        let mut response = (status, Json(body)).into_response();
        response.extensions_mut().insert(code);
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
