//! The spine's acceptance tests, over real sockets: the split deployment (two realtime
//! replicas, two gateways, one real redis-server) and the all-in-one `chat` run the same
//! scenarios.

mod common;

use std::time::Duration;

use chat_protocol::{ClientFrame, ErrorCode, Message, ServerFrame};
use chat_testkit::topology::{API_KEY, Topology};
use chat_testkit::{Closed, RedisServer, WsClient, wait_until};
use common::{http, metrics_of, post_json as post, post_text, sample};
use serde_json::{Value, json};

fn message(f: ServerFrame) -> Message {
    match f {
        ServerFrame::Message(m) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

async fn next_message(c: &mut WsClient) -> Message {
    message(c.recv_until(|f| matches!(f, ServerFrame::Message(_))).await)
}

/// Clients on both replicas receive, in one seq order with no gap, every message
/// posted through either gateway and every `send` from any client.
async fn every_message_in_one_order(t: &Topology) {
    let mut clients = Vec::new();
    for (i, user) in ["ann", "ben", "cat"].iter().enumerate() {
        let (mut c, _) = WsClient::connect_as(&t.ws_url(i), user, i == 1).await;
        c.join("R").await;
        clients.push(c);
    }
    let mut expected = 0;
    for round in 0..10 {
        let (status, body) = post(
            &t.http_url(round, "/v1/rooms/R/messages"),
            Some(API_KEY),
            json!({"text": format!("http {round}"), "from": "backend"}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        expected += 1;
        let sender = &mut clients[round % 3];
        sender
            .send(&ClientFrame::Send {
                room: Some("R".into()),
                to: None,
                text: format!("ws {round}"),
                cid: Some(format!("c{round}")),
            })
            .await;
        expected += 1;
    }
    let mut seen: Vec<Vec<(u64, String)>> = Vec::new();
    for c in &mut clients {
        let mut got = Vec::new();
        while got.len() < expected {
            match c.recv().await {
                ServerFrame::Message(m) => got.push((m.seq, m.text)),
                ServerFrame::Ack { room, seq, .. } => assert!(room == "R" && seq > 0),
                other => panic!("unexpected {other:?}"),
            }
        }
        let seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
        assert_eq!(
            seqs,
            (1..=expected as u64).collect::<Vec<_>>(),
            "gapless, in order"
        );
        seen.push(got);
    }
    assert_eq!(seen[0], seen[1], "replicas agree on the order");
    assert_eq!(seen[0], seen[2]);
    let texts: std::collections::HashSet<&str> = seen[0].iter().map(|(_, t)| t.as_str()).collect();
    assert!(texts.contains("http 9") && texts.contains("ws 9"));
}

/// The seed's example body reaches a JSON (wscat-style) client as text and a
/// MessagePack client as a binary frame.
async fn poc_body_reaches_both_encodings(t: &Topology) {
    let (mut json_client, _) = WsClient::connect_as(&t.ws_url(0), "bob", false).await;
    let (mut mp_client, _) = WsClient::connect_as(&t.ws_url(1), "carol", true).await;
    json_client.join("general").await;
    mp_client.join("general").await;
    let (status, body) = post(
        &t.http_url(0, "/chat/send"),
        None,
        json!({"sender": "alice", "receiver": "general", "text": "hello from the PoC", "event": "message"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["room"], "general");
    assert_eq!(body["seq"], 1);
    assert!(body["epoch"].is_string());
    for c in [&mut json_client, &mut mp_client] {
        let m = next_message(c).await;
        assert_eq!(
            (m.from.as_str(), m.text.as_str(), m.seq),
            ("alice", "hello from the PoC", 1)
        );
        assert_eq!(m.epoch, body["epoch"].as_str().unwrap());
    }
}

/// Direct messages reach every connection of the receiver and of the sender, on their
/// `@user` channels with their own seqs.
async fn direct_messages_reach_all_devices(t: &Topology) {
    let mut alice = Vec::new();
    let mut bob = Vec::new();
    for i in 0..2 {
        alice.push(WsClient::connect_as(&t.ws_url(i), "alice", i == 0).await.0);
        bob.push(WsClient::connect_as(&t.ws_url(i), "bob", i == 1).await.0);
    }
    alice[0]
        .send(&ClientFrame::Send {
            room: None,
            to: Some("bob".into()),
            text: "hi bob".into(),
            cid: Some("d1".into()),
        })
        .await;
    // The ack and alice's own copy may arrive in either order.
    let mut early = Vec::new();
    let ack = loop {
        match alice[0].recv().await {
            ServerFrame::Message(m) => early.push(m),
            f => break f,
        }
    };
    assert_eq!(
        ack,
        ServerFrame::Ack {
            cid: Some("d1".into()),
            room: "@bob".into(),
            seq: 1
        }
    );
    let (status, body) = post(
        &t.http_url(1, "/v1/users/alice/messages"),
        Some(API_KEY),
        json!({"text": "hi alice", "from": "bob"}),
    )
    .await;
    assert_eq!((status, body["room"].as_str()), (201, Some("@alice")));

    for c in &mut bob {
        let first = next_message(c).await;
        assert_eq!(
            (
                first.room.as_str(),
                first.seq,
                first.from.as_str(),
                first.to.as_deref()
            ),
            ("@bob", 1, "alice", Some("bob"))
        );
        let second = next_message(c).await;
        assert_eq!(
            (second.room.as_str(), second.seq, second.text.as_str()),
            ("@bob", 2, "hi alice")
        );
    }
    for (i, c) in alice.iter_mut().enumerate() {
        let first = match (i, early.first()) {
            (0, Some(m)) => m.clone(),
            _ => next_message(c).await,
        };
        assert_eq!(
            (first.room.as_str(), first.seq, first.text.as_str()),
            ("@alice", 1, "hi bob")
        );
        let second = next_message(c).await;
        assert_eq!(
            (second.room.as_str(), second.seq, second.from.as_str()),
            ("@alice", 2, "bob")
        );
    }
}

/// HTTP join/leave move the user's connections on every replica in and out of a room.
async fn http_join_and_leave_move_connections(t: &Topology) {
    let mut dana = Vec::new();
    for i in 0..2 {
        dana.push(WsClient::connect_as(&t.ws_url(i), "dana", false).await.0);
    }
    let (status, _) = post(
        &t.http_url(0, "/chat/send"),
        None,
        json!({"sender": "dana", "receiver": "lobby", "event": "join"}),
    )
    .await;
    assert_eq!(status, 202);
    for c in &mut dana {
        let j = c.recv().await;
        assert!(
            matches!(&j, ServerFrame::Joined { room, .. } if room == "lobby"),
            "{j:?}"
        );
    }
    let (status, _) = post(
        &t.http_url(1, "/v1/rooms/lobby/messages"),
        Some(API_KEY),
        json!({"text": "welcome", "from": "eve"}),
    )
    .await;
    assert_eq!(status, 201);
    for c in &mut dana {
        assert_eq!(next_message(c).await.text, "welcome");
    }
    let r = http()
        .delete(t.http_url(1, "/v1/rooms/lobby/members/dana"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    for c in &mut dana {
        assert_eq!(
            c.recv().await,
            ServerFrame::Left {
                room: "lobby".into()
            }
        );
    }
    post(
        &t.http_url(0, "/v1/rooms/lobby/messages"),
        Some(API_KEY),
        json!({"text": "gone", "from": "eve"}),
    )
    .await;
    for c in &mut dana {
        c.expect_silence(Duration::from_millis(300)).await;
    }
    // The members route with an API key joins them again.
    let (status, _) = post(
        &t.http_url(1, "/v1/rooms/lobby/members"),
        Some(API_KEY),
        json!({"user": "dana"}),
    )
    .await;
    assert_eq!(status, 202);
    for c in &mut dana {
        assert!(matches!(c.recv().await, ServerFrame::Joined { .. }));
    }
}

async fn expect_error(c: &mut WsClient, code: ErrorCode) -> ServerFrame {
    let f = c.recv().await;
    match &f {
        ServerFrame::Error { code: got, .. } => assert_eq!(*got, code, "{f:?}"),
        other => panic!("expected {code} error, got {other:?}"),
    }
    f
}

async fn still_serving(c: &mut WsClient) {
    c.send(&ClientFrame::Ping).await;
    assert_eq!(c.recv().await, ServerFrame::Pong);
}

/// Every kind of bad input gets the contract's answer; the server keeps serving.
async fn bad_input_is_answered_and_harmless(t: &Topology) {
    use tokio_tungstenite::tungstenite::Message as Ws;
    let (mut watcher, _) = WsClient::connect_as(&t.ws_url(1), "watcher", true).await;
    watcher.join("bad").await;

    let mut c = WsClient::open(&t.ws_url(0), false).await;
    c.send(&ClientFrame::Send {
        room: Some("bad".into()),
        to: None,
        text: "x".into(),
        cid: None,
    })
    .await;
    expect_error(&mut c, ErrorCode::Unauthorized).await;
    c.send(&ClientFrame::Connect {
        token: None,
        user: Some("mallory".into()),
        since: None,
    })
    .await;
    assert!(matches!(c.recv().await, ServerFrame::Connected { .. }));

    c.send_raw(Ws::Text("{not json".into())).await;
    expect_error(&mut c, ErrorCode::BadRequest).await;
    c.send_raw(Ws::Binary(vec![0xc1, 0xff, 0x13].into())).await;
    expect_error(&mut c, ErrorCode::BadRequest).await;
    c.send_raw(Ws::Text(r#"{"type":"dance"}"#.into())).await;
    expect_error(&mut c, ErrorCode::BadRequest).await;
    c.send(&ClientFrame::Join {
        room: "no spaces allowed".into(),
        since: None,
    })
    .await;
    expect_error(&mut c, ErrorCode::BadRequest).await;
    c.send(&ClientFrame::Send {
        room: None,
        to: Some("bad/user".into()),
        text: "x".into(),
        cid: None,
    })
    .await;
    expect_error(&mut c, ErrorCode::BadRequest).await;
    c.send(&ClientFrame::Send {
        room: Some("bad".into()),
        to: None,
        text: "x".repeat(4097),
        cid: Some("big".into()),
    })
    .await;
    let f = expect_error(&mut c, ErrorCode::TooLarge).await;
    assert!(
        matches!(f, ServerFrame::Error { cid: Some(ref cid), .. } if cid == "big"),
        "cid comes back"
    );
    still_serving(&mut c).await;
    c.send(&ClientFrame::Send {
        room: Some("bad".into()),
        to: None,
        text: "still here".into(),
        cid: None,
    })
    .await;
    assert!(matches!(c.recv().await, ServerFrame::Ack { .. }));
    assert_eq!(next_message(&mut watcher).await.text, "still here");

    // A frame past the size limit closes that connection with 1009, nobody else's.
    c.send_raw(Ws::Text("y".repeat(64 * 1024).into())).await;
    assert_eq!(c.closed().await, Closed::Code(1009));
    still_serving(&mut watcher).await;

    // A 10 MB message in fragments is refused at the limit, not buffered.
    let mut big = WsClient::connect_as(&t.ws_url(0), "fragger", false).await.0;
    let frames = big.send_fragments(10 * 1024 * 1024, 64 * 1024).await;
    assert!(
        frames < 40,
        "closed after {frames} fragments, long before 10 MB"
    );
    assert_eq!(big.closed().await, Closed::Code(1009));

    // HTTP: 4xx JSON errors, never a 500.
    let client = http();
    let r = client
        .post(t.http_url(0, "/v1/rooms/bad/messages"))
        .bearer_auth(API_KEY)
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "bad_request"
    );
    let cases = [
        (
            "/v1/rooms/bad%20room/messages",
            Some(API_KEY),
            json!({"text": "x", "from": "a"}),
            400,
            "bad_request",
        ),
        (
            "/v1/rooms/bad/messages",
            Some(API_KEY),
            json!({"text": "x".repeat(5000), "from": "a"}),
            413,
            "too_large",
        ),
        (
            "/v1/rooms/bad/messages",
            None,
            json!({"text": "x"}),
            401,
            "unauthorized",
        ),
        (
            "/v1/rooms/bad/messages",
            Some("wrong-key"),
            json!({"text": "x"}),
            401,
            "unauthorized",
        ),
        (
            "/v1/rooms/bad/messages",
            Some(API_KEY),
            json!({"text": "x"}),
            400,
            "bad_request",
        ),
        (
            "/chat/send",
            None,
            json!({"sender": "a b", "receiver": "bad", "text": "x"}),
            400,
            "bad_request",
        ),
        (
            "/chat/send",
            None,
            json!({"sender": "a", "receiver": "@", "text": "x"}),
            400,
            "bad_request",
        ),
        (
            "/chat/send",
            None,
            json!({"sender": "a", "receiver": "@b", "event": "join"}),
            400,
            "bad_request",
        ),
        (
            "/chat/send",
            None,
            json!({"sender": "a", "receiver": "bad", "event": "dance"}),
            400,
            "bad_request",
        ),
        (
            "/v1/rooms/bad/members",
            None,
            json!({"user": "a"}),
            401,
            "unauthorized",
        ),
        ("/nope", None, json!({}), 404, "not_found"),
    ];
    for (path, auth, body, status, code) in cases {
        let (got, body) = post(&t.http_url(0, path), auth, body).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{path}: {body}"
        );
    }
    let r = client
        .post(t.http_url(0, "/v1/rooms/bad/messages"))
        .bearer_auth(API_KEY)
        .header("content-type", "application/msgpack")
        .body(vec![0x93, 0xc1])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    still_serving(&mut watcher).await;
}

#[tokio::test]
async fn split_every_message_in_one_order() {
    let redis = RedisServer::start();
    every_message_in_one_order(&Topology::split(&redis.url()).await).await;
}

#[tokio::test]
async fn split_poc_body_reaches_both_encodings() {
    let redis = RedisServer::start();
    poc_body_reaches_both_encodings(&Topology::split(&redis.url()).await).await;
}

#[tokio::test]
async fn split_direct_messages_reach_all_devices() {
    let redis = RedisServer::start();
    direct_messages_reach_all_devices(&Topology::split(&redis.url()).await).await;
}

#[tokio::test]
async fn split_http_join_and_leave_move_connections() {
    let redis = RedisServer::start();
    http_join_and_leave_move_connections(&Topology::split(&redis.url()).await).await;
}

#[tokio::test]
async fn split_bad_input_is_answered_and_harmless() {
    let redis = RedisServer::start();
    bad_input_is_answered_and_harmless(&Topology::split(&redis.url()).await).await;
}

#[tokio::test]
async fn all_in_one_every_message_in_one_order() {
    every_message_in_one_order(&Topology::all_in_one().await).await;
}

#[tokio::test]
async fn all_in_one_poc_body_reaches_both_encodings() {
    poc_body_reaches_both_encodings(&Topology::all_in_one().await).await;
}

#[tokio::test]
async fn all_in_one_direct_messages_reach_all_devices() {
    direct_messages_reach_all_devices(&Topology::all_in_one().await).await;
}

#[tokio::test]
async fn all_in_one_http_join_and_leave_move_connections() {
    http_join_and_leave_move_connections(&Topology::all_in_one().await).await;
}

#[tokio::test]
async fn all_in_one_bad_input_is_answered_and_harmless() {
    bad_input_is_answered_and_harmless(&Topology::all_in_one().await).await;
}

#[tokio::test]
async fn redis_restart_gives_503_then_messages_flow_again() {
    let mut redis = RedisServer::start();
    let t = Topology::split(&redis.url()).await;
    let (mut c, _) = WsClient::connect_as(&t.ws_url(0), "fay", false).await;
    c.join("R").await;
    let publish = |text: &'static str| {
        let url = t.http_url(0, "/v1/rooms/R/messages");
        async move { post(&url, Some(API_KEY), json!({"text": text, "from": "gus"})).await }
    };
    assert_eq!(publish("before").await.0, 201);
    assert_eq!(next_message(&mut c).await.text, "before");

    redis.stop();
    common::wait_status(&format!("http://{}/readyz", t.http[0]), 503).await;
    common::wait_status(&format!("http://{}/readyz", t.ws[0]), 503).await;
    let (status, body) = publish("during").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("unavailable")),
        "never a silent drop"
    );
    c.send(&ClientFrame::Send {
        room: Some("R".into()),
        to: None,
        text: "ws during".into(),
        cid: Some("x".into()),
    })
    .await;
    expect_error(&mut c, ErrorCode::Unavailable).await;
    for addr in t.ws.iter().chain(&t.http) {
        assert_eq!(
            http()
                .get(format!("http://{addr}/healthz"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }

    redis.start_again();
    common::wait_status(&format!("http://{}/readyz", t.http[0]), 200).await;
    common::wait_status(&format!("http://{}/readyz", t.ws[0]), 200).await;
    let (status, body) = publish("after").await;
    assert_eq!(status, 201, "{body}");
    let m = next_message(&mut c).await;
    assert_eq!(
        (m.text.as_str(), m.seq),
        ("after", 1),
        "a new epoch starts at 1"
    );
    // The other replica's clients and WS sends work too.
    let (mut d, _) = WsClient::connect_as(&t.ws_url(1), "hal", true).await;
    d.join("R").await;
    c.send(&ClientFrame::Send {
        room: Some("R".into()),
        to: None,
        text: "ws after".into(),
        cid: None,
    })
    .await;
    assert_eq!(next_message(&mut d).await.text, "ws after");
}

/// Posts `text` to `room` through the first gateway, as a trusted backend.
async fn publish_to(t: &Topology, room: &str, text: String) -> (u16, Value) {
    post_text(&t.messages_url(0, room), &text).await
}

/// Redis stays up but a replica's subscription drops: the PUBLISHes meanwhile never
/// reach it. When it subscribes again it compares heads and fetches the difference from
/// history (or sees the seq gap on the next live message), so its client still gets
/// every message once, in order, also in a room that had no message before the drop;
/// the repaired deliveries and the reconnect are counted.
#[tokio::test]
async fn a_dropped_subscription_is_repaired_from_history() {
    let redis = RedisServer::start();
    let t = Topology::split(&redis.url()).await;
    let (mut c, _) = WsClient::connect_as(&t.ws_url(0), "ivy", false).await;
    c.join("R").await;
    c.join("Q").await;
    assert_eq!(publish_to(&t, "R", "m1".into()).await.0, 201);
    assert_eq!(next_message(&mut c).await.seq, 1);

    let killed = redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert_ne!(killed.trim(), "0", "subscriptions were dropped: {killed}");
    for i in 2..=20 {
        if i % 4 == 2 {
            let (status, body) = publish_to(&t, "Q", format!("q{}", i / 4 + 1)).await;
            assert_eq!(status, 201, "{body}");
        }
        let (status, body) = publish_to(&t, "R", format!("m{i}")).await;
        assert_eq!(status, 201, "{body}");
    }
    let (mut r, mut q) = (vec![1], Vec::new());
    while r.len() < 20 || q.len() < 5 {
        let m = next_message(&mut c).await;
        match m.room.as_str() {
            "R" => r.push(m.seq),
            _ => q.push(m.seq),
        }
    }
    assert_eq!(r, (1..=20).collect::<Vec<u64>>(), "R: once, in order");
    assert_eq!(q, (1..=5).collect::<Vec<u64>>(), "Q: once, in order");
    assert_eq!(publish_to(&t, "R", "m21".into()).await.0, 201);
    assert_eq!(next_message(&mut c).await.seq, 21, "live delivery is back");

    // Repaired deliveries count and are timed like live ones (from their store time).
    let metrics = metrics_of(&t.ws[0]).await;
    assert_eq!(sample(&metrics, "chat_deliveries_total"), 26.0);
    assert_eq!(
        sample(&metrics, "chat_delivery_latency_seconds_count"),
        26.0
    );
    // The watchdog notices within its 500 ms ping period.
    wait_until(
        "chat_redis_reconnects_total counts the reconnect",
        Duration::from_secs(5),
        || async { sample(&metrics_of(&t.ws[0]).await, "chat_redis_reconnects_total") >= 1.0 },
    )
    .await;
}

/// Redis drops every command connection while it stays up: a publish may be refused
/// with 503, none hangs or fails otherwise, publishing works again at once, and every
/// acknowledged message reaches the room once, in order.
#[tokio::test]
async fn killed_command_connections_come_back_at_once() {
    let redis = RedisServer::start();
    let t = Topology::split(&redis.url()).await;
    let (mut c, _) = WsClient::connect_as(&t.ws_url(1), "kim", false).await;
    c.join("R").await;
    let publish = |i: usize| publish_to(&t, "R", format!("k{i}"));
    assert_eq!(publish(0).await.0, 201);
    assert_eq!(next_message(&mut c).await.seq, 1);

    let killed = redis.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
    assert_ne!(killed.trim(), "0", "connections were dropped: {killed}");
    let mut acked = vec![1];
    for i in 1..=20 {
        let (status, body) = publish(i).await;
        match status {
            201 => acked.push(body["seq"].as_u64().unwrap()),
            503 => assert_eq!(body["error"]["code"], "unavailable", "{body}"),
            other => panic!("{other}: {body}"),
        }
    }
    assert!(
        acked.len() >= 19,
        "at most one refusal per connection: {acked:?}"
    );
    let mut seen = vec![1];
    while seen.len() < acked.len() {
        seen.push(next_message(&mut c).await.seq);
    }
    assert_eq!(seen, acked, "acknowledged messages, once, in order");
    assert_eq!(
        acked,
        (1..=acked.len() as u64).collect::<Vec<_>>(),
        "no seq was skipped"
    );
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let t = Topology::all_in_one().await;
    let doc = common::get_json(&t.http_url(0, "/openapi.json")).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    // The server it came from, so a Postman import needs no base URL by hand.
    assert_eq!(
        doc["servers"][0]["url"],
        t.http_url(0, ""),
        "{:#}",
        doc["servers"]
    );
    for path in [
        "/chat/send",
        "/v1/rooms/{room}/messages",
        "/v1/users/{user}/messages",
        "/v1/rooms/{room}/members",
        "/v1/rooms/{room}/members/{user}",
        "/v1/auth/dev-token",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
}
