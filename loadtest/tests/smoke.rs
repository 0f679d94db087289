//! Every scenario at a small size against real servers started in this process: the
//! all-in-one `chat`, and the split deployment (two realtime replicas and a gateway over
//! a real redis-server). The load tester runs as its built binary with `--json`; the
//! tests check its counts, never its timings.

mod common;

use std::net::SocketAddr;

use chat_testkit::RedisServer;
use chat_testkit::topology::{API_KEY, JWT_SECRET as SECRET, Topology};
use serde_json::Value;

/// The all-in-one `chat`, with the servers' defaults, abuse limits included: the
/// scenarios stay under them.
async fn spawn_chat() -> SocketAddr {
    Topology::builder().chat(None).await.addr
}

async fn spawn_realtime(redis_url: &str) -> SocketAddr {
    Topology::builder().realtime(redis_url).await.addr
}

async fn spawn_gateway(redis_url: &str) -> SocketAddr {
    Topology::builder().gateway(redis_url).await.addr
}

/// Runs a scenario with `--json` and returns the report.
async fn loadtest(args: &[String]) -> Value {
    let (code, report, stderr) = common::report(args).await;
    let report = report.unwrap_or_else(|| panic!("no JSON report; exit {code}; stderr:\n{stderr}"));
    assert_eq!(
        code,
        if report["ok"] == true { 0 } else { 3 },
        "exit status matches ok; stderr:\n{stderr}"
    );
    report
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn ws(addr: SocketAddr) -> String {
    format!("ws://{addr}/ws")
}

/// No loss, no duplicate, no failure, and exactly `deliveries` deliveries.
fn assert_clean(r: &Value, deliveries: u64) {
    let m = &r["messages"];
    let c = &r["connections"];
    assert_eq!(m["lost"], 0, "lost: {r:#}");
    assert_eq!(m["duplicates"], 0, "duplicates: {r:#}");
    assert_eq!(m["publish_errors"], 0, "publish errors: {r:#}");
    assert_eq!(m["unanswered"], 0, "unanswered publishes: {r:#}");
    assert_eq!(m["foreign"], 0, "foreign: {r:#}");
    assert_eq!(c["failed"], 0, "failed connections: {r:#}");
    assert_eq!(c["dropped"], 0, "dropped connections: {r:#}");
    assert_eq!(m["expected"], deliveries, "expected: {r:#}");
    assert_eq!(m["delivered"], deliveries, "delivered: {r:#}");
    assert_eq!(r["latency"]["count"], deliveries);
    assert_eq!(r["ok"], true, "{r:#}");
    assert!(r["errors"].as_object().unwrap().is_empty(), "{r:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_over_http_reaches_every_member_of_the_room() {
    let addr = spawn_chat().await;
    let pid = std::process::id().to_string();
    let r = loadtest(&args(&[
        "fanout",
        "--target",
        &ws(addr),
        "--members",
        "20",
        "--rate",
        "200",
        "--duration",
        "1500ms",
        "--api-key",
        API_KEY,
        "--server-pid",
        &pid,
    ]))
    .await;
    // 300 messages, each to 20 members, in one room, published to the one gateway.
    assert_eq!(r["settings"]["rooms"], 1, "{:#}", r["settings"]);
    assert_eq!(
        r["settings"]["http"],
        serde_json::json!([format!("http://{addr}")])
    );
    assert_eq!(r["messages"]["scheduled"], 300);
    assert_eq!(r["messages"]["published"], 300);
    assert_clean(&r, 6000);
    let server = &r["server"];
    assert!(
        server["cpu_us_per_delivery"].as_f64().unwrap() > 0.0,
        "{server:#}"
    );
    assert!(server["kib_per_connection"].is_number(), "{server:#}");
    assert!(r["latency"]["p99_us"].as_u64().unwrap() >= r["latency"]["p50_us"].as_u64().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_over_ws_in_json_writes_an_html_report() {
    let addr = spawn_chat().await;
    let dir = std::env::temp_dir().join(format!("chat-loadtest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let html = dir.join("report.html");
    let r = loadtest(&args(&[
        "fanout",
        "--target",
        &ws(addr),
        "--members",
        "20",
        "--rate",
        "200",
        "--duration",
        "1s",
        "--publish",
        "ws",
        "--encoding",
        "json",
        "--html",
        html.to_str().unwrap(),
    ]))
    .await;
    assert_clean(&r, 200 * 20);
    assert_eq!(
        r["connections"]["planned"], 40,
        "20 members and 20 publishers"
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!doctype html>"));
    assert_eq!(
        page.matches("<svg").count(),
        3,
        "latency over time, deliveries, distribution"
    );
    assert!(
        !page.contains("<script") && !page.contains("src="),
        "self-contained"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_where_everyone_sends_lose_nothing() {
    let addr = spawn_chat().await;
    let r = loadtest(&args(&[
        "rooms",
        "--target",
        &ws(addr),
        "--rooms",
        "4",
        "--members",
        "5",
        "--rate",
        "200",
        "--duration",
        "1500ms",
    ]))
    .await;
    assert_eq!(r["connections"]["connected"], 20);
    // 300 messages, each to the 5 members of its room (the sender included).
    assert_clean(&r, 1500);
    assert_eq!(r["publish_latency"]["count"], 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_messages_with_minted_tokens_reach_both_sides() {
    let addr = spawn_chat().await;
    let r = loadtest(&args(&[
        "direct",
        "--target",
        &ws(addr),
        "--connections",
        "20",
        "--rate",
        "200",
        "--duration",
        "1500ms",
        "--token-secret",
        SECRET,
        "--encoding",
        "msgpack",
    ]))
    .await;
    // Each direct message lands on the receiver's and the sender's personal channel.
    assert_clean(&r, 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_traffic_with_http_and_direct_messages_loses_nothing() {
    let addr = spawn_chat().await;
    let r = loadtest(&args(&[
        "mixed",
        "--target",
        &ws(addr),
        "--rooms",
        "2",
        "--members",
        "10",
        "--rate",
        "300",
        "--duration",
        "1s",
        "--api-key",
        API_KEY,
    ]))
    .await;
    let m = &r["messages"];
    assert!(m["typing"].as_u64().unwrap() > 0, "{m:#}");
    assert_eq!(
        m["sent"].as_u64().unwrap() + m["typing"].as_u64().unwrap(),
        300
    );
    let expected = m["expected"].as_u64().unwrap();
    // Room messages reach 10 members, direct messages 2 channels.
    assert!(expected > 1000, "{m:#}");
    assert_clean(&r, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_storm_and_idle_count_connections_and_server_memory() {
    let addr = spawn_chat().await;
    let pid = std::process::id().to_string();
    let r = loadtest(&args(&[
        "connect-storm",
        "--target",
        &ws(addr),
        "--connections",
        "40",
        "--rate",
        "100",
        "--members",
        "10",
        "--server-pid",
        &pid,
    ]))
    .await;
    assert_eq!(r["messages"]["scheduled"], 40);
    assert_eq!(r["messages"]["delivered"], 40);
    assert_eq!(r["messages"]["lost"], 0);
    assert_eq!(r["latency"]["count"], 40);
    assert_eq!(r["ok"], true, "{r:#}");

    let r = loadtest(&args(&[
        "idle",
        "--target",
        &ws(addr),
        "--connections",
        "20",
        "--duration",
        "500ms",
        "--server-pid",
        &pid,
    ]))
    .await;
    assert_eq!(r["connections"]["connected"], 20);
    assert_eq!(r["connections"]["connect_latency"]["count"], 20);
    assert!(r["server"]["kib_per_connection"].is_number(), "{r:#}");
    assert_eq!(r["ok"], true, "{r:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_through_redis_two_replicas_and_a_gateway_with_two_workers() {
    let redis = RedisServer::start();
    let rt1 = spawn_realtime(&redis.url()).await;
    let rt2 = spawn_realtime(&redis.url()).await;
    let gw = spawn_gateway(&redis.url()).await;
    let targets = format!("{},{}", ws(rt1), ws(rt2));
    let http = format!("http://{gw}");
    let r = loadtest(&args(&[
        "fanout",
        "--target",
        &targets,
        "--http",
        &http,
        "--members",
        "20",
        "--rate",
        "200",
        "--duration",
        "1500ms",
        "--api-key",
        API_KEY,
        "--workers",
        "2",
        "--source-addrs",
        "127.0.0.1-127.0.0.2",
    ]))
    .await;
    assert_eq!(r["settings"]["workers"], 2);
    assert_clean(&r, 6000);

    // Everyone sends, members of each room spread over both replicas.
    let r = loadtest(&args(&[
        "rooms",
        "--target",
        &targets,
        "--rooms",
        "2",
        "--members",
        "10",
        "--rate",
        "200",
        "--duration",
        "1s",
    ]))
    .await;
    assert_clean(&r, 200 * 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_flags_exit_64_and_unreachable_targets_exit_69_with_one_line() {
    let (code, stdout, stderr) = common::run(&args(&["fanout", "--no-such-flag"])).await;
    assert_eq!(code, 64, "{stderr}");
    assert!(stdout.is_empty());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    let (code, _, stderr) = common::run(&args(&["rooms", "--rate", "-1"])).await;
    assert_eq!(code, 64, "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    let port = chat_testkit::free_port();
    let (code, _, stderr) = common::run(&args(&[
        "idle",
        "--target",
        &format!("ws://127.0.0.1:{port}/ws"),
    ]))
    .await;
    assert_eq!(code, 69, "{stderr}");
    assert!(stderr.contains("cannot reach"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

/// `chat-floor` needs no server: every frame it writes arrives once, in order, timed;
/// a bad setting is one line and a failure status.
#[tokio::test]
async fn the_floor_tool_delivers_every_frame() {
    let run = |list: &[&str]| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_chat-floor"))
            .args(list)
            .output()
    };
    let out = run(&[
        "--members",
        "50",
        "--rate",
        "100",
        "--duration",
        "300ms",
        "--json",
    ])
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["expected"], 30 * 50, "{r:#}");
    assert_eq!(r["delivered"], r["expected"], "{r:#}");
    assert_eq!(r["out_of_order"], 0, "{r:#}");
    assert_eq!(r["latency"]["count"], r["expected"], "{r:#}");

    let out = run(&["--writers", "0"]).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--writers"));
}
