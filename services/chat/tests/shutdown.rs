//! One stop reaches every task: a process told to stop drains its clients, and when
//! `run` returns nothing of it is left running: no listener (public or internal), no
//! bus subscription, no connection to Redis, no presence refresh.

use std::time::Duration;

use chat_protocol::ServerFrame;
use chat_telemetry::Shutdown;
use chat_testkit::topology::Topology;
use chat_testkit::{RedisServer, WsClient, wait_until};

/// Redis clients other than the one asking.
fn redis_clients(redis: &RedisServer) -> usize {
    redis
        .cli(&["CLIENT", "LIST"])
        .lines()
        .count()
        .saturating_sub(1)
}

#[tokio::test]
async fn a_stopped_chat_leaves_nothing_running() {
    let redis = RedisServer::start();
    let shutdown = Shutdown::new();
    // Started by hand, not by the topology: the test awaits `run` itself.
    let settings = Topology::builder();
    let chat = chat::Chat::start(
        &settings.engine_config(Some(&redis.url())),
        &settings.auth_config(),
        chat_realtime::Options::new(1000, 1),
        Default::default(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let internal = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, ops) = (public.local_addr().unwrap(), internal.local_addr().unwrap());
    let served = tokio::spawn(chat::run(public, Some(internal), chat));

    let (mut client, _) = WsClient::connect_as(&format!("ws://{addr}/ws"), "ann", false).await;
    client.join("lobby").await;
    assert!(redis.cli(&["PUBSUB", "CHANNELS", "*"]).contains("lobby"));
    assert!(redis_clients(&redis) > 0);

    shutdown.stop();
    // The drain moves the client away...
    let moved = client
        .recv_until_any(|f| matches!(f, ServerFrame::Reconnect { .. }))
        .await;
    assert!(matches!(moved, ServerFrame::Reconnect { .. }));
    // ...and `run` returns once it is gone, well within the drain window.
    tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("run returns after the drain")
        .unwrap()
        .unwrap();
    assert!(shutdown.is_stopping());

    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the public listener is closed"
    );
    // What another process holds has no event to wait on: these are polled.
    let within = Duration::from_secs(5);
    wait_until("the internal ops listener is closed", within, || async {
        tokio::net::TcpStream::connect(ops).await.is_err()
    })
    .await;
    wait_until(
        "the bus unsubscribed from every channel",
        within,
        || async { redis.cli(&["PUBSUB", "CHANNELS", "*"]).is_empty() },
    )
    .await;
    wait_until("every connection to Redis is closed", within, || async {
        redis_clients(&redis) == 0
    })
    .await;
}
