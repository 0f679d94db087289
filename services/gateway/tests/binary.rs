//! The `chat-gateway` binary as an operator runs it: configuration errors stop it with
//! exit status 64 and one line naming the setting; configured, it serves over Redis.

use std::process::{Command, Stdio};
use std::time::Duration;

use chat_testkit::{RedisServer, free_port, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_chat-gateway");

fn run_expecting_config_error(envs: &[(&str, &str)], names: &str) {
    let out = Command::new(BIN)
        .env_clear()
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(names), "{stderr} should name {names}");
}

#[test]
fn bad_settings_stop_it_with_exit_64_naming_the_setting() {
    run_expecting_config_error(&[], "CHAT_REDIS_URL");
    run_expecting_config_error(
        &[("CHAT_REDIS_URL", "redis://127.0.0.1:1/")],
        "CHAT_JWT_SECRET",
    );
    run_expecting_config_error(
        &[
            ("CHAT_REDIS_URL", "redis://127.0.0.1:1/"),
            ("CHAT_DEV_MODE", "true"),
            ("CHAT_HISTORY_SIZE", "lots"),
        ],
        "CHAT_HISTORY_SIZE",
    );
    run_expecting_config_error(
        &[
            ("CHAT_REDIS_URL", "nonsense://x"),
            ("CHAT_DEV_MODE", "true"),
        ],
        "CHAT_REDIS_URL",
    );
    run_expecting_config_error(
        &[
            ("CHAT_REDIS_URL", "redis://127.0.0.1:1/"),
            ("CHAT_DEV_MODE", "maybe"),
        ],
        "CHAT_DEV_MODE",
    );
}

#[tokio::test]
async fn serves_the_api_over_redis() {
    let redis = RedisServer::start();
    let port = free_port();
    let mut child = tokio::process::Command::new(BIN)
        .env("CHAT_REDIS_URL", redis.url())
        .env("CHAT_GATEWAY_ADDR", format!("127.0.0.1:{port}"))
        .env("CHAT_JWT_SECRET", "0123456789abcdef0123")
        .env("CHAT_API_KEYS", "k1,k2")
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    wait_until(
        "ready once Redis answers",
        Duration::from_secs(10),
        || async {
            client
                .get(format!("{base}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        },
    )
    .await;
    let r = client
        .post(format!("{base}/v1/rooms/ops/messages"))
        .bearer_auth("k2")
        .json(&serde_json::json!({"text": "hello", "from": "deploy-bot"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = client
        .post(format!("{base}/v1/auth/dev-token"))
        .json(&serde_json::json!({"user": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "no dev tokens outside dev mode");
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("chat_messages_published_total{path=\"http\"} 1"),
        "{metrics}"
    );
    child.kill().await.unwrap();
}
