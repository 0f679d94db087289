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
