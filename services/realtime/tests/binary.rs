//! The `chat-realtime` binary as an operator runs it.

use std::process::{Command, Stdio};
use std::time::Duration;

use chat_protocol::{ClientFrame, ServerFrame};
use chat_testkit::{RedisServer, WsClient, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_chat-realtime");

#[test]
fn bad_settings_stop_it_with_exit_64_naming_the_setting() {
    for (envs, names) in [
        (vec![], "CHAT_REDIS_URL"),
        (
            vec![("CHAT_REDIS_URL", "redis://127.0.0.1:1/")],
            "CHAT_JWT_SECRET",
        ),
        (
            vec![
                ("CHAT_REDIS_URL", "redis://127.0.0.1:1/"),
                ("CHAT_JWT_SECRET", "short"),
            ],
            "CHAT_JWT_SECRET",
        ),
        (
            vec![
                ("CHAT_REDIS_URL", "redis://127.0.0.1:1/"),
                ("CHAT_DEV_MODE", "1"),
                ("CHAT_REALTIME_ADDR", "nowhere"),
            ],
            "CHAT_REALTIME_ADDR",
        ),
        (
            vec![
                ("CHAT_REDIS_URL", "redis://127.0.0.1:1/"),
                ("CHAT_DEV_MODE", "true"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url"),
            ],
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
        (
            vec![
                ("CHAT_REDIS_URL", "redis://127.0.0.1:1/"),
                ("CHAT_DEV_MODE", "true"),
                ("RUST_LOG", "chat=loud"),
            ],
            "RUST_LOG",
        ),
        (
            vec![
                ("CHAT_REDIS_URL", "redis://127.0.0.1:1/"),
                ("CHAT_DEV_MODE", "true"),
                ("CHAT_TRUSTED_PROXIES", "10.0.0.0/8,10.0.0.0/33"),
            ],
            "CHAT_TRUSTED_PROXIES",
        ),
    ] {
        let out = Command::new(BIN).env_clear().envs(envs).output().unwrap();
        assert_eq!(out.status.code(), Some(64), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(names), "{stderr}");
    }
}

#[tokio::test]
async fn serves_websockets_over_redis_with_ops_on_the_internal_port() {
    let redis = RedisServer::start();
    let (port, internal) = (free_port(), free_port());
    let mut child = tokio::process::Command::new(BIN)
        .env("CHAT_REDIS_URL", redis.url())
        .env("CHAT_REALTIME_ADDR", format!("127.0.0.1:{port}"))
        .env("CHAT_INTERNAL_ADDR", format!("127.0.0.1:{internal}"))
        .env("CHAT_DEV_MODE", "true")
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..100 {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{internal}/readyz"))
            .send()
            .await
            && r.status() == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready);
    let public_metrics = client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        public_metrics.status(),
        404,
        "metrics are not on the public port"
    );

    let (mut c, _) = WsClient::connect_as(&format!("ws://127.0.0.1:{port}/ws"), "ivy", true).await;
    c.join("R").await;
    c.send(&ClientFrame::Send {
        room: Some("R".into()),
        to: None,
        text: "echo".into(),
        cid: Some("1".into()),
    })
    .await;
    let mut got_message = false;
    let mut got_ack = false;
    while !(got_message && got_ack) {
        match c.recv().await {
            ServerFrame::Message(m) => got_message = m.text == "echo" && m.seq == 1,
            ServerFrame::Ack { seq, .. } => got_ack = seq == 1,
            other => panic!("{other:?}"),
        }
    }
    let metrics = client
        .get(format!("http://127.0.0.1:{internal}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("chat_ws_connections 1"), "{metrics}");
    child.kill().await.unwrap();
}
