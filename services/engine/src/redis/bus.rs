//! The bus: subscriptions on one RESP3 connection, the listener that hands each payload
//! to the hub, the watchdog that resubscribes after an outage, and the payloads that
//! are published but never stored (typing, presence, control).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{PushKind, Value};

use super::{RedisEngine, manager_config, retried, timed};
use crate::bus::{self, Event};
use crate::{BusHandler, Control, EngineError, Result};

/// How often the watchdog pings the pub/sub connection.
const WATCH_EVERY: Duration = Duration::from_millis(500);

impl RedisEngine {
    fn sub(&self) -> Result<ConnectionManager> {
        self.sub
            .get()
            .cloned()
            .ok_or_else(|| EngineError::Internal("bus not started".into()))
    }

    pub async fn subscribe(&self, channel: &str) -> Result<()> {
        let name = self.keys.bus(channel);
        self.wanted.lock().insert(name.clone());
        let sub = self.sub()?;
        let result = retried(|| {
            let mut sub = sub.clone();
            let name = name.clone();
            async move { sub.subscribe(name).await }
        })
        .await;
        if result.is_err() {
            self.wanted.lock().remove(&name);
        }
        result
    }

    /// Whether any replica subscribes `channel` now (`PUBSUB NUMSUB`).
    pub async fn is_subscribed(&self, channel: &str) -> Result<bool> {
        let mut con = self.cmd.clone();
        let (_, count): (String, u64) = timed(
            redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(self.keys.bus(channel))
                .query_async(&mut con),
        )
        .await?;
        Ok(count > 0)
    }

    pub async fn unsubscribe(&self, channel: &str) -> Result<()> {
        let name = self.keys.bus(channel);
        self.wanted.lock().remove(&name);
        let mut sub = self.sub()?;
        timed(sub.unsubscribe(name)).await
    }

    /// PUBLISH of a payload that is not stored (typing, presence, control).
    pub(super) async fn publish_raw(&self, bus_channel: String, payload: String) -> Result<()> {
        let mut con = self.cmd.clone();
        timed(
            redis::cmd("PUBLISH")
                .arg(bus_channel)
                .arg(payload)
                .query_async::<()>(&mut con),
        )
        .await
    }

    pub async fn publish_typing(&self, channel: &str, user: &str) -> Result<()> {
        self.publish_raw(self.keys.bus(channel), format!("t{user}"))
            .await
    }

    pub async fn publish_control(&self, control: &Control) -> Result<()> {
        self.publish_raw(self.keys.control(), control.encode())
            .await
    }

    /// Opens the pub/sub connection and starts its listener and watchdog, which run
    /// until the engine's cancellation token is cancelled.
    pub async fn start_bus(self: &Arc<Self>, handler: Weak<dyn BusHandler>) -> Result<()> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let config = manager_config()
            .set_push_sender(tx)
            .set_automatic_resubscription();
        let sub = ConnectionManager::new_lazy_with_config(self.client3.clone(), config)
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        if self.sub.set(sub).is_err() {
            return Err(EngineError::Internal("bus already started".into()));
        }
        self.wanted.lock().insert(self.keys.control());
        tokio::spawn(listen(self.clone(), rx, handler.clone()));
        tokio::spawn(watch(self.clone(), handler));
        Ok(())
    }
}

/// Decodes each bus payload once and hands it to the hub.
async fn listen(
    engine: Arc<RedisEngine>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<redis::PushInfo>,
    handler: Weak<dyn BusHandler>,
) {
    let bus_prefix = engine.keys.bus_prefix();
    let control = engine.keys.control();
    let run = async {
        while let Some(push) = rx.recv().await {
            match push.kind {
                PushKind::Message => {
                    // A hub that is gone (its process is stopping) has nothing to serve.
                    let Some(handler) = handler.upgrade() else {
                        continue;
                    };
                    let (Some(Value::BulkString(name)), Some(Value::BulkString(payload))) =
                        (push.data.first(), push.data.get(1))
                    else {
                        continue;
                    };
                    let Ok(name) = std::str::from_utf8(name) else {
                        continue;
                    };
                    if let Some(channel) = name.strip_prefix(&bus_prefix) {
                        match bus::decode_event(channel, payload) {
                            Some(Event::Message(m, envelope)) => handler.on_published(m, envelope),
                            Some(Event::Typing(user)) => handler.on_typing(channel, &user),
                            Some(Event::Presence(user, event)) => {
                                handler.on_presence(channel, &user, event)
                            }
                            None => tracing::warn!(channel, "undecodable bus payload"),
                        }
                    } else if name == control {
                        match Control::decode(payload) {
                            Some(c) => handler.on_control(c),
                            None => tracing::warn!("undecodable control payload"),
                        }
                    }
                }
                PushKind::Disconnection if engine.bus_up.swap(false, Ordering::Relaxed) => {
                    tracing::warn!("lost the Redis pub/sub connection; reconnecting");
                    // Readiness should not wait for the probe's next tick.
                    engine.probe_now.notify_one();
                }
                _ => {}
            }
        }
    };
    engine.cancel().run_until_cancelled(run).await;
}

/// Pings the pub/sub connection (which makes redis-rs reconnect it), and after an
/// outage re-subscribes everything and tells the hub to look for missed messages.
/// The command connection is the probe's to ping.
async fn watch(engine: Arc<RedisEngine>, handler: Weak<dyn BusHandler>) {
    let Ok(mut sub) = engine.sub() else { return };
    let run = async {
        let mut was_up = false;
        let mut ever_up = false;
        loop {
            let ok = timed(redis::cmd("PING").query_async::<()>(&mut sub))
                .await
                .is_ok();
            if ok && !was_up {
                let wanted: Vec<String> = engine.wanted.lock().iter().cloned().collect();
                let resubscribed = wanted.is_empty() || timed(sub.subscribe(&wanted)).await.is_ok();
                if resubscribed {
                    engine.bus_up.store(true, Ordering::Relaxed);
                    engine.probe_now.notify_one();
                    was_up = true;
                    if ever_up {
                        tracing::info!(channels = wanted.len(), "Redis pub/sub is back");
                        if let Some(h) = handler.upgrade() {
                            h.on_bus_restored();
                        }
                    }
                    ever_up = true;
                }
            } else if !ok {
                if was_up {
                    tracing::warn!("Redis pub/sub is down");
                }
                if engine.bus_up.swap(false, Ordering::Relaxed) {
                    engine.probe_now.notify_one();
                }
                was_up = false;
            } else if !engine.bus_up.load(Ordering::Relaxed) {
                // The listener saw a disconnection that the ping did not: treat as an outage.
                was_up = false;
                continue;
            }
            tokio::time::sleep(WATCH_EVERY).await;
        }
    };
    engine.cancel().run_until_cancelled(run).await;
}
