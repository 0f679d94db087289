//! `GET /ws`: the upgrade request checked (RFC 6455 handshake, `Origin`, draining, the
//! per-IP limit) and refused with the contract's JSON error body, or upgraded and
//! handed to [`connection::serve`](crate::connection::serve) as a tracked task.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use axum::routing::any;
use chat_protocol::{Encoding, ErrorCode};
use fastwebsockets::upgrade::IncomingUpgrade;

use crate::{Realtime, connection, handshake};

/// `GET /ws`; any other method gets 405 with the JSON error body.
pub fn router(rt: Arc<Realtime>) -> Router {
    Router::new().route("/ws", any(upgrade)).with_state(rt)
}

/// The peer's IP, when the server was started with connect info.
pub struct PeerIp(Option<std::net::IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PeerIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(PeerIp(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// A refused upgrade: the contract's JSON error body (the one every answer uses).
fn refuse(code: ErrorCode, message: &str) -> Response {
    let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    chat_telemetry::json_errors::error(status, code, message)
}

/// A request that is no valid WebSocket handshake: `bad_request`, with the status and
/// headers RFC 6455 asks for.
fn refuse_handshake(refusal: handshake::Refusal) -> Response {
    let mut response = refuse(ErrorCode::BadRequest, refusal.message());
    *response.status_mut() = refusal.status();
    for (name, value) in refusal.headers() {
        response
            .headers_mut()
            .insert(name.clone(), HeaderValue::from_static(value));
    }
    response
}

async fn upgrade(
    State(rt): State<Arc<Realtime>>,
    PeerIp(ip): PeerIp,
    method: Method,
    headers: HeaderMap,
    incoming: Result<IncomingUpgrade, StatusCode>,
) -> Response {
    if rt.is_draining() {
        return refuse(
            ErrorCode::Unavailable,
            "draining: connect to another replica",
        );
    }
    if let Err(refusal) = handshake::check(&method, &headers) {
        return refuse_handshake(refusal);
    }
    // The headers were checked: only a connection hyper cannot upgrade is left.
    let Ok(incoming) = incoming else {
        return refuse_handshake(handshake::Refusal::NotUpgradable);
    };
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    // A page served by this very host (the web client of `chat`) is always allowed.
    let same_origin = match (origin, host) {
        (Some(o), Some(h)) => o
            .split_once("://")
            .is_some_and(|(_, authority)| authority == h),
        _ => false,
    };
    if !same_origin && !rt.auth.origin_allowed(origin) {
        rt.limit_hit("origin");
        return refuse(
            ErrorCode::Forbidden,
            "this Origin may not open WebSockets here",
        );
    }
    let ip = ip.map(|peer| {
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok());
        rt.limits.trusted_proxies.client_ip(peer, forwarded)
    });
    let slot = match ip {
        Some(ip) => match rt.claim_ip(ip) {
            Some(slot) => Some(slot),
            None => {
                rt.limit_hit("connections_per_ip");
                return refuse(
                    ErrorCode::RateLimited,
                    "too many connections from this address",
                );
            }
        },
        None => None,
    };
    let offer = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok());
    let (encoding, subprotocol) = Encoding::negotiate(offer);
    let (mut response, fut) = match incoming.upgrade() {
        Ok(r) => r,
        Err(e) => return refuse(ErrorCode::BadRequest, &e.to_string()),
    };
    if let Some(p) = subprotocol {
        response
            .headers_mut()
            .insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
    }
    // Tracked: the drain waits for the connection to end.
    let shutdown = rt.shutdown.clone();
    shutdown.track(async move {
        match fut.await {
            // A task of its own: a task's memory is its largest state, and this one's
            // includes the handshake's, which every idle connection would hold.
            Ok(ws) => {
                let tracker = rt.shutdown.clone();
                tracker.track(async move {
                    let _slot = slot;
                    connection::serve(rt, ws.into_inner(), encoding).await
                });
            }
            Err(e) => tracing::debug!(error = %e, "upgrade failed"),
        }
    });
    response.map(axum::body::Body::new)
}
