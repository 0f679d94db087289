//! `chat-realtime`: the WebSocket server.
//!
//! - [`hub`]: a replica's connections and channel memberships; one engine subscription
//!   per channel with local members; fan-out.
//! - [`recovery`]: a channel's continuity: holes in the bus and new epochs repaired
//!   from history, or reported (`joined` with `recovered: false`).
//! - [`connection`]: one connection's lifecycle: its session, its writer, its close.
//! - [`session`]: a client's `connect` and commands, frames in and a typed close out;
//!   tested without a socket. [`writer`]: the send queue drained into a sink, batched.
//! - [`reader`]: client frames checked against RFC 6455 and reassembled; [`close`]: the
//!   close codes and their metric labels; [`handshake`]: the upgrade request's checks.
//! - [`upgrade`]: `GET /ws` checked and upgraded, or refused with the JSON error body;
//!   [`admission`]: the per-IP limit, counted from accept.
//! - [`send_queue`]: a connection's bounded queue of ready-to-write frames.
//! - [`limits`]: [`limits::ConnectionLimits`], the WebSocket limits of a replica;
//!   [`proxy`]: which proxies may name the client in `X-Forwarded-For` (per-IP limit).
//! - [`frame`]: server frames, WebSocket-framed once and shared by every recipient.
//! - [`gauges`]: what the replica holds (channels, memberships, users, connections
//!   against their limits), counted at each scrape of `/metrics`.
//! - [`trace`]: spans of sends and deliveries (one trace per message), delivery latency.
//!
//! [`run`] serves `/ws` (and the ops routes) until its [`Shutdown`] stops it; the
//! all-in-one `chat` mounts [`router`] beside the gateway's routes instead.

pub mod admission;
pub mod close;
pub mod connection;
pub mod drain;
pub mod frame;
pub mod gauges;
pub mod handshake;
pub mod hub;
pub mod limits;
pub mod proxy;
pub mod rate;
pub mod reader;
pub mod recovery;
pub mod send_queue;
pub mod session;
pub mod socket;
pub mod trace;
pub mod upgrade;
pub mod writer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use chat_auth::{Auth, AuthConfig};
use chat_engine::{BusHandler, Engine, EngineConfig};
use chat_protocol::codec::TextLimit;
use chat_telemetry::serve::EdgeConfig;
use chat_telemetry::{Metrics, Shutdown, TelemetryConfig};
use tokio::net::TcpListener;

pub use admission::{IpSlot, edge};
pub use hub::Hub;
pub use limits::ConnectionLimits;
pub use upgrade::router;

/// Configuration of `chat-realtime` (flags, or the `CHAT_*` variables).
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "chat-realtime", version, about = "Chat WebSocket server")]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "CHAT_REALTIME_ADDR", default_value = "0.0.0.0:8081")]
    pub realtime_addr: SocketAddr,

    #[command(flatten)]
    pub engine: EngineConfig,

    #[command(flatten)]
    pub auth: AuthConfig,

    #[command(flatten)]
    pub replica: ReplicaSettings,

    #[command(flatten)]
    pub telemetry: TelemetryConfig,
}

impl Config {
    /// The settings [`Realtime::start`] takes.
    pub fn options(&self) -> Options {
        self.replica.options(self.engine.history_size)
    }
}

/// The WebSocket side's settings, flattened into `chat-realtime`'s and `chat`'s
/// configurations alike.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplicaSettings {
    #[command(flatten)]
    pub text: TextLimit,

    #[command(flatten)]
    pub limits: ConnectionLimits,

    #[command(flatten)]
    pub edge: EdgeConfig,

    /// Seconds over which a process told to stop (SIGTERM) moves its WebSocket clients
    /// away: each gets `reconnect` and a 1012 close at a spread-out moment, then the
    /// process exits 0.
    #[arg(long, env = "CHAT_DRAIN_SECS", default_value_t = DRAIN_SECS, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub drain_secs: u64,
}

impl ReplicaSettings {
    /// The settings [`Realtime::start`] takes, with the engine's history size.
    pub fn options(&self, history_size: u64) -> Options {
        Options {
            text: self.text,
            limits: self.limits.clone(),
            edge: self.edge,
            ..Options::new(history_size, self.drain_secs)
        }
    }
}

/// `CHAT_DRAIN_SECS`'s default, for `chat-realtime` and `chat` alike.
pub const DRAIN_SECS: u64 = 10;

/// Connection timers: the contract's values, shorter in tests.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub connect_timeout: Duration,
    pub ping_every: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            ping_every: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// What a realtime needs besides its engine and authentication: the groups of
/// settings it enforces (each declared by its owner), history size and timers.
#[derive(Debug, Clone)]
pub struct Options {
    pub text: TextLimit,
    pub limits: ConnectionLimits,
    pub edge: EdgeConfig,
    pub history_size: u64,
    pub timing: Timing,
    pub drain: Duration,
}

impl Options {
    /// The default limits and timers.
    pub fn new(history_size: u64, drain_secs: u64) -> Self {
        Self {
            text: TextLimit::default(),
            limits: ConnectionLimits::default(),
            edge: EdgeConfig::default(),
            history_size,
            timing: Timing::default(),
            drain: Duration::from_secs(drain_secs),
        }
    }
}

/// The WebSocket side of a process: shared by every connection.
pub struct Realtime {
    pub hub: Arc<Hub>,
    pub auth: Arc<Auth>,
    pub metrics: Arc<Metrics>,
    pub timing: Timing,
    pub text: TextLimit,
    pub limits: ConnectionLimits,
    pub edge: EdgeConfig,
    pub drain_window: Duration,
    /// The process's stop: it refuses upgrades, drains, and ends the background tasks.
    pub shutdown: Shutdown,
    replica: String,
    next_conn: AtomicU64,
    started: Instant,
    per_ip: parking_lot::Mutex<std::collections::HashMap<std::net::IpAddr, u32>>,
}

impl Realtime {
    /// Builds the hub over `engine` and connects it to the bus.
    pub async fn start(
        engine: Engine,
        auth: Arc<Auth>,
        metrics: Arc<Metrics>,
        options: Options,
        shutdown: Shutdown,
    ) -> Result<Arc<Realtime>, chat_engine::EngineError> {
        for reason in close::labels() {
            metrics.ws_closes.with_label_values(&[reason]);
        }
        let hub = Hub::new(
            engine.clone(),
            metrics.clone(),
            options.history_size as usize,
        );
        let handler: Arc<dyn BusHandler> = hub.clone();
        engine.start_bus(Arc::downgrade(&handler)).await?;
        shutdown.spawn(refresh_presence(
            hub.clone(),
            engine.presence().refresh_every(),
        ));
        let rt = Arc::new(Realtime {
            hub,
            auth,
            metrics,
            timing: options.timing,
            text: options.text,
            limits: options.limits,
            edge: options.edge,
            drain_window: options.drain,
            shutdown,
            replica: chat_engine::epoch::new_epoch()[..6].to_owned(),
            next_conn: AtomicU64::new(1),
            started: Instant::now(),
            per_ip: parking_lot::Mutex::new(std::collections::HashMap::new()),
        });
        // One Realtime per registry; a second one over the same metrics keeps the first's.
        let gauges = gauges::ReplicaGauges::new(Arc::downgrade(&rt));
        if let Err(e) = rt.metrics.registry.register(Box::new(gauges)) {
            tracing::warn!(error = %e, "replica gauges already registered");
        }
        Ok(rt)
    }

    /// The largest frame (and reassembled message) a client may send: the text limit
    /// plus room for the envelope.
    pub fn max_frame_bytes(&self) -> usize {
        self.text.max_frame_bytes()
    }

    /// Counts a limit hit (`chat_limit_hits_total{limit}`).
    pub fn limit_hit(&self, limit: &'static str) {
        self.metrics.limit_hits.with_label_values(&[limit]).inc();
    }

    fn next_conn_id(&self) -> String {
        format!(
            "{}-{}",
            self.replica,
            self.next_conn.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Milliseconds since start: cheap, monotonic, fits an atomic.
    fn clock_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub fn is_draining(&self) -> bool {
        self.shutdown.is_stopping()
    }

    pub async fn ready(&self) -> bool {
        !self.is_draining() && self.hub.engine().ready()
    }
}

/// Keeps this replica's presence entries alive until the process is done.
async fn refresh_presence(hub: Arc<Hub>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        hub.refresh_presence().await;
    }
}

/// The ops routes of a process whose readiness is this realtime's.
pub fn ops(rt: &Arc<Realtime>) -> Router {
    chat_telemetry::ops_router(
        rt.metrics.clone(),
        chat_telemetry::ready_fn(rt.clone(), |rt| async move { rt.ready().await }),
    )
}

/// Serves `chat-realtime` on `listener` until its [`Shutdown`] stops it; drains the
/// clients, then ends every background task.
pub async fn run(
    listener: TcpListener,
    internal: Option<TcpListener>,
    rt: Arc<Realtime>,
) -> std::io::Result<()> {
    let service = chat_telemetry::serve::Service {
        app: router(rt.clone()),
        ops: ops(&rt),
        edge: edge(&rt),
        metrics: rt.metrics.clone(),
        engine_ready: rt.hub.engine().readiness(),
        shutdown: rt.shutdown.clone(),
    };
    let drain = async move { drain::drain(&rt).await };
    chat_telemetry::serve::run(listener, internal, service, drain).await
}
