//! The engine: where a message gets its `(epoch, seq)`, is stored and is published.
//!
//! - [`Engine`]: the one interface the gateway and the realtime hub use: publish (append
//!   to the channel's history and publish, atomically), subscribe / unsubscribe, read
//!   history, broadcast typing and control commands, readiness.
//! - [`presence`]: the engine's presence part ([`Engine::presence`]): who is online in
//!   a room.
//! - [`redis`]: the Redis implementation (`store`, `presence` and `bus` parts, Lua
//!   scripts in files; RESP3 pub/sub that reconnects and resubscribes by itself).
//! - [`publish`]: the one publish path of the gateway and the WebSocket `send`: the
//!   text check and the direct-message rule (stored on both personal channels).
//! - [`memory`]: the same behaviour in-process, for the all-in-one `chat` binary.
//! - [`bus`]: what subscribers receive, and the [`BusHandler`] they implement.
//! - [`epoch`]: epochs, which change when a channel's history is lost.
//! - [`config`]: the engine's settings (`CHAT_REDIS_URL`, history size and TTL).
//! - [`probe`]: pings Redis, keeps the engine's readiness and says in the log when
//!   Redis is unreachable and when back.
//!
//! The Redis engine's background tasks (probe, bus listener, bus watchdog) run until
//! the [`CancellationToken`] given to [`Engine::from_config`] is cancelled.

/// Calls the same method on whichever engine it is.
macro_rules! dispatch {
    ($self:expr, $e:ident => $call:expr) => {
        match $self {
            Engine::Memory($e) => $call,
            Engine::Redis($e) => $call,
        }
    };
}

pub mod bus;
pub mod config;
pub mod epoch;
pub mod memory;
pub mod presence;
pub mod probe;
pub mod publish;
pub mod redis;

use std::sync::Arc;

use chat_protocol::{ErrorCode, Message, ProtocolError};
use tokio::sync::watch;

pub use bus::{BusHandler, Control, Envelope, PresenceEvent, TraceContext};
pub use config::{EngineConfig, PemFile};
pub use presence::{Presence, PresenceEntry};
/// What stops the engine's background tasks; re-exported so callers need no
/// `tokio-util` of their own.
pub use tokio_util::sync::CancellationToken;

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

impl Engine {
    /// Builds the engine the configuration names: Redis when `CHAT_REDIS_URL` is set,
    /// memory otherwise. The Redis engine's probe starts at once (it needs a Tokio
    /// runtime; outside one the engine never reports ready), and every background task
    /// ends when `cancel` is cancelled.
    pub fn from_config(config: &EngineConfig, cancel: CancellationToken) -> Result<Engine> {
        match &config.redis_url {
            Some(url) => {
                let (ready_tx, ready) = watch::channel(false);
                let engine = Arc::new(redis::RedisEngine::new(url, config, cancel.clone(), ready)?);
                // Outside a runtime (a unit test) there is nobody to ping for.
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    let url = probe::redacted(url);
                    rt.spawn(probe::run(engine.clone(), url, ready_tx, cancel));
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

    /// Whether `user` has a live connection on some replica: its personal channel
    /// `@user` is subscribed exactly while it has one.
    pub async fn is_connected(&self, user: &str) -> Result<bool> {
        dispatch!(self, e => e.is_subscribed(&format!("@{user}")).await)
    }

    /// Presence: join, leave, refresh, sweep, list and announce.
    pub fn presence(&self) -> Presence<'_> {
        Presence(self)
    }

    /// Connects the bus to its one consumer (a realtime hub). Call once.
    pub async fn start_bus(&self, handler: std::sync::Weak<dyn BusHandler>) -> Result<()> {
        dispatch!(self, e => e.start_bus(handler).await)
    }

    /// True while the store answers (and the bus is connected, once started), as the
    /// probe saw it last (at most about two seconds ago). The memory engine is always
    /// ready.
    pub fn ready(&self) -> bool {
        *self.readiness().borrow()
    }

    /// [`ready`](Self::ready), and every change of it: to wait for it, or to mirror it
    /// into a gauge.
    pub fn readiness(&self) -> watch::Receiver<bool> {
        dispatch!(self, e => e.readiness())
    }
}
