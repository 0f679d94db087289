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
//! - [`send_queue`]: a connection's bounded queue of ready-to-write frames.
//! - [`limits`]: [`limits::ConnectionLimits`], the WebSocket limits of a replica;
//!   [`proxy`]: which proxies may name the client in `X-Forwarded-For` (per-IP limit).
//! - [`frame`]: server frames, WebSocket-framed once and shared by every recipient.
//! - [`trace`]: spans of sends and deliveries (one trace per message), delivery latency.
//!
//! [`run`] serves `/ws` (and the ops routes) until its [`Shutdown`] stops it; the
//! all-in-one `chat` mounts [`router`] beside the gateway's routes instead.

pub mod close;
pub mod connection;
pub mod drain;
pub mod frame;
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
pub mod writer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use chat_auth::{Auth, AuthConfig};
use chat_engine::{BusHandler, Engine, EngineConfig};
use chat_protocol::codec::TextLimit;
use chat_protocol::http::{ErrorBody, ErrorDetail};
use chat_protocol::{Encoding, ErrorCode};
use chat_telemetry::serve::EdgeConfig;
use chat_telemetry::{Metrics, Shutdown, TelemetryConfig};
use fastwebsockets::upgrade::IncomingUpgrade;
use tokio::net::TcpListener;

pub use hub::Hub;
pub use limits::ConnectionLimits;

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
    pub text: TextLimit,

    #[command(flatten)]
    pub limits: ConnectionLimits,

    #[command(flatten)]
    pub edge: EdgeConfig,

    #[command(flatten)]
    pub telemetry: TelemetryConfig,

    /// Seconds over which a replica told to stop (SIGTERM) moves its clients away: each
    /// gets `reconnect` and a 1012 close at a spread-out moment, then the process exits 0.
    #[arg(long, env = "CHAT_DRAIN_SECS", default_value_t = DRAIN_SECS, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub drain_secs: u64,
}

impl Config {
    /// The settings [`Realtime::start`] takes.
    pub fn options(&self) -> Options {
        Options {
            text: self.text,
            limits: self.limits.clone(),
            edge: self.edge,
            ..Options::new(self.engine.history_size, self.drain_secs)
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
        Ok(Arc::new(Realtime {
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
        }))
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

    /// Takes a connection slot of `ip`; `None` when the IP holds its maximum. A
    /// connection that was counted when it was accepted (from `ip` itself, no proxy)
    /// keeps that slot: one socket counts once, half-open or upgraded.
    fn claim_ip(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<IpSlot> {
        if let Some(slot) = chat_telemetry::serve::take_admission(|s: &IpSlot| s.ip == ip) {
            return Some(slot);
        }
        let mut per_ip = self.per_ip.lock();
        let n = per_ip.entry(ip).or_default();
        if *n >= self.limits.max_connections_per_ip {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            rt: self.clone(),
            ip,
        })
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

/// Counts every accepted socket against its peer's per-IP limit, from accept on: a
/// client that opens sockets and never finishes a handshake holds its own slots, not
/// everyone's files. A trusted proxy's sockets are not counted here: the client it
/// names is, at the upgrade.
pub fn edge(rt: &Arc<Realtime>) -> chat_telemetry::serve::Edge {
    let admit = {
        let rt = rt.clone();
        move |peer: SocketAddr| -> Option<chat_telemetry::serve::Admission> {
            // Canonical, as `client_ip` hands it to the upgrade's claim.
            let ip = peer.ip().to_canonical();
            if rt.limits.trusted_proxies.contains(ip) {
                return Some(Box::new(()));
            }
            match rt.claim_ip(ip) {
                Some(slot) => Some(Box::new(slot)),
                None => {
                    rt.limit_hit("connections_per_ip");
                    None
                }
            }
        }
    };
    rt.edge.edge().admit(Arc::new(admit))
}

/// A connection's share of its IP's limit, given back when the connection ends.
pub struct IpSlot {
    rt: Arc<Realtime>,
    ip: std::net::IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut per_ip = self.rt.per_ip.lock();
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
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

/// `GET /ws`; any other method gets 405 with the JSON error body.
pub fn router(rt: Arc<Realtime>) -> Router {
    Router::new().route("/ws", any(upgrade)).with_state(rt)
}

/// The peer's IP, when the server was started with connect info.
pub struct PeerIp(Option<std::net::IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PeerIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(PeerIp(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// A refused upgrade: the contract's JSON error body.
fn refuse(code: ErrorCode, message: &str) -> Response {
    let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let body = ErrorBody {
        error: ErrorDetail {
            code,
            message: message.to_owned(),
        },
    };
    (status, axum::Json(body)).into_response()
}

/// A request that is no valid WebSocket handshake: `bad_request`, with the status and
/// headers RFC 6455 asks for.
fn refuse_handshake(refusal: handshake::Refusal) -> Response {
    let mut response = refuse(ErrorCode::BadRequest, refusal.message());
    *response.status_mut() = refusal.status();
    for (name, value) in refusal.headers() {
        response
            .headers_mut()
            .insert(name.clone(), HeaderValue::from_static(value));
    }
    response
}

async fn upgrade(
    State(rt): State<Arc<Realtime>>,
    PeerIp(ip): PeerIp,
    method: Method,
    headers: HeaderMap,
    incoming: Result<IncomingUpgrade, StatusCode>,
) -> Response {
    if rt.is_draining() {
        return refuse(
            ErrorCode::Unavailable,
            "draining: connect to another replica",
        );
    }
    if let Err(refusal) = handshake::check(&method, &headers) {
        return refuse_handshake(refusal);
    }
    // The headers were checked: only a connection hyper cannot upgrade is left.
    let Ok(incoming) = incoming else {
        return refuse_handshake(handshake::Refusal::NotUpgradable);
    };
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    // A page served by this very host (the web client of `chat`) is always allowed.
    let same_origin = match (origin, host) {
        (Some(o), Some(h)) => o
            .split_once("://")
            .is_some_and(|(_, authority)| authority == h),
        _ => false,
    };
    if !same_origin && !rt.auth.origin_allowed(origin) {
        rt.limit_hit("origin");
        return refuse(
            ErrorCode::Forbidden,
            "this Origin may not open WebSockets here",
        );
    }
    let ip = ip.map(|peer| {
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok());
        rt.limits.trusted_proxies.client_ip(peer, forwarded)
    });
    let slot = match ip {
        Some(ip) => match rt.claim_ip(ip) {
            Some(slot) => Some(slot),
            None => {
                rt.limit_hit("connections_per_ip");
                return refuse(
                    ErrorCode::RateLimited,
                    "too many connections from this address",
                );
            }
        },
        None => None,
    };
    let offer = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok());
    let (encoding, subprotocol) = Encoding::negotiate(offer);
    let (mut response, fut) = match incoming.upgrade() {
        Ok(r) => r,
        Err(e) => return refuse(ErrorCode::BadRequest, &e.to_string()),
    };
    if let Some(p) = subprotocol {
        response
            .headers_mut()
            .insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
    }
    // Tracked: the drain waits for the connection to end.
    let shutdown = rt.shutdown.clone();
    shutdown.track(async move {
        let _slot = slot;
        match fut.await {
            Ok(ws) => connection::serve(rt, ws.into_inner(), encoding).await,
            Err(e) => tracing::debug!(error = %e, "upgrade failed"),
        }
    });
    response.map(axum::body::Body::new)
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
