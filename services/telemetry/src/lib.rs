//! What every service shares at its edges: logging, the Prometheus registry, and the
//! way a bad setting stops the process (one line naming it, exit status 64).

use std::net::SocketAddr;

use clap::error::{ContextKind, ContextValue, ErrorKind};

/// `EX_USAGE` from sysexits.h: a bad configuration.
pub const EXIT_CONFIG: i32 = 64;

/// Telemetry settings.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TelemetryConfig {
    /// `text` or `json` (one JSON object per line).
    #[arg(long, env = "CHAT_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    /// When set, `/metrics`, `/healthz` and `/readyz` move to this internal listener and
    /// leave the public port.
    #[arg(long, env = "CHAT_INTERNAL_ADDR")]
    pub internal_addr: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Parses the configuration from flags and `CHAT_*` variables; on a bad value prints
/// one line that names the setting and exits with status 64.
pub fn parse_config<C: clap::Parser>() -> C {
    match C::try_parse() {
        Ok(c) => c,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) => {
            let env = env_name::<C>(&e);
            let first = e.to_string();
            let first = first.lines().next().unwrap_or("invalid configuration");
            match env {
                Some(env) => eprintln!("{first} (set by {env})"),
                None => eprintln!("{first}"),
            }
            std::process::exit(EXIT_CONFIG)
        }
    }
}

/// The environment variable behind the flag a clap error names.
fn env_name<C: clap::CommandFactory>(e: &clap::Error) -> Option<String> {
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let long = arg.trim_start_matches("--").split([' ', '=']).next()?;
    C::command()
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env())
        .map(|v| v.to_string_lossy().into_owned())
}

/// Stops the process for a setting that parsed but cannot work.
pub fn config_error(setting: &str, message: &str) -> ! {
    eprintln!("error: invalid configuration {setting}: {message}");
    std::process::exit(EXIT_CONFIG)
}

/// Renders a registry in the Prometheus text format.
pub fn render(registry: &prometheus::Registry) -> String {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    let _ = prometheus::TextEncoder::new().encode(&registry.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}
