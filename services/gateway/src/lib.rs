//! `chat-gateway`: the stateless HTTP API over the engine.
//!
//! - [`routes`]: the handlers of PROTOCOL.md §4, and the OpenAPI document built from them.
//! - [`body`]: JSON or MessagePack bodies in and out, chosen by `Content-Type` / `Accept`.
//! - [`error`]: [`ApiError`], the `{"error": {code, message}}` answer of every failure.
//! - [`openapi`]: `/openapi.json`, with every constraint the handlers enforce.
//! - [`rate`]: the per-user budget of the publish routes (429 with `Retry-After`).
//!
//! Joins and leaves act on connections that live on realtime replicas: the gateway
//! broadcasts them as control commands on the bus, and every replica applies them to
//! its own connections of that user.

pub mod body;
pub mod error;
pub mod openapi;
pub mod rate;
pub mod routes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use chat_auth::{Auth, AuthConfig};
use chat_engine::{Engine, EngineConfig};
use chat_protocol::codec::TextLimit;
use chat_telemetry::serve::EdgeConfig;
use chat_telemetry::{Metrics, Shutdown, TelemetryConfig};
use tokio::net::TcpListener;

pub use error::ApiError;

/// Configuration of `chat-gateway` (flags, or the `CHAT_*` variables).
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "chat-gateway", version, about = "Chat HTTP API")]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "CHAT_GATEWAY_ADDR", default_value = "0.0.0.0:8080")]
    pub gateway_addr: SocketAddr,

    #[command(flatten)]
    pub engine: EngineConfig,

    #[command(flatten)]
    pub auth: AuthConfig,

    #[command(flatten)]
    pub text: TextLimit,

    #[command(flatten)]
    pub publish: rate::PublishBudget,

    #[command(flatten)]
    pub edge: EdgeConfig,

    #[command(flatten)]
    pub telemetry: TelemetryConfig,
}

impl Config {
    /// The settings [`Gateway::new`] takes.
    pub fn options(&self) -> Options {
        Options {
            text: self.text,
            publish: self.publish,
            edge: self.edge,
        }
    }
}

/// What a gateway needs besides its engine and authentication: the groups of settings
/// it enforces, each declared by its owner.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub text: TextLimit,
    pub publish: rate::PublishBudget,
    pub edge: EdgeConfig,
}

/// Shared by every request.
pub struct Gateway {
    pub engine: Engine,
    pub auth: Arc<Auth>,
    pub metrics: Arc<Metrics>,
    pub max_message_bytes: usize,
    pub handshake_timeout: Duration,
    pub publish_limiter: rate::PublishLimiter,
    /// The process's stop: readiness turns 503 with it.
    pub shutdown: Shutdown,
}

impl Gateway {
    pub fn new(
        engine: Engine,
        auth: Arc<Auth>,
        options: Options,
        metrics: Arc<Metrics>,
        shutdown: Shutdown,
    ) -> Arc<Self> {
        Arc::new(Self {
            engine,
            auth,
            metrics,
            max_message_bytes: options.text.max_bytes(),
            handshake_timeout: options.edge.handshake_timeout(),
            publish_limiter: rate::PublishLimiter::from_budget(&options.publish),
            shutdown,
        })
    }

    pub async fn ready(&self) -> bool {
        !self.shutdown.is_stopping() && self.engine.ready()
    }
}

/// The API routes (without the ops routes).
pub fn router(gw: Arc<Gateway>) -> Router {
    routes::router(gw)
}

pub fn ops(gw: &Arc<Gateway>) -> Router {
    chat_telemetry::ops_router(
        gw.metrics.clone(),
        chat_telemetry::ready_fn(gw.clone(), |gw| async move { gw.ready().await }),
    )
}

/// Serves `chat-gateway` on `listener` until its [`Shutdown`] stops it: readiness
/// turns 503, the listener closes, in-flight requests finish, then every background
/// task ends.
pub async fn run(
    listener: TcpListener,
    internal: Option<TcpListener>,
    gw: Arc<Gateway>,
) -> std::io::Result<()> {
    let service = chat_telemetry::serve::Service {
        app: router(gw.clone()),
        ops: ops(&gw),
        edge: chat_telemetry::serve::Edge::new(gw.handshake_timeout),
        metrics: gw.metrics.clone(),
        engine_ready: gw.engine.readiness(),
        shutdown: gw.shutdown.clone(),
    };
    // Nothing to drain: readiness is 503 from the stop on, in-flight requests finish.
    chat_telemetry::serve::run(listener, internal, service, async {}).await
}
