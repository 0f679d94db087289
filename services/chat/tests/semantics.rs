//! Chat semantics over real sockets, on the split deployment (real Redis) and on the
//! all-in-one `chat`: recovery at the seam, recovery limits, the personal channel,
//! presence, typing and history paging.

mod common;

use std::time::Duration;

use chat_protocol::frames::PresenceEvent;
use chat_protocol::{ClientFrame, ServerFrame, Since};
use chat_testkit::topology::{API_KEY, Builder, Topology};
use chat_testkit::{Closed, RedisServer, WsClient, wait_until};
use common::{http, post_text};
use serde_json::{Value, json};

async fn publish(t: &Topology, room: &str, text: &str) -> Value {
    let (status, body) = post_text(&t.messages_url(0, room), text).await;
    assert_eq!(status, 201, "{body}");
    body
}

async fn token(t: &Topology, user: &str) -> String {
    common::dev_token(&t.http_url(0, ""), user).await
}

/// Joins `room` again with `since` and expects `joined` with `recovered: true` (the
/// recovered messages follow).
async fn rejoin(c: &mut WsClient, room: &str, since: Option<Since>) {
    c.send(&ClientFrame::Join {
        room: room.into(),
        since,
    })
    .await;
    match c.recv().await {
        ServerFrame::Joined { recovered, .. } => assert_eq!(recovered, Some(true)),
        other => panic!("expected joined, got {other:?}"),
    }
}

/// Publishes `n` messages to `room` in the background, alternating between the
/// deployment's two gateways, `pause` apart; every one must be stored.
fn publish_in_background(
    t: &Topology,
    room: &str,
    n: usize,
    pause: Duration,
    text: impl Fn(usize) -> String + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let urls = [t.messages_url(0, room), t.messages_url(1, room)];
    tokio::spawn(async move {
        for i in 0..n {
            let (status, body) = post_text(&urls[i % 2], &text(i)).await;
            assert_eq!(status, 201, "{body}");
            // Pacing is the caller's scenario (a stream that outlasts a recovery).
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
    })
}

/// A client rejoins with `since` while messages keep flowing: it ends with every
/// message exactly once, in order — no gap, no duplicate at the seam.
async fn recovery_seam_under_load(t: &Topology) {
    let (mut c, _) = WsClient::connect_as(&t.ws_url(0), "seam", true).await;
    c.join("S").await;
    let publisher = publish_in_background(t, "S", 300, Duration::ZERO, |i| i.to_string());
    let mut seqs = Vec::new();
    let mut since = None;
    while seqs.len() < 40 {
        if let ServerFrame::Message(m) = c.recv().await {
            seqs.push(m.seq);
            since = Some(Since {
                epoch: m.epoch,
                seq: m.seq,
            });
        }
    }
    c.close().await;
    // The seam is only tested if the room moved on while the client was away.
    let last = since.as_ref().unwrap().seq;
    wait_until(
        "messages were published after the client left",
        Duration::from_secs(10),
        || async { get_history(t, "S", "limit=1", API_KEY).await.1["seq"].as_u64() > Some(last) },
    )
    .await;
    let (mut c, _) = WsClient::connect_as(&t.ws_url(1), "seam", false).await;
    rejoin(&mut c, "S", since).await;
    publisher.await.unwrap();
    while seqs.len() < 300 {
        if let ServerFrame::Message(m) = c.recv().await {
            seqs.push(m.seq);
        }
    }
    assert_eq!(seqs, (1..=300).collect::<Vec<_>>());
    c.expect_silence(Duration::from_millis(200)).await;
}

/// Many seams while messages keep flowing from both gateways: the client alternately
/// leaves and rejoins with `since` on the same connection, and drops its connection and
/// rejoins on the other replica, after reading a varying number of messages each time.
/// It ends with every message exactly once, in order.
async fn recovery_survives_many_seams(t: &Topology) {
    const TOTAL: u64 = 600;
    let (mut c, _) = WsClient::connect_as(&t.ws_url(0), "seams", false).await;
    c.join("M").await;
    let publisher =
        publish_in_background(t, "M", TOTAL as usize, Duration::ZERO, |i| i.to_string());
    // Every seq received, and where to resume.
    let mut seqs: Vec<u64> = Vec::new();
    let mut since: Option<Since> = None;
    let seen = |m: chat_protocol::Message, seqs: &mut Vec<u64>, since: &mut Option<Since>| {
        seqs.push(m.seq);
        *since = Some(Since {
            epoch: m.epoch,
            seq: m.seq,
        });
    };
    let (mut replica, mut seams, mut rng) = (0, 0, 7u64);
    while (seqs.len() as u64) < TOTAL {
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let want = (seqs.len() as u64 + 1 + (rng >> 59)).min(TOTAL);
        while (seqs.len() as u64) < want {
            if let ServerFrame::Message(m) = c.recv().await {
                seen(m, &mut seqs, &mut since);
            }
        }
        if seqs.len() as u64 == TOTAL {
            break;
        }
        seams += 1;
        if seams % 2 == 0 {
            c.send(&ClientFrame::Leave { room: "M".into() }).await;
            // What was queued before the leave still arrives, in order.
            loop {
                match c.recv().await {
                    ServerFrame::Message(m) => seen(m, &mut seqs, &mut since),
                    ServerFrame::Left { .. } => break,
                    _ => {}
                }
            }
        } else {
            c.close().await;
            replica = 1 - replica;
            c = WsClient::connect_as(&t.ws_url(replica), "seams", false)
                .await
                .0;
        }
        rejoin(&mut c, "M", since.clone()).await;
    }
    publisher.await.unwrap();
    assert!(seams >= 20, "only {seams} seams");
    assert_eq!(seqs, (1..=TOTAL).collect::<Vec<_>>(), "after {seams} seams");
    c.expect_silence(Duration::from_millis(200)).await;
}

/// A client that stops reading is cut off with 1013 once its send queue is full; it
/// reconnects, joins with `since` = the last message it got, and recovers the rest:
/// every message once, in order.
async fn a_slow_consumer_recovers_after_1013(t: &Topology) {
    const TOTAL: u64 = 1500;
    let (mut c, _) = WsClient::connect_as(&t.ws_url(0), "sleepy", false).await;
    c.join("F").await;
    publish_in_background(t, "F", TOTAL as usize, Duration::ZERO, |_| "x".repeat(4000))
        .await
        .unwrap();
    // Now read what reached the socket before the queue overflowed, then the close.
    let mut seqs = Vec::new();
    let mut since = None;
    let closed = loop {
        match c.try_recv(Duration::from_secs(10)).await {
            Some(Ok(ServerFrame::Message(m))) => {
                seqs.push(m.seq);
                since = Some(Since {
                    epoch: m.epoch,
                    seq: m.seq,
                });
            }
            Some(Ok(_)) => {}
            Some(Err(closed)) => break closed,
            None => panic!("neither cut off nor done after {} messages", seqs.len()),
        }
    };
    assert_eq!(closed, Closed::Code(1013));
    assert!(
        (seqs.len() as u64) < TOTAL,
        "the queue overflowed before the end"
    );

    let (mut back, _) = WsClient::connect_as(&t.ws_url(1), "sleepy", false).await;
    rejoin(&mut back, "F", since).await;
    while (seqs.len() as u64) < TOTAL {
        if let ServerFrame::Message(m) = back.recv().await {
            seqs.push(m.seq);
        }
    }
    assert_eq!(seqs, (1..=TOTAL).collect::<Vec<_>>());
}

/// A client recovers a backlog many times its send queue while the room stays busy,
/// reading slower than the server could send but faster than the room's live rate:
/// what arrives live during the recovery follows at the client's pace too, so it is
/// never cut off, and gets every message once, in order.
async fn a_busy_room_recovers_through_a_small_queue(t: &Topology) {
    // More than the kernel's socket buffers hold, so the recovery takes as long as
    // the client's reading.
    const BACKLOG: usize = 3000;
    const LIVE: usize = 400;
    let (mut first, _) = WsClient::connect_as(&t.ws_url(0), "early", false).await;
    let ServerFrame::Joined { epoch, .. } = first.join("B").await else {
        panic!("not joined")
    };
    publish_in_background(t, "B", BACKLOG, Duration::ZERO, |_| "b".repeat(4000))
        .await
        .unwrap();
    // About 200 messages a second, for the whole recovery.
    let live = publish_in_background(t, "B", LIVE, Duration::from_millis(5), |_| "l".repeat(4000));
    let (mut c, _) = WsClient::connect_as(&t.ws_url(1), "late", false).await;
    rejoin(&mut c, "B", Some(Since { epoch, seq: 0 })).await;
    let mut seqs = Vec::new();
    while seqs.len() < BACKLOG + LIVE {
        match c.try_recv(Duration::from_secs(10)).await {
            Some(Ok(ServerFrame::Message(m))) => {
                seqs.push(m.seq);
                // Part of the scenario: a reader of about 1,000 messages a second.
                if seqs.len() % 2 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            Some(Ok(_)) => {}
            other => panic!("after {} messages: {other:?}", seqs.len()),
        }
    }
    live.await.unwrap();
    assert_eq!(seqs, (1..=(BACKLOG + LIVE) as u64).collect::<Vec<_>>());
}

/// Recovery works up to the history size and reports `recovered: false` past it.
async fn recovery_limits(t: &Topology) {
    let (mut c, _) = WsClient::connect_as(&t.ws_url(0), "limits", false).await;
    c.join("L").await;
    publish(t, "L", "seen").await;
    let ServerFrame::Message(seen) = c.recv().await else {
        panic!()
    };
    let since = Since {
        epoch: seen.epoch.clone(),
        seq: seen.seq,
    };
    for i in 0..10 {
        publish(t, "L", &format!("m{i}")).await;
    }
    let (mut back, _) = WsClient::connect_as(&t.ws_url(1), "limits", true).await;
    back.send(&ClientFrame::Join {
        room: "L".into(),
        since: Some(since.clone()),
    })
    .await;
    assert_eq!(
        back.recv().await,
        ServerFrame::Joined {
            room: "L".into(),
            epoch: seen.epoch.clone(),
            seq: 11,
            missed: 10,
            recovered: Some(true)
        }
    );
    for i in 0..10 {
        let ServerFrame::Message(m) = back.recv().await else {
            panic!()
        };
        assert_eq!((m.seq, m.text), (i + 2, format!("m{i}")));
    }
    // One more message pushes seq 2 out of a 10-message history: the gap is too old.
    publish(t, "L", "overflow").await;
    let (mut late, _) = WsClient::connect_as(&t.ws_url(0), "limits", false).await;
    late.send(&ClientFrame::Join {
        room: "L".into(),
        since: Some(since.clone()),
    })
    .await;
    match late.recv().await {
        ServerFrame::Joined {
            recovered,
            missed,
            seq,
            ..
        } => assert_eq!((recovered, missed, seq), (Some(false), 0, 12)),
        other => panic!("{other:?}"),
    }
    // A wrong epoch or a seq from the future is never "recovered".
    for bogus in [
        Since {
            epoch: "other".into(),
            seq: 1,
        },
        Since {
            epoch: seen.epoch.clone(),
            seq: 99,
        },
    ] {
        late.send(&ClientFrame::Join {
            room: "L".into(),
            since: Some(bogus),
        })
        .await;
        assert!(matches!(
            late.recv().await,
            ServerFrame::Joined {
                recovered: Some(false),
                missed: 0,
                ..
            }
        ));
    }
    // Nothing was queued after a failed recovery: the next frame is the next live one.
    publish(t, "L", "live").await;
    let ServerFrame::Message(m) = late.recv().await else {
        panic!()
    };
    assert_eq!((m.seq, m.text.as_str()), (13, "live"));
}

/// Direct messages missed while offline come back through `connect … since`.
async fn personal_channel_recovers_at_connect(t: &Topology) {
    let (kim, connected) = WsClient::connect_as(&t.ws_url(0), "kim", false).await;
    let ServerFrame::Connected { epoch, seq, .. } = connected else {
        panic!()
    };
    kim.close().await;
    for i in 0..3 {
        let r = http()
            .post(t.http_url(1, "/v1/users/kim/messages"))
            .bearer_auth(API_KEY)
            .json(&json!({"text": format!("dm{i}"), "from": "lee"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let mut kim = WsClient::open(&t.ws_url(1), true).await;
    kim.send(&ClientFrame::Connect {
        token: None,
        user: Some("kim".into()),
        since: Some(Since { epoch, seq }),
    })
    .await;
    match kim.recv().await {
        ServerFrame::Connected {
            missed,
            recovered,
            seq,
            ..
        } => {
            assert_eq!((missed, recovered, seq), (Some(3), Some(true), 3));
        }
        other => panic!("{other:?}"),
    }
    for i in 0..3 {
        let ServerFrame::Message(m) = kim.recv().await else {
            panic!()
        };
        assert_eq!((m.room.as_str(), m.text), ("@kim", format!("dm{i}")));
    }
}

async fn presence_of(t: &Topology, room: &str) -> Vec<String> {
    let v: Value = http()
        .get(t.http_url(1, &format!("/v1/rooms/{room}/presence")))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    serde_json::from_value(v["users"].clone()).unwrap()
}

async fn next_presence(c: &mut WsClient) -> (String, PresenceEvent) {
    match c
        .recv_until_any(|f| matches!(f, ServerFrame::Presence { .. }))
        .await
    {
        ServerFrame::Presence { user, event, .. } => (user, event),
        _ => unreachable!(),
    }
}

/// Presence counts users, not tabs: one `join` for the first tab, one `leave` for the
/// last, on every replica.
async fn presence_counts_users_not_tabs(t: &Topology) {
    let (mut obs, _) = WsClient::connect_as(&t.ws_url(0), "obs", false).await;
    obs.join("P").await;
    assert_eq!(
        next_presence(&mut obs).await,
        ("obs".into(), PresenceEvent::Join)
    );
    let (mut tab1, _) = WsClient::connect_as(&t.ws_url(1), "mia", true).await;
    tab1.join("P").await;
    assert_eq!(
        next_presence(&mut obs).await,
        ("mia".into(), PresenceEvent::Join)
    );
    let (mut tab2, _) = WsClient::connect_as(&t.ws_url(0), "mia", false).await;
    tab2.join("P").await;
    assert_eq!(presence_of(t, "P").await, vec!["mia", "obs"]);
    tab1.send(&ClientFrame::Leave { room: "P".into() }).await;
    assert_eq!(tab1.recv().await, ServerFrame::Left { room: "P".into() });
    assert_eq!(
        presence_of(t, "P").await,
        vec!["mia", "obs"],
        "a tab left, mia is still here"
    );
    tab2.close().await; // the last tab goes away by disconnecting
    assert_eq!(
        next_presence(&mut obs).await,
        ("mia".into(), PresenceEvent::Leave),
        "no event for the first tab"
    );
    wait_until(
        "presence no longer lists mia",
        Duration::from_secs(5),
        || async { presence_of(t, "P").await == vec!["obs"] },
    )
    .await;
}

/// Typing reaches the others, not the typist, at most once a second, and is not stored.
async fn typing_is_forwarded_sparingly_and_never_stored(t: &Topology) {
    let (mut typist, _) = WsClient::connect_as(&t.ws_url(0), "tia", false).await;
    let (mut other, _) = WsClient::connect_as(&t.ws_url(1), "ola", true).await;
    typist.join("T").await;
    other.join("T").await;
    for _ in 0..5 {
        typist.send(&ClientFrame::Typing { room: "T".into() }).await;
    }
    let f = other
        .recv_until_any(|f| matches!(f, ServerFrame::Typing { .. }))
        .await;
    assert_eq!(
        f,
        ServerFrame::Typing {
            room: "T".into(),
            user: "tia".into()
        }
    );
    // The other four were within the second: dropped.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    while let Some(Ok(f)) = other.try_recv(deadline - tokio::time::Instant::now()).await {
        assert!(
            !matches!(f, ServerFrame::Typing { .. }),
            "only one typing notice per second: {f:?}"
        );
    }
    // Part of the scenario: the one-second window (500 ms of it watched above) ends.
    tokio::time::sleep(Duration::from_millis(600)).await;
    typist.send(&ClientFrame::Typing { room: "T".into() }).await;
    other
        .recv_until_any(|f| matches!(f, ServerFrame::Typing { .. }))
        .await;
    typist.send(&ClientFrame::Ping).await;
    loop {
        match typist.recv_any().await {
            ServerFrame::Pong => break,
            ServerFrame::Typing { .. } => panic!("the typist does not hear themselves"),
            _ => {}
        }
    }
    let h = common::get_json_as(&t.http_url(0, "/v1/rooms/T/messages"), API_KEY).await;
    assert_eq!(
        h["messages"].as_array().unwrap().len(),
        0,
        "typing is not stored"
    );
    // Typing in a room one has not joined is refused.
    typist
        .send(&ClientFrame::Typing {
            room: "elsewhere".into(),
        })
        .await;
    assert!(matches!(typist.recv().await, ServerFrame::Error { .. }));
}

async fn get_history(t: &Topology, room: &str, query: &str, auth: &str) -> (u16, Value) {
    let r = http()
        .get(t.http_url(1, &format!("/v1/rooms/{room}/messages?{query}")))
        .bearer_auth(auth)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// History pages return every stored message exactly once, forward and backward, for
/// rooms and for the caller's own channel; other people's channels are forbidden.
async fn history_paging(t: &Topology) {
    for i in 1..=57 {
        publish(t, "H", &format!("h{i}")).await;
    }
    let seqs = |v: &Value| -> Vec<u64> {
        v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect()
    };
    let mut forward = Vec::new();
    let mut since = 0;
    loop {
        let (status, page) = get_history(t, "H", &format!("since={since}&limit=10"), API_KEY).await;
        assert_eq!((status, page["seq"].as_u64()), (200, Some(57)));
        let s = seqs(&page);
        let Some(last) = s.last() else { break };
        since = *last;
        forward.extend(s);
    }
    assert_eq!(forward, (1..=57).collect::<Vec<_>>());
    let mut backward = Vec::new();
    let (_, mut page) = get_history(t, "H", "limit=10", API_KEY).await;
    loop {
        let s = seqs(&page);
        let Some(last) = s.last() else { break };
        backward.extend(s.iter().copied());
        page = get_history(t, "H", &format!("before={last}&limit=10"), API_KEY)
            .await
            .1;
    }
    assert_eq!(backward, (1..=57).rev().collect::<Vec<_>>());

    let nia = token(t, "nia").await;
    http()
        .post(t.http_url(0, "/v1/users/nia/messages"))
        .bearer_auth(&nia)
        .json(&json!({"text": "note to self"}))
        .send()
        .await
        .unwrap();
    let (status, own) = get_history(t, "@nia", "since=0", &nia).await;
    assert_eq!(
        (status, own["messages"][0]["text"].as_str()),
        (200, Some("note to self"))
    );
    let (status, err) = get_history(t, "@someone", "since=0", &nia).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    for bad in ["since=1&before=5", "limit=0", "limit=5000", "since=abc"] {
        let (status, err) = get_history(t, "H", bad, &nia).await;
        assert_eq!(
            (status, err["error"]["code"].as_str()),
            (400, Some("bad_request")),
            "{bad}"
        );
    }
}

/// Runs each scenario on the split deployment (over a real Redis) and on the
/// all-in-one server, each started by the scenario's builder.
macro_rules! on_both {
    ($($name:ident => $servers:expr),* $(,)?) => {
        mod split {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let redis = RedisServer::start();
                    let servers: Builder = $servers;
                    super::$name(&servers.split(&redis.url()).await).await;
                }
            )*
        }
        mod all_in_one {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let servers: Builder = $servers;
                    super::$name(&servers.all_in_one().await).await;
                }
            )*
        }
    };
}

on_both!(
    recovery_limits => Topology::builder().history_size(10),
    personal_channel_recovers_at_connect => Topology::builder().history_size(10),
    presence_counts_users_not_tabs => Topology::builder().history_size(10),
    typing_is_forwarded_sparingly_and_never_stored => Topology::builder().history_size(10),
    recovery_seam_under_load => Topology::builder(),
    recovery_survives_many_seams => Topology::builder(),
    a_slow_consumer_recovers_after_1013 => Topology::builder()
        .history_size(2000)
        .options(|o| o.limits.send_queue_bytes = 64 * 1024),
    history_paging => Topology::builder(),
    // 64 KiB: the 12 MB backlog is still ~190 queues, and the live phase (4 KB at
    // 200/s) has 80 ms of headroom. 16 KiB left 20 ms, and one scheduling hiccup of
    // the test's own reader made it a slow consumer (1013) on a loaded machine.
    a_busy_room_recovers_through_a_small_queue => Topology::builder()
        .history_size(4000)
        .options(|o| o.limits.send_queue_bytes = 64 * 1024),
);

/// With CHAT_WRITE_DELAY_MS, frames that arrive within the delay share writes: members
/// still get every message once, in order, on both deployments.
#[tokio::test]
async fn a_write_delay_batches_without_losing_or_reordering() {
    for split in [true, false] {
        let servers = Topology::builder().options(|o| o.limits.write_delay_ms = 30);
        let redis = RedisServer::start();
        let t = if split {
            servers.split(&redis.url()).await
        } else {
            servers.all_in_one().await
        };
        let mut members = Vec::new();
        for i in 0..3 {
            let (mut c, _) = WsClient::connect_as(&t.ws_url(0), &format!("m{i}"), i % 2 == 0).await;
            c.join("batched").await;
            members.push(c);
        }
        // Concurrent publishes: the messages arrive in bursts.
        let texts: Vec<String> = (0..30).map(|i| format!("n{i}")).collect();
        futures_util::future::join_all(texts.iter().map(|x| publish(&t, "batched", x))).await;
        for c in &mut members {
            let mut seqs = Vec::new();
            while seqs.len() < 30 {
                if let ServerFrame::Message(m) = c.recv().await {
                    seqs.push(m.seq);
                }
            }
            assert_eq!(seqs, (1..=30).collect::<Vec<_>>(), "split: {split}");
        }
    }
}
