//! Recovery without loss when a replica dies: real `chat-realtime` processes over a real
//! Redis, one killed with SIGKILL mid-stream; clients reconnect elsewhere and join with
//! `since`.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chat_engine::{CancellationToken, Engine, EngineConfig, Publication};
use chat_protocol::{ClientFrame, ServerFrame, Since};
use chat_testkit::{RedisServer, WsClient, holds_within, wait_until};
use parking_lot::Mutex;
use support::{Seen, recording_client, start_replica, wait_until_all_joined};

fn rooms_of(client: usize) -> Vec<String> {
    (0..5)
        .map(|k| format!("room-{}", (client * 5 + k * 7) % 50))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_stream_loses_no_message_for_anyone() {
    let redis = RedisServer::start();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(start_replica(&redis.url(), &[]).await);
    }
    let ports: Vec<u16> = replicas.iter().map(|r| r.port).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for i in 0..30 {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let task = tokio::spawn(recording_client(
            format!("user{i}"),
            rooms_of(i),
            ports.clone(),
            i % 3,
            seen.clone(),
            stop.clone(),
        ));
        clients.push((i, seen, task));
    }
    // Every client has joined all its rooms before the stream starts.
    let joining: Vec<_> = clients
        .iter()
        .map(|(i, seen, _)| (&**seen, rooms_of(*i).len()))
        .collect();
    wait_until_all_joined(&joining).await;

    let engine = Engine::from_config(
        &EngineConfig {
            redis_url: Some(redis.url()),
            ..EngineConfig::default()
        },
        CancellationToken::new(),
    )
    .unwrap();
    let mut published: HashMap<String, u64> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(4));
    for n in 0..1000u64 {
        tick.tick().await;
        if n == 400 {
            replicas[2].child.start_kill().unwrap(); // SIGKILL
        }
        let room = format!("room-{}", n % 50);
        let m = engine
            .publish(Publication {
                channel: room.clone(),
                from: "pub".into(),
                text: n.to_string(),
                to: None,
                cid: None,
                trace: None,
            })
            .await
            .unwrap();
        published.insert(room, m.seq);
    }

    // Wait until every client has every message of its rooms (or give up and report).
    let complete = |seen: &Seen, rooms: &[String]| {
        rooms
            .iter()
            .all(|r| seen.messages.get(r).map_or(0, |v| v.len() as u64) >= published[r])
    };
    holds_within(Duration::from_secs(10), || async {
        clients
            .iter()
            .all(|(i, seen, _)| complete(&seen.lock(), &rooms_of(*i)))
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut reconnected = 0;
    for (i, seen, task) in clients {
        task.await.unwrap();
        let seen = seen.lock();
        for room in rooms_of(i) {
            let got: Vec<u64> = seen
                .messages
                .get(&room)
                .map(|v| v.iter().map(|(_, s)| *s).collect())
                .unwrap_or_default();
            let want: Vec<u64> = (1..=published[&room]).collect();
            assert_eq!(
                got, want,
                "client {i} in {room}: every message, once, in order"
            );
        }
        assert!(
            seen.recoveries.iter().all(|r| *r),
            "client {i}: a recovery failed"
        );
        reconnected += usize::from(seen.reconnects > 0);
    }
    assert!(
        reconnected >= 10,
        "the killed replica's clients reconnected ({reconnected})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_redis_loses_everything_nobody_is_told_recovery_succeeded() {
    let mut redis = RedisServer::start();
    let mut a = start_replica(&redis.url(), &[]).await;
    let b = start_replica(&redis.url(), &[]).await;
    let engine = Engine::from_config(
        &EngineConfig {
            redis_url: Some(redis.url()),
            ..EngineConfig::default()
        },
        CancellationToken::new(),
    )
    .unwrap();

    let (mut stays, _) =
        WsClient::connect_as(&format!("ws://127.0.0.1:{}/ws", b.port), "stays", false).await;
    stays.join("R").await;
    let (mut moves, _) =
        WsClient::connect_as(&format!("ws://127.0.0.1:{}/ws", a.port), "moves", true).await;
    moves.join("R").await;
    let publish = |text: &str| {
        engine.publish(Publication {
            channel: "R".into(),
            from: "p".into(),
            text: text.into(),
            to: None,
            cid: None,
            trace: None,
        })
    };
    let old = publish("old-1").await.unwrap();
    publish("old-2").await.unwrap();
    let mut last_seen = None;
    for _ in 0..2 {
        if let ServerFrame::Message(m) = moves.recv().await {
            last_seen = Some(Since {
                epoch: m.epoch,
                seq: m.seq,
            });
        }
    }
    for _ in 0..2 {
        stays.recv().await;
    }

    // Redis restarts empty while replica A dies; A's client comes back through B.
    redis.stop();
    a.child.start_kill().unwrap();
    redis.start_again();
    wait_until(
        "the engine and replica B are ready on the new Redis",
        Duration::from_secs(10),
        || async {
            engine.ready()
                && reqwest::get(format!("http://127.0.0.1:{}/readyz", b.port))
                    .await
                    .is_ok_and(|r| r.status() == 200)
        },
    )
    .await;
    let new = publish("new-1").await.unwrap();
    assert_ne!(new.epoch, old.epoch, "history was lost: a new epoch");
    assert_eq!(new.seq, 1);

    let mut back = WsClient::open(&format!("ws://127.0.0.1:{}/ws", b.port), true).await;
    back.send(&ClientFrame::Connect {
        token: None,
        user: Some("moves".into()),
        since: None,
    })
    .await;
    back.recv().await;
    back.send(&ClientFrame::Join {
        room: "R".into(),
        since: last_seen,
    })
    .await;
    match back.recv().await {
        ServerFrame::Joined {
            recovered,
            missed,
            epoch,
            ..
        } => {
            assert_eq!(recovered, Some(false), "the old epoch cannot be recovered");
            assert_eq!(missed, 0, "nothing is presented as recovered");
            assert_eq!(epoch, new.epoch);
        }
        other => panic!("{other:?}"),
    }
    // The client that stayed sees the epoch change on the next message: it can tell.
    let m = stays
        .recv_until(|f| matches!(f, ServerFrame::Message(_)))
        .await;
    match m {
        ServerFrame::Message(m) => assert_eq!((m.epoch.as_str(), m.seq), (new.epoch.as_str(), 1)),
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replicas_users_leave_presence_within_the_ttl() {
    let redis = RedisServer::start();
    let ttl = [("CHAT_PRESENCE_TTL_SECS", "3")];
    let a = start_replica(&redis.url(), &ttl).await;
    let mut b = start_replica(&redis.url(), &ttl).await;
    let engine = Engine::from_config(
        &EngineConfig {
            redis_url: Some(redis.url()),
            ..EngineConfig::default()
        },
        CancellationToken::new(),
    )
    .unwrap();

    let (mut watcher, _) =
        WsClient::connect_as(&format!("ws://127.0.0.1:{}/ws", a.port), "watcher", false).await;
    watcher.join("lobby").await;
    let (mut doomed, _) =
        WsClient::connect_as(&format!("ws://127.0.0.1:{}/ws", b.port), "doomed", true).await;
    doomed.join("lobby").await;
    let joined = watcher
        .recv_until_any(|f| matches!(f, ServerFrame::Presence { user, .. } if user == "doomed"))
        .await;
    assert!(matches!(
        joined,
        ServerFrame::Presence {
            event: chat_protocol::frames::PresenceEvent::Join,
            ..
        }
    ));
    assert_eq!(
        engine.presence().list("lobby").await.unwrap(),
        vec!["doomed", "watcher"]
    );

    b.child.start_kill().unwrap();
    let started = std::time::Instant::now();
    let left = watcher
        .recv_until_any(|f| matches!(f, ServerFrame::Presence { user, .. } if user == "doomed"))
        .await;
    assert!(matches!(
        left,
        ServerFrame::Presence {
            event: chat_protocol::frames::PresenceEvent::Leave,
            ..
        }
    ));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "announced within the TTL and a sweep"
    );
    assert_eq!(
        engine.presence().list("lobby").await.unwrap(),
        vec!["watcher"]
    );
}
