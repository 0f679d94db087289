//! The HTTP edges of every listener: sockets that never finish a request (half-open
//! clients), and the answers of routes, fallbacks and method mismatches.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chat_testkit::RedisServer;
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

fn short_handshake() {
    common::configure(|o| {
        o.limits.max_connections_per_ip = LIMIT;
        o.limits.handshake_timeout_secs = 1;
    });
}

#[tokio::test]
async fn half_open_clients_on_chat() {
    short_handshake();
    let addr = common::spawn_chat(None).await;
    half_open_clients_hold_only_their_own_slots(addr).await;
}

#[tokio::test]
async fn half_open_clients_on_realtime() {
    short_handshake();
    let redis = RedisServer::start();
    let (addr, _rt) = common::spawn_realtime(&redis.url()).await;
    half_open_clients_hold_only_their_own_slots(addr).await;
}

/// The gateway has no per-IP limit, but it closes half-open sockets all the same.
#[tokio::test]
async fn half_open_clients_on_the_gateway_are_closed() {
    short_handshake();
    let redis = RedisServer::start();
    let addr = common::spawn_gateway(&redis.url()).await;
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
    short_handshake();
    let chat = chat::Chat::start(
        &common::engine_config(None),
        &common::auth_config(true),
        chat_realtime::Options {
            limits: chat_auth::LimitsConfig {
                handshake_timeout_secs: 1,
                ..Default::default()
            },
            ..chat_realtime::Options::new(Default::default(), 1000, 2)
        },
    )
    .await
    .unwrap();
    let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let internal = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = internal.local_addr().unwrap();
    tokio::spawn(chat::run(
        public,
        Some(internal),
        chat,
        std::future::pending(),
    ));
    let silent = connect_from("127.0.0.1", addr).await;
    assert_eq!(healthz_from("127.0.0.1", addr).await, 200);
    let after = closed_by_server(silent, Duration::from_secs(5)).await;
    assert!(
        after >= Duration::from_millis(900),
        "closed at once: {after:?}"
    );
}
