//! Shared by the process-level tests: real `chat-realtime` replicas and a client that
//! records what it receives and recovers with `since` when its connection drops.

#![allow(dead_code)]

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chat_protocol::{ClientFrame, ServerFrame, Since};
use chat_testkit::{WsClient, free_port, wait_until};
use parking_lot::Mutex;

pub const BIN: &str = env!("CARGO_BIN_EXE_chat-realtime");

pub struct Replica {
    pub child: tokio::process::Child,
    pub port: u16,
}

pub async fn start_replica(redis_url: &str, extra: &[(&str, &str)]) -> Replica {
    let port = free_port();
    let child = tokio::process::Command::new(BIN)
        .env("CHAT_REDIS_URL", redis_url)
        .env("CHAT_REALTIME_ADDR", format!("127.0.0.1:{port}"))
        .env("CHAT_DEV_MODE", "true")
        .envs(extra.iter().copied())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_until_ready(port).await;
    Replica { child, port }
}

/// Waits for the server on `port` to answer `/readyz` with 200.
pub async fn wait_until_ready(port: u16) {
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/readyz");
    wait_until(
        &format!("{url} answers 200"),
        Duration::from_secs(10),
        || async {
            client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        },
    )
    .await;
}

/// What one client saw, per room.
#[derive(Default)]
pub struct Seen {
    pub messages: HashMap<String, Vec<(String, u64)>>,
    /// `recovered` of every join that carried `since`.
    pub recoveries: Vec<bool>,
    /// `joined` frames received, over every connection.
    pub joins: usize,
    pub reconnects: usize,
    /// `reconnect` frames received (the server was draining).
    pub told_to_reconnect: usize,
}

/// A client that records every message of its rooms and, when its connection drops,
/// reconnects to the next replica and joins again with `since`.
pub async fn recording_client(
    user: String,
    rooms: Vec<String>,
    ports: Vec<u16>,
    first: usize,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) {
    let mut since: HashMap<String, Since> = HashMap::new();
    let mut attempt = first;
    while !stop.load(Ordering::Relaxed) {
        let url = format!("ws://127.0.0.1:{}/ws", ports[attempt % ports.len()]);
        let Ok(mut c) = WsClient::try_open(&url, attempt.is_multiple_of(2), &[]).await else {
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        c.send(&ClientFrame::Connect {
            token: None,
            user: Some(user.clone()),
            since: None,
        })
        .await;
        for room in &rooms {
            c.send(&ClientFrame::Join {
                room: room.clone(),
                since: since.get(room).cloned(),
            })
            .await;
        }
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            match c.try_recv(Duration::from_millis(200)).await {
                None => continue,
                Some(Err(_)) => break,
                Some(Ok(ServerFrame::Joined { recovered, .. })) => {
                    let mut seen = seen.lock();
                    seen.joins += 1;
                    seen.recoveries.extend(recovered);
                }
                Some(Ok(ServerFrame::Message(m))) => {
                    since.insert(
                        m.room.clone(),
                        Since {
                            epoch: m.epoch.clone(),
                            seq: m.seq,
                        },
                    );
                    seen.lock()
                        .messages
                        .entry(m.room)
                        .or_default()
                        .push((m.epoch, m.seq));
                }
                Some(Ok(ServerFrame::Reconnect { .. })) => seen.lock().told_to_reconnect += 1,
                Some(Ok(ServerFrame::Error { message, .. })) => panic!("{user}: error {message}"),
                Some(Ok(_)) => {}
            }
        }
        seen.lock().reconnects += 1;
        attempt += 1;
    }
}

/// Waits until every client has seen `joined` for each of its rooms: from then on its
/// replica is subscribed to them (a replica answers `joined` only once its
/// subscription is in place), so nothing published next can pass it by.
pub async fn wait_until_all_joined(clients: &[(&Mutex<Seen>, usize)]) {
    wait_until(
        "every client has joined all its rooms",
        Duration::from_secs(20),
        || async {
            clients
                .iter()
                .all(|(seen, rooms)| seen.lock().joins >= *rooms)
        },
    )
    .await;
}
