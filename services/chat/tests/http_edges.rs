//! The HTTP edges of every listener: sockets that never finish a request (half-open
//! clients), and the answers of routes, fallbacks and method mismatches.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chat_testkit::RedisServer;
use chat_testkit::topology::{API_KEY, Builder, Topology};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: chat\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

/// A TCP connection to `addr` from the loopback address `from` (127.0.0.x).
async fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Sends `request` and reads the answer's head: its status, and the stream (a
/// WebSocket after a 101).
async fn ask(mut tcp: TcpStream, request: &str) -> (u16, String, TcpStream) {
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut byte)).await {
            Ok(Ok(1)) => head.push(byte[0]),
            other => panic!("no answer to {request:?}: {other:?} after {head:?}"),
        }
    }
    let head = String::from_utf8(head).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, tcp)
}

async fn upgrade_from(from: &str, addr: SocketAddr) -> (u16, TcpStream) {
    let (status, _, tcp) = ask(connect_from(from, addr).await, UPGRADE).await;
    (status, tcp)
}

async fn healthz_from(from: &str, addr: SocketAddr) -> u16 {
    let request = "GET /healthz HTTP/1.1\r\nHost: chat\r\nConnection: close\r\n\r\n";
    ask(connect_from(from, addr).await, request).await.0
}

/// Waits until the server closes `tcp` (EOF or reset); how long that took.
async fn closed_by_server(mut tcp: TcpStream, within: Duration) -> Duration {
    // A read, not a sleep: the close is the event waited on.
    let start = Instant::now();
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout_at((start + within).into(), tcp.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("a half-open socket was still open after {within:?}"),
        }
    }
}

const LIMIT: u32 = 8;

/// Half-open sockets from one address (some silent, some half a request) count against
/// that address's limit and are closed after the handshake timeout, while clients from
/// another address and `/healthz` keep working; a socket counts once, upgraded or not.
async fn half_open_clients_hold_only_their_own_slots(addr: SocketAddr) {
    let mut half_open = Vec::new();
    for i in 0..3 * LIMIT {
        let mut tcp = connect_from("127.0.0.1", addr).await;
        if i % 2 == 1 {
            tcp.write_all(b"GET /ws HTTP/1.1\r\nHost: chat\r\n")
                .await
                .unwrap();
        }
        half_open.push(tcp);
    }
    let opened = Instant::now();

    // Another address is not affected: a WebSocket and /healthz both answer.
    let (status, _other_ws) = upgrade_from("127.0.0.2", addr).await;
    assert_eq!(status, 101, "a client from another address upgrades");
    assert_eq!(healthz_from("127.0.0.2", addr).await, 200);
    // The half-open sockets fill 127.0.0.1's slots: it is refused, with the 429.
    assert_eq!(upgrade_from("127.0.0.1", addr).await.0, 429);

    // Each one the server kept is closed after the timeout (1 s here), none before it.
    for tcp in half_open {
        closed_by_server(tcp, Duration::from_secs(5)).await;
    }
    assert!(
        opened.elapsed() >= Duration::from_millis(900),
        "closed after the timeout, not at once: {:?}",
        opened.elapsed()
    );

    // The slots are back, and an upgraded socket counts once: LIMIT WebSockets fit.
    let mut sockets = Vec::new();
    for i in 0..LIMIT {
        let (status, ws) = upgrade_from("127.0.0.1", addr).await;
        assert_eq!(status, 101, "WebSocket {} of {LIMIT} upgrades", i + 1);
        sockets.push(ws);
    }
    assert_eq!(
        upgrade_from("127.0.0.1", addr).await.0,
        429,
        "one more is over"
    );
}

/// Servers that give a handshake 1 s and an IP `LIMIT` connections.
fn short_handshake() -> Builder {
    Topology::builder().options(|o| {
        o.limits.max_connections_per_ip = LIMIT;
        o.edge.handshake_timeout_secs = 1;
    })
}

#[tokio::test]
async fn half_open_clients_on_chat() {
    let addr = short_handshake().chat(None).await.addr;
    half_open_clients_hold_only_their_own_slots(addr).await;
}

#[tokio::test]
async fn half_open_clients_on_realtime() {
    let redis = RedisServer::start();
    let addr = short_handshake().realtime(&redis.url()).await.addr;
    half_open_clients_hold_only_their_own_slots(addr).await;
}

/// The gateway has no per-IP limit, but it closes half-open sockets all the same.
#[tokio::test]
async fn half_open_clients_on_the_gateway_are_closed() {
    let redis = RedisServer::start();
    let addr = short_handshake().gateway(&redis.url()).await.addr;
    let opened = Instant::now();
    let silent = connect_from("127.0.0.1", addr).await;
    let mut partial = connect_from("127.0.0.1", addr).await;
    partial
        .write_all(b"POST /chat/send HTTP/1.1\r\nHost: chat\r\n")
        .await
        .unwrap();
    assert_eq!(healthz_from("127.0.0.1", addr).await, 200);
    for tcp in [silent, partial] {
        closed_by_server(tcp, Duration::from_secs(5)).await;
    }
    let after = opened.elapsed();
    assert!(
        after >= Duration::from_millis(900),
        "closed at once: {after:?}"
    );
}

/// The internal ops listener (`CHAT_INTERNAL_ADDR`) closes half-open sockets too.
#[tokio::test]
async fn half_open_clients_on_the_internal_listener_are_closed() {
    let chat = short_handshake().internal_listener().chat(None).await;
    let addr = chat.internal.unwrap();
    let silent = connect_from("127.0.0.1", addr).await;
    assert_eq!(healthz_from("127.0.0.1", addr).await, 200);
    let after = closed_by_server(silent, Duration::from_secs(5)).await;
    assert!(
        after >= Duration::from_millis(900),
        "closed at once: {after:?}"
    );
}

/// One request of the walk and the status it must get.
#[derive(Clone, Debug)]
pub struct Probe {
    pub method: &'static str,
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Vec<u8>>,
    pub status: u16,
}

fn probe(method: &'static str, path: impl Into<String>, status: u16) -> Probe {
    Probe {
        method,
        path: path.into(),
        headers: Vec::new(),
        body: None,
        status,
    }
}

impl Probe {
    fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn key(self) -> Self {
        self.header("authorization", format!("Bearer {}", API_KEY))
    }
}

const METHODS: [&str; 6] = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// Every route (path with sample parameters, its methods) of a listener's router.
fn wrong_methods(routes: &[(&str, &[&'static str])]) -> Vec<Probe> {
    let mut probes = Vec::new();
    for (path, allowed) in routes {
        for method in METHODS {
            if !allowed.contains(&method) {
                probes.push(probe(method, *path, 405));
            }
        }
    }
    probes
}

const GATEWAY_ROUTES: &[(&str, &[&str])] = &[
    ("/chat/send", &["POST"]),
    ("/v1/rooms/general/messages", &["GET", "POST"]),
    ("/v1/users/bob/messages", &["POST"]),
    ("/v1/rooms/general/presence", &["GET"]),
    ("/v1/rooms/general/members", &["POST"]),
    ("/v1/rooms/general/members/bob", &["DELETE"]),
    ("/v1/auth/dev-token", &["POST"]),
    ("/openapi.json", &["GET"]),
];
const OPS_ROUTES: &[(&str, &[&str])] = &[
    ("/healthz", &["GET"]),
    ("/readyz", &["GET"]),
    ("/metrics", &["GET"]),
];
const WS_ROUTES: &[(&str, &[&str])] = &[("/ws", &["GET"])];

fn unknown_paths() -> Vec<Probe> {
    [
        "/nope",
        "/v1",
        "/v1/rooms",
        "/v1/rooms/general",
        "/v1/rooms/general/x",
        "/healthz/x",
        "/ws/x",
    ]
    .into_iter()
    .map(|p| probe("GET", p, 404))
    .collect()
}

/// The gateway's routes: bad bodies, queries and names answer 400/413, and with no
/// credentials every authenticated route answers 401 first, however bad the rest is.
fn gateway_inputs() -> Vec<Probe> {
    let huge = vec![b'x'; (1 << 20) + 10];
    let posts = [
        "/v1/rooms/general/messages",
        "/v1/users/bob/messages",
        "/v1/rooms/general/members",
    ];
    let mut probes = Vec::new();
    for path in posts {
        probes.push(probe("POST", path, 401).body("{"));
        probes.push(probe("POST", path, 401).body(r#"{"user": 7, "text": ""}"#));
        probes.push(probe("POST", path, 400).key().body("{"));
        probes.push(probe("POST", path, 400).key().body(""));
        probes.push(probe("POST", path, 400).key().body("[1, 2]"));
        probes.push(
            probe("POST", path, 400)
                .key()
                .header("content-type", "application/msgpack")
                .body(vec![0xc1, 0x00]),
        );
        probes.push(probe("POST", path, 413).key().body(huge.clone()));
    }
    for (method, path) in [
        ("POST", "/v1/rooms/bad%20room/messages"),
        ("POST", "/v1/users/%FF/messages"),
        ("GET", "/v1/rooms/%FF/messages"),
        ("GET", "/v1/rooms/bad%20room/presence"),
        ("POST", "/v1/rooms/r%7B1%7D/members"),
        ("DELETE", "/v1/rooms/general/members/bad%20user"),
        ("GET", "/v1/rooms/general/messages?limit=abc"),
    ] {
        probes.push(probe(method, path, 401).body("{"));
        probes.push(
            probe(method, path, 400)
                .key()
                .body(r#"{"text":"x","from":"a","user":"b"}"#),
        );
    }
    for query in [
        "limit=0",
        "limit=1001",
        "limit=-1",
        "since=-1",
        "before=x",
        "since=1&since=2",
    ] {
        let path = format!("/v1/rooms/general/messages?{query}");
        probes.push(probe("GET", path.clone(), 401));
        probes.push(probe("GET", path, 400).key());
    }
    probes.push(
        probe("POST", "/v1/rooms/general/messages", 413)
            .key()
            .body(serde_json::json!({"text": "é".repeat(2049), "from": "a"}).to_string()),
    );
    probes.push(
        probe("POST", "/v1/rooms/general/messages", 400)
            .key()
            .body(r#"{"text": "", "from": "a"}"#),
    );
    probes.push(
        probe("POST", "/v1/users/bob/messages", 400)
            .key()
            .body(r#"{"text": "hi"}"#),
    );
    probes.push(
        probe("POST", "/chat/send", 400)
            .body(r#"{"sender": "a b", "receiver": "general", "text": "x"}"#),
    );
    probes.push(
        probe("POST", "/chat/send", 400)
            .body(r#"{"sender": "a", "receiver": "@b", "event": "join"}"#),
    );
    probes.push(
        probe("POST", "/chat/send", 400)
            .body(r#"{"sender": "a", "receiver": "general", "event": "shout"}"#),
    );
    probes.push(
        probe("POST", "/chat/send", 401)
            .header("authorization", "Basic eA==")
            .body("{"),
    );
    probes.push(probe("POST", "/v1/auth/dev-token", 400).body(r#"{"user": ""}"#));
    probes.push(probe("POST", "/v1/auth/dev-token", 400).body("null"));
    probes.push(
        probe("GET", "/v1/rooms/general/presence", 401).header("authorization", "Bearer not-a-jwt"),
    );
    probes
}

/// Sends every probe to `addr`; each answer has the expected status and the contract's
/// JSON error body. Returns the failures, so one run shows them all.
async fn walk(addr: SocketAddr, probes: &[Probe]) -> Vec<String> {
    let client = common::http();
    let mut failures = Vec::new();
    for p in probes {
        let method = reqwest::Method::from_bytes(p.method.as_bytes()).unwrap();
        let mut req = client.request(method, format!("http://{addr}{}", p.path));
        for (name, value) in &p.headers {
            req = req.header(*name, value);
        }
        if let Some(body) = &p.body {
            req = req.body(body.clone());
        }
        let label = format!(
            "{} {}",
            p.method,
            p.path.chars().take(60).collect::<String>()
        );
        let r = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{label}: {e}"));
                continue;
            }
        };
        let status = r.status().as_u16();
        let json = r
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        let body = r.bytes().await.unwrap_or_default();
        let parsed: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
        let error = parsed.as_ref().map(|v| &v["error"]);
        let code_ok = error.is_some_and(|e| {
            e["message"].is_string()
                && e["code"].as_str().is_some_and(|c| {
                    let expected = match status {
                        400 | 405 => "bad_request",
                        401 => "unauthorized",
                        403 => "forbidden",
                        404 => "not_found",
                        413 => "too_large",
                        429 => "rate_limited",
                        503 => "unavailable",
                        _ => "internal",
                    };
                    c == expected
                })
        });
        if status != p.status || !json || !code_ok {
            failures.push(format!(
                "{label}: {status} (want {}), json content-type {json}, body {:?}",
                p.status,
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(120)
                    .collect::<String>()
            ));
        }
    }
    failures
}

fn assert_walk(failures: Vec<String>, what: &str) {
    assert!(
        failures.is_empty(),
        "{what}: {} answers off the contract:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The `/ws` upgrade's own refusals (bad handshakes) join the walk once they answer
/// with the JSON body too: a list, so they can be added without touching the walk.
fn ws_refusals() -> Vec<Probe> {
    Vec::new()
}

fn ops_probes() -> Vec<Probe> {
    wrong_methods(OPS_ROUTES)
}

#[tokio::test]
async fn every_error_answer_of_chat_is_the_json_error() {
    let addr = Topology::builder().chat(None).await.addr;
    let mut probes = wrong_methods(GATEWAY_ROUTES);
    probes.extend(wrong_methods(WS_ROUTES));
    probes.extend(wrong_methods(&[("/", &["GET"]), ("/index.html", &["GET"])]));
    probes.extend(ops_probes());
    probes.extend(unknown_paths());
    probes.extend(gateway_inputs());
    probes.extend(ws_refusals());
    assert_walk(walk(addr, &probes).await, "chat");
}

#[tokio::test]
async fn every_error_answer_of_the_split_deployment_is_the_json_error() {
    let mut redis = RedisServer::start();
    let gateway = Topology::builder().gateway(&redis.url()).await.addr;
    let realtime = Topology::builder().realtime(&redis.url()).await.addr;

    let mut probes = wrong_methods(GATEWAY_ROUTES);
    probes.extend(ops_probes());
    probes.extend(unknown_paths());
    probes.extend(gateway_inputs());
    assert_walk(walk(gateway, &probes).await, "chat-gateway");

    let mut probes = wrong_methods(WS_ROUTES);
    probes.extend(ops_probes());
    probes.extend(unknown_paths());
    probes.extend(
        GATEWAY_ROUTES
            .iter()
            .map(|(path, _)| probe("POST", *path, 404)),
    );
    probes.extend(ws_refusals());
    assert_walk(walk(realtime, &probes).await, "chat-realtime");

    // Not ready is an error answer too. Readiness is what the engine's probe saw last,
    // so it turns within about two seconds, not at the instant Redis dies.
    redis.stop();
    common::wait_status(&format!("http://{gateway}/readyz"), 503).await;
    common::wait_status(&format!("http://{realtime}/readyz"), 503).await;
    let readyz = [probe("GET", "/readyz", 503)];
    assert_walk(walk(gateway, &readyz).await, "chat-gateway /readyz");
    assert_walk(walk(realtime, &readyz).await, "chat-realtime /readyz");
}

/// `/openapi.json` states what the server enforces, and the extremes it allows are
/// accepted: a schema-driven client never sends a valid request that is refused.
#[tokio::test]
async fn the_openapi_document_states_the_limits_and_its_extremes_are_accepted() {
    let addr = Topology::builder().chat(None).await.addr;
    let base = format!("http://{addr}");
    let doc = common::get_json(&format!("{base}/openapi.json")).await;
    let schemas = &doc["components"]["schemas"];
    let text = &schemas["PublishRequest"]["properties"]["text"]["anyOf"];
    assert_eq!(text[0]["maxLength"], 4096, "ASCII up to the byte limit");
    assert_eq!(text[1]["maxLength"], 1024, "any text up to a quarter of it");
    assert_eq!(text[1]["minLength"], 1);
    assert_eq!(
        schemas["MemberRequest"]["properties"]["user"]["pattern"],
        "^[A-Za-z0-9_.-]{1,64}$"
    );
    let history = &doc["paths"]["/v1/rooms/{room}/messages"]["get"]["parameters"];
    let param = |name: &str| {
        history
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["schema"]
            .clone()
    };
    let page = param("page");
    for choice in page["oneOf"].as_array().unwrap() {
        assert_eq!(choice["properties"]["limit"]["minimum"], 1);
        assert_eq!(choice["properties"]["limit"]["maximum"], 1000);
        assert_eq!(
            choice["additionalProperties"], false,
            "since or before, not both"
        );
    }
    assert_eq!(
        param("room")["pattern"],
        "^(@[A-Za-z0-9_.-]{1,64}|[A-Za-z0-9_.:-]{1,64})$"
    );
    let schemes = &doc["components"]["securitySchemes"];
    assert!(schemes["userToken"].is_object() && schemes["apiKey"].is_object());
    assert_eq!(
        doc["paths"]["/v1/rooms/{room}/members"]["post"]["security"],
        serde_json::json!([{"apiKey": []}])
    );

    // The extremes the schema allows.
    let url = format!("{base}/v1/rooms/{}/messages", "r".repeat(64));
    for text in ["a".repeat(4096), "😀".repeat(1024), "é".repeat(1024)] {
        let (status, body) = common::post_text(&url, &text).await;
        assert_eq!(status, 201, "{} chars: {body}", text.chars().count());
    }
    let client = common::http();
    for query in [
        "limit=1",
        "limit=1000",
        "since=0",
        "before=9223372036854775807",
    ] {
        let r = client
            .get(format!("{url}?{query}"))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{query}");
    }
}
