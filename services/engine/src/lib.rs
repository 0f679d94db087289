//! The engine: where a message gets its `(epoch, seq)`, is stored and is published.
//!
//! - [`Engine`]: the one interface the gateway and the realtime hub use: publish (append
//!   to the channel's history and publish, atomically), subscribe / unsubscribe, read
//!   history, broadcast typing and control commands.
//! - [`redis`]: the Redis implementation (Lua script over a hash, a Stream and PUBLISH;
//!   RESP3 pub/sub that reconnects and resubscribes by itself).
//! - [`memory`]: the same behaviour in-process, for the all-in-one `chat` binary.
//! - [`bus`]: what subscribers receive, and the [`BusHandler`] they implement.
//! - [`epoch`]: epochs, which change when a channel's history is lost.
//! - [`config`]: the engine's settings (`CHAT_REDIS_URL`, history size and TTL).
//! - [`probe`]: pings Redis and says in the log when it is unreachable and when back.

pub mod bus;
pub mod config;
pub mod epoch;
pub mod memory;
pub mod probe;
pub mod publish;
pub mod redis;

use std::sync::Arc;

use chat_protocol::{ErrorCode, Message, ProtocolError};

pub use bus::{BusHandler, Control, Envelope, PresenceEvent, TraceContext};
pub use config::{EngineConfig, PemFile};

/// What a publisher asks to store and deliver on one channel.
#[derive(Debug, Clone)]
pub struct Publication {
    /// `general` or `@alice`.
    pub channel: String,
    pub from: String,
    pub text: String,
    /// The receiver of a direct message.
    pub to: Option<String>,
    pub cid: Option<String>,
    /// The publisher's trace context, carried to every replica's delivery.
    pub trace: Option<TraceContext>,
}

/// Microseconds since the Unix epoch: the publish time in the envelope.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// One live connection in one room: what a replica keeps alive in presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceEntry {
    pub room: String,
    pub user: String,
    pub conn: String,
}

/// A channel's epoch and the seq of its newest message (0 when it has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub epoch: String,
    pub seq: u64,
}

/// Which part of a channel's history to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// Messages with seq > `seq`, oldest first.
    After { seq: u64, limit: usize },
    /// Messages with seq < `seq` (the newest when `None`), newest first.
    Before { seq: Option<u64>, limit: usize },
}

/// A consistent read: the head and the messages come from one atomic step.
#[derive(Debug, Clone)]
pub struct History {
    pub head: Head,
    pub messages: Vec<Message>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// The store or the bus cannot be reached: the caller answers 503 / `unavailable`.
    /// A publish that failed before Redis had it is not stored; one whose answer was
    /// lost (a timeout, a reset while waiting) may be: clients match by `cid`.
    #[error("engine unavailable: {0}")]
    Unavailable(String),
    #[error("engine error: {0}")]
    Internal(String),
    /// A setting the engine cannot work with (the process stops at start).
    #[error("{0}")]
    Config(String),
}

impl From<EngineError> for ProtocolError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Unavailable(m) => ProtocolError::new(
                ErrorCode::Unavailable,
                format!("message store unavailable: {m}"),
            ),
            EngineError::Internal(m) | EngineError::Config(m) => {
                ProtocolError::new(ErrorCode::Internal, m)
            }
        }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Redis or memory. An enum rather than a trait object: two implementations, known at
/// compile time, async methods without boxing.
#[derive(Clone)]
pub enum Engine {
    Memory(Arc<memory::MemoryEngine>),
    Redis(Arc<redis::RedisEngine>),
}

macro_rules! dispatch {
    ($self:ident, $e:ident => $call:expr) => {
        match $self {
            Engine::Memory($e) => $call,
            Engine::Redis($e) => $call,
        }
    };
}

impl Engine {
    /// Builds the engine the configuration names: Redis when `CHAT_REDIS_URL` is set,
    /// memory otherwise.
    pub fn from_config(config: &EngineConfig) -> Result<Engine> {
        match &config.redis_url {
            Some(url) => {
                let engine = Arc::new(redis::RedisEngine::new(url, config)?);
                // Outside a runtime (a unit test) there is nobody to ping for.
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn(probe::run(Arc::downgrade(&engine), probe::redacted(url)));
                }
                Ok(Engine::Redis(engine))
            }
            None => Ok(Engine::memory(config)),
        }
    }

    pub fn memory(config: &EngineConfig) -> Engine {
        Engine::Memory(Arc::new(memory::MemoryEngine::new(config)))
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Engine::Memory(_) => "memory",
            Engine::Redis(_) => "redis",
        }
    }

    /// Appends to the channel's history and publishes, in one atomic step: seq order,
    /// history order and delivery order are the same.
    pub async fn publish(&self, p: Publication) -> Result<Message> {
        dispatch!(self, e => e.publish(p).await)
    }

    /// The channel's epoch and head; creates the epoch of a channel never seen before.
    pub async fn head(&self, channel: &str) -> Result<Head> {
        dispatch!(self, e => e.head(channel).await)
    }

    pub async fn history(&self, channel: &str, range: Range) -> Result<History> {
        dispatch!(self, e => e.history(channel, range).await)
    }

    /// Starts delivering the channel's messages to the handler. Returns once the
    /// subscription is in place, so a read that follows cannot miss a message.
    pub async fn subscribe(&self, channel: &str) -> Result<()> {
        dispatch!(self, e => e.subscribe(channel).await)
    }

    pub async fn unsubscribe(&self, channel: &str) -> Result<()> {
        dispatch!(self, e => e.unsubscribe(channel).await)
    }

    /// Broadcasts a typing notice to the channel's subscribers; never stored.
    pub async fn publish_typing(&self, channel: &str, user: &str) -> Result<()> {
        dispatch!(self, e => e.publish_typing(channel, user).await)
    }

    /// Broadcasts a control command to every realtime replica.
    pub async fn publish_control(&self, control: &Control) -> Result<()> {
        dispatch!(self, e => e.publish_control(control).await)
    }

    /// Records a connection in a room's presence; true when it is the user's first
    /// live connection there (so a `presence` join is due).
    pub async fn presence_join(&self, entry: &PresenceEntry) -> Result<bool> {
        dispatch!(self, e => e.presence_join(entry).await)
    }

    /// Removes a connection from a room's presence; true when it was the user's last.
    pub async fn presence_leave(&self, entry: &PresenceEntry) -> Result<bool> {
        dispatch!(self, e => e.presence_leave(entry).await)
    }

    /// Keeps this replica's entries alive; an entry not refreshed within
    /// `CHAT_PRESENCE_TTL_SECS` stops counting.
    pub async fn presence_refresh(&self, entries: &[PresenceEntry]) -> Result<()> {
        dispatch!(self, e => e.presence_refresh(entries).await)
    }

    /// Removes users whose entries all expired (their replica died); returns them so
    /// their `presence` leave can be announced.
    pub async fn presence_sweep(&self, room: &str) -> Result<Vec<String>> {
        dispatch!(self, e => e.presence_sweep(room).await)
    }

    /// Whether `user` has a live connection on some replica: its personal channel
    /// `@user` is subscribed exactly while it has one.
    pub async fn is_connected(&self, user: &str) -> Result<bool> {
        dispatch!(self, e => e.is_subscribed(&format!("@{user}")).await)
    }

    /// The users online in a room, sorted.
    pub async fn presence(&self, room: &str) -> Result<Vec<String>> {
        dispatch!(self, e => e.presence(room).await)
    }

    /// Broadcasts a presence change to the room's subscribers; never stored.
    pub async fn publish_presence(
        &self,
        room: &str,
        user: &str,
        event: PresenceEvent,
    ) -> Result<()> {
        dispatch!(self, e => e.publish_presence(room, user, event).await)
    }

    /// How often a replica should refresh its presence entries.
    pub fn presence_refresh_every(&self) -> std::time::Duration {
        dispatch!(self, e => e.presence_ttl / 3)
    }

    /// Connects the bus to its one consumer (a realtime hub). Call once.
    pub async fn start_bus(&self, handler: std::sync::Weak<dyn BusHandler>) -> Result<()> {
        dispatch!(self, e => e.start_bus(handler).await)
    }

    /// True while the store answers (and the bus is connected, once started).
    pub async fn ready(&self) -> bool {
        dispatch!(self, e => e.ready().await)
    }
}
