//! Authentication, authorization and abuse limits against running servers (dev mode
//! off): every refusal carries the contract's code.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chat_protocol::{ClientFrame, ErrorCode, ServerFrame};
use chat_testkit::topology::{API_KEY, Topology};
use chat_testkit::{Closed, RedisServer, WsClient};
use common::{http, metrics_of};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

const SECRET: &str = "a-test-secret-of-enough-bytes";
const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../auth/tests/keys");

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs256(claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn rs256(claims: Value) -> String {
    let pem = std::fs::read(format!("{KEYS}/rsa-private.pem")).unwrap();
    encode(
        &Header::new(Algorithm::RS256),
        &claims,
        &EncodingKey::from_rsa_pem(&pem).unwrap(),
    )
    .unwrap()
}

fn user_token(sub: &str) -> String {
    hs256(json!({"sub": sub, "exp": now() + 600}))
}

/// Every way a token can be bad.
fn bad_tokens() -> Vec<(&'static str, String)> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let alg_none = format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(json!({"sub": "eve", "exp": now() + 600}).to_string())
    );
    let public_pem = std::fs::read(format!("{KEYS}/rsa-public.pem")).unwrap();
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "eve", "exp": now() + 600}),
        &EncodingKey::from_secret(&public_pem).unwrap(),
    )
    .unwrap();
    let wrong_secret = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "eve", "exp": now() + 600}),
        &EncodingKey::from_secret(b"another-secret-entirely!").unwrap(),
    )
    .unwrap();
    vec![
        ("garbage", "not.a.token".into()),
        ("wrong key", wrong_secret),
        ("expired", hs256(json!({"sub": "eve", "exp": now() - 120}))),
        (
            "nbf in the future",
            hs256(json!({"sub": "eve", "exp": now() + 600, "nbf": now() + 300})),
        ),
        ("alg none", alg_none),
        ("HS256 signed with the RS256 public key", confused),
    ]
}

async fn security_suite(t: &Topology) {
    // WebSocket: bad credentials get an `unauthorized` error frame and close 1008.
    let mut cases: Vec<(&str, ClientFrame)> = bad_tokens()
        .into_iter()
        .map(|(name, token)| {
            (
                name,
                ClientFrame::Connect {
                    token: Some(token),
                    user: None,
                    since: None,
                },
            )
        })
        .collect();
    cases.push((
        "no token",
        ClientFrame::Connect {
            token: None,
            user: None,
            since: None,
        },
    ));
    cases.push((
        "bare user name outside dev mode",
        ClientFrame::Connect {
            token: None,
            user: Some("eve".into()),
            since: None,
        },
    ));
    for (name, frame) in cases {
        let mut c = WsClient::open(&t.ws_url(0), false).await;
        c.send(&frame).await;
        match c.recv().await {
            ServerFrame::Error { code, .. } => assert_eq!(code, ErrorCode::Unauthorized, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
        assert_eq!(c.closed().await, Closed::Code(1008), "{name}");
    }
    // HTTP: the same tokens, and a wrong API key, get 401.
    let mut http_cases = bad_tokens();
    http_cases.push(("wrong API key", "not-the-key".into()));
    for (name, token) in http_cases {
        let r = http()
            .get(t.http_url(0, "/v1/rooms/general/messages"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{name}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["code"],
            "unauthorized",
            "{name}"
        );
    }
    // Dev-only routes are gone.
    let r = http()
        .post(t.http_url(0, "/v1/auth/dev-token"))
        .json(&json!({"user": "eve"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http()
        .post(t.http_url(0, "/chat/send"))
        .json(&json!({"sender": "eve", "receiver": "general", "text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "no unauthenticated /chat/send outside dev mode"
    );

    // A forbidden Origin is refused before the upgrade; an allowed one and none pass.
    let refused =
        WsClient::try_open(&t.ws_url(0), false, &[("Origin", "https://evil.example")]).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("forbidden Origin upgraded: {:?}", other.is_ok()),
    }
    assert!(
        WsClient::try_open(&t.ws_url(0), false, &[("Origin", "https://chat.example")])
            .await
            .is_ok()
    );

    // Good tokens of both algorithms connect.
    for token in [
        user_token("amy"),
        rs256(json!({"sub": "amy", "exp": now() + 600})),
    ] {
        let mut c = WsClient::open(&t.ws_url(1), true).await;
        c.send(&ClientFrame::Connect {
            token: Some(token),
            user: None,
            since: None,
        })
        .await;
        assert!(matches!(c.recv().await, ServerFrame::Connected { ref user, .. } if user == "amy"));
    }

    // Authorization: private rooms need the claim; personal channels are their owner's.
    let amy = user_token("amy");
    let mut c = WsClient::open(&t.ws_url(0), false).await;
    c.send(&ClientFrame::Connect {
        token: Some(amy.clone()),
        user: None,
        since: None,
    })
    .await;
    c.recv().await;
    c.send(&ClientFrame::Join {
        room: "private-board".into(),
        since: None,
    })
    .await;
    assert!(matches!(
        c.recv().await,
        ServerFrame::Error {
            code: ErrorCode::Forbidden,
            ..
        }
    ));
    c.send(&ClientFrame::Send {
        room: Some("private-board".into()),
        to: None,
        text: "x".into(),
        cid: Some("p".into()),
    })
    .await;
    assert!(matches!(
        c.recv().await,
        ServerFrame::Error {
            code: ErrorCode::Forbidden,
            cid: Some(_),
            ..
        }
    ));
    let board =
        hs256(json!({"sub": "bo", "exp": now() + 600, "rooms": ["private-board", "team-*"]}));
    let mut b = WsClient::open(&t.ws_url(1), false).await;
    b.send(&ClientFrame::Connect {
        token: Some(board.clone()),
        user: None,
        since: None,
    })
    .await;
    b.recv().await;
    b.join("private-board").await;
    b.join("team-red").await;
    b.send(&ClientFrame::Join {
        room: "general".into(),
        since: None,
    })
    .await;
    assert!(
        matches!(
            b.recv().await,
            ServerFrame::Error {
                code: ErrorCode::Forbidden,
                ..
            }
        ),
        "the claim limits rooms"
    );
    let forbidden = [
        ("/v1/rooms/private-board/messages", &amy),
        ("/v1/rooms/private-board/presence", &amy),
        ("/v1/rooms/@bo/messages", &amy),
        ("/v1/rooms/general/messages", &board),
    ];
    for (path, token) in forbidden {
        let r = http()
            .get(t.http_url(1, path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["code"],
            "forbidden",
            "{path}"
        );
    }
    let r = http()
        .get(t.http_url(1, "/v1/rooms/private-board/messages"))
        .bearer_auth(&board)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A user can never publish as someone else.
    let spoof = http()
        .post(t.http_url(0, "/v1/rooms/general/messages"))
        .bearer_auth(&amy)
        .json(&json!({"text": "I am bo", "from": "bo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(spoof.status(), 403);
    let spoof = http()
        .post(t.http_url(0, "/chat/send"))
        .bearer_auth(&amy)
        .json(&json!({"sender": "bo", "receiver": "general", "text": "I am bo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(spoof.status(), 403);
    // ...and what they publish carries their own name.
    let mut watcher = WsClient::open(&t.ws_url(1), false).await;
    watcher
        .send(&ClientFrame::Connect {
            token: Some(user_token("wes")),
            user: None,
            since: None,
        })
        .await;
    watcher.recv().await;
    watcher.join("general").await;
    let r = http()
        .post(t.http_url(0, "/v1/rooms/general/messages"))
        .bearer_auth(&amy)
        .json(&json!({"text": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    match watcher.recv().await {
        ServerFrame::Message(m) => assert_eq!(m.from, "amy"),
        other => panic!("{other:?}"),
    }
    // Members routes need an API key, not a user token.
    let r = http()
        .post(t.http_url(0, "/v1/rooms/general/members"))
        .bearer_auth(&amy)
        .json(&json!({"user": "wes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http()
        .post(t.http_url(0, "/v1/rooms/general/members"))
        .bearer_auth(API_KEY)
        .json(&json!({"user": "wes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
}

#[tokio::test]
async fn split_refuses_with_the_contracts_codes() {
    let redis = RedisServer::start();
    let servers = Topology::builder().dev_mode(false);
    security_suite(&servers.split(&redis.url()).await).await;
}

#[tokio::test]
async fn all_in_one_refuses_with_the_contracts_codes() {
    let servers = Topology::builder().dev_mode(false);
    security_suite(&servers.all_in_one().await).await;
}

#[tokio::test]
async fn a_flooding_client_is_limited_while_others_flow() {
    let t = Topology::builder()
        .options(|o| {
            o.limits.rate_limit_per_sec = 10;
            o.limits.rate_limit_burst = 20;
        })
        .all_in_one()
        .await;
    let (mut flood, _) = WsClient::connect_as(&t.ws_url(0), "flood", false).await;
    let (mut calm, _) = WsClient::connect_as(&t.ws_url(0), "calm", false).await;
    let (mut reader, _) = WsClient::connect_as(&t.ws_url(0), "reader", true).await;
    reader.join("busy").await;
    for i in 0..200 {
        flood
            .send(&ClientFrame::Send {
                room: Some("busy".into()),
                to: None,
                text: format!("spam {i}"),
                cid: Some(i.to_string()),
            })
            .await;
    }
    let mut acks = 0;
    let mut limited = 0;
    let close = loop {
        match flood.try_recv(Duration::from_secs(10)).await {
            Some(Ok(ServerFrame::Ack { .. })) => acks += 1,
            Some(Ok(ServerFrame::Error {
                code: ErrorCode::RateLimited,
                cid,
                ..
            })) => {
                assert!(cid.is_some(), "the refused message's cid comes back");
                limited += 1;
            }
            Some(Ok(_)) => {}
            Some(Err(c)) => break c,
            None => panic!("flooder never cut off"),
        }
    };
    assert_eq!(
        close,
        Closed::Code(1008),
        "a client that ignores rate_limited is closed"
    );
    assert!(acks <= 25, "only about a burst got through: {acks}");
    assert!(limited >= 20, "{limited}");
    // The others were never slowed down.
    for i in 0..5 {
        calm.send(&ClientFrame::Send {
            room: Some("busy".into()),
            to: None,
            text: format!("calm {i}"),
            cid: None,
        })
        .await;
    }
    let mut calm_seen = 0;
    while calm_seen < 5 {
        if let ServerFrame::Message(m) = reader.recv().await
            && m.from == "calm"
        {
            calm_seen += 1;
        }
    }
}

#[tokio::test]
async fn connection_limits_and_timers() {
    let t = Topology::builder()
        .options(|o| {
            o.limits.max_rooms_per_connection = 3;
            o.limits.max_connections_per_user = 2;
            o.timing.connect_timeout = Duration::from_millis(300);
            o.timing.ping_every = Duration::from_millis(100);
            o.timing.idle_timeout = Duration::from_millis(400);
        })
        .all_in_one()
        .await;
    // Rooms per connection.
    let (mut c, _) = WsClient::connect_as(&t.ws_url(0), "roomy", false).await;
    for r in ["a", "b", "c"] {
        c.join(r).await;
    }
    c.send(&ClientFrame::Join {
        room: "d".into(),
        since: None,
    })
    .await;
    assert!(matches!(
        c.recv().await,
        ServerFrame::Error {
            code: ErrorCode::Forbidden,
            ..
        }
    ));
    c.join("a").await; // joining again is not a new room
    // Connections per user.
    let (_second, _) = WsClient::connect_as(&t.ws_url(0), "roomy", true).await;
    let mut third = WsClient::open(&t.ws_url(0), false).await;
    third
        .send(&ClientFrame::Connect {
            token: None,
            user: Some("roomy".into()),
            since: None,
        })
        .await;
    assert!(matches!(
        third.recv().await,
        ServerFrame::Error {
            code: ErrorCode::RateLimited,
            ..
        }
    ));
    assert_eq!(third.closed().await, Closed::Code(1008));
    // No connect within the deadline: 4408.
    let mut silent = WsClient::open(&t.ws_url(0), false).await;
    assert_eq!(silent.closed().await, Closed::Code(4408));
    // tungstenite answers pings by itself while we read; a client that never reads
    // never answers, and is closed once idle.
    let (mut idle, _) = WsClient::connect_as(&t.ws_url(0), "sleepy", false).await;
    // Part of the scenario: not reading for longer than the 400 ms idle timeout.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(idle.closed().await, Closed::Code(1001));
    // An attentive client stays: tungstenite answers pings while it reads.
    let (mut awake, _) = WsClient::connect_as(&t.ws_url(0), "awake", false).await;
    awake.expect_silence(Duration::from_millis(900)).await;
    awake.send(&ClientFrame::Ping).await;
    assert_eq!(awake.recv().await, ServerFrame::Pong);
    let metrics = metrics_of(&t.http[0]).await;
    for limit in [
        "rooms_per_connection",
        "connections_per_user",
        "connect_timeout",
        "idle",
    ] {
        assert!(
            metrics.contains(&format!("chat_limit_hits_total{{limit=\"{limit}\"}}")),
            "{limit} counted"
        );
    }
}

/// The per-IP limit counts the peer's address, whatever `X-Forwarded-For` says; behind a
/// proxy in `CHAT_TRUSTED_PROXIES` it counts the client the proxy names, and a client
/// that prepends another address to the header gains nothing.
#[tokio::test]
async fn connections_per_ip_count_the_client_behind_a_trusted_proxy() {
    async fn open(url: &str, forwarded: &str) -> Result<WsClient, u16> {
        match WsClient::try_open(url, false, &[("X-Forwarded-For", forwarded)]).await {
            Ok(c) => Ok(c),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("upgrade failed: {e}"),
        }
    }

    // Nobody trusted: every connection here is 127.0.0.1's.
    let two_per_ip = Topology::builder().options(|o| o.limits.max_connections_per_ip = 2);
    let t = two_per_ip.all_in_one().await;
    let url = t.ws_url(0);
    let _a = open(&url, "198.51.100.1").await.unwrap();
    let _b = open(&url, "198.51.100.2").await.unwrap();
    assert_eq!(open(&url, "198.51.100.3").await.err(), Some(429));

    // Loopback is the proxy: two per forwarded client.
    let t = two_per_ip
        .options(|o| o.limits.trusted_proxies = "127.0.0.0/8".parse().unwrap())
        .all_in_one()
        .await;
    let url = t.ws_url(0);
    let _a1 = open(&url, "198.51.100.1").await.unwrap();
    let _a2 = open(&url, "198.51.100.1").await.unwrap();
    let _b1 = open(&url, "198.51.100.2").await.unwrap();
    assert_eq!(open(&url, "198.51.100.1").await.err(), Some(429));
    assert_eq!(
        open(&url, "203.0.113.9, 198.51.100.1").await.err(),
        Some(429),
        "a forged left part is not read"
    );
    let _b2 = open(&url, "6.6.6.6, 198.51.100.2").await.unwrap();
    let metrics = metrics_of(&t.http[0]).await;
    assert!(metrics.contains("chat_limit_hits_total{limit=\"connections_per_ip\"} 2"));
}
