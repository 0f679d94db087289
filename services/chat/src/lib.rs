//! `chat`: the whole system in one process on one port: the gateway's HTTP API, the
//! realtime `/ws`, and the web client at `/`. The memory engine by default, so it runs
//! with no Redis; Redis when `CHAT_REDIS_URL` is set.

pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use chat_auth::{Auth, AuthConfig};
use chat_engine::{Engine, EngineConfig};
use chat_gateway::Gateway;
use chat_gateway::rate::PublishBudget;
use chat_realtime::{Options, Realtime, ReplicaSettings};
use chat_telemetry::{Metrics, Shutdown, TelemetryConfig};
use tokio::net::TcpListener;

/// Configuration of `chat` (flags, or the `CHAT_*` variables).
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "chat",
    version,
    about = "Chat: API, WebSocket and web client on one port"
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "CHAT_ADDR", default_value = "0.0.0.0:8080")]
    pub addr: SocketAddr,

    #[command(flatten)]
    pub engine: EngineConfig,

    #[command(flatten)]
    pub auth: AuthConfig,

    #[command(flatten)]
    pub replica: ReplicaSettings,

    #[command(flatten)]
    pub publish: PublishBudget,

    #[command(flatten)]
    pub telemetry: TelemetryConfig,
}

impl Config {
    /// The realtime half's settings; the gateway half shares their text limit and edge,
    /// and takes [`Config::publish`] besides.
    pub fn options(&self) -> Options {
        self.replica.options(self.engine.history_size)
    }
}

/// Both halves of the system over one engine.
pub struct Chat {
    pub gateway: Arc<Gateway>,
    pub realtime: Arc<Realtime>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{setting}: {message}")]
    Config {
        setting: &'static str,
        message: String,
    },
}

impl Chat {
    /// Builds the engine and both halves (dev mode on unless `auth` says otherwise):
    /// the realtime with `options`, the gateway with their text limit and edge and the
    /// `publish` budget.
    pub async fn start(
        engine: &EngineConfig,
        auth: &AuthConfig,
        options: Options,
        publish: PublishBudget,
        shutdown: Shutdown,
    ) -> Result<Chat, StartError> {
        // The engine's probe and bus end when the process is done.
        let engine_impl =
            Engine::from_config(engine, shutdown.done_token()).map_err(|e| StartError::Config {
                setting: "CHAT_REDIS_URL",
                message: e.to_string(),
            })?;
        let auth = Arc::new(
            Auth::from_config(auth, true).map_err(|e| StartError::Config {
                setting: e.setting,
                message: e.message,
            })?,
        );
        let metrics = Arc::new(Metrics::new());
        let gateway = Gateway::new(
            engine_impl.clone(),
            auth.clone(),
            chat_gateway::Options {
                text: options.text,
                publish,
                edge: options.edge,
            },
            metrics.clone(),
            shutdown.clone(),
        );
        let realtime = Realtime::start(engine_impl, auth, metrics, options, shutdown)
            .await
            .map_err(|e| StartError::Config {
                setting: "CHAT_REDIS_URL",
                message: e.to_string(),
            })?;
        Ok(Chat { gateway, realtime })
    }

    /// Every route on one router.
    pub fn router(&self) -> Router {
        chat_gateway::router(self.gateway.clone())
            .merge(chat_realtime::router(self.realtime.clone()))
            .merge(web::router())
    }

    pub fn ops(&self) -> Router {
        chat_realtime::ops(&self.realtime)
    }
}

/// Serves everything on `listener` until the [`Shutdown`] both halves share stops it;
/// drains the WebSocket clients, then ends every background task.
pub async fn run(
    listener: TcpListener,
    internal: Option<TcpListener>,
    chat: Chat,
) -> std::io::Result<()> {
    let service = chat_telemetry::serve::Service {
        app: chat.router(),
        ops: chat.ops(),
        edge: chat_realtime::edge(&chat.realtime),
        metrics: chat.gateway.metrics.clone(),
        engine_ready: chat.gateway.engine.readiness(),
        shutdown: chat.realtime.shutdown.clone(),
    };
    let drain = async move { chat_realtime::drain::drain(&chat.realtime).await };
    chat_telemetry::serve::run(listener, internal, service, drain).await
}
