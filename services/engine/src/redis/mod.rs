//! The Redis engine.
//!
//! - this file: [`RedisEngine`], its connections, and the names of its keys ([`Keys`]);
//! - [`store`]: publish, head and history (a channel's meta hash and Stream);
//! - [`presence`]: who is online in a room (sorted sets refreshed by each replica);
//! - [`bus`]: subscriptions on one RESP3 connection, its listener and watchdog, and the
//!   payloads that are published but never stored (typing, control);
//! - `lua/*.lua`: the scripts, one file each, embedded at build time.
//!
//! One Lua script increments the seq, appends to the Stream, refreshes the TTL and
//! PUBLISHes, so seq order, history order and delivery order are one order. A missing
//! meta hash means the channel's history is gone: the script makes a new epoch and
//! drops any Stream left behind, so an old `(epoch, seq)` can never match new messages.
//!
//! Presence: replicas refresh their own connections; a replica that dies simply stops
//! refreshing, and its users stop counting when the scores pass. Scripts read the clock
//! with TIME, so replicas' clocks do not matter.
//!
//! Subscriptions ride one RESP3 connection. redis-rs reconnects it; a watchdog pings it,
//! re-issues every SUBSCRIBE after an outage and tells the hub, which then fetches what
//! was published while the bus was down.
//!
//! Background tasks (the bus listener, the watchdog and [`crate::probe`]) end when the
//! [`CancellationToken`] the engine was built with is cancelled.

mod bus;
mod presence;
mod store;

use std::collections::HashSet;
use std::sync::OnceLock;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{
    Client, ConnectionInfo, IntoConnectionInfo, ProtocolVersion, PushInfo, TlsCertificates,
};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::{EngineConfig, EngineError, Result};

/// Upper bound on any one engine call: past it the caller answers `unavailable`.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// The names of everything the engine keeps in Redis, under one prefix.
///
/// Channel `C` (hash tags keep its keys in one cluster slot):
/// - `{prefix}:meta:{C}`: hash with `epoch` and `seq`;
/// - `{prefix}:hist:{C}`: Stream of the last `history_size` messages (trimmed
///   approximately, so it may hold a few more; reads never show them), entry id `seq-0`;
/// - pub/sub channel `{prefix}:bus:C`, and `{prefix}:ctl` for control commands.
///
/// Room `R`: `{prefix}:pres:{R}` is a sorted set of users scored by when their entry
/// expires, `{prefix}:presu:{R}:<user>` a sorted set of that user's connections scored
/// the same way.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    fn meta(&self, channel: &str) -> String {
        format!("{}:meta:{{{channel}}}", self.prefix)
    }

    fn hist(&self, channel: &str) -> String {
        format!("{}:hist:{{{channel}}}", self.prefix)
    }

    fn presence(&self, room: &str) -> String {
        format!("{}:pres:{{{room}}}", self.prefix)
    }

    /// The user sets share the room's hash tag, so a room's presence is one slot.
    fn presence_user_prefix(&self, room: &str) -> String {
        format!("{}:presu:{{{room}}}:", self.prefix)
    }

    fn presence_user(&self, room: &str, user: &str) -> String {
        format!("{}{user}", self.presence_user_prefix(room))
    }

    /// What every channel's pub/sub name starts with.
    fn bus_prefix(&self) -> String {
        format!("{}:bus:", self.prefix)
    }

    fn bus(&self, channel: &str) -> String {
        format!("{}{channel}", self.bus_prefix())
    }

    fn control(&self) -> String {
        format!("{}:ctl", self.prefix)
    }
}

pub struct RedisEngine {
    client3: Client,
    /// Commands. RESP3, like the bus: redis-rs then hears at once when the connection
    /// drops (a Redis restart) and reconnects before the next command needs it, and
    /// the probe hears it too.
    cmd: ConnectionManager,
    /// The command connection's disconnections, until the probe takes them.
    cmd_drops: Mutex<Option<UnboundedReceiver<PushInfo>>>,
    sub: OnceLock<ConnectionManager>,
    /// The pub/sub channels we want, re-issued after an outage.
    wanted: Mutex<HashSet<String>>,
    bus_up: AtomicBool,
    keys: Keys,
    history_size: u64,
    ttl: u64,
    store_scripts: store::Scripts,
    presence_scripts: presence::Scripts,
    pub(crate) presence_ttl: Duration,
    /// What the probe saw last: true while Redis answers (and the bus is up, once
    /// started). The probe holds the sender.
    ready: watch::Receiver<bool>,
    /// Wakes the probe before its next tick, when the bus saw a disconnection.
    probe_now: Notify,
    cancel: CancellationToken,
}

fn unavailable(e: redis::RedisError) -> EngineError {
    EngineError::Unavailable(e.to_string())
}

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500))
}

async fn timed<T>(f: impl Future<Output = redis::RedisResult<T>>) -> Result<T> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(r) => r.map_err(unavailable),
        Err(_) => Err(EngineError::Unavailable(
            "Redis did not answer in time".into(),
        )),
    }
}

/// Like [`timed`], for calls that are safe to repeat: the first call after Redis came
/// back often meets the dead connection (which makes redis-rs reconnect), so it is tried
/// once more before the caller hears `unavailable`.
async fn retried<T, F, Fut>(mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = redis::RedisResult<T>>,
{
    let mut dropped = None;
    for _ in 0..2 {
        match tokio::time::timeout(CALL_TIMEOUT, call()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) if e.is_connection_dropped() || e.is_io_error() => dropped = Some(e),
            Ok(Err(e)) => return Err(unavailable(e)),
            Err(_) => {
                return Err(EngineError::Unavailable(
                    "Redis did not answer in time".into(),
                ));
            }
        }
    }
    Err(dropped.map(unavailable).expect("the loop ran"))
}

/// A client for `redis://` or `rediss://`; with `ca`, TLS trusts that CA instead of the
/// system's roots.
fn open_client(info: ConnectionInfo, ca: Option<&[u8]>) -> Result<Client> {
    // rustls needs one process-wide crypto provider; a second install is refused,
    // which is fine: one is there.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = match ca {
        Some(pem) => Client::build_with_tls(
            info,
            TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.to_vec()),
            },
        ),
        None => Client::open(info),
    };
    client.map_err(|e| EngineError::Config(e.to_string()))
}

impl RedisEngine {
    /// Validates the URL and prepares lazy connections: the process starts even while
    /// Redis is down, and reports not ready until it answers. Its background tasks end
    /// when `cancel` is cancelled; `ready` is what [`crate::probe::run`] reports.
    pub fn new(
        url: &str,
        config: &EngineConfig,
        cancel: CancellationToken,
        ready: watch::Receiver<bool>,
    ) -> Result<Self> {
        let info = url
            .into_connection_info()
            .map_err(|e| EngineError::Config(e.to_string()))?;
        let ca = config.redis_ca_file.as_ref().map(|pem| pem.0.as_slice());
        let mut redis3 = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        if let Some(password) = &config.redis_password {
            redis3 = redis3.set_password(password);
        }
        let client3 = open_client(info.set_redis_settings(redis3), ca)?;
        let (drops, cmd_drops) = tokio::sync::mpsc::unbounded_channel();
        let cmd = ConnectionManager::new_lazy_with_config(
            client3.clone(),
            manager_config().set_push_sender(drops),
        )
        .map_err(|e| EngineError::Internal(e.to_string()))?;
        Ok(Self {
            client3,
            cmd,
            cmd_drops: Mutex::new(Some(cmd_drops)),
            sub: OnceLock::new(),
            wanted: Mutex::new(HashSet::new()),
            bus_up: AtomicBool::new(false),
            keys: Keys {
                prefix: config.redis_prefix.clone(),
            },
            history_size: config.history_size,
            ttl: config.history_ttl_secs,
            store_scripts: store::Scripts::new(),
            presence_scripts: presence::Scripts::new(),
            presence_ttl: Duration::from_secs(config.presence_ttl_secs),
            ready,
            probe_now: Notify::new(),
            cancel,
        })
    }

    /// One PING on the command connection, bounded by `timeout`.
    pub async fn ping(&self, timeout: Duration) -> Result<()> {
        let mut con = self.cmd.clone();
        match tokio::time::timeout(timeout, redis::cmd("PING").query_async::<()>(&mut con)).await {
            Ok(r) => r.map_err(unavailable),
            Err(_) => Err(EngineError::Unavailable(
                "Redis did not answer the ping in time".into(),
            )),
        }
    }

    /// Whether the bus is usable: up, or never started (a gateway has none).
    pub(crate) fn bus_ok(&self) -> bool {
        self.sub.get().is_none() || self.bus_up.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The probe's last answer, and every change of it.
    pub fn readiness(&self) -> watch::Receiver<bool> {
        self.ready.clone()
    }

    /// The command connection's pushes (only disconnections: it subscribes to
    /// nothing); the first caller (the probe) gets them.
    pub(crate) fn take_cmd_drops(&self) -> Option<UnboundedReceiver<PushInfo>> {
        self.cmd_drops.lock().take()
    }

    /// Resolves when the bus asks for a ping before the next tick.
    pub(crate) async fn probe_requested(&self) {
        self.probe_now.notified().await
    }

    pub(crate) fn cancel(&self) -> &CancellationToken {
        &self.cancel
    }
}
