//! A Redis that comes back empty: every channel starts a new epoch at seq 1. A replica
//! whose bus comes back after the first messages of the new epoch were stored must
//! still give its connected members every one of them, from seq 1, in order, once —
//! or, where history no longer holds them, say so with `joined` `recovered: false`.
//!
//! The bad ordering is forced, not waited for: the replica under test reaches Redis
//! through a [`Gate`] that the test cuts before Redis restarts and opens after the new
//! epoch's first messages are stored, while the publishing gateway (and, in the split
//! deployment, a second replica) reach Redis directly.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use chat_protocol::ServerFrame;
use chat_testkit::topology::Topology;
use chat_testkit::{Gate, RedisServer, WsClient};
use common::{post_text, wait_status};

const HISTORY: u64 = 5;

/// Per room: how many messages the new epoch gets while the replica is blind. With a
/// history of 5, `r2`'s first three are gone by the time the replica looks.
const BLIND: [(&str, u64); 6] = [
    ("r0", 3),
    ("r1", 5),
    ("r2", 8),
    ("r3", 0),
    ("r4", 0),
    ("r5", 0),
];
/// Messages every room gets once the replica is back.
const AFTER: u64 = 2;

/// What one client saw of one room, in order: `("E1", 1)` style message positions and
/// `("lost", seq)` for a `joined` with `recovered: false`.
type Seen = BTreeMap<String, Vec<(String, u64)>>;

async fn publish(gateway: SocketAddr, room: &str, text: &str) {
    let url = format!("http://{gateway}/v1/rooms/{room}/messages");
    let (status, body) = post_text(&url, text).await;
    assert_eq!(status, 201, "{room}: {body}");
}

/// What a client has seen so far, each room's epochs labelled in the order they
/// appeared (`E1`, `E2`).
#[derive(Default)]
struct Observer {
    seen: Seen,
    epochs: BTreeMap<String, Vec<String>>,
}

impl Observer {
    fn label(&mut self, room: &str, epoch: &str) -> String {
        let known = self.epochs.entry(room.to_owned()).or_default();
        if !known.iter().any(|e| e == epoch) {
            known.push(epoch.to_owned());
        }
        format!("E{}", known.iter().position(|e| e == epoch).unwrap() + 1)
    }

    /// Reads until each room's latest entry is the one `until` names for it.
    async fn until(&mut self, c: &mut WsClient, until: &BTreeMap<&str, (&str, u64)>) {
        let done = |seen: &Seen| {
            until.iter().all(|(room, (label, seq))| {
                seen.get(*room)
                    .and_then(|s| s.last())
                    .is_some_and(|(l, s)| l == label && s == seq)
            })
        };
        while !done(&self.seen) {
            let frame = match c.try_recv(Duration::from_secs(10)).await {
                Some(Ok(f)) => f,
                other => panic!("{other:?} while waiting; seen: {:?}", self.seen),
            };
            match frame {
                ServerFrame::Presence { .. } | ServerFrame::Typing { .. } => {}
                ServerFrame::Message(m) => {
                    let e = self.label(&m.room, &m.epoch);
                    self.seen.entry(m.room).or_default().push((e, m.seq));
                }
                ServerFrame::Joined {
                    room,
                    epoch,
                    seq,
                    recovered: Some(false),
                    ..
                } => {
                    let e = self.label(&room, &epoch);
                    assert_eq!(e, "E2", "{room}: the loss is in the new epoch");
                    self.seen
                        .entry(room)
                        .or_default()
                        .push(("lost".into(), seq));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

/// What a member that stayed connected must see of each room.
fn expected() -> Seen {
    BLIND
        .iter()
        .map(|&(room, blind)| {
            let mut s = vec![("E1".to_owned(), 1)];
            if blind > HISTORY {
                s.push(("lost".into(), blind));
                s.extend((blind + 1..=blind + AFTER).map(|q| ("E2".to_owned(), q)));
            } else {
                s.extend((1..=blind + AFTER).map(|q| ("E2".to_owned(), q)));
            }
            (room.to_owned(), s)
        })
        .collect()
}

/// Every message once, in order, from seq 1 of each epoch; a hole only right after a
/// `recovered: false` that names where the channel goes on.
fn assert_gapless_or_told(room: &str, seen: &[(String, u64)]) {
    let mut at = ("E1".to_owned(), 0);
    for (label, seq) in seen {
        if label == "lost" {
            at = ("E2".to_owned(), *seq);
            continue;
        }
        if *label != at.0 {
            at = (label.clone(), 0);
        }
        assert_eq!(*seq, at.1 + 1, "{room}: {seen:?}");
        at.1 = *seq;
    }
}

/// The scenario, on a replica `blind_ws` behind `gate`; `other_ws`, if any, reaches
/// Redis directly; `gateway` publishes.
async fn new_epoch_reaches_members(
    redis: &mut RedisServer,
    gate: &Gate,
    blind_ws: SocketAddr,
    other_ws: Option<SocketAddr>,
    gateway: SocketAddr,
) {
    let mut clients = Vec::new();
    for (i, ws) in std::iter::once(blind_ws).chain(other_ws).enumerate() {
        let (mut c, _) =
            WsClient::connect_as(&format!("ws://{ws}/ws"), &format!("u{i}"), i == 1).await;
        for (room, _) in BLIND {
            c.join(room).await;
        }
        clients.push(c);
    }
    for (room, _) in BLIND {
        publish(gateway, room, "old").await;
    }
    // Delivered before the cut: what the bus had not handed over when Redis died is
    // gone with the old epoch (nothing can tell it existed).
    let mut observers: Vec<Observer> = clients.iter().map(|_| Observer::default()).collect();
    let old: BTreeMap<&str, (&str, u64)> = BLIND.iter().map(|&(r, _)| (r, ("E1", 1))).collect();
    for (c, o) in clients.iter_mut().zip(&mut observers) {
        o.until(c, &old).await;
    }

    gate.cut();
    wait_status(&format!("http://{blind_ws}/readyz"), 503).await;
    redis.stop();
    redis.start_again();
    // The gateway publishes once it is ready again (its readiness probe reconnects it).
    wait_status(&format!("http://{gateway}/readyz"), 200).await;
    for (room, blind) in BLIND {
        for i in 1..=blind {
            publish(gateway, room, &format!("blind {i}")).await;
        }
    }
    gate.open();
    wait_status(&format!("http://{blind_ws}/readyz"), 200).await;
    // The blind replica repairs before the rooms move on (a message published first
    // could push a room's first new-epoch messages out of its 5-message history).
    let repaired: BTreeMap<&str, (&str, u64)> = BLIND
        .iter()
        .filter(|(_, blind)| *blind > 0)
        .map(|&(room, blind)| {
            (
                room,
                if blind > HISTORY {
                    ("lost", blind)
                } else {
                    ("E2", blind)
                },
            )
        })
        .collect();
    observers[0].until(&mut clients[0], &repaired).await;
    for (room, _) in BLIND {
        for i in 1..=AFTER {
            publish(gateway, room, &format!("after {i}")).await;
        }
    }

    let last: BTreeMap<&str, (&str, u64)> =
        BLIND.iter().map(|&(r, b)| (r, ("E2", b + AFTER))).collect();
    for (i, (c, o)) in clients.iter_mut().zip(&mut observers).enumerate() {
        o.until(c, &last).await;
        if i == 0 {
            assert_eq!(
                o.seen,
                expected(),
                "the member of the replica that was blind"
            );
        } else {
            // The replica that reconnected by itself, first or not.
            for (room, s) in &o.seen {
                assert_gapless_or_told(room, s);
            }
        }
    }
}

#[tokio::test]
async fn split_a_replica_that_reconnects_late_delivers_the_new_epoch_from_seq_1() {
    let servers = Topology::builder().history_size(HISTORY);
    let mut redis = RedisServer::start();
    let gate = Gate::start(([127, 0, 0, 1], redis.port).into()).await;
    let blind = servers.realtime(&gate.redis_url()).await.addr;
    let other = servers.realtime(&redis.url()).await.addr;
    let gateway = servers.gateway(&redis.url()).await.addr;
    new_epoch_reaches_members(&mut redis, &gate, blind, Some(other), gateway).await;
}

#[tokio::test]
async fn chat_on_redis_that_reconnects_late_delivers_the_new_epoch_from_seq_1() {
    let servers = Topology::builder().history_size(HISTORY);
    let mut redis = RedisServer::start();
    let gate = Gate::start(([127, 0, 0, 1], redis.port).into()).await;
    let chat = servers.chat(Some(&gate.redis_url())).await.addr;
    let gateway = servers.gateway(&redis.url()).await.addr;
    new_epoch_reaches_members(&mut redis, &gate, chat, None, gateway).await;
}
