//! The in-memory engine: one process, no Redis, the same behaviour as [`crate::redis`].
//!
//! Each channel keeps a ring buffer of its last `history_size` messages. Publishing
//! assigns the seq and hands the message to the hub under the channel table's lock, so
//! concurrent publishers cannot deliver out of seq order.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Weak;
use std::time::{Duration, Instant};

use chat_protocol::{Message, now_ms};
use parking_lot::{Mutex, RwLock};

use crate::{
    BusHandler, Control, EngineConfig, Head, History, PresenceEntry, PresenceEvent, Publication,
    Range, Result,
};

struct ChannelLog {
    epoch: String,
    seq: u64,
    messages: VecDeque<Message>,
    touched: Instant,
}

pub struct MemoryEngine {
    channels: Mutex<HashMap<String, ChannelLog>>,
    subscribed: RwLock<HashSet<String>>,
    handler: RwLock<Option<Weak<dyn BusHandler>>>,
    /// room → user → connections. One process: nothing can die without us.
    presence: Mutex<HashMap<String, HashMap<String, HashSet<String>>>>,
    pub(crate) presence_ttl: Duration,
    history_size: usize,
    ttl: Duration,
}

impl MemoryEngine {
    pub fn new(config: &EngineConfig) -> Self {
        Self {
            channels: Mutex::new(HashMap::new()),
            subscribed: RwLock::new(HashSet::new()),
            handler: RwLock::new(None),
            presence: Mutex::new(HashMap::new()),
            presence_ttl: Duration::from_secs(config.presence_ttl_secs),
            history_size: config.history_size as usize,
            ttl: Duration::from_secs(config.history_ttl_secs),
        }
    }

    fn handler(&self) -> Option<std::sync::Arc<dyn BusHandler>> {
        self.handler.read().as_ref().and_then(Weak::upgrade)
    }

    /// The handler, if `channel` is subscribed.
    fn handler_of(&self, channel: &str) -> Option<std::sync::Arc<dyn BusHandler>> {
        if self.subscribed.read().contains(channel) {
            self.handler()
        } else {
            None
        }
    }

    /// The channel's log; a log idle past the TTL is gone, as a Redis key would be, and
    /// comes back with a new epoch.
    fn log<'a>(
        channels: &'a mut HashMap<String, ChannelLog>,
        channel: &str,
        ttl: Duration,
    ) -> &'a mut ChannelLog {
        let now = Instant::now();
        if channels
            .get(channel)
            .is_some_and(|log| now.duration_since(log.touched) > ttl)
        {
            channels.remove(channel);
        }
        channels
            .entry(channel.to_owned())
            .or_insert_with(|| ChannelLog {
                epoch: crate::epoch::new_epoch(),
                seq: 0,
                messages: VecDeque::new(),
                touched: now,
            })
    }

    pub async fn publish(&self, p: Publication) -> Result<Message> {
        let mut channels = self.channels.lock();
        let log = Self::log(&mut channels, &p.channel, self.ttl);
        log.seq += 1;
        log.touched = Instant::now();
        let message = Message {
            room: p.channel,
            seq: log.seq,
            epoch: log.epoch.clone(),
            from: p.from,
            text: p.text,
            ts: now_ms(),
            to: p.to,
            cid: p.cid,
        };
        if log.messages.len() == self.history_size {
            log.messages.pop_front();
        }
        log.messages.push_back(message.clone());
        // Delivered under the lock: the next publish on this engine waits, so the hub
        // sees every channel's messages in seq order.
        if let Some(h) = self.handler_of(&message.room) {
            let envelope = crate::Envelope {
                trace: p.trace,
                published_us: Some(crate::now_us()),
            };
            h.on_published(message.clone(), envelope);
        }
        Ok(message)
    }

    pub async fn head(&self, channel: &str) -> Result<Head> {
        let mut channels = self.channels.lock();
        let log = Self::log(&mut channels, channel, self.ttl);
        Ok(Head {
            epoch: log.epoch.clone(),
            seq: log.seq,
        })
    }

    pub async fn history(&self, channel: &str, range: Range) -> Result<History> {
        let mut channels = self.channels.lock();
        let log = Self::log(&mut channels, channel, self.ttl);
        let messages = match range {
            Range::After { seq, limit } => log
                .messages
                .iter()
                .filter(|m| m.seq > seq)
                .take(limit)
                .cloned()
                .collect(),
            Range::Before { seq, limit } => log
                .messages
                .iter()
                .rev()
                .filter(|m| seq.is_none_or(|before| m.seq < before))
                .take(limit)
                .cloned()
                .collect(),
        };
        Ok(History {
            head: Head {
                epoch: log.epoch.clone(),
                seq: log.seq,
            },
            messages,
        })
    }

    pub async fn subscribe(&self, channel: &str) -> Result<()> {
        // Taken under the channel table's lock so that no publish is half-way between
        // "not subscribed" and "delivered" when the caller reads history next.
        let _channels = self.channels.lock();
        self.subscribed.write().insert(channel.to_owned());
        Ok(())
    }

    pub async fn is_subscribed(&self, channel: &str) -> Result<bool> {
        Ok(self.subscribed.read().contains(channel))
    }

    pub async fn unsubscribe(&self, channel: &str) -> Result<()> {
        self.subscribed.write().remove(channel);
        Ok(())
    }

    pub async fn publish_typing(&self, channel: &str, user: &str) -> Result<()> {
        if let Some(h) = self.handler_of(channel) {
            h.on_typing(channel, user);
        }
        Ok(())
    }

    pub async fn publish_control(&self, control: &Control) -> Result<()> {
        if let Some(h) = self.handler() {
            h.on_control(control.clone());
        }
        Ok(())
    }

    pub async fn presence_join(&self, e: &PresenceEntry) -> Result<bool> {
        let mut p = self.presence.lock();
        let conns = p
            .entry(e.room.clone())
            .or_default()
            .entry(e.user.clone())
            .or_default();
        let first = conns.is_empty();
        conns.insert(e.conn.clone());
        Ok(first)
    }

    pub async fn presence_leave(&self, e: &PresenceEntry) -> Result<bool> {
        let mut p = self.presence.lock();
        let Some(users) = p.get_mut(&e.room) else {
            return Ok(false);
        };
        let Some(conns) = users.get_mut(&e.user) else {
            return Ok(false);
        };
        let removed = conns.remove(&e.conn);
        let last = removed && conns.is_empty();
        if conns.is_empty() {
            users.remove(&e.user);
        }
        if users.is_empty() {
            p.remove(&e.room);
        }
        Ok(last)
    }

    pub async fn presence_refresh(&self, _entries: &[PresenceEntry]) -> Result<()> {
        Ok(())
    }

    pub async fn presence_sweep(&self, _room: &str) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    pub async fn presence(&self, room: &str) -> Result<Vec<String>> {
        let mut users: Vec<String> = self
            .presence
            .lock()
            .get(room)
            .map(|u| u.keys().cloned().collect())
            .unwrap_or_default();
        users.sort();
        Ok(users)
    }

    pub async fn publish_presence(
        &self,
        room: &str,
        user: &str,
        event: PresenceEvent,
    ) -> Result<()> {
        if let Some(h) = self.handler_of(room) {
            h.on_presence(room, user, event);
        }
        Ok(())
    }

    pub async fn start_bus(&self, handler: Weak<dyn BusHandler>) -> Result<()> {
        *self.handler.write() = Some(handler);
        Ok(())
    }

    pub async fn ready(&self) -> bool {
        true
    }
}
