//! The Redis engine.
//!
//! Keys of channel `C` (hash tags keep them in one cluster slot):
//! - `{prefix}:meta:{C}`: hash with `epoch` and `seq`;
//! - `{prefix}:hist:{C}`: Stream of the last `history_size` messages, entry id `seq-0`;
//! - pub/sub channel `{prefix}:bus:C`, and `{prefix}:ctl` for control commands.
//!
//! One Lua script increments the seq, appends to the Stream, refreshes the TTL and
//! PUBLISHes, so seq order, history order and delivery order are one order. A missing
//! meta hash means the channel's history is gone: the script makes a new epoch and
//! drops any Stream left behind, so an old `(epoch, seq)` can never match new messages.
//!
//! Presence of room `R`: `{prefix}:pres:{R}` is a sorted set of users scored by when
//! their entry expires, `{prefix}:presu:{R}:<user>` a sorted set of that user's
//! connections scored the same way. Replicas refresh their own connections; a replica
//! that dies simply stops refreshing, and its users stop counting when the scores pass.
//! Scripts read the clock with TIME, so replicas' clocks do not matter.
//!
//! Subscriptions ride one RESP3 connection. redis-rs reconnects it; a watchdog pings it,
//! re-issues every SUBSCRIBE after an outage and tells the hub, which then fetches what
//! was published while the bus was down.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use chat_protocol::{Message, now_ms};
use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{
    Client, ConnectionInfo, IntoConnectionInfo, ProtocolVersion, PushKind, Script, TlsCertificates,
    Value,
};

use crate::bus::{self, Event, Stored};
use crate::{
    BusHandler, Control, EngineConfig, EngineError, Head, History, PresenceEntry, PresenceEvent,
    Publication, Range, Result,
};

/// Upper bound on any one engine call: past it the caller answers `unavailable`.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

const PUBLISH: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], seq .. '-0', 'm', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('PUBLISH', ARGV[4], 'm' .. seq .. ' ' .. epoch .. ' ' .. ARGV[5])
return {seq, epoch}
"#;

/// Reads the head and a range of history in one step; creates the epoch of a new
/// channel. ARGV: epoch candidate, ttl, mode (`after`/`before`/`head`), start, end, count.
const READ: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local seq = 0
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', 0)
  redis.call('EXPIRE', KEYS[1], ARGV[2])
else
  seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
end
local entries = {}
if ARGV[3] == 'after' then
  entries = redis.call('XRANGE', KEYS[2], ARGV[4], ARGV[5], 'COUNT', ARGV[6])
elseif ARGV[3] == 'before' then
  entries = redis.call('XREVRANGE', KEYS[2], ARGV[4], ARGV[5], 'COUNT', ARGV[6])
end
return {seq, epoch, entries}
"#;

/// An XRANGE entry: its id (`seq-0`) and its fields (`["m", body]`).
type StreamEntry = (String, Vec<Vec<u8>>);

/// KEYS: room set, user set. ARGV: user, conn, ttl ms. Returns 1 for the user's first
/// live connection in the room.
const PRESENCE_JOIN: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local exp = now + tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local before = redis.call('ZCARD', KEYS[2])
redis.call('ZADD', KEYS[2], exp, ARGV[2])
redis.call('ZADD', KEYS[1], 'GT', exp, ARGV[1])
redis.call('PEXPIRE', KEYS[2], 2 * tonumber(ARGV[3]))
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[3]))
if before == 0 then return 1 else return 0 end
"#;

/// KEYS: room set, user set. ARGV: user, conn. Returns 1 when that was the user's last
/// live connection in the room.
const PRESENCE_LEAVE: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local removed = redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) == 0 then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
"#;

/// Like a join, but only for a connection still present: a refresh racing a leave must
/// not bring the entry back.
const PRESENCE_REFRESH: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local exp = now + tonumber(ARGV[3])
if redis.call('ZSCORE', KEYS[2], ARGV[2]) then
  redis.call('ZADD', KEYS[2], exp, ARGV[2])
  redis.call('ZADD', KEYS[1], 'GT', exp, ARGV[1])
  redis.call('PEXPIRE', KEYS[2], 2 * tonumber(ARGV[3]))
  redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[3]))
  return 1
end
return 0
"#;

/// KEYS: room set. ARGV: prefix of the user sets. Removes users with no live connection
/// left and returns them.
const PRESENCE_SWEEP: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local gone = {}
for _, user in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  local uk = ARGV[1] .. user
  redis.call('ZREMRANGEBYSCORE', uk, '-inf', now)
  if redis.call('ZCARD', uk) == 0 then
    redis.call('ZREM', KEYS[1], user)
    table.insert(gone, user)
  end
end
return gone
"#;

const PRESENCE_LIST: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
"#;

pub struct RedisEngine {
    client3: Client,
    cmd: ConnectionManager,
    sub: OnceLock<ConnectionManager>,
    /// The pub/sub channels we want, re-issued after an outage.
    wanted: Mutex<HashSet<String>>,
    bus_up: Arc<AtomicBool>,
    prefix: String,
    history_size: u64,
    ttl: u64,
    publish: Script,
    read: Script,
    presence_join: Script,
    presence_leave: Script,
    presence_refresh: Script,
    presence_sweep: Script,
    presence_list: Script,
    pub(crate) presence_ttl: Duration,
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
    /// Redis is down, and reports not ready until it answers.
    pub fn new(url: &str, config: &EngineConfig) -> Result<Self> {
        let info = url
            .into_connection_info()
            .map_err(|e| EngineError::Config(e.to_string()))?;
        let ca = config.redis_ca_file.as_ref().map(|pem| pem.0.as_slice());
        let client = open_client(info.clone(), ca)?;
        let redis3 = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client3 = open_client(info.set_redis_settings(redis3), ca)?;
        let cmd = ConnectionManager::new_lazy_with_config(client, manager_config())
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        Ok(Self {
            client3,
            cmd,
            sub: OnceLock::new(),
            wanted: Mutex::new(HashSet::new()),
            bus_up: Arc::new(AtomicBool::new(false)),
            prefix: config.redis_prefix.clone(),
            history_size: config.history_size,
            ttl: config.history_ttl_secs,
            publish: Script::new(PUBLISH),
            read: Script::new(READ),
            presence_join: Script::new(PRESENCE_JOIN),
            presence_leave: Script::new(PRESENCE_LEAVE),
            presence_refresh: Script::new(PRESENCE_REFRESH),
            presence_sweep: Script::new(PRESENCE_SWEEP),
            presence_list: Script::new(PRESENCE_LIST),
            presence_ttl: Duration::from_secs(config.presence_ttl_secs),
        })
    }

    fn meta_key(&self, channel: &str) -> String {
        format!("{}:meta:{{{channel}}}", self.prefix)
    }

    fn hist_key(&self, channel: &str) -> String {
        format!("{}:hist:{{{channel}}}", self.prefix)
    }

    fn presence_key(&self, room: &str) -> String {
        format!("{}:pres:{{{room}}}", self.prefix)
    }

    /// The user sets share the room's hash tag, so a room's presence is one slot.
    fn presence_user_prefix(&self, room: &str) -> String {
        format!("{}:presu:{{{room}}}:", self.prefix)
    }

    fn presence_ttl_ms(&self) -> u64 {
        self.presence_ttl.as_millis() as u64
    }

    pub async fn presence_join(&self, e: &PresenceEntry) -> Result<bool> {
        let first: i64 = retried(|| {
            let mut con = self.cmd.clone();
            let mut invocation = self.presence_join.prepare_invoke();
            invocation
                .key(self.presence_key(&e.room))
                .key(format!("{}{}", self.presence_user_prefix(&e.room), e.user))
                .arg(&e.user)
                .arg(&e.conn)
                .arg(self.presence_ttl_ms());
            async move { invocation.invoke_async(&mut con).await }
        })
        .await?;
        Ok(first == 1)
    }

    pub async fn presence_leave(&self, e: &PresenceEntry) -> Result<bool> {
        let last: i64 = retried(|| {
            let mut con = self.cmd.clone();
            let mut invocation = self.presence_leave.prepare_invoke();
            invocation
                .key(self.presence_key(&e.room))
                .key(format!("{}{}", self.presence_user_prefix(&e.room), e.user))
                .arg(&e.user)
                .arg(&e.conn);
            async move { invocation.invoke_async(&mut con).await }
        })
        .await?;
        Ok(last == 1)
    }

    pub async fn presence_refresh(&self, entries: &[PresenceEntry]) -> Result<()> {
        for chunk in entries.chunks(500) {
            let mut pipe = redis::pipe();
            // EVALSHA needs the script loaded; after a Redis restart it is not.
            pipe.load_script(&self.presence_refresh).ignore();
            for e in chunk {
                pipe.invoke_script(
                    self.presence_refresh
                        .key(self.presence_key(&e.room))
                        .key(format!("{}{}", self.presence_user_prefix(&e.room), e.user))
                        .arg(&e.user)
                        .arg(&e.conn)
                        .arg(self.presence_ttl_ms()),
                )
                .ignore();
            }
            let mut con = self.cmd.clone();
            timed(pipe.query_async::<()>(&mut con)).await?;
        }
        Ok(())
    }

    pub async fn presence_sweep(&self, room: &str) -> Result<Vec<String>> {
        let mut con = self.cmd.clone();
        timed(
            self.presence_sweep
                .key(self.presence_key(room))
                .arg(self.presence_user_prefix(room))
                .invoke_async(&mut con),
        )
        .await
    }

    pub async fn presence(&self, room: &str) -> Result<Vec<String>> {
        let mut con = self.cmd.clone();
        let mut users: Vec<String> = timed(
            self.presence_list
                .key(self.presence_key(room))
                .invoke_async(&mut con),
        )
        .await?;
        users.sort();
        Ok(users)
    }

    pub async fn publish_presence(
        &self,
        room: &str,
        user: &str,
        event: PresenceEvent,
    ) -> Result<()> {
        self.publish_raw(self.bus_channel(room), bus::encode_presence(user, event))
            .await
    }

    fn bus_channel(&self, channel: &str) -> String {
        format!("{}:bus:{channel}", self.prefix)
    }

    fn control_channel(&self) -> String {
        format!("{}:ctl", self.prefix)
    }

    pub async fn publish(&self, p: Publication) -> Result<Message> {
        let stored = Stored {
            from: p.from,
            text: p.text,
            ts: now_ms(),
            to: p.to,
            cid: p.cid,
            tc: p.trace,
            us: Some(crate::now_us()),
        };
        let mut con = self.cmd.clone();
        let (seq, epoch): (u64, String) = timed(
            self.publish
                .key(self.meta_key(&p.channel))
                .key(self.hist_key(&p.channel))
                .arg(crate::epoch::new_epoch())
                .arg(self.history_size)
                .arg(self.ttl)
                .arg(self.bus_channel(&p.channel))
                .arg(stored.encode())
                .invoke_async(&mut con),
        )
        .await?;
        Ok(stored.into_message(&p.channel, seq, &epoch))
    }

    async fn read(
        &self,
        channel: &str,
        mode: &str,
        start: String,
        end: String,
        count: usize,
    ) -> Result<History> {
        let (seq, epoch, entries): (u64, String, Vec<StreamEntry>) = retried(|| {
            let mut con = self.cmd.clone();
            let mut invocation = self.read.prepare_invoke();
            invocation
                .key(self.meta_key(channel))
                .key(self.hist_key(channel))
                .arg(crate::epoch::new_epoch())
                .arg(self.ttl)
                .arg(mode)
                .arg(&start)
                .arg(&end)
                .arg(count);
            async move { invocation.invoke_async(&mut con).await }
        })
        .await?;
        let mut messages = Vec::with_capacity(entries.len());
        for (id, fields) in entries {
            let seq: u64 = id
                .split('-')
                .next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| EngineError::Internal(format!("bad stream id {id}")))?;
            // fields = ["m", body]
            let stored = fields
                .get(1)
                .and_then(|body| Stored::decode(body))
                .ok_or_else(|| EngineError::Internal(format!("bad stream entry {id}")))?;
            messages.push(stored.into_message(channel, seq, &epoch));
        }
        Ok(History {
            head: Head { epoch, seq },
            messages,
        })
    }

    pub async fn head(&self, channel: &str) -> Result<Head> {
        Ok(self
            .read(channel, "head", String::new(), String::new(), 0)
            .await?
            .head)
    }

    pub async fn history(&self, channel: &str, range: Range) -> Result<History> {
        match range {
            Range::After { seq, limit } => {
                self.read(
                    channel,
                    "after",
                    format!("{}-0", seq.saturating_add(1)),
                    "+".into(),
                    limit,
                )
                .await
            }
            Range::Before { seq, limit } => {
                let end = match seq {
                    Some(0) => {
                        return self
                            .read(channel, "head", String::new(), String::new(), 0)
                            .await;
                    }
                    Some(s) => format!("{}-0", s - 1),
                    None => "+".into(),
                };
                self.read(channel, "before", end, "-".into(), limit).await
            }
        }
    }

    fn sub(&self) -> Result<ConnectionManager> {
        self.sub
            .get()
            .cloned()
            .ok_or_else(|| EngineError::Internal("bus not started".into()))
    }

    pub async fn subscribe(&self, channel: &str) -> Result<()> {
        let name = self.bus_channel(channel);
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
                .arg(self.bus_channel(channel))
                .query_async(&mut con),
        )
        .await?;
        Ok(count > 0)
    }

    pub async fn unsubscribe(&self, channel: &str) -> Result<()> {
        let name = self.bus_channel(channel);
        self.wanted.lock().remove(&name);
        let mut sub = self.sub()?;
        timed(sub.unsubscribe(name)).await
    }

    /// PUBLISH of a payload that is not stored (typing, presence, control).
    async fn publish_raw(&self, bus_channel: String, payload: String) -> Result<()> {
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
        self.publish_raw(self.bus_channel(channel), format!("t{user}"))
            .await
    }

    pub async fn publish_control(&self, control: &Control) -> Result<()> {
        self.publish_raw(self.control_channel(), control.encode())
            .await
    }

    /// One PING on the command connection.
    pub async fn ping(&self) -> Result<()> {
        let mut con = self.cmd.clone();
        timed(redis::cmd("PING").query_async::<()>(&mut con)).await
    }

    pub async fn ready(&self) -> bool {
        let mut con = self.cmd.clone();
        let store = timed(redis::cmd("PING").query_async::<()>(&mut con))
            .await
            .is_ok();
        store && (self.sub.get().is_none() || self.bus_up.load(Ordering::Relaxed))
    }

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
        self.wanted.lock().insert(self.control_channel());
        tokio::spawn(listen(
            rx,
            handler.clone(),
            self.prefix.clone(),
            self.bus_up.clone(),
        ));
        tokio::spawn(watch(Arc::downgrade(self), handler));
        Ok(())
    }
}

/// Decodes each bus payload once and hands it to the hub.
async fn listen(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<redis::PushInfo>,
    handler: Weak<dyn BusHandler>,
    prefix: String,
    bus_up: Arc<AtomicBool>,
) {
    let bus_prefix = format!("{prefix}:bus:");
    let control = format!("{prefix}:ctl");
    while let Some(push) = rx.recv().await {
        let Some(handler) = handler.upgrade() else {
            return;
        };
        match push.kind {
            PushKind::Message => {
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
            PushKind::Disconnection if bus_up.swap(false, Ordering::Relaxed) => {
                tracing::warn!("lost the Redis pub/sub connection; reconnecting");
            }
            _ => {}
        }
    }
}

/// Pings the pub/sub connection (which makes redis-rs reconnect it), and after an
/// outage re-subscribes everything and tells the hub to look for missed messages.
async fn watch(engine: Weak<RedisEngine>, handler: Weak<dyn BusHandler>) {
    let mut was_up = false;
    let mut ever_up = false;
    loop {
        let Some(e) = engine.upgrade() else { return };
        let Ok(mut sub) = e.sub() else { return };
        // Pinging the command connection too makes it reconnect before a client needs it.
        let mut cmd = e.cmd.clone();
        let _ = timed(redis::cmd("PING").query_async::<()>(&mut cmd)).await;
        let ok = timed(redis::cmd("PING").query_async::<()>(&mut sub))
            .await
            .is_ok();
        if ok && !was_up {
            let wanted: Vec<String> = e.wanted.lock().iter().cloned().collect();
            let resubscribed = wanted.is_empty() || timed(sub.subscribe(&wanted)).await.is_ok();
            if resubscribed {
                e.bus_up.store(true, Ordering::Relaxed);
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
            e.bus_up.store(false, Ordering::Relaxed);
            was_up = false;
        } else if !e.bus_up.load(Ordering::Relaxed) {
            // The listener saw a disconnection that the ping did not: treat as an outage.
            was_up = false;
            continue;
        }
        drop(e);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
