//! The compose topology rehearsed with real processes: Debian's nginx running the edge
//! configuration of docker-compose (docker/nginx/edge.conf) in front of two
//! `chat-realtime` processes and a gateway on loopback. A full chat session goes through
//! it; then one replica gets SIGTERM, drains, and its clients recover through nginx on
//! the other one without losing a message.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chat_protocol::ServerFrame;
use chat_testkit::topology::{API_KEY, Topology};
use chat_testkit::{RedisServer, WsClient, free_port, holds_within, wait_until};
use parking_lot::Mutex;
use support::{Seen, recording_client, start_replica, wait_until_all_joined};

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn nginx() -> PathBuf {
    for p in ["/usr/sbin/nginx", "/usr/bin/nginx"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("nginx is needed for the edge rehearsal: apt-get install -y nginx");
}

/// The compose edge, unchanged but for where it listens, its files, and the upstreams.
fn edge_prefix(port: u16, gateway: u16, realtimes: &[u16]) -> PathBuf {
    let prefix = std::env::temp_dir().join(format!("chat-edge-{port}"));
    std::fs::create_dir_all(prefix.join("html")).unwrap();
    let conf = std::fs::read_to_string(format!("{REPO}/docker/nginx/edge.conf")).unwrap();
    assert!(conf.contains("listen 80;") && conf.contains("include upstreams.conf;"));
    let conf = conf
        .replace("listen 80;", &format!("listen 127.0.0.1:{port};"))
        .replace(
            "root /usr/share/nginx/html;",
            &format!("root {};", prefix.join("html").display()),
        )
        .replace(
            "pid /tmp/nginx.pid;",
            &format!("pid {};", prefix.join("nginx.pid").display()),
        );
    std::fs::write(prefix.join("edge.conf"), conf).unwrap();
    // Compose's upstreams.conf maps each upstream variable to a DNS name; here the
    // same variables name `upstream` groups of the loopback processes instead.
    let compose = std::fs::read_to_string(format!("{REPO}/docker/nginx/upstreams.conf")).unwrap();
    assert!(compose.contains("$gateway_upstream") && compose.contains("$realtime_upstream"));
    let replicas: String = realtimes
        .iter()
        .map(|p| format!("server 127.0.0.1:{p}; "))
        .collect();
    let upstreams = format!(
        "upstream gateway_group {{ server 127.0.0.1:{gateway}; keepalive 4; }}\n\
         upstream realtime_group {{ least_conn; {replicas}}}\n\
         map $host $gateway_upstream {{ default gateway_group; }}\n\
         map $host $realtime_upstream {{ default realtime_group; }}\n"
    );
    std::fs::write(prefix.join("upstreams.conf"), upstreams).unwrap();
    std::fs::copy("/etc/nginx/mime.types", prefix.join("mime.types")).unwrap();
    std::fs::write(
        prefix.join("html/index.html"),
        "<!doctype html><title>edge</title>",
    )
    .unwrap();
    // nginx workers run as nobody: they must read the files.
    let _ = std::process::Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&prefix)
        .status();
    let _ = std::process::Command::new("chmod")
        .args(["a+x", "/tmp"])
        .status();
    prefix
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_replica_hands_its_clients_to_the_other_through_nginx() {
    let redis = RedisServer::start();
    let drain = [("CHAT_DRAIN_SECS", "3")];
    let mut a = start_replica(&redis.url(), &drain).await;
    let b = start_replica(&redis.url(), &drain).await;
    let gateway = Topology::builder().gateway(&redis.url()).await.addr.port();
    let port = free_port();
    let prefix = edge_prefix(port, gateway, &[a.port, b.port]);
    let mut edge = tokio::process::Command::new(nginx())
        .arg("-p")
        .arg(format!("{}/", prefix.display()))
        .arg("-c")
        .arg(prefix.join("edge.conf"))
        .args(["-e", "stderr", "-g", "daemon off;"])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_until("nginx proxies the API", Duration::from_secs(5), || async {
        client
            .get(format!("{base}/v1/rooms/R/presence"))
            .bearer_auth(API_KEY)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;

    // A full session through the edge: connect, join, publish over HTTP, send over WS.
    let ws = format!("ws://127.0.0.1:{port}/ws");
    let (mut ann, _) = WsClient::connect_as(&ws, "ann", true).await;
    ann.join("R").await;
    let r = client
        .post(format!("{base}/chat/send"))
        .json(&serde_json::json!({"sender": "bob", "receiver": "R", "text": "through the edge", "event": "message"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    match ann.recv().await {
        ServerFrame::Message(m) => assert_eq!(m.text, "through the edge"),
        other => panic!("{other:?}"),
    }
    let doc = client
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(doc.status(), 200);
    ann.close().await;

    // Eight recording clients spread over both replicas by nginx (least_conn).
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for i in 0..8 {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let task = tokio::spawn(recording_client(
            format!("u{i}"),
            vec!["R".into()],
            vec![port],
            0,
            seen.clone(),
            stop.clone(),
        ));
        clients.push((seen, task));
    }
    let joining: Vec<_> = clients.iter().map(|(seen, _)| (&**seen, 1)).collect();
    wait_until_all_joined(&joining).await;

    let mut sent = 1; // "through the edge"
    let mut sigterm_at = None;
    let mut exit = None;
    for i in 0..150 {
        if i == 40 {
            let pid = a.child.id().unwrap().to_string();
            assert!(
                std::process::Command::new("kill")
                    .args(["-TERM", &pid])
                    .status()
                    .unwrap()
                    .success()
            );
            sigterm_at = Some(Instant::now());
            // Soon not ready, so a load balancer stops sending clients: the public
            // listener closes when the drain starts (a restarted replica can bind it),
            // so a probe there is refused; an internal listener would answer 503.
            let readyz = format!("http://127.0.0.1:{}/readyz", a.port);
            wait_until(
                "the draining replica is not ready",
                Duration::from_secs(2),
                || async {
                    let ready = client.get(&readyz).send().await;
                    ready.as_ref().map_or(true, |r| r.status() == 503)
                },
            )
            .await;
        }
        let r = client
            .post(format!("{base}/v1/rooms/R/messages"))
            .bearer_auth(API_KEY)
            .json(&serde_json::json!({"text": i.to_string(), "from": "pub"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        sent += 1;
        if exit.is_none()
            && let Ok(Some(status)) = a.child.try_wait()
        {
            exit = Some((status, sigterm_at.unwrap().elapsed()));
        }
        // Part of the scenario: a steady stream that runs through the whole drain.
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (status, took) = match exit {
        Some(e) => e,
        None => {
            let status = tokio::time::timeout(Duration::from_secs(10), a.child.wait())
                .await
                .expect("drained replica exits")
                .unwrap();
            (status, sigterm_at.unwrap().elapsed())
        }
    };
    assert_eq!(status.code(), Some(0), "a drained replica exits 0");
    assert!(
        took < Duration::from_secs(5),
        "within the 3 s window (and a margin): {took:?}"
    );

    // Checked one by one below, with what each client missed.
    holds_within(Duration::from_secs(5), || async {
        clients
            .iter()
            .all(|(seen, _)| seen.lock().messages.get("R").map_or(0, Vec::len) >= sent - 1)
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut moved = 0;
    for (i, (seen, task)) in clients.into_iter().enumerate() {
        task.await.unwrap();
        let seen = seen.lock();
        let got: Vec<u64> = seen.messages["R"].iter().map(|(_, s)| *s).collect();
        // Every client joined after "through the edge" (seq 1).
        assert_eq!(
            got,
            (2..=sent as u64).collect::<Vec<_>>(),
            "client {i}: 0 lost, 0 duplicated"
        );
        assert!(seen.recoveries.iter().all(|r| *r), "client {i} recovered");
        if seen.reconnects > 0 {
            moved += 1;
            assert!(
                seen.told_to_reconnect > 0,
                "client {i} was told to reconnect before the close"
            );
        }
    }
    assert!(
        moved >= 1,
        "the drained replica had clients, and they moved"
    );
    // SIGQUIT: nginx stops its workers too (SIGKILL would orphan them).
    if let Some(pid) = edge.id() {
        let _ = std::process::Command::new("kill")
            .args(["-QUIT", &pid.to_string()])
            .status();
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), edge.wait()).await;
    drop(b);
}
