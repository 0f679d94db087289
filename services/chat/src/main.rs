use chat::{Chat, Config};
use chat_telemetry::{Shutdown, config_error, healthcheck, parse_config, parse_config_from};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // `BINARY healthcheck`: the container health check (GET /readyz), no server started.
    if let Some(args) = healthcheck::requested() {
        let config: Config = parse_config_from(args);
        healthcheck::run(config.addr, config.telemetry.internal_addr);
    }
    let config: Config = parse_config();
    let _telemetry = chat_telemetry::init(&config.telemetry, "chat");
    let chat = Chat::start(
        &config.engine,
        &config.auth,
        config.options(),
        config.publish,
        Shutdown::on_signals(),
    )
    .await
    .unwrap_or_else(|chat::StartError::Config { setting, message }| {
        config_error(setting, &message)
    });
    let listener = chat_telemetry::listen(config.addr, "CHAT_ADDR").await;
    let internal = match config.telemetry.internal_addr {
        Some(addr) => Some(chat_telemetry::listen(addr, "CHAT_INTERNAL_ADDR").await),
        None => None,
    };
    let engine = chat.gateway.engine.kind();
    tracing::info!(addr = %listener.local_addr()?, engine, "chat listening: http://{}/", listener.local_addr()?);
    chat::run(listener, internal, chat).await
}
