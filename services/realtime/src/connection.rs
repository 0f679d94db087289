//! One WebSocket connection's lifecycle, in one task: the client's [`Session`] runs
//! over the socket's read half while the [`Writer`] drains the send queue into its
//! write half, and when the writer has closed, the connection leaves the hub and its
//! close is counted.
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

    let session = Session::new(rt.clone(), queue.clone(), encoding);
    let writer = Writer {
        timing: rt.timing,
        write_delay: Duration::from_millis(rt.limits.write_delay_ms.into()),
        idle: &|| session.idle(),
        metrics: &rt.metrics,
    };
    // Both halves run in this one task: a second task per connection was memory every
    // idle connection held.
    let close = {
        let read = session.run(reader);
        let write = writer.run(&socket, &queue);
        tokio::pin!(read, write);
        tokio::select! {
            close = &mut write => {
                // The reader ends when the client answers our close; past a grace
                // period the connection is dead and reading stops.
                let grace = tokio::time::timeout(Duration::from_secs(1), read);
                let _ = Box::pin(grace).await;
                close
            }
            () = &mut read => write.await,
        }
    };
    if let Some(conn) = session.conn() {
        // Boxed: leaving every channel is a deep future, and inline it would make
        // every idle connection's task that much larger.
        Box::pin(rt.hub.disconnect(conn)).await;
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
