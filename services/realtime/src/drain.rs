//! Draining: how a replica that was told to stop hands its clients to the others.
//!
//! `/readyz` turns 503 at once and new upgrades are refused; every connected client gets
//! `reconnect` and a 1012 close at a moment spread over the drain window, so the other
//! replicas see a steady trickle of reconnects (each with `since`) instead of a storm.

use chat_protocol::ServerFrame;
use rand::Rng;
use rand::seq::SliceRandom;

use crate::Realtime;
use crate::close::{Close, Code};

const RESTART: Close = Close::new(Code::Restart, "server restart: reconnect with since");

/// Moves every client away within `rt.drain_window`; returns when they are gone or the
/// window is over.
pub async fn drain(rt: &Realtime) {
    let window = rt.drain_window;
    let start = tokio::time::Instant::now();
    let mut conns = rt.hub.all_connections();
    conns.shuffle(&mut rand::rng());
    tracing::info!(connections = conns.len(), ?window, "draining");
    // Closes are spread over the first 80% of the window: the last writers still have
    // time to flush before it ends.
    let n = conns.len().max(1) as f64;
    for (i, conn) in conns.iter().enumerate() {
        tokio::time::sleep_until(start + window.mul_f64(0.8 * i as f64 / n)).await;
        let after_ms = rand::rng().random_range(0..=500);
        let _ = conn.send(&ServerFrame::Reconnect { after_ms });
        conn.queue.close(RESTART);
    }
    let remaining = window.saturating_sub(start.elapsed());
    rt.shutdown.connections_closed(remaining).await;
    tracing::info!(left = rt.shutdown.open_connections(), "drained");
}
