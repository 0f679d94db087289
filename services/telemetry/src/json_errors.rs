//! The answers a router gives on its own, outside any handler: an unknown path and a
//! known path with the wrong method. The contract says every error body is the JSON
//! `{"error": {code, message}}`; axum's defaults are empty bodies.

use axum::Json;
use axum::Router;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chat_protocol::ErrorCode;
use chat_protocol::http::{ErrorBody, ErrorDetail};

/// The contract's error answer: `status` with `code` and `message`.
pub fn error(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code,
            message: message.into(),
        },
    };
    (status, Json(body)).into_response()
}

/// Every unknown path answers 404 `not_found`, every wrong method 405 `bad_request`
/// (axum still adds the `Allow` header), both with the JSON body. Call it on the
/// finished router: it covers the routes registered so far.
pub fn with_json_errors(router: Router) -> Router {
    router
        .fallback(|uri: Uri| async move {
            error(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                format!("no such route: {}", uri.path()),
            )
        })
        .method_not_allowed_fallback(|method: Method, uri: Uri| async move {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::BadRequest,
                format!("{method} is not allowed on {}", uri.path()),
            )
        })
}
