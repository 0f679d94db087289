//! What a container runtime sees of the binaries: the `healthcheck` subcommand that a
//! distroless image's HEALTHCHECK runs (no shell there), and log lines without colour
//! escapes when stderr is not a terminal.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chat_testkit::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_chat");

fn healthcheck(envs: &[(&str, String)]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.env_clear().arg("healthcheck");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[tokio::test]
async fn healthcheck_exits_0_while_ready_and_1_when_nothing_answers() {
    let (port, internal) = (free_port(), free_port());
    let envs = [
        ("CHAT_ADDR", format!("0.0.0.0:{port}")),
        ("CHAT_INTERNAL_ADDR", format!("127.0.0.1:{internal}")),
    ];
    // Nothing listens yet: unhealthy, at once, and it says why.
    let started = Instant::now();
    let out = healthcheck(&envs);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unhealthy"));

    let _server = tokio::process::Command::new(BIN)
        .env_clear()
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    common::wait_status(&format!("http://127.0.0.1:{internal}/readyz"), 200).await;
    // The same settings as the server: it asks /readyz on the internal listener.
    let out = healthcheck(&envs);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // Told the wrong internal port, it does not fall back to the public one.
    let out = healthcheck(&[
        envs[0].clone(),
        ("CHAT_INTERNAL_ADDR", format!("127.0.0.1:{}", free_port())),
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

#[tokio::test]
async fn logs_to_a_pipe_carry_no_colour_escapes() {
    let port = free_port();
    let mut server = tokio::process::Command::new(BIN)
        .env_clear()
        .env("CHAT_ADDR", format!("127.0.0.1:{port}"))
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    common::wait_status(&format!("http://127.0.0.1:{port}/readyz"), 200).await;
    server.start_kill().unwrap();
    let out = server.wait_with_output().await.unwrap();
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(logs.contains("listening"), "{logs}");
    assert!(!logs.contains('\u{1b}'), "escapes in {logs:?}");
}
