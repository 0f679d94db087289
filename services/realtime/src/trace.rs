//! What a replica records about each message it handles: the span of a WebSocket
//! `send` (the root of the message's trace), the delivery span (one per message per
//! replica, a child of the publisher's span through the envelope), and the delivery
//! latency. Kept apart from the hub so the fan-out code stays about fan-out.

use chat_engine::Envelope;
use chat_protocol::Message;
use chat_telemetry::Metrics;
use chat_telemetry::trace::{exporting, set_parent};

use crate::send_queue::Queued;

/// The span of one WebSocket `send`, the root of its message's trace: a direct
/// message's two publishes (the receiver's channel and the sender's) run inside it, so
/// they are one trace.
pub fn send_span() -> tracing::Span {
    if exporting() {
        tracing::info_span!("WS send", otel.kind = "server")
    } else {
        tracing::Span::none()
    }
}

/// The span of one message's fan-out on this replica, continuing the publisher's
/// trace. Made only while spans are exported: the fan-out is the hot path.
pub fn delivery_span(msg: &Message, envelope: &Envelope) -> tracing::Span {
    if !exporting() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "deliver",
        otel.kind = "consumer",
        channel = %msg.room,
        seq = msg.seq,
    );
    if let Some(trace) = &envelope.trace {
        set_parent(&span, trace);
    }
    span
}

/// When the message was published, in µs since the Unix epoch: the envelope's time,
/// or the message's millisecond `ts` from an older publisher.
pub fn published_us(msg: &Message, envelope: &Envelope) -> u64 {
    envelope.published_us.unwrap_or_else(|| stored_us(msg))
}

/// When a message was stored (µs, from its `ts`): the start of its delivery latency
/// where no envelope is at hand (repaired from history, buffered during a join).
pub fn stored_us(msg: &Message) -> u64 {
    msg.ts.saturating_mul(1000)
}

/// Records the delivery latency of every message frame of a batch the writer has just
/// written to its socket. Clocks of publisher and replica are compared, so skew shows
/// in the latency (clamped at 0).
pub fn written(metrics: &Metrics, batch: &[Queued]) {
    let mut now_us = 0;
    for &(_, published_us) in batch {
        if published_us == 0 {
            continue;
        }
        if now_us == 0 {
            now_us = chat_engine::now_us();
        }
        let latency = now_us.saturating_sub(published_us) as f64 / 1_000_000.0;
        metrics.delivery_latency.observe(latency);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_comes_from_the_envelope_or_else_the_message_ts() {
        let msg = Message {
            room: "r".into(),
            seq: 1,
            epoch: "e".into(),
            from: "a".into(),
            text: "t".into(),
            ts: 7,
            to: None,
            cid: None,
        };
        assert_eq!(published_us(&msg, &Envelope::default()), 7_000);
        let envelope = Envelope {
            trace: None,
            published_us: Some(7_123),
        };
        assert_eq!(published_us(&msg, &envelope), 7_123);

        let metrics = Metrics::new();
        let frame = bytes::Bytes::from_static(b"f");
        let batch = [
            (frame.clone(), chat_engine::now_us() + 10_000_000),
            (frame.clone(), 0), // not a message: not counted
            (frame, chat_engine::now_us() - 2_000),
        ];
        written(&metrics, &batch);
        assert_eq!(metrics.delivery_latency.get_sample_count(), 2);
        // A publisher clock ahead of ours counts as 0, not as a huge latency.
        assert!(metrics.delivery_latency.get_sample_sum() < 1.0);
    }
}
