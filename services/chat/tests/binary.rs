//! The `chat` binary as a newcomer runs it: no settings needed, everything on one port.

mod common;

use std::process::{Command, Stdio};

use chat_protocol::ServerFrame;
use chat_testkit::{WsClient, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_chat");

#[test]
fn a_bad_setting_stops_it_with_exit_64_naming_the_setting() {
    for (key, value) in [
        ("CHAT_MAX_MESSAGE_BYTES", "0"),
        ("CHAT_LOG_FORMAT", "xml"),
        ("CHAT_REDIS_PREFIX", "has space"),
        ("CHAT_JWT_SECRET", "short"),
        ("CHAT_REDIS_CA_FILE", "/nonexistent/ca.pem"),
    ] {
        let out = Command::new(BIN)
            .env_clear()
            .env(key, value)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{key}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(key), "{stderr} names {key}");
    }
}

#[test]
fn a_bad_flag_is_blamed_on_the_flag_and_a_bad_variable_on_the_variable() {
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(BIN)
            .env_clear()
            .envs(env.iter().copied())
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{out:?}");
        String::from_utf8_lossy(&out.stderr).trim().to_owned()
    };
    let flag = run(&["--history-size", "abc"], &[]);
    assert!(flag.contains("the flag --history-size"), "{flag}");
    assert!(!flag.contains("CHAT_HISTORY_SIZE"), "{flag}");
    // The flag wins over the variable, so it is the one to blame.
    let both = run(&["--history-size=abc"], &[("CHAT_HISTORY_SIZE", "10")]);
    assert!(both.contains("the flag --history-size"), "{both}");
    let var = run(&[], &[("CHAT_HISTORY_SIZE", "abc")]);
    assert!(var.contains("set by CHAT_HISTORY_SIZE"), "{var}");
}

#[tokio::test]
async fn runs_with_no_settings_and_serves_everything_on_one_port() {
    let port = free_port();
    let mut child = tokio::process::Command::new(BIN)
        .env_clear()
        .env("CHAT_ADDR", format!("127.0.0.1:{port}"))
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    common::wait_status(&format!("{base}/readyz"), 200).await;
    let page = client
        .get(format!("{base}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<html"));
    let token = common::dev_token(&base, "newbie").await;

    let mut ws = WsClient::open(&format!("ws://127.0.0.1:{port}/ws"), false).await;
    ws.send(&chat_protocol::ClientFrame::Connect {
        token: Some(token.clone()),
        user: None,
        since: None,
    })
    .await;
    assert!(matches!(ws.recv().await, ServerFrame::Connected { ref user, .. } if user == "newbie"));
    ws.join("general").await;
    let r = client
        .post(format!("{base}/v1/rooms/general/messages"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"text": "first!"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    match ws.recv().await {
        ServerFrame::Message(m) => {
            assert_eq!((m.from.as_str(), m.text.as_str()), ("newbie", "first!"))
        }
        other => panic!("{other:?}"),
    }
    // History over HTTP, with the same token.
    let h: serde_json::Value = client
        .get(format!("{base}/v1/rooms/general/messages?since=0"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["messages"][0]["text"], "first!");
    child.kill().await.unwrap();
}

/// Reads the child's log until a line contains `needle`; returns that line.
async fn log_line(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
    needle: &str,
) -> String {
    let wait = std::time::Duration::from_secs(15);
    loop {
        match tokio::time::timeout(wait, lines.next_line()).await {
            Ok(Ok(Some(line))) if line.contains(needle) => return line,
            Ok(Ok(Some(_))) => continue,
            other => panic!("no log line with {needle:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_unreachable_redis_is_logged_at_once_without_its_password_and_so_is_its_return() {
    use tokio::io::AsyncBufReadExt;
    let mut redis = chat_testkit::RedisServer::start_with(&["--requirepass", "s3cret"]);
    redis.stop();
    let port = free_port();
    let mut child = tokio::process::Command::new(BIN)
        .env_clear()
        .env("CHAT_ADDR", format!("127.0.0.1:{port}"))
        .env(
            "CHAT_REDIS_URL",
            format!("redis://:s3cret@127.0.0.1:{}/", redis.port),
        )
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let down = log_line(&mut lines, "Redis is unreachable").await;
    assert!(
        down.contains(&format!("127.0.0.1:{}", redis.port)),
        "{down}"
    );
    assert!(
        down.contains("CHAT_REDIS_URL"),
        "says what to check: {down}"
    );
    assert!(!down.contains("s3cret"), "{down}");

    redis.start_again();
    let back = log_line(&mut lines, "Redis is reachable again").await;
    assert!(!back.contains("s3cret"), "{back}");
    common::wait_status(&format!("http://127.0.0.1:{port}/readyz"), 200).await;
    child.kill().await.unwrap();
}

#[test]
fn a_port_in_use_is_one_line_naming_the_address_and_the_setting() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = Command::new(BIN)
        .env_clear()
        .env("CHAT_ADDR", addr.to_string())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    let line = errors[0];
    for says in ["CHAT_ADDR", &addr.to_string(), "already in use"] {
        assert!(line.contains(says), "{line} should say {says}");
    }
}

#[tokio::test]
async fn a_draining_chat_lets_go_of_its_port_at_once() {
    let port = free_port();
    let mut child = tokio::process::Command::new(BIN)
        .env_clear()
        .env("CHAT_ADDR", format!("127.0.0.1:{port}"))
        .env("CHAT_DRAIN_SECS", "6")
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    common::wait_status(&format!("http://127.0.0.1:{port}/readyz"), 200).await;
    let url = format!("ws://127.0.0.1:{port}/ws");
    let (mut first, _) = WsClient::connect_as(&url, "ann", false).await;
    let (_second, _) = WsClient::connect_as(&url, "ben", false).await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // The drain has started once a client is told to reconnect.
    first
        .recv_until(|f| matches!(f, ServerFrame::Reconnect { .. }))
        .await;
    assert!(child.try_wait().unwrap().is_none(), "still draining");
    let again = std::net::TcpListener::bind(("127.0.0.1", port));
    assert!(
        again.is_ok(),
        "the port is free while the old chat drains: {again:?}"
    );
    drop(again);
    let exit = child.wait().await.unwrap();
    assert_eq!(exit.code(), Some(0), "a drained chat exits 0");
}
