//! Clients that stop reading cost the server a bounded amount of memory: each is cut off
//! with 1013 once its send queue is full, while a reading client gets every message.
//! Runs the `chat` binary as a child so that its RSS is the server's alone.

mod common;

use std::process::Stdio;
use std::time::Duration;

use chat_protocol::ServerFrame;
use chat_testkit::{Closed, WsClient, free_port};
use futures_util::StreamExt;

const BIN: &str = env!("CARGO_BIN_EXE_chat");
const SLOW: usize = 20;
const MESSAGES: u64 = 5000;
const TEXT_BYTES: usize = 4000;
const QUEUE_BYTES: u64 = 256 * 1024;

/// Current and peak resident set size of a process, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_that_stop_are_cut_off_and_the_servers_memory_stays_bounded() {
    let port = free_port();
    let mut child = tokio::process::Command::new(BIN)
        .env_clear()
        .env("CHAT_ADDR", format!("127.0.0.1:{port}"))
        .env("CHAT_SEND_QUEUE_BYTES", QUEUE_BYTES.to_string())
        .env("CHAT_HISTORY_SIZE", "100")
        // The firehose is a backend's: a user's token would meet the per-user budget.
        .env("CHAT_API_KEYS", chat_testkit::topology::API_KEY)
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let ws = format!("ws://127.0.0.1:{port}/ws");
    let http = reqwest::Client::new();
    common::wait_status(&format!("{base}/readyz"), 200).await;

    let mut slow = Vec::new();
    for i in 0..SLOW {
        let (mut c, _) = WsClient::connect_as(&ws, &format!("sleepy{i}"), true).await;
        c.join("firehose").await;
        slow.push(c); // and never read again until the end
    }
    let (mut reader, _) = WsClient::connect_as(&ws, "reader", true).await;
    reader.join("firehose").await;
    let reading = tokio::spawn(async move {
        let mut seqs = Vec::new();
        while (seqs.len() as u64) < MESSAGES {
            if let ServerFrame::Message(m) = reader.recv().await {
                seqs.push(m.seq);
            }
        }
        seqs
    });
    let (rss_before, _) = rss_kib(pid);

    let text = "x".repeat(TEXT_BYTES);
    let statuses: Vec<u16> = futures_util::stream::iter(0..MESSAGES)
        .map(|_| {
            http.post(format!("{base}/v1/rooms/firehose/messages"))
                .bearer_auth(chat_testkit::topology::API_KEY)
                .json(&serde_json::json!({ "text": text, "from": "publisher" }))
                .send()
        })
        .buffer_unordered(16)
        .map(|r| r.unwrap().status().as_u16())
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 201), "every publish stored");

    // The reader got every message, once, in order, while the others were stalled.
    let seqs = tokio::time::timeout(Duration::from_secs(60), reading)
        .await
        .expect("the reader kept receiving")
        .unwrap();
    assert_eq!(seqs, (1..=MESSAGES).collect::<Vec<_>>());

    // Each sleeper was cut off: it finds what fit in its queue and then 1013.
    for mut c in slow {
        assert_eq!(c.closed().await, Closed::Code(1013));
    }
    let (rss_after, peak) = rss_kib(pid);
    // Had the server queued everything for the sleepers it would have held
    // 20 × 5000 × 4 KB = 400 MB; their queues are 256 KiB each.
    let stream_kib = SLOW as u64 * MESSAGES * TEXT_BYTES as u64 / 1024;
    eprintln!(
        "rss before {rss_before} KiB, after {rss_after} KiB, peak {peak} KiB; unbounded would be +{stream_kib} KiB"
    );
    assert!(
        peak < rss_before + 64 * 1024,
        "peak RSS {peak} KiB vs {rss_before} KiB before: the send queues are not bounded"
    );
    child.kill().await.unwrap();
}
