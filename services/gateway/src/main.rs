use std::sync::Arc;

use chat_auth::Auth;
use chat_engine::Engine;
use chat_gateway::{Config, Gateway};
use chat_telemetry::{
    Metrics, Shutdown, config_error, healthcheck, parse_config, parse_config_from,
};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // `BINARY healthcheck`: the container health check (GET /readyz), no server started.
    if let Some(args) = healthcheck::requested() {
        let config: Config = parse_config_from(args);
        healthcheck::run(config.gateway_addr, config.telemetry.internal_addr);
    }
    let config: Config = parse_config();
    let _telemetry = chat_telemetry::init(&config.telemetry, "chat-gateway");
    if config.engine.redis_url.is_none() {
        config_error(
            "CHAT_REDIS_URL",
            "chat-gateway needs Redis (redis://host:6379)",
        );
    }
    // One stop for the whole process: the engine's probe and bus end when it is done.
    let shutdown = Shutdown::on_signals();
    let engine = Engine::from_config(&config.engine, shutdown.done_token())
        .unwrap_or_else(|e| config_error("CHAT_REDIS_URL", &e.to_string()));
    let auth = Auth::from_config(&config.auth, false)
        .unwrap_or_else(|e| config_error(e.setting, &e.message));
    let gw = Gateway::new(
        engine,
        Arc::new(auth),
        config.options(),
        Arc::new(Metrics::new()),
        shutdown,
    );
    let listener = chat_telemetry::listen(config.gateway_addr, "CHAT_GATEWAY_ADDR").await;
    let internal = match config.telemetry.internal_addr {
        Some(addr) => Some(chat_telemetry::listen(addr, "CHAT_INTERNAL_ADDR").await),
        None => None,
    };
    tracing::info!(addr = %listener.local_addr()?, "chat-gateway listening");
    chat_gateway::run(listener, internal, gw).await
}
