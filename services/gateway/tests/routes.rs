//! The gateway's routes driven in-process with `tower::ServiceExt::oneshot` over the
//! memory engine: no socket, no Redis. Each test pins what a caller sees, the status and
//! the JSON answer of docs/PROTOCOL.md §4, including the error `code`.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chat_testkit::topology::{API_KEY, Builder, Topology};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// The API routes of a gateway built by `servers`, on the memory engine.
fn app(servers: Builder) -> Router {
    chat_gateway::router(servers.gateway_state(None))
}

/// One request: `body` is sent as JSON text as given (so it may be malformed).
async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    auth: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, format!("Bearer {a}"));
    }
    let req = match body {
        Some(b) => req
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b.to_owned())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn post(app: &Router, uri: &str, auth: Option<&str>, body: Value) -> (StatusCode, Value) {
    call(app, "POST", uri, auth, Some(&body.to_string())).await
}

async fn get(app: &Router, uri: &str, auth: Option<&str>) -> (StatusCode, Value) {
    call(app, "GET", uri, auth, None).await
}

/// Asserts an error answer: its status and the contract's code in the JSON body.
#[track_caller]
fn assert_error(answer: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["error"]["code"], code, "{}", answer.1);
    assert!(
        answer.1["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "a message says why: {}",
        answer.1
    );
}

/// A user token from the dev-mode route.
async fn dev_token(app: &Router, user: &str) -> String {
    let (status, body) = post(app, "/v1/auth/dev-token", None, json!({ "user": user })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn publishing_to_a_room_answers_201_with_room_seq_epoch_and_ts() {
    let app = app(Topology::builder());
    let body = json!({"text": "hello", "from": "deploy-bot"});
    let (status, first) = post(&app, "/v1/rooms/ops/messages", Some(API_KEY), body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["room"], "ops");
    assert_eq!(first["seq"], 1);
    assert!(first["epoch"].as_str().is_some_and(|e| !e.is_empty()));
    assert!(first["ts"].as_u64().is_some_and(|ts| ts > 0), "{first}");

    let (status, second) = post(&app, "/v1/rooms/ops/messages", Some(API_KEY), body).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(second["seq"], 2, "seqs follow each other");
    assert_eq!(second["epoch"], first["epoch"], "one epoch");
}

#[tokio::test]
async fn history_returns_the_published_messages_in_order_both_ways() {
    let app = app(Topology::builder());
    for text in ["one", "two", "three"] {
        let body = json!({"text": text, "from": "bot"});
        let (status, _) = post(&app, "/v1/rooms/log/messages", Some(API_KEY), body).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let texts = |page: &Value| -> Vec<String> {
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap().to_owned())
            .collect()
    };

    let (status, page) = get(&app, "/v1/rooms/log/messages?since=1", Some(API_KEY)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        (page["room"].as_str(), page["seq"].as_u64()),
        (Some("log"), Some(3))
    );
    assert_eq!(texts(&page), ["two", "three"], "after seq 1, ascending");
    assert_eq!(page["messages"][0]["from"], "bot");

    let (status, page) = get(&app, "/v1/rooms/log/messages?limit=2", Some(API_KEY)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(texts(&page), ["three", "two"], "newest first");

    let (status, page) = get(&app, "/v1/rooms/empty/messages", Some(API_KEY)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((page["seq"].as_u64(), texts(&page).len()), (Some(0), 0));
}

#[tokio::test]
async fn bad_input_is_a_400_bad_request_json_error() {
    let app = app(Topology::builder());
    let uri = "/v1/rooms/R/messages";
    let malformed = call(&app, "POST", uri, Some(API_KEY), Some("{\"text\": ")).await;
    assert_error(&malformed, StatusCode::BAD_REQUEST, "bad_request");
    let no_from = post(&app, uri, Some(API_KEY), json!({"text": "who?"})).await;
    assert_error(&no_from, StatusCode::BAD_REQUEST, "bad_request");
    let bad_room = post(
        &app,
        "/v1/rooms/no%20spaces/messages",
        Some(API_KEY),
        json!({"text": "x", "from": "bot"}),
    )
    .await;
    assert_error(&bad_room, StatusCode::BAD_REQUEST, "bad_request");
    for query in [
        "limit=0",
        "limit=1001",
        "since=1&before=5",
        "since=minus-one",
    ] {
        let answer = get(&app, &format!("{uri}?{query}"), Some(API_KEY)).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "bad_request");
    }
    let unnamed = post(&app, "/v1/auth/dev-token", None, json!({"user": ""})).await;
    assert_error(&unnamed, StatusCode::BAD_REQUEST, "bad_request");
}

#[tokio::test]
async fn without_credentials_it_is_401_whatever_else_is_wrong() {
    let app = app(Topology::builder());
    let publish = post(&app, "/v1/rooms/R/messages", None, json!({"text": "hi"})).await;
    assert_error(&publish, StatusCode::UNAUTHORIZED, "unauthorized");
    let malformed = call(&app, "POST", "/v1/rooms/R/messages", None, Some("{")).await;
    assert_error(&malformed, StatusCode::UNAUTHORIZED, "unauthorized");
    let history = get(&app, "/v1/rooms/R/messages?limit=0", None).await;
    assert_error(&history, StatusCode::UNAUTHORIZED, "unauthorized");
    let wrong_key = get(&app, "/v1/rooms/R/presence", Some("not-the-key")).await;
    assert_error(&wrong_key, StatusCode::UNAUTHORIZED, "unauthorized");
    let members = post(&app, "/v1/rooms/R/members", None, json!({"user": "ann"})).await;
    assert_error(&members, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn a_user_token_is_refused_403_beyond_what_it_may_do() {
    let app = app(Topology::builder());
    let ann = dev_token(&app, "ann").await;
    let as_bob = post(
        &app,
        "/v1/rooms/R/messages",
        Some(&ann),
        json!({"text": "hi", "from": "bob"}),
    )
    .await;
    assert_error(&as_bob, StatusCode::FORBIDDEN, "forbidden");
    let private = get(&app, "/v1/rooms/private-board/messages", Some(&ann)).await;
    assert_error(&private, StatusCode::FORBIDDEN, "forbidden");
    let others_channel = get(&app, "/v1/rooms/@bob/messages", Some(&ann)).await;
    assert_error(&others_channel, StatusCode::FORBIDDEN, "forbidden");
    let members = post(
        &app,
        "/v1/rooms/R/members",
        Some(&ann),
        json!({"user": "ann"}),
    )
    .await;
    assert_error(&members, StatusCode::FORBIDDEN, "forbidden");

    // What it may do: publish as itself, read its own channel.
    let (status, _) = post(
        &app,
        "/v1/rooms/R/messages",
        Some(&ann),
        json!({"text": "hi"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = get(&app, "/v1/rooms/@ann/messages", Some(&ann)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_dev_token_acts_as_its_user_in_dev_mode_only() {
    let app = app(Topology::builder());
    let token = dev_token(&app, "newbie").await;
    let (status, _) = post(
        &app,
        "/v1/rooms/R/messages",
        Some(&token),
        json!({"text": "hi"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, page) = get(&app, "/v1/rooms/R/messages", Some(API_KEY)).await;
    assert_eq!(
        page["messages"][0]["from"], "newbie",
        "published as the token's user"
    );

    let production = self::app(Topology::builder().dev_mode(false));
    let refused = post(
        &production,
        "/v1/auth/dev-token",
        None,
        json!({"user": "x"}),
    )
    .await;
    assert_error(&refused, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn not_found_answers_404_with_the_json_error() {
    let app = app(Topology::builder());
    let unknown = get(&app, "/v1/nothing-here", Some(API_KEY)).await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "not_found");
    // Nobody is connected to this memory engine: there is nothing to move.
    let join = post(
        &app,
        "/chat/send",
        Some(API_KEY),
        json!({"sender": "ghost", "receiver": "R", "text": "", "event": "join"}),
    )
    .await;
    assert_error(&join, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn the_poc_route_and_the_members_routes_answer_as_documented() {
    let app = app(Topology::builder());
    let (status, body) = post(
        &app,
        "/chat/send",
        None,
        json!({"sender": "alice", "receiver": "general", "text": "hi"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        (body["room"].as_str(), body["seq"].as_u64()),
        (Some("general"), Some(1))
    );
    let (status, _) = post(
        &app,
        "/v1/rooms/R/members",
        Some(API_KEY),
        json!({"user": "ann"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = call(
        &app,
        "DELETE",
        "/v1/rooms/R/members/ann",
        Some(API_KEY),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
}
