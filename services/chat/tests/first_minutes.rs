//! What a newcomer meets in the first minutes with curl and Postman: answers that say
//! what to do, and the same room rules over HTTP as over the WebSocket (the OpenAPI
//! document's base URL is checked in spine.rs).

mod common;

use chat_testkit::topology::{API_KEY, Topology};
use common::{dev_token, http};
use serde_json::{Value, json};

#[tokio::test]
async fn dev_mode_chat_send_keeps_private_rooms_private_as_the_websocket_does() {
    let t = Topology::all_in_one().await;
    let send = |receiver: &'static str| {
        let (url, body) = (
            t.http_url(0, "/chat/send"),
            json!({"sender": "alice", "receiver": receiver, "text": "hi"}),
        );
        async move { common::post_json(&url, None, body).await }
    };
    let (status, body) = send("private-board").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    assert_eq!(send("general").await.0, 201);
    assert_eq!(send("@bob").await.0, 201, "direct messages go to anyone");
}

#[tokio::test]
async fn a_bad_query_string_is_said_in_the_apis_words() {
    let t = Topology::all_in_one().await;
    let token = dev_token(&t.http_url(0, ""), "alice").await;
    let r = http()
        .get(t.http_url(0, "/v1/rooms/general/messages?limit=abc"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(!message.contains("Failed to deserialize"), "{message}");
    assert!(
        message.contains("limit") && message.contains("?since=SEQ"),
        "{message}"
    );
}

/// `event: join` moves live connections; for a sender with none, a 202 would say
/// something happened when nothing did.
async fn chat_send_join_says_when_the_sender_has_no_connection(t: &Topology) {
    let join = |sender: &'static str| {
        let (url, body) = (
            t.http_url(0, "/chat/send"),
            json!({"sender": sender, "receiver": "standup", "event": "join"}),
        );
        async move { common::post_json(&url, Some(API_KEY), body).await }
    };
    let (status, body) = join("ghost").await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no live connection")
    );
    let (mut ann, _) = chat_testkit::WsClient::connect_as(&t.ws_url(1), "ann", false).await;
    assert_eq!(join("ann").await.0, 202);
    ann.recv_until(
        |f| matches!(f, chat_protocol::ServerFrame::Joined { room, .. } if room == "standup"),
    )
    .await;
}

#[tokio::test]
async fn all_in_one_chat_send_join_says_when_the_sender_has_no_connection() {
    chat_send_join_says_when_the_sender_has_no_connection(&Topology::all_in_one().await).await;
}

#[tokio::test]
async fn split_chat_send_join_says_when_the_sender_has_no_connection() {
    let redis = chat_testkit::RedisServer::start();
    chat_send_join_says_when_the_sender_has_no_connection(&Topology::split(&redis.url()).await)
        .await;
}

#[tokio::test]
async fn every_answer_carries_a_request_id_the_callers_own_when_it_is_sane() {
    let t = Topology::all_in_one().await;
    let get = |id: Option<&'static str>| {
        let url = t.http_url(0, "/v1/rooms/general/messages");
        async move {
            let mut req = http().get(url);
            if let Some(id) = id {
                req = req.header("x-request-id", id);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 401, "an error answer carries it too");
            r.headers()
                .get("x-request-id")
                .map(|v| v.to_str().unwrap().to_owned())
        }
    };
    assert_eq!(get(Some("abc-123")).await.as_deref(), Some("abc-123"));
    let fresh = get(None)
        .await
        .expect("a request id is made when none is given");
    assert!(!fresh.is_empty());
    let replaced = get(Some("no spaces, please")).await.unwrap();
    assert_ne!(replaced, "no spaces, please");
    assert_ne!(get(None).await.unwrap(), fresh, "each request its own");
}

/// POSTs `body` to `url` as `auth`: the status, the `Retry-After` header and the JSON.
async fn post_with_retry_after(
    url: &str,
    auth: Option<&str>,
    body: &Value,
) -> (u16, Option<u64>, Value) {
    let mut req = http().post(url).json(body);
    if let Some(a) = auth {
        req = req.bearer_auth(a);
    }
    let r = req.send().await.unwrap();
    let retry_after = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (
        r.status().as_u16(),
        retry_after,
        r.json().await.unwrap_or_default(),
    )
}

#[tokio::test]
async fn a_user_who_publishes_too_fast_over_http_gets_429_with_retry_after() {
    let t = Topology::builder()
        .publish_budget(|b| {
            b.http_rate_limit_per_sec = 1;
            b.http_rate_limit_burst = 3;
        })
        .all_in_one()
        .await;
    let token = dev_token(&t.http_url(0, ""), "alice").await;
    let url = t.messages_url(0, "general");
    let hi = json!({"text": "hi"});
    for i in 0..3 {
        let (status, _, body) = post_with_retry_after(&url, Some(&token), &hi).await;
        assert_eq!(status, 201, "publish {i} is within the burst: {body}");
    }
    let (status, retry_after, body) = post_with_retry_after(&url, Some(&token), &hi).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("CHAT_HTTP_RATE_LIMIT_PER_SEC"),
        "the message names the setting: {body}"
    );
    let retry_after = retry_after.expect("a 429 says when to retry");
    assert!((1..=2).contains(&retry_after), "Retry-After: {retry_after}");

    // The same budget covers direct messages and the PoC route.
    let (status, _, _) =
        post_with_retry_after(&t.http_url(0, "/v1/users/bob/messages"), Some(&token), &hi).await;
    assert_eq!(status, 429);
    let poc = json!({"sender": "alice", "receiver": "general", "text": "hi"});
    let (status, _, _) =
        post_with_retry_after(&t.http_url(0, "/chat/send"), Some(&token), &poc).await;
    assert_eq!(status, 429);

    // Another user has a budget of their own, and a server API key is not limited.
    let bob = dev_token(&t.http_url(0, ""), "bob").await;
    assert_eq!(post_with_retry_after(&url, Some(&bob), &hi).await.0, 201);
    let as_alice = json!({"text": "from the backend", "from": "alice"});
    for _ in 0..10 {
        let (status, _, body) = post_with_retry_after(&url, Some(API_KEY), &as_alice).await;
        assert_eq!(status, 201, "{body}");
    }

    // Waiting what Retry-After said is enough (the wait is the scenario).
    tokio::time::sleep(std::time::Duration::from_secs(retry_after)).await;
    let (status, _, body) = post_with_retry_after(&url, Some(&token), &hi).await;
    assert_eq!(status, 201, "after Retry-After: {body}");

    // Nothing refused was stored: 3 + 1 of alice's, 1 of bob's, 10 of the backend's.
    let history = common::get_json_as(&url, &token).await;
    assert_eq!(
        history["messages"].as_array().unwrap().len(),
        15,
        "{history}"
    );
}

#[tokio::test]
async fn the_openapi_document_declares_429_with_retry_after_on_every_publish_route() {
    let t = Topology::all_in_one().await;
    let doc = common::get_json(&t.http_url(0, "/openapi.json")).await;
    for path in [
        "/chat/send",
        "/v1/rooms/{room}/messages",
        "/v1/users/{user}/messages",
    ] {
        let answer = &doc["paths"][path]["post"]["responses"]["429"];
        assert!(
            answer["headers"]["Retry-After"].is_object(),
            "{path}: {answer:#}"
        );
    }
}
