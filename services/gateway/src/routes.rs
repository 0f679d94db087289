//! The HTTP routes of PROTOCOL.md §4 and the OpenAPI document generated from them.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use chat_auth::Principal;
use chat_engine::publish::{self, Outgoing};
use chat_engine::{Control, Range};
use chat_protocol::http::{
    ChatSendEvent, ChatSendRequest, DevTokenRequest, DevTokenResponse, ErrorBody, HistoryQuery,
    HistoryResponse, MemberRequest, PresenceResponse, PublishRequest, PublishResponse,
};
use chat_protocol::names::{validate_room, validate_user};
use chat_protocol::{Channel, ErrorCode, Message};
use tracing::Instrument;
use utoipa::OpenApi;

use crate::body::{Accept, Body};
use crate::{ApiError, Gateway};

type Result<T, E = ApiError> = std::result::Result<T, E>;

pub fn router(gw: Arc<Gateway>) -> Router {
    let metrics = gw.metrics.clone();
    Router::new()
        .route("/chat/send", post(chat_send))
        .route("/v1/rooms/{room}/messages", post(publish_room).get(history))
        .route("/v1/users/{user}/messages", post(publish_direct))
        .route("/v1/rooms/{room}/presence", get(presence))
        .route("/v1/rooms/{room}/members", post(add_member))
        .route("/v1/rooms/{room}/members/{user}", delete(remove_member))
        .route("/v1/auth/dev-token", post(dev_token))
        .route("/openapi.json", get(openapi))
        .route_layer(middleware::from_fn(move |req: Request, next: Next| {
            let metrics = metrics.clone();
            async move {
                let route = req
                    .extensions()
                    .get::<MatchedPath>()
                    .map(|m| m.as_str().to_owned())
                    .unwrap_or_else(|| "unmatched".into());
                let span = chat_telemetry::trace::http_span(req.method(), &route, req.headers());
                let request_id = request_id(req.headers());
                let start = Instant::now();
                let mut response = next.run(req).instrument(span.clone()).await;
                if let Ok(value) = header::HeaderValue::from_str(&request_id) {
                    response.headers_mut().insert(REQUEST_ID, value);
                }
                span.record("http.response.status_code", response.status().as_u16());
                metrics
                    .http_requests
                    .with_label_values(&[route.as_str(), response.status().as_str()])
                    .inc();
                metrics
                    .http_duration
                    .with_label_values(&[route.as_str()])
                    .observe(start.elapsed().as_secs_f64());
                if let Some(code) = response.extensions().get::<ErrorCode>() {
                    metrics.errors.with_label_values(&[code.as_str()]).inc();
                }
                response
            }
        }))
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such route") })
        .with_state(gw)
}

const REQUEST_ID: header::HeaderName = header::HeaderName::from_static("x-request-id");

/// The caller's `X-Request-Id` when it is a sane one (1 to 128 of `A-Z a-z 0-9 . _ : -`),
/// else a new one: every answer carries it, so a caller can quote it in a report.
fn request_id(headers: &HeaderMap) -> String {
    let given = headers.get(&REQUEST_ID).and_then(|v| v.to_str().ok());
    match given {
        Some(id)
            if (1..=128).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b)) =>
        {
            id.to_owned()
        }
        _ => chat_engine::epoch::new_epoch(),
    }
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

fn principal(gw: &Gateway, headers: &HeaderMap) -> Result<Principal> {
    Ok(gw.auth.principal(authorization(headers))?)
}

// Handlers take their path, query and body as `Result`s and open them only after
// authentication: a request without credentials answers 401 whatever else is wrong.

/// A path parameter that did not decode (bad percent-encoding, not UTF-8).
fn path_of<T>(path: std::result::Result<Path<T>, PathRejection>) -> Result<T> {
    path.map(|Path(p)| p)
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))
}

/// A query string that does not parse, said in the API's words rather than serde's.
fn query_of<T>(query: std::result::Result<Query<T>, QueryRejection>) -> Result<T> {
    query.map(|Query(q)| q).map_err(|e| {
        let text = e.body_text();
        let why = text
            .strip_prefix("Failed to deserialize query string: ")
            .unwrap_or(&text);
        ApiError::new(
            ErrorCode::BadRequest,
            format!("bad query string ({why}): use ?since=SEQ or ?before=SEQ, and limit=1..1000"),
        )
    })
}

fn body_of<T>(body: Result<Body<T>>) -> Result<T> {
    body.map(|Body(b)| b)
}

/// The user a publish is from: a user publishes only as themselves; a backend with an
/// API key names anyone.
fn publisher(principal: &Principal, claimed: Option<&str>) -> Result<String> {
    match (principal, claimed) {
        (Principal::User(u), Some(from)) if from != u.id => Err(ApiError::new(
            ErrorCode::Forbidden,
            "a user publishes only as themselves",
        )),
        (Principal::User(u), _) => Ok(u.id.clone()),
        (Principal::Server, Some(from)) => {
            validate_user(from)?;
            Ok(from.to_owned())
        }
        (Principal::Server, None) => Err(ApiError::new(
            ErrorCode::BadRequest,
            "with an API key, say who the message is from",
        )),
    }
}

/// Spends one publish from the user's budget; a server API key is not limited.
fn spend_publish(gw: &Gateway, user: Option<&str>) -> Result<()> {
    let Some(user) = user else { return Ok(()) };
    gw.publish_limiter
        .check(user, Instant::now())
        .map_err(|wait| {
            let secs = crate::rate::retry_after_secs(wait);
            ApiError::rate_limited(
                secs,
                format!(
                    "{user} publishes too fast for this gateway (CHAT_HTTP_RATE_LIMIT_PER_SEC): retry after {secs} s"
                ),
            )
        })
}

/// Whose budget a publish spends: the user's own, none for a server API key.
fn limited_user(principal: &Principal) -> Option<&str> {
    match principal {
        Principal::User(u) => Some(&u.id),
        Principal::Server => None,
    }
}

fn check_access(principal: &Principal, channel: &Channel) -> Result<()> {
    match principal {
        Principal::User(u) if !u.may_access(channel) => Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("not allowed on {channel}"),
        )),
        _ => Ok(()),
    }
}

fn require_server(principal: &Principal) -> Result<()> {
    match principal {
        Principal::Server => Ok(()),
        Principal::User(_) => Err(ApiError::new(
            ErrorCode::Forbidden,
            "needs a server API key",
        )),
    }
}

/// Publishes through the one publish path (the text check, the direct-message rule),
/// carrying the request's trace context to every replica.
async fn publish(
    gw: &Gateway,
    channel: &Channel,
    from: String,
    text: String,
    cid: Option<String>,
) -> Result<Message> {
    let out = Outgoing {
        channel,
        from,
        text,
        cid,
        trace: chat_telemetry::trace::context_of_current(),
    };
    let m = publish::publish(&gw.engine, out, gw.max_message_bytes, |took| {
        gw.metrics.observe_publish(took)
    })
    .await?;
    gw.metrics.count_published("http");
    Ok(m)
}

fn published(accept: Accept, m: &Message, with_ts: bool) -> Response {
    accept.reply(
        StatusCode::CREATED,
        &PublishResponse {
            room: m.room.clone(),
            seq: m.seq,
            epoch: m.epoch.clone(),
            ts: with_ts.then_some(m.ts),
        },
    )
}

/// What a 429 on a publish means.
const RATE_LIMITED: &str = "rate_limited: this user publishes faster than the gateway's \
    per-user budget (CHAT_HTTP_RATE_LIMIT_PER_SEC, CHAT_HTTP_RATE_LIMIT_BURST); retry after \
    Retry-After seconds. Server API keys are not limited";

/// What a 503 on a publish means (docs/PROTOCOL.md).
const UNCONFIRMED: &str = "unavailable: the store could not confirm the publish. Usually \
    nothing was stored, but a publish whose answer was lost may be: before retrying, \
    look for your own message with this cid";

/// The original proof-of-concept route: publish, or move the sender's connections.
#[utoipa::path(post, path = "/chat/send", request_body = ChatSendRequest,
    responses(
        (status = 201, description = "message stored and published", body = PublishResponse),
        (status = 202, description = "join/leave sent to the sender's connections"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, description = "join/leave: the sender has no live connection", body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 429, description = RATE_LIMITED, body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds until a publish is let through"))),
        (status = 503, description = UNCONFIRMED, body = ErrorBody),
    ))]
async fn chat_send(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    accept: Accept,
    body: Result<Body<ChatSendRequest>>,
) -> Result<Response> {
    // Dev mode lets anyone post; otherwise a backend key, or a user as themselves.
    let principal = if gw.auth.dev_mode && authorization(&headers).is_none() {
        None
    } else {
        Some(principal(&gw, &headers)?)
    };
    let req = body_of(body)?;
    validate_user(&req.sender)?;
    let channel = Channel::parse(&req.receiver)?;
    match &principal {
        Some(principal) => {
            publisher(principal, Some(&req.sender))?;
            check_access(principal, &channel)?;
        }
        // Unauthenticated in dev mode, the sender may post where its dev-mode WebSocket
        // may join: no `private-*` room (direct messages go to anyone).
        None if matches!(channel, Channel::Room(_)) => check_access(
            &Principal::User(chat_auth::User::named(&req.sender)),
            &channel,
        )?,
        None => {}
    }
    // Unauthenticated (dev mode), the sender's name is the only identity there is.
    spend_publish(
        &gw,
        principal
            .as_ref()
            .map_or(Some(req.sender.as_str()), limited_user),
    )?;
    match req.event {
        ChatSendEvent::Message => {
            let m = publish(&gw, &channel, req.sender, req.text, None).await?;
            Ok(published(accept, &m, false))
        }
        event => {
            let Channel::Room(room) = channel else {
                return Err(ApiError::new(
                    ErrorCode::BadRequest,
                    "join and leave take a room",
                ));
            };
            // A 202 for a sender with no connection would tell the caller something
            // happened when nothing did.
            if !gw.engine.is_connected(&req.sender).await? {
                return Err(ApiError::new(
                    ErrorCode::NotFound,
                    format!(
                        "{} has no live connection: nothing to move (connect a WebSocket as {} first)",
                        req.sender, req.sender
                    ),
                ));
            }
            let control = if event == ChatSendEvent::Join {
                Control::Join {
                    user: req.sender,
                    room,
                }
            } else {
                Control::Leave {
                    user: req.sender,
                    room,
                }
            };
            gw.engine.publish_control(&control).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
    }
}

/// Publish to a room.
#[utoipa::path(post, path = "/v1/rooms/{room}/messages", request_body = PublishRequest,
    params(("room" = String, Path, description = "room name")),
    responses(
        (status = 201, body = PublishResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 429, description = RATE_LIMITED, body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds until a publish is let through"))),
        (status = 503, description = UNCONFIRMED, body = ErrorBody),
    ))]
async fn publish_room(
    State(gw): State<Arc<Gateway>>,
    room: std::result::Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    accept: Accept,
    body: Result<Body<PublishRequest>>,
) -> Result<Response> {
    let principal = principal(&gw, &headers)?;
    let channel = Channel::room(&path_of(room)?)?;
    let req = body_of(body)?;
    let from = publisher(&principal, req.from.as_deref())?;
    check_access(&principal, &channel)?;
    spend_publish(&gw, limited_user(&principal))?;
    let m = publish(&gw, &channel, from, req.text, req.cid).await?;
    Ok(published(accept, &m, true))
}

/// Send a direct message; it is stored on `@user` and on the sender's own channel.
#[utoipa::path(post, path = "/v1/users/{user}/messages", request_body = PublishRequest,
    params(("user" = String, Path, description = "receiver's user id")),
    responses(
        (status = 201, body = PublishResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 429, description = RATE_LIMITED, body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds until a publish is let through"))),
        (status = 503, description = UNCONFIRMED, body = ErrorBody),
    ))]
async fn publish_direct(
    State(gw): State<Arc<Gateway>>,
    user: std::result::Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    accept: Accept,
    body: Result<Body<PublishRequest>>,
) -> Result<Response> {
    let principal = principal(&gw, &headers)?;
    let channel = Channel::user(&path_of(user)?)?;
    let req = body_of(body)?;
    let from = publisher(&principal, req.from.as_deref())?;
    spend_publish(&gw, limited_user(&principal))?;
    let m = publish(&gw, &channel, from, req.text, req.cid).await?;
    Ok(published(accept, &m, true))
}

pub(crate) const DEFAULT_LIMIT: usize = 100;
pub(crate) const MAX_LIMIT: usize = 1000;

/// Read history: `since` pages forward (ascending), `before` pages back (newest first).
#[utoipa::path(get, path = "/v1/rooms/{room}/messages",
    params(("room" = String, Path, description = "room name, or @user for your own channel"), HistoryQuery),
    responses(
        (status = 200, body = HistoryResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
async fn history(
    State(gw): State<Arc<Gateway>>,
    room: std::result::Result<Path<String>, PathRejection>,
    query: std::result::Result<Query<HistoryQuery>, QueryRejection>,
    headers: HeaderMap,
    accept: Accept,
) -> Result<Response> {
    let principal = principal(&gw, &headers)?;
    let room = path_of(room)?;
    let channel = Channel::parse(&room)?;
    let q = query_of(query)?;
    check_access(&principal, &channel)?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("limit must be 1 to {MAX_LIMIT}"),
        ));
    }
    let range = match (q.since, q.before) {
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                "use since or before, not both",
            ));
        }
        (Some(seq), None) => Range::After { seq, limit },
        (None, before) => Range::Before { seq: before, limit },
    };
    let h = chat_telemetry::timed(
        &gw.metrics.history_read_duration,
        gw.engine.history(&room, range),
    )
    .await?;
    Ok(accept.reply(
        StatusCode::OK,
        &HistoryResponse {
            room,
            epoch: h.head.epoch,
            seq: h.head.seq,
            messages: h.messages,
        },
    ))
}

/// Who is online in a room: users with at least one live connection in it.
#[utoipa::path(get, path = "/v1/rooms/{room}/presence",
    params(("room" = String, Path, description = "room name")),
    responses(
        (status = 200, body = PresenceResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
async fn presence(
    State(gw): State<Arc<Gateway>>,
    room: std::result::Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    accept: Accept,
) -> Result<Response> {
    let principal = principal(&gw, &headers)?;
    let room = path_of(room)?;
    let channel = Channel::room(&room)?;
    check_access(&principal, &channel)?;
    let users = gw.engine.presence().list(&room).await?;
    Ok(accept.reply(StatusCode::OK, &PresenceResponse { room, users }))
}

/// Server-side join: every live connection of the user joins the room (API key).
#[utoipa::path(post, path = "/v1/rooms/{room}/members", request_body = MemberRequest,
    params(("room" = String, Path, description = "room name")),
    responses((status = 202), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn add_member(
    State(gw): State<Arc<Gateway>>,
    room: std::result::Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Body<MemberRequest>>,
) -> Result<StatusCode> {
    require_server(&principal(&gw, &headers)?)?;
    let room = path_of(room)?;
    validate_room(&room)?;
    let req = body_of(body)?;
    validate_user(&req.user)?;
    gw.engine
        .publish_control(&Control::Join {
            user: req.user,
            room,
        })
        .await?;
    Ok(StatusCode::ACCEPTED)
}

/// Server-side leave (API key).
#[utoipa::path(delete, path = "/v1/rooms/{room}/members/{user}",
    params(("room" = String, Path, description = "room name"), ("user" = String, Path, description = "user id")),
    responses((status = 202), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn remove_member(
    State(gw): State<Arc<Gateway>>,
    path: std::result::Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<StatusCode> {
    require_server(&principal(&gw, &headers)?)?;
    let (room, user) = path_of(path)?;
    validate_room(&room)?;
    validate_user(&user)?;
    gw.engine
        .publish_control(&Control::Leave { user, room })
        .await?;
    Ok(StatusCode::ACCEPTED)
}

/// A user token for anyone (dev mode only; 404 otherwise).
#[utoipa::path(post, path = "/v1/auth/dev-token", request_body = DevTokenRequest,
    responses((status = 200, body = DevTokenResponse), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn dev_token(
    State(gw): State<Arc<Gateway>>,
    accept: Accept,
    body: Result<Body<DevTokenRequest>>,
) -> Result<Response> {
    if !gw.auth.dev_mode {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "dev tokens need CHAT_DEV_MODE=true",
        ));
    }
    let req = body_of(body)?;
    validate_user(&req.user)?;
    let token = gw.auth.issue_token(&req.user)?;
    Ok(accept.reply(StatusCode::OK, &DevTokenResponse { token }))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Chat API",
        description = "HTTP API of chat protocol v1 (PROTOCOL.md §4)."
    ),
    paths(
        chat_send,
        publish_room,
        publish_direct,
        history,
        presence,
        add_member,
        remove_member,
        dev_token
    )
)]
pub struct ApiDoc;

/// The document with this server's limits (the text limit is a setting).
async fn openapi(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> impl IntoResponse {
    let mut doc = crate::openapi::document(gw.max_message_bytes);
    // The server the document came from, so a Postman import needs no base URL by hand.
    if let Some(host) = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
    {
        let scheme = headers
            .get("x-forwarded-proto")
            .and_then(|h| h.to_str().ok())
            .filter(|p| *p == "https")
            .unwrap_or("http");
        doc["servers"] = serde_json::json!([{"url": format!("{scheme}://{host}"), "description": "the server this document was read from"}]);
    }
    axum::Json(doc)
}
