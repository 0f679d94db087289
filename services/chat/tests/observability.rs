//! Metrics as Prometheus sees them: `promtool check metrics` accepts every service's
//! `/metrics`, and a real Prometheus scraping a gateway, two realtime replicas and a
//! redis_exporter (Debian `prometheus-redis-exporter`) in front of their Redis answers
//! every expression of the Grafana dashboard with data.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use chat_protocol::{ClientFrame, ServerFrame, Since};
use chat_testkit::topology::{API_KEY, Topology};
use chat_testkit::{RedisServer, WsClient, free_port, holds_within};
use common::{http, metrics_of, post_text, sample};

const DASHBOARD: &str =
    include_str!("../../../observability/grafana/dashboards/chat-overview.json");

/// A Debian `prometheus` tool, or a failure that says how to install it.
fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin"] {
        let path = Path::new(dir).join(name);
        if path.exists() {
            return path;
        }
    }
    panic!(
        "{name} is missing: apt-get install -y --no-install-recommends prometheus (.ci/run does)"
    );
}

/// Connections, joins and leaves, sends over WebSocket and HTTP, history reads on both,
/// an error and a limit hit: every metric of the dashboard gets a sample. Returns the
/// clients, still connected.
async fn drive_traffic(ws: &[SocketAddr], gateway: SocketAddr) -> Vec<WsClient> {
    let client = http();
    let mut clients = Vec::new();
    for (i, addr) in ws.iter().enumerate() {
        let url = format!("ws://{addr}/ws");
        let (mut c, _) = WsClient::connect_as(&url, &format!("user{i}"), i % 2 == 1).await;
        let joined = c.join("general").await;
        c.join("lobby").await;
        c.send(&ClientFrame::Send {
            room: Some("general".into()),
            to: None,
            text: format!("over ws {i}"),
            cid: Some(format!("c{i}")),
        })
        .await;
        c.recv_until(|f| matches!(f, ServerFrame::Ack { .. })).await;
        // Too large: an error frame and a `text_size` limit hit; the connection stays.
        c.send(&ClientFrame::Send {
            room: Some("general".into()),
            to: None,
            text: "x".repeat(5000),
            cid: None,
        })
        .await;
        c.recv_until(|f| matches!(f, ServerFrame::Error { .. }))
            .await;
        c.send(&ClientFrame::Leave {
            room: "lobby".into(),
        })
        .await;
        c.recv_until(|f| matches!(f, ServerFrame::Left { .. }))
            .await;
        // A join with `since` reads history on the replica.
        if let ServerFrame::Joined { epoch, .. } = joined {
            c.send(&ClientFrame::Join {
                room: "recovering".into(),
                since: Some(Since { epoch, seq: 0 }),
            })
            .await;
            c.recv_until(|f| matches!(f, ServerFrame::Joined { .. }))
                .await;
        }
        clients.push(c);
    }
    let base = format!("http://{gateway}");
    for n in 0..5 {
        let url = format!("{base}/v1/rooms/general/messages");
        assert_eq!(post_text(&url, &format!("over http {n}")).await.0, 201);
    }
    let r = client
        .get(format!("{base}/v1/rooms/general/messages?limit=10"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let bad_room = format!("{base}/v1/rooms/not%20a%20room/messages");
    assert_eq!(post_text(&bad_room, "x").await.0, 400);
    for c in &mut clients {
        c.recv_until(|f| matches!(f, ServerFrame::Message(m) if m.text == "over http 4"))
            .await;
    }
    clients
}

fn promtool_check_metrics(name: &str, body: &str) {
    use std::io::Write;
    let mut child = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics on {name}: {said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_metrics_of_every_service() {
    let redis = RedisServer::start();
    let servers = Topology::builder();
    let rt1 = servers.realtime(&redis.url()).await.addr;
    let rt2 = servers.realtime(&redis.url()).await.addr;
    let gateway = servers.gateway(&redis.url()).await.addr;
    let chat = servers.chat(None).await.addr;
    let _split = drive_traffic(&[rt1, rt2], gateway).await;
    let _all_in_one = drive_traffic(&[chat], chat).await;
    for (name, addr) in [
        ("chat-gateway", gateway),
        ("chat-realtime", rt1),
        ("chat", chat),
    ] {
        let body = metrics_of(addr).await;
        for metric in [
            "chat_delivery_latency_seconds_bucket",
            "chat_bus_publish_duration_seconds_bucket",
            "chat_history_read_duration_seconds_bucket",
            "chat_redis_reconnects_total",
            "chat_errors_total",
        ] {
            assert!(body.contains(metric), "{name} has no {metric}");
        }
        promtool_check_metrics(name, &body);
    }
    // The delivery latency was observed where messages were delivered.
    let realtime = metrics_of(rt1).await;
    assert!(
        !realtime.contains("chat_delivery_latency_seconds_count 0"),
        "{realtime}"
    );
}

/// A redis_exporter child in front of `redis`, stopped on drop.
struct RedisExporter {
    child: std::process::Child,
    addr: SocketAddr,
}

impl RedisExporter {
    fn start(redis: &RedisServer) -> RedisExporter {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new(tool("prometheus-redis-exporter"))
            .arg(format!("-redis.addr={}", redis.url()))
            .arg(format!("-web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        RedisExporter { child, addr }
    }
}

impl Drop for RedisExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Prometheus child with its own config and storage, stopped on drop.
struct Prometheus {
    child: std::process::Child,
    port: u16,
    dir: PathBuf,
}

impl Prometheus {
    fn start(gateway: SocketAddr, realtime: &[SocketAddr], redis: SocketAddr) -> Prometheus {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("chat-prometheus-{port}-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let targets = |addrs: &[SocketAddr]| {
            addrs
                .iter()
                .map(|a| format!("\"{a}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        // The job names are those of the compose stack and the chart's ServiceMonitor.
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n\
             \x20 - job_name: gateway\n    static_configs:\n      - targets: [{}]\n\
             \x20 - job_name: realtime\n    static_configs:\n      - targets: [{}]\n\
             \x20 - job_name: redis\n    static_configs:\n      - targets: [{}]\n",
            targets(&[gateway]),
            targets(realtime),
            targets(&[redis])
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let child = Command::new(tool("prometheus"))
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Prometheus { child, port, dir }
    }

    async fn query(&self, expr: &str) -> Vec<serde_json::Value> {
        let r = http()
            .get(format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .query(&[("query", expr)])
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["status"], "success", "{expr}: {body}");
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The value of a one-element instant vector.
    async fn value(&self, expr: &str) -> f64 {
        let result = self.query(expr).await;
        result
            .first()
            .and_then(|s| s["value"][1].as_str())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    async fn wait_for(&self, expr: &str, at_least: f64) {
        for _ in 0..300 {
            if let Ok(r) = http()
                .get(format!("http://127.0.0.1:{}/-/ready", self.port))
                .send()
                .await
                && r.status() == 200
                && self.value(expr).await >= at_least
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("Prometheus never saw {expr} >= {at_least}");
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Every PromQL expression of the dashboard, with its panel's title.
fn dashboard_expressions() -> Vec<(String, String)> {
    fn walk(panels: &[serde_json::Value], out: &mut Vec<(String, String)>) {
        for panel in panels {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().expect("a PromQL target").to_owned();
                out.push((panel["title"].as_str().unwrap_or("").to_owned(), expr));
            }
            walk(panel["panels"].as_array().map_or(&[], |v| v), out);
        }
    }
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).unwrap();
    let mut out = Vec::new();
    walk(dashboard["panels"].as_array().unwrap(), &mut out);
    out
}

/// Grafana's variables as a viewer with every replica selected would have them.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "1m")
        .replace("$__range", "1m")
        .replace("$replica", ".*")
        .replace("$cluster", ".*")
        .replace("$namespace", ".*")
        .replace("$release", ".*")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_answers_every_dashboard_expression_with_data() {
    // Like the chart's Redis: a maxmemory, which refuses writes when reached.
    let redis =
        RedisServer::start_with(&["--maxmemory", "64mb", "--maxmemory-policy", "noeviction"]);
    let servers = Topology::builder();
    let rt1 = servers.realtime(&redis.url()).await.addr;
    let rt2 = servers.realtime(&redis.url()).await.addr;
    let gateway = servers.gateway(&redis.url()).await.addr;
    let exporter = RedisExporter::start(&redis);
    let prometheus = Prometheus::start(gateway, &[rt1, rt2], exporter.addr);
    prometheus.wait_for("sum(up)", 4.0).await;

    let _clients = drive_traffic(&[rt1, rt2], gateway).await;
    // Two more scrapes of everything after the traffic, so every rate has two points.
    let scrapes = "min(count_over_time(up[1m]))";
    let before = prometheus.value(scrapes).await;
    prometheus.wait_for(scrapes, before + 2.0).await;

    let expressions = dashboard_expressions();
    assert!(expressions.len() >= 20, "{expressions:?}");
    let mut empty = Vec::new();
    for (title, expr) in &expressions {
        let expr = substitute(expr);
        if prometheus.query(&expr).await.is_empty() {
            empty.push(format!("{title}: {expr}"));
        }
    }
    assert!(empty.is_empty(), "no data for:\n{}", empty.join("\n"));

    // And the data is the traffic's, not only zeros.
    for expr in [
        "sum(rate(chat_messages_published_total{job=\"gateway\", path=\"http\"}[1m]))",
        "sum(rate(chat_messages_published_total{job=\"realtime\", path=\"ws\"}[1m]))",
        "sum(rate(chat_deliveries_total{job=\"realtime\"}[1m]))",
        "sum(chat_delivery_latency_seconds_count{job=\"realtime\"})",
        "sum(chat_history_read_duration_seconds_count{job=\"realtime\"})",
        "sum(chat_errors_total{code=\"bad_request\"})",
        "sum(chat_limit_hits_total{limit=\"text_size\"})",
        "count(chat_ws_connections{job=\"realtime\"} > 0)",
        "count(chat_hub_channels{job=\"realtime\"} > 0)",
        "count(chat_hub_subscriptions{job=\"realtime\"} > 0)",
        "count(chat_hub_users{job=\"realtime\"} > 0)",
        "min(chat_connections_max_held{per=\"user\"})",
        "min(process_resident_memory_bytes)",
        "count(chat_build_info == 1)",
        "redis_pubsub_channels",
        "rate(redis_commands_processed_total[1m])",
        "redis_memory_max_bytes",
    ] {
        assert!(prometheus.value(expr).await > 0.0, "{expr} is 0");
    }
}

#[tokio::test]
async fn delivery_latency_is_observed_once_per_frame_written_to_a_member() {
    let addr = Topology::builder().chat(None).await.addr;
    let url = format!("ws://{addr}/ws");
    let mut members = Vec::new();
    for i in 0..3 {
        let (mut c, _) = WsClient::connect_as(&url, &format!("reader{i}"), i == 0).await;
        c.join("timed").await;
        members.push(c);
    }
    let before = sample(
        &metrics_of(addr).await,
        "chat_delivery_latency_seconds_count",
    );
    let r = http()
        .post(format!("http://{addr}/v1/rooms/timed/messages"))
        .bearer_auth(API_KEY)
        .json(&serde_json::json!({"text": "tick", "from": "clock"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    for c in &mut members {
        c.recv_until(|f| matches!(f, ServerFrame::Message(_))).await;
    }
    // Observed right after the write returns: the client may read first.
    let count = || async {
        sample(
            &metrics_of(addr).await,
            "chat_delivery_latency_seconds_count",
        )
    };
    holds_within(Duration::from_secs(2), || async {
        count().await >= before + 3.0
    })
    .await;
    assert_eq!(count().await, before + 3.0, "one observation per member");
    let body = metrics_of(addr).await;
    let sum = sample(&body, "chat_delivery_latency_seconds_sum");
    assert!(
        sum > 0.0 && sum < 3.0 * 10.0,
        "latencies are plausible: {sum}"
    );
}

#[tokio::test]
async fn a_replica_reports_the_channels_memberships_and_users_it_holds() {
    let addr = Topology::builder().chat(None).await.addr;
    let url = format!("ws://{addr}/ws");
    let holds = || async {
        let body = metrics_of(addr).await;
        [
            "chat_hub_channels",
            "chat_hub_subscriptions",
            "chat_hub_users",
        ]
        .map(|name| sample(&body, name))
    };
    assert_eq!(holds().await, [0.0, 0.0, 0.0]);
    let (mut ann1, _) = WsClient::connect_as(&url, "ann", false).await;
    let (mut ann2, _) = WsClient::connect_as(&url, "ann", true).await;
    let (mut bob, _) = WsClient::connect_as(&url, "bob", false).await;
    ann1.join("general").await;
    ann2.join("general").await;
    bob.join("general").await;
    bob.join("lobby").await;
    // Channels: general, lobby, @ann, @bob. Memberships: four joins and three
    // connections' personal channels. Users: ann and bob.
    assert_eq!(holds().await, [4.0, 7.0, 2.0]);
    // ann holds two of her 20 connections; this IP at least the three sockets (and
    // whatever the scrapes still hold) of its 20,000.
    let body = metrics_of(addr).await;
    let per = |what: &str| sample(&body, what);
    assert_eq!(per("chat_connections_max_held{per=\"user\"}"), 2.0);
    assert_eq!(per("chat_connections_limit{per=\"user\"}"), 20.0);
    assert!(
        per("chat_connections_max_held{per=\"ip\"}") >= 3.0,
        "{body}"
    );
    assert_eq!(per("chat_connections_limit{per=\"ip\"}"), 20_000.0);
    bob.close().await;
    let left = holds_within(Duration::from_secs(5), || async {
        holds().await == [2.0, 4.0, 1.0]
    })
    .await;
    assert!(left, "after bob left: {:?}", holds().await);
}

#[tokio::test]
async fn every_binary_says_its_version_and_its_process_resources() {
    let redis = RedisServer::start();
    let servers = Topology::builder();
    let realtime = servers.realtime(&redis.url()).await.addr;
    let gateway = servers.gateway(&redis.url()).await.addr;
    let chat = servers.chat(None).await.addr;
    let version = format!(
        "chat_build_info{{revision=\"{}\",version=\"{}\"}} 1",
        chat_telemetry::REVISION,
        env!("CARGO_PKG_VERSION")
    );
    for (name, addr) in [
        ("chat-gateway", gateway),
        ("chat-realtime", realtime),
        ("chat", chat),
    ] {
        let body = metrics_of(addr).await;
        assert!(body.contains(&version), "{name} has no {version}");
        for metric in [
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_threads",
            "chat_memory_limit_bytes",
        ] {
            assert!(sample(&body, metric) > 0.0, "{name}: {metric} is not > 0");
        }
        assert!(body.contains("process_cpu_seconds_total"), "{name}");
    }
}
