//! The one way a message is published, for the HTTP API and a WebSocket `send` alike
//! (as centrifuge's `Node.Publish` is for its API and its clients): the text check, and
//! the direct-message rule. Each caller keeps only what is its own: authentication,
//! limits and the answer (an HTTP response, an `ack`).

use std::time::{Duration, Instant};

use chat_protocol::{Channel, Message, ProtocolError, codec};

use crate::{Engine, Publication, TraceContext};

/// A message on its way out: where, from whom, what.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    /// A room, or the receiver's personal channel for a direct message. Already
    /// authorized by the caller.
    pub channel: &'a Channel,
    pub from: String,
    pub text: String,
    pub cid: Option<String>,
    /// The caller's trace context, carried to every replica's delivery.
    pub trace: Option<TraceContext>,
}

/// Checks the text against `max_text_bytes` and stores the message: a room message on
/// its room; a direct message on the receiver's `@to` and, unless they are the same
/// user, on the sender's own `@from` too (their other devices see the conversation).
/// `stored` is told how long each engine publish took. Returns the message as stored
/// on `channel`.
///
/// A text over the limit is `too_large`, an empty one `bad_request`: nothing is stored.
pub async fn publish(
    engine: &Engine,
    out: Outgoing<'_>,
    max_text_bytes: usize,
    stored: impl Fn(Duration),
) -> Result<Message, ProtocolError> {
    codec::check_text(&out.text, max_text_bytes)?;
    let store = async |p: Publication| {
        let start = Instant::now();
        let m = engine.publish(p).await;
        stored(start.elapsed());
        m
    };
    let Outgoing {
        channel,
        from,
        text,
        cid,
        trace,
    } = out;
    let message = match channel {
        Channel::Room(room) => {
            store(Publication {
                channel: room.clone(),
                from,
                text,
                to: None,
                cid,
                trace,
            })
            .await?
        }
        Channel::User(to) => {
            let own = (&from != to).then(|| Publication {
                channel: format!("@{from}"),
                from: from.clone(),
                text: text.clone(),
                to: Some(to.clone()),
                cid: cid.clone(),
                trace: trace.clone(),
            });
            let m = store(Publication {
                channel: channel.to_string(),
                from,
                text,
                to: Some(to.clone()),
                cid,
                trace,
            })
            .await?;
            if let Some(own) = own {
                store(own).await?;
            }
            m
        }
    };
    Ok(message)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use chat_protocol::ErrorCode;

    use super::*;
    use crate::{EngineConfig, Range};

    fn out<'a>(channel: &'a Channel, from: &str, text: &str) -> Outgoing<'a> {
        Outgoing {
            channel,
            from: from.into(),
            text: text.into(),
            cid: Some("c1".into()),
            trace: None,
        }
    }

    async fn stored_on(engine: &Engine, channel: &str) -> Vec<Message> {
        let all = Range::After { seq: 0, limit: 100 };
        engine.history(channel, all).await.unwrap().messages
    }

    #[tokio::test]
    async fn a_direct_message_is_stored_for_the_receiver_and_the_sender() {
        let engine = Engine::memory(&EngineConfig::default());
        let stores = AtomicUsize::new(0);
        let count = |_| {
            stores.fetch_add(1, Ordering::Relaxed);
        };
        let bob = Channel::user("bob").unwrap();
        let m = publish(&engine, out(&bob, "alice", "hi"), 10, count)
            .await
            .unwrap();
        assert_eq!((m.room.as_str(), m.seq), ("@bob", 1));
        assert_eq!(m.to.as_deref(), Some("bob"));
        let own = stored_on(&engine, "@alice").await;
        assert_eq!(own.len(), 1);
        assert_eq!(own[0].to.as_deref(), Some("bob"));
        assert_eq!(own[0].cid.as_deref(), Some("c1"));
        assert_eq!(stores.load(Ordering::Relaxed), 2, "each store is timed");

        // To oneself: one channel, stored once.
        let alice = Channel::user("alice").unwrap();
        publish(&engine, out(&alice, "alice", "note"), 10, |_| {})
            .await
            .unwrap();
        assert_eq!(stored_on(&engine, "@alice").await.len(), 2);
    }

    #[tokio::test]
    async fn a_room_message_is_stored_on_its_room_only() {
        let engine = Engine::memory(&EngineConfig::default());
        let general = Channel::room("general").unwrap();
        let m = publish(&engine, out(&general, "alice", "hi"), 10, |_| {})
            .await
            .unwrap();
        assert_eq!((m.room.as_str(), m.to), ("general", None));
        assert!(stored_on(&engine, "@alice").await.is_empty());
    }

    #[tokio::test]
    async fn a_text_over_the_limit_or_empty_stores_nothing() {
        let engine = Engine::memory(&EngineConfig::default());
        let bob = Channel::user("bob").unwrap();
        let err = publish(&engine, out(&bob, "alice", "12345678901"), 10, |_| {})
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::TooLarge);
        let err = publish(&engine, out(&bob, "alice", ""), 10, |_| {})
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
        assert!(stored_on(&engine, "@bob").await.is_empty());
        assert!(stored_on(&engine, "@alice").await.is_empty());
    }
}
