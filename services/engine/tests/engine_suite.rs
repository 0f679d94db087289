//! One behaviour, two engines: every test runs against the memory engine and against a
//! real redis-server started on a free port.

use std::sync::{Arc, Weak};
use std::time::Duration;

use chat_engine::{
    BusHandler, CancellationToken, Control, Engine, EngineConfig, EngineError, Envelope,
    PresenceEntry, PresenceEvent, Publication, Range,
};
use chat_protocol::Message;
use chat_testkit::RedisServer;
use parking_lot::Mutex;

#[derive(Default)]
struct Recorder {
    messages: Mutex<Vec<Message>>,
    typing: Mutex<Vec<(String, String)>>,
    controls: Mutex<Vec<Control>>,
    presence: Mutex<Vec<(String, String, PresenceEvent)>>,
    restored: Mutex<u32>,
}

impl BusHandler for Recorder {
    fn on_published(&self, m: Message, _: Envelope) {
        self.messages.lock().push(m);
    }
    fn on_typing(&self, channel: &str, user: &str) {
        self.typing.lock().push((channel.into(), user.into()));
    }
    fn on_presence(&self, channel: &str, user: &str, event: PresenceEvent) {
        self.presence
            .lock()
            .push((channel.into(), user.into(), event));
    }
    fn on_control(&self, c: Control) {
        self.controls.lock().push(c);
    }
    fn on_bus_restored(&self) {
        *self.restored.lock() += 1;
    }
}

fn config(history_size: u64) -> EngineConfig {
    EngineConfig {
        history_size,
        ..EngineConfig::default()
    }
}

fn publication(channel: &str, text: &str) -> Publication {
    Publication {
        channel: channel.into(),
        from: "alice".into(),
        text: text.into(),
        to: None,
        cid: None,
        trace: None,
    }
}

/// Runs `test` against both engines.
async fn both<F, Fut>(history_size: u64, test: F)
where
    F: Fn(Engine) -> Fut,
    Fut: Future<Output = ()>,
{
    test(Engine::memory(&config(history_size))).await;
    let redis = RedisServer::start();
    let mut cfg = config(history_size);
    cfg.redis_url = Some(redis.url());
    test(Engine::from_config(&cfg, CancellationToken::new()).unwrap()).await;
}

/// Starts `engine`'s bus with a fresh recorder as its handler.
async fn recording(engine: &Engine) -> Arc<Recorder> {
    let rec = Arc::new(Recorder::default());
    engine
        .start_bus(Arc::downgrade(&(rec.clone() as Arc<dyn BusHandler>)))
        .await
        .unwrap();
    rec
}

/// Waits up to `secs` for the engine's readiness (what its probe saw last) to be `want`.
async fn readiness_becomes(engine: &Engine, want: bool, secs: u64) {
    let mut readiness = engine.readiness();
    let became = tokio::time::timeout(
        Duration::from_secs(secs),
        readiness.wait_for(|&ready| ready == want),
    )
    .await;
    assert!(
        became.is_ok_and(|r| r.is_ok()),
        "readiness not {want} within {secs} s"
    );
}

/// Not ready, and no turn to ready within the probe's next pings: the wait ends at
/// once if readiness does turn.
async fn stays_unready(engine: &Engine, what: &str) {
    assert!(!engine.ready(), "{what}");
    let mut readiness = engine.readiness();
    let turned = tokio::time::timeout(
        Duration::from_millis(1200),
        readiness.wait_for(|&ready| ready),
    )
    .await;
    assert!(turned.is_err(), "{what}: became ready");
}

async fn wait_for(mut cond: impl FnMut() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("condition not met in 5 s");
}

#[tokio::test]
async fn seqs_start_at_one_and_have_no_gaps_per_channel() {
    both(100, |engine| async move {
        let head = engine.head("general").await.unwrap();
        assert_eq!(head.seq, 0);
        for i in 1..=5 {
            let m = engine
                .publish(publication("general", &format!("m{i}")))
                .await
                .unwrap();
            assert_eq!(m.seq, i);
            assert_eq!(m.epoch, head.epoch, "epoch is stable while history lives");
        }
        let dm = engine.publish(publication("@bob", "psst")).await.unwrap();
        assert_eq!(dm.seq, 1, "each channel has its own seq");
        assert_eq!(engine.head("general").await.unwrap().seq, 5);
    })
    .await;
}

#[tokio::test]
async fn concurrent_publishers_get_distinct_gapless_seqs() {
    both(1000, |engine| async move {
        let mut tasks = Vec::new();
        for t in 0..8 {
            let engine = engine.clone();
            tasks.push(tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..25 {
                    seqs.push(
                        engine
                            .publish(publication("r", &format!("{t}-{i}")))
                            .await
                            .unwrap()
                            .seq,
                    );
                }
                seqs
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all.sort();
        assert_eq!(all, (1..=200).collect::<Vec<_>>());
    })
    .await;
}

#[tokio::test]
async fn history_pages_return_every_message_once_in_both_directions() {
    both(1000, |engine| async move {
        for i in 1..=23 {
            engine
                .publish(publication("r", &format!("m{i}")))
                .await
                .unwrap();
        }
        let mut forward = Vec::new();
        let mut since = 0;
        loop {
            let page = engine
                .history(
                    "r",
                    Range::After {
                        seq: since,
                        limit: 5,
                    },
                )
                .await
                .unwrap();
            assert_eq!(page.head.seq, 23);
            let Some(last) = page.messages.last() else {
                break;
            };
            since = last.seq;
            forward.extend(page.messages.iter().map(|m| m.seq));
        }
        assert_eq!(forward, (1..=23).collect::<Vec<_>>());

        let mut backward = Vec::new();
        let mut before = None;
        loop {
            let page = engine
                .history(
                    "r",
                    Range::Before {
                        seq: before,
                        limit: 5,
                    },
                )
                .await
                .unwrap();
            let Some(last) = page.messages.last() else {
                break;
            };
            before = Some(last.seq);
            backward.extend(page.messages.iter().map(|m| m.seq));
        }
        assert_eq!(backward, (1..=23).rev().collect::<Vec<_>>());
        let m = &engine
            .history("r", Range::After { seq: 6, limit: 1 })
            .await
            .unwrap()
            .messages[0];
        assert_eq!(
            (m.seq, m.text.as_str(), m.from.as_str(), m.room.as_str()),
            (7, "m7", "alice", "r")
        );
    })
    .await;
}

#[tokio::test]
async fn history_keeps_only_the_last_history_size_messages() {
    both(10, |engine| async move {
        for i in 1..=25 {
            engine
                .publish(publication("r", &format!("m{i}")))
                .await
                .unwrap();
        }
        let all = engine
            .history("r", Range::After { seq: 0, limit: 100 })
            .await
            .unwrap();
        let seqs: Vec<u64> = all.messages.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (16..=25).collect::<Vec<_>>());
        // Paging back stops at the same place: Redis trims approximately and may
        // still hold older entries, which no read shows.
        let seqs = |h: chat_engine::History| h.messages.iter().map(|m| m.seq).collect::<Vec<_>>();
        let newest = Range::Before {
            seq: None,
            limit: 100,
        };
        let back = seqs(engine.history("r", newest).await.unwrap());
        assert_eq!(back, (16..=25).rev().collect::<Vec<_>>());
        let oldest = Range::Before {
            seq: Some(17),
            limit: 100,
        };
        assert_eq!(seqs(engine.history("r", oldest).await.unwrap()), vec![16]);
        let gone = Range::Before {
            seq: Some(16),
            limit: 100,
        };
        assert!(seqs(engine.history("r", gone).await.unwrap()).is_empty());
        let since = Range::After { seq: 3, limit: 100 };
        assert_eq!(
            seqs(engine.history("r", since).await.unwrap()).first(),
            Some(&16)
        );
    })
    .await;
}

#[tokio::test]
async fn subscribers_receive_their_channels_in_seq_order_and_nothing_else() {
    both(100, |engine| async move {
        let rec = Arc::new(Recorder::default());
        let weak: Weak<dyn BusHandler> = Arc::downgrade(&(rec.clone() as Arc<dyn BusHandler>));
        engine.start_bus(weak).await.unwrap();
        engine.subscribe("a").await.unwrap();
        for i in 0..50 {
            engine
                .publish(publication(if i % 2 == 0 { "a" } else { "b" }, "x"))
                .await
                .unwrap();
        }
        engine.publish_typing("a", "bob").await.unwrap();
        engine.publish_typing("b", "bob").await.unwrap();
        engine
            .publish_control(&Control::Join {
                user: "bob".into(),
                room: "a".into(),
            })
            .await
            .unwrap();
        wait_for(|| rec.messages.lock().len() == 25 && !rec.controls.lock().is_empty()).await;
        let seqs: Vec<u64> = rec.messages.lock().iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=25).collect::<Vec<_>>());
        assert!(rec.messages.lock().iter().all(|m| m.room == "a"));
        assert_eq!(
            *rec.typing.lock(),
            vec![("a".to_string(), "bob".to_string())]
        );

        engine.unsubscribe("a").await.unwrap();
        engine.publish(publication("a", "after")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(rec.messages.lock().len(), 25, "nothing after unsubscribe");
    })
    .await;
}

#[tokio::test]
async fn losing_redis_data_changes_the_epoch() {
    let redis = RedisServer::start();
    let cfg = EngineConfig {
        redis_url: Some(redis.url()),
        ..config(100)
    };
    let engine = Engine::from_config(&cfg, CancellationToken::new()).unwrap();
    let before = engine.publish(publication("r", "one")).await.unwrap();
    redis.cli(&["FLUSHALL"]);
    let after = engine.publish(publication("r", "two")).await.unwrap();
    assert_ne!(before.epoch, after.epoch);
    assert_eq!(after.seq, 1);
    let h = engine
        .history("r", Range::After { seq: 0, limit: 10 })
        .await
        .unwrap();
    assert_eq!(h.messages.len(), 1, "no message of the old epoch survives");
}

#[tokio::test]
async fn redis_restart_gives_unavailable_then_recovers_with_subscriptions() {
    let mut redis = RedisServer::start();
    let cfg = EngineConfig {
        redis_url: Some(redis.url()),
        ..config(100)
    };
    let engine = Engine::from_config(&cfg, CancellationToken::new()).unwrap();
    let rec = recording(&engine).await;
    engine.subscribe("r").await.unwrap();
    engine.publish(publication("r", "one")).await.unwrap();
    wait_for(|| rec.messages.lock().len() == 1).await;

    redis.stop();
    let err = engine.publish(publication("r", "lost?")).await.unwrap_err();
    assert!(matches!(err, EngineError::Unavailable(_)), "{err:?}");
    // Within about two seconds: /readyz must not send clients to a replica that has lost Redis.
    readiness_becomes(&engine, false, 3).await;

    redis.start_again();
    // Readiness, publishing and delivery come back without any restart of ours.
    readiness_becomes(&engine, true, 10).await;
    let m = engine.publish(publication("r", "two")).await.unwrap();
    assert_eq!(m.seq, 1, "a Redis without persistence starts a new epoch");
    wait_for(|| rec.messages.lock().iter().any(|m| m.text == "two")).await;
    assert!(
        *rec.restored.lock() >= 1,
        "the hub was told to look for gaps"
    );
}

#[tokio::test]
async fn a_bad_redis_url_is_a_configuration_error() {
    let cfg = EngineConfig {
        redis_url: Some("http://nope".into()),
        ..config(10)
    };
    assert!(matches!(
        Engine::from_config(&cfg, CancellationToken::new()),
        Err(EngineError::Config(_))
    ));
}

fn entry(room: &str, user: &str, conn: &str) -> PresenceEntry {
    PresenceEntry {
        room: room.into(),
        user: user.into(),
        conn: conn.into(),
    }
}

#[tokio::test]
async fn presence_counts_users_not_tabs() {
    both(10, |engine| async move {
        assert!(
            engine
                .presence()
                .join(&entry("r", "alice", "c1"))
                .await
                .unwrap(),
            "first tab"
        );
        assert!(
            !engine
                .presence()
                .join(&entry("r", "alice", "c2"))
                .await
                .unwrap(),
            "second tab"
        );
        assert!(
            engine
                .presence()
                .join(&entry("r", "bob", "b1"))
                .await
                .unwrap()
        );
        assert!(
            engine
                .presence()
                .join(&entry("other", "alice", "c1"))
                .await
                .unwrap(),
            "per room"
        );
        assert_eq!(
            engine.presence().list("r").await.unwrap(),
            vec!["alice", "bob"]
        );
        assert!(
            !engine
                .presence()
                .leave(&entry("r", "alice", "c1"))
                .await
                .unwrap(),
            "a tab is left"
        );
        assert!(
            engine
                .presence()
                .leave(&entry("r", "alice", "c2"))
                .await
                .unwrap(),
            "last tab"
        );
        assert!(
            !engine
                .presence()
                .leave(&entry("r", "alice", "c2"))
                .await
                .unwrap(),
            "only once"
        );
        assert_eq!(engine.presence().list("r").await.unwrap(), vec!["bob"]);
        assert_eq!(
            engine.presence().list("other").await.unwrap(),
            vec!["alice"]
        );
        assert!(engine.presence().list("empty").await.unwrap().is_empty());

        let rec = recording(&engine).await;
        engine.subscribe("r").await.unwrap();
        engine
            .presence()
            .publish("r", "bob", PresenceEvent::Leave)
            .await
            .unwrap();
        wait_for(|| !rec.presence.lock().is_empty()).await;
        assert_eq!(
            rec.presence.lock()[0],
            ("r".to_string(), "bob".to_string(), PresenceEvent::Leave)
        );
    })
    .await;
}

#[tokio::test]
async fn presence_of_a_dead_replica_expires_and_is_swept_once() {
    let redis = RedisServer::start();
    let cfg = EngineConfig {
        redis_url: Some(redis.url()),
        presence_ttl_secs: 3,
        ..config(10)
    };
    let engine = Engine::from_config(&cfg, CancellationToken::new()).unwrap();
    engine
        .presence()
        .join(&entry("r", "alive", "a1"))
        .await
        .unwrap();
    engine
        .presence()
        .join(&entry("r", "dead", "d1"))
        .await
        .unwrap();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        // Only the live replica refreshes; "dead"'s replica was killed.
        engine
            .presence()
            .refresh(&[entry("r", "alive", "a1")])
            .await
            .unwrap();
    }
    assert_eq!(engine.presence().list("r").await.unwrap(), vec!["alive"]);
    assert_eq!(engine.presence().sweep("r").await.unwrap(), vec!["dead"]);
    assert!(
        engine.presence().sweep("r").await.unwrap().is_empty(),
        "announced once"
    );
    // A refresh racing a leave does not bring the entry back.
    engine
        .presence()
        .leave(&entry("r", "alive", "a1"))
        .await
        .unwrap();
    engine
        .presence()
        .refresh(&[entry("r", "alive", "a1")])
        .await
        .unwrap();
    assert!(engine.presence().list("r").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_password_protected_redis_works_with_the_password_in_the_url() {
    let redis = RedisServer::start_with(&["--requirepass", "s3cret-pass"]);
    let with = format!("redis://:s3cret-pass@127.0.0.1:{}/", redis.port);
    let engine = Engine::from_config(
        &EngineConfig {
            redis_url: Some(with),
            ..config(10)
        },
        CancellationToken::new(),
    )
    .unwrap();
    let rec = recording(&engine).await;
    engine.subscribe("r").await.unwrap();
    assert_eq!(
        engine
            .publish(publication("r", "authed"))
            .await
            .unwrap()
            .seq,
        1
    );
    wait_for(|| rec.messages.lock().len() == 1).await;
    readiness_becomes(&engine, true, 3).await;

    let without = Engine::from_config(
        &EngineConfig {
            redis_url: Some(redis.url()),
            ..config(10)
        },
        CancellationToken::new(),
    )
    .unwrap();
    assert!(matches!(
        without.publish(publication("r", "x")).await,
        Err(EngineError::Unavailable(_))
    ));
    stays_unready(&without, "without the password").await;
}

#[tokio::test]
async fn chat_redis_password_authenticates_a_url_without_one_and_wins_over_the_urls() {
    let redis = RedisServer::start_with(&["--requirepass", "p@ss:/word with space"]);
    for url in [
        redis.url(),
        format!("redis://:wrong@127.0.0.1:{}/", redis.port),
    ] {
        let engine = Engine::from_config(
            &EngineConfig {
                redis_url: Some(url.clone()),
                redis_password: Some("p@ss:/word with space".into()),
                ..config(10)
            },
            CancellationToken::new(),
        )
        .unwrap();
        let rec = recording(&engine).await;
        engine.subscribe("r").await.unwrap();
        let m = engine.publish(publication("r", "authed")).await;
        assert!(m.is_ok(), "{url}: {m:?}");
        wait_for(|| !rec.messages.lock().is_empty()).await;
        readiness_becomes(&engine, true, 3).await;
    }
    let wrong = Engine::from_config(
        &EngineConfig {
            redis_url: Some(redis.url()),
            redis_password: Some("wrong".into()),
            ..config(10)
        },
        CancellationToken::new(),
    )
    .unwrap();
    stays_unready(&wrong, "with a wrong CHAT_REDIS_PASSWORD").await;
}

#[tokio::test]
async fn rediss_with_an_acl_user_and_a_private_ca_works_and_nothing_less_does() {
    let tls = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls");
    let redis = RedisServer::start_tls(
        &tls.join("server.crt"),
        &tls.join("server.key"),
        &[
            "--user",
            "chat",
            "on",
            ">pw",
            "~chat:*",
            "&chat:*",
            "+@all",
            "-@dangerous",
        ],
    );
    let url = |creds: &str| {
        redis
            .tls_url()
            .replace("rediss://", &format!("rediss://{creds}"))
    };
    let ca = Some(chat_engine::PemFile(
        std::fs::read(tls.join("ca.crt")).unwrap(),
    ));

    let engine = Engine::from_config(
        &EngineConfig {
            redis_url: Some(url("chat:pw@")),
            redis_ca_file: ca.clone(),
            ..config(10)
        },
        CancellationToken::new(),
    )
    .unwrap();
    let rec = recording(&engine).await;
    engine.subscribe("r").await.unwrap();
    let seq = engine
        .publish(publication("r", "over tls"))
        .await
        .unwrap()
        .seq;
    assert_eq!(seq, 1);
    wait_for(|| rec.messages.lock().len() == 1).await;
    assert_eq!(rec.messages.lock()[0].text, "over tls");
    readiness_becomes(&engine, true, 3).await;

    // The server's certificate is not signed by a system root, the password is wrong,
    // or the client speaks plain text to the TLS port: each is refused, not ready.
    for (url, ca) in [
        (url("chat:pw@"), None),
        (url("chat:wrong@"), ca.clone()),
        (format!("redis://chat:pw@127.0.0.1:{}/", redis.port), None),
    ] {
        let engine = Engine::from_config(
            &EngineConfig {
                redis_url: Some(url.clone()),
                redis_ca_file: ca,
                ..config(10)
            },
            CancellationToken::new(),
        )
        .unwrap();
        assert!(
            matches!(
                engine.publish(publication("r", "x")).await,
                Err(EngineError::Unavailable(_))
            ),
            "{url}"
        );
        stays_unready(&engine, &url).await;
    }
}
