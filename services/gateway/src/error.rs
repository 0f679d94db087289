//! Every failure answers `{"error": {"code": "...", "message": "..."}}` with the status
//! that matches the code.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chat_protocol::http::{ErrorBody, ErrorDetail};
use chat_protocol::{ErrorCode, ProtocolError};

#[derive(Debug)]
pub struct ApiError(pub ProtocolError);

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self(ProtocolError::new(code, message))
    }
}

impl<E: Into<ProtocolError>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.0.code,
                message: self.0.message,
            },
        };
        // The code rides along for the `chat_errors_total` count in the route layer.
        let code = body.error.code;
        let mut response = (status, Json(body)).into_response();
        response.extensions_mut().insert(code);
        response
    }
}
