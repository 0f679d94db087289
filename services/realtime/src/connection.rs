//! One WebSocket connection's lifecycle: a reader task runs the client's [`Session`]
//! over the socket's read half, the [`Writer`] drains the send queue into its write
//! half, and when the writer has closed, the connection leaves the hub and its close
//! is counted.
//!
//! [`Reader`] reads and checks the client's frames (RFC 6455); a client that breaks the
//! protocol gets the close its [`Violation`](crate::reader::Violation) names.

use std::sync::Arc;
use std::time::Duration;

use chat_protocol::Encoding;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;

use crate::Realtime;
use crate::reader::Reader;
use crate::send_queue::SendQueue;
use crate::session::Session;
use crate::socket;
use crate::writer::Writer;

/// Serves one upgraded connection until it closes.
pub async fn serve(rt: Arc<Realtime>, upgraded: TokioIo<Upgraded>, encoding: Encoding) {
    let Some((read_half, socket)) = socket::from_upgraded(upgraded) else {
        // Every listener of ours is a TcpListener under axum::serve.
        tracing::error!("an upgraded connection is not a TCP stream: dropped");
        return;
    };
    let reader = Reader::new(read_half, rt.max_frame_bytes());
    let queue = Arc::new(SendQueue::new(rt.limits.send_queue_bytes as usize));
    rt.metrics.ws_connections.inc();

    let session = Arc::new(Session::new(rt.clone(), queue.clone(), encoding));
    let read_task = tokio::spawn({
        let session = session.clone();
        async move { session.run(reader).await }
    });
    let abort = read_task.abort_handle();

    let writer = Writer {
        timing: rt.timing,
        write_delay: Duration::from_millis(rt.limits.write_delay_ms.into()),
        idle: &|| session.idle(),
        metrics: &rt.metrics,
    };
    let close = writer.run(&socket, &queue).await;
    // The reader ends when the client answers our close; past a grace period the
    // connection is dead and the reader is dropped.
    if tokio::time::timeout(Duration::from_secs(1), read_task)
        .await
        .is_err()
    {
        abort.abort();
    }
    if let Some(conn) = session.conn() {
        rt.hub.disconnect(conn).await;
    }
    rt.metrics.ws_connections.dec();
    if let Some(limit) = close.code.limit() {
        rt.limit_hit(limit);
    }
    rt.metrics
        .ws_closes
        .with_label_values(&[close.code.label()])
        .inc();
}
