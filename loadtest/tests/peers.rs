//! `--dialect bun` and `--dialect socketio` against the real peer servers of
//! loadtest/peers/ (2 processes each over one real redis-server, and Socket.IO's
//! redis-emitter publisher). They need Bun and Node with the peers' npm packages, so
//! these tests are ignored by a plain `cargo test`; run them with
//!
//! ```sh
//! loadtest/peers/test.sh    # npm ci, then: cargo test -p chat-loadtest --test peers -- --ignored
//! ```
//!
//! They check counts, never timings.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chat_testkit::{RedisServer, free_port, wait_until};
use serde_json::Value;

fn peers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers")
}

/// A peer process, killed when dropped.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn spawn(program: &str, script: &str, port: u16, redis: &str) -> Peer {
    let dir = peers_dir();
    assert!(
        dir.join("node_modules/.bin/bun").exists(),
        "run `npm ci` in {} first",
        dir.display()
    );
    let program = if program == "bun" {
        dir.join("node_modules/.bin/bun")
    } else {
        PathBuf::from(program)
    };
    let child = Command::new(program)
        .arg(script)
        .current_dir(&dir)
        .env("PORT", port.to_string())
        .env("REDIS_URL", redis)
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{script}: {e}"));
    let peer = Peer(child);
    let listening = || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    };
    wait_until(
        &format!("{script} listens on {port}"),
        Duration::from_secs(20),
        listening,
    )
    .await;
    peer
}

async fn loadtest(args: &[String]) -> Value {
    let (code, report, stderr) = common::report(args).await;
    let r = report.unwrap_or_else(|| panic!("no report: {stderr}"));
    assert_eq!(code, 0, "{r:#}");
    r
}

fn assert_clean(r: &Value, deliveries: u64) {
    let m = &r["messages"];
    assert_eq!(r["settings"]["loss_check"], "index", "{r:#}");
    assert_eq!(m["lost"], 0, "{r:#}");
    assert_eq!(m["duplicates"], 0, "{r:#}");
    assert_eq!(m["foreign"], 0, "{r:#}");
    assert_eq!(m["expected"], deliveries, "{r:#}");
    assert_eq!(m["delivered"], deliveries, "{r:#}");
    assert_eq!(r["connections"]["dropped"], 0, "{r:#}");
    assert_eq!(r["ok"], true, "{r:#}");
}

fn s(list: &[&str]) -> Vec<String> {
    list.iter().map(|x| x.to_string()).collect()
}

/// fanout over HTTP and over WebSocket, rooms, idle: every delivery once.
async fn scenarios(dialect: &str, targets: &str, http: &str, pids: &[u32]) {
    let base = s(&["--dialect", dialect, "--target", targets]);
    let pid_args: Vec<String> = pids
        .iter()
        .flat_map(|p| ["--server-pid".to_owned(), p.to_string()])
        .collect();
    let fanout = [
        &s(&[
            "fanout",
            "--members",
            "20",
            "--rate",
            "100",
            "--duration",
            "1s",
            "--http",
            http,
        ])[..],
        &base,
        &pid_args,
    ]
    .concat();
    let r = loadtest(&fanout).await;
    assert_clean(&r, 100 * 20);
    assert_eq!(r["messages"]["published"], 100);
    assert!(
        r["server"]["cpu_us_per_delivery"].as_f64().unwrap() > 0.0,
        "{r:#}"
    );

    let ws = [
        &s(&[
            "fanout",
            "--members",
            "20",
            "--rate",
            "50",
            "--duration",
            "1s",
            "--publish",
            "ws",
        ])[..],
        &base,
    ]
    .concat();
    assert_clean(&loadtest(&ws).await, 50 * 20);

    let rooms = [
        &s(&[
            "rooms",
            "--rooms",
            "4",
            "--members",
            "5",
            "--rate",
            "100",
            "--duration",
            "1s",
        ])[..],
        &base,
    ]
    .concat();
    // 100 messages, each to the 5 members of its room, the sender included.
    assert_clean(&loadtest(&rooms).await, 100 * 5);

    let idle = [
        &s(&["idle", "--connections", "100", "--duration", "500ms"])[..],
        &base,
        &pid_args,
    ]
    .concat();
    let r = loadtest(&idle).await;
    assert_eq!(r["connections"]["connected"], 100, "{r:#}");
    assert!(r["server"]["kib_per_connection"].is_number(), "{r:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Bun and Node: npm ci in loadtest/peers, then --ignored"]
async fn the_bun_dialect_drives_the_bun_peer() {
    let redis = RedisServer::start();
    let (p1, p2) = (free_port(), free_port());
    let a = spawn("bun", "bun-server.js", p1, &redis.url()).await;
    let b = spawn("bun", "bun-server.js", p2, &redis.url()).await;
    let targets = format!("ws://127.0.0.1:{p1}/ws,ws://127.0.0.1:{p2}/ws");
    let http = format!("http://127.0.0.1:{p1},http://127.0.0.1:{p2}");
    scenarios("bun", &targets, &http, &[a.0.id(), b.0.id()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Bun and Node: npm ci in loadtest/peers, then --ignored"]
async fn the_socketio_dialect_drives_the_socketio_peer() {
    let redis = RedisServer::start();
    let (p1, p2, pp) = (free_port(), free_port(), free_port());
    let a = spawn("node", "socketio-server.js", p1, &redis.url()).await;
    let b = spawn("node", "socketio-server.js", p2, &redis.url()).await;
    let publisher = spawn("node", "socketio-publisher.js", pp, &redis.url()).await;
    let targets = format!("ws://127.0.0.1:{p1}/socket.io/,ws://127.0.0.1:{p2}/socket.io/");
    let http = format!("http://127.0.0.1:{pp}");
    scenarios(
        "socketio",
        &targets,
        &http,
        &[a.0.id(), b.0.id(), publisher.0.id()],
    )
    .await;
}
