//! What every service shares at its edges: logging, the Prometheus registry, and the
//! way a bad setting stops the process (one line naming it, exit status 64).
//!
//! - [`Metrics`]: every `chat_*` metric of a process, and the `/metrics` route.
//! - [`trace`]: logs (text or JSON lines carrying the trace id) and the OpenTelemetry
//!   span export, configured by the standard `OTEL_*` variables.
//! - [`json_errors`]: the JSON error answers of unknown paths and wrong methods.
//! - [`serve`]: the HTTP server loop of every listener (handshake timeout, per-socket
//!   admission, graceful shutdown), and [`serve::run`], the one `run` of every binary.
//! - [`shutdown`]: [`Shutdown`], a process's one stop (stopping, then done) that every
//!   task watches, and the connections a drain waits for.
//! - [`memory_limit`]: `chat_memory_limit_bytes`, what the process may use (its
//!   container's limit), beside the `process_*` metrics.
//! - [`healthcheck`]: the `healthcheck` subcommand every binary answers (container
//!   health checks without a shell).

pub mod healthcheck;
pub mod json_errors;
pub mod memory_limit;
pub mod serve;
pub mod shutdown;
pub mod trace;

pub use shutdown::Shutdown;

use std::net::SocketAddr;

use chat_protocol::ErrorCode;

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

/// Starts logging and, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, span export; stops
/// the process on a bad `RUST_LOG` or `OTEL_*` value. Keep the result alive until exit.
pub fn init(config: &TelemetryConfig, service: &str) -> trace::Telemetry {
    trace::init(config.log_format, service, &trace::TraceExport::default())
        .unwrap_or_else(|e| config_error(e.setting, &e.message))
}

/// Parses the configuration from flags and `CHAT_*` variables; on a bad value prints
/// one line that names the setting and exits with status 64.
pub fn parse_config<C: clap::Parser>() -> C {
    parse_config_from(std::env::args_os())
}

/// [`parse_config`] from the given arguments (the first is the program's name).
pub fn parse_config_from<C, I, T>(args: I) -> C
where
    C: clap::Parser,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    match C::try_parse_from(args) {
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

/// Where the setting a clap error names came from: the flag when the command line has
/// it (it wins over the variable), otherwise its `CHAT_*` variable.
fn env_name<C: clap::CommandFactory>(e: &clap::Error) -> Option<String> {
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let long = arg.trim_start_matches("--").split([' ', '=']).next()?;
    let flag = format!("--{long}");
    if std::env::args().any(|a| a == flag || a.starts_with(&format!("{flag}="))) {
        return Some(format!("the flag {flag}"));
    }
    C::command()
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env())
        .map(|v| v.to_string_lossy().into_owned())
}

/// Binds `addr` for the setting that names it, or stops the process with one line
/// that says which address, which setting, and what to do (exit 64): a port in use
/// must not end in `Os { code: 98, .. }`.
pub async fn listen(addr: SocketAddr, setting: &str) -> tokio::net::TcpListener {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => config_error(
            setting,
            &format!(
                "{addr} is already in use (another process, or this one still draining): stop it or set {setting} to a free address"
            ),
        ),
        Err(e) => config_error(setting, &format!("cannot listen on {addr}: {e}")),
    }
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

/// Every metric of the chat services, in one registry per process. Names follow
/// `chat_<subsystem>_<name>_<unit>`; labels never carry room or user names.
pub struct Metrics {
    pub registry: prometheus::Registry,
    pub ws_connections: prometheus::IntGauge,
    pub messages_published: prometheus::IntCounterVec,
    pub deliveries: prometheus::IntCounter,
    pub ws_closes: prometheus::IntCounterVec,
    pub errors: prometheus::IntCounterVec,
    pub joins: prometheus::IntCounter,
    pub leaves: prometheus::IntCounter,
    pub http_requests: prometheus::IntCounterVec,
    pub http_duration: prometheus::HistogramVec,
    pub engine_ready: prometheus::IntGauge,
    pub limit_hits: prometheus::IntCounterVec,
    /// Publish time (in the bus envelope) to the frame written to a recipient's socket:
    /// one observation per delivery.
    pub delivery_latency: prometheus::Histogram,
    pub bus_publish_duration: prometheus::Histogram,
    pub history_read_duration: prometheus::Histogram,
    pub redis_reconnects: prometheus::IntCounter,
}

/// The version of every binary (the workspace's) and the commit it was built from:
/// `CHAT_REVISION` at build time (the container build passes it), else `unknown`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const REVISION: &str = match option_env!("CHAT_REVISION") {
    Some(r) if !r.is_empty() => r,
    _ => "unknown",
};

/// Label values known in advance: their series exist (at 0) from the start, so rates
/// and alerts see them before the first occurrence.
const PATHS: &[&str] = &["http", "ws"];
const LIMITS: &[&str] = &[
    "rate",
    "slow_consumer",
    "connections_per_user",
    "connections_per_ip",
    "rooms_per_connection",
    "text_size",
    "frame_size",
    "origin",
    "idle",
    "connect_timeout",
];

/// Latency buckets from 0.25 ms to 5 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        use prometheus::{HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};
        let registry = prometheus::Registry::new();
        let reg = |c: Box<dyn prometheus::core::Collector>| {
            registry.register(c).expect("metric names are unique");
        };
        let ws_connections =
            IntGauge::new("chat_ws_connections", "Open WebSocket connections.").unwrap();
        let messages_published = IntCounterVec::new(
            Opts::new(
                "chat_messages_published_total",
                "Messages stored and published, by path.",
            ),
            &["path"],
        )
        .unwrap();
        let deliveries = IntCounter::new(
            "chat_deliveries_total",
            "Message frames queued to WebSocket connections.",
        )
        .unwrap();
        let ws_closes = IntCounterVec::new(
            Opts::new(
                "chat_ws_closes_total",
                "WebSocket connections closed, by reason.",
            ),
            &["reason"],
        )
        .unwrap();
        let errors = IntCounterVec::new(
            Opts::new("chat_errors_total", "Errors answered to clients, by code."),
            &["code"],
        )
        .unwrap();
        let joins = IntCounter::new("chat_joins_total", "Room joins.").unwrap();
        let leaves = IntCounter::new("chat_leaves_total", "Room leaves.").unwrap();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "chat_http_requests_total",
                "HTTP requests, by matched route and status.",
            ),
            &["route", "status"],
        )
        .unwrap();
        let http_duration = prometheus::HistogramVec::new(
            HistogramOpts::new(
                "chat_http_request_duration_seconds",
                "HTTP request latency, by matched route.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["route"],
        )
        .unwrap();
        let engine_ready = IntGauge::new(
            "chat_engine_ready",
            "1 while the engine (Redis) answers, 0 while it does not.",
        )
        .unwrap();
        reg(Box::new(engine_ready.clone()));
        let limit_hits = IntCounterVec::new(
            Opts::new(
                "chat_limit_hits_total",
                "Requests refused or connections closed by a limit, by limit.",
            ),
            &["limit"],
        )
        .unwrap();
        reg(Box::new(limit_hits.clone()));
        reg(Box::new(ws_connections.clone()));
        reg(Box::new(messages_published.clone()));
        reg(Box::new(deliveries.clone()));
        reg(Box::new(ws_closes.clone()));
        reg(Box::new(errors.clone()));
        reg(Box::new(joins.clone()));
        reg(Box::new(leaves.clone()));
        reg(Box::new(http_requests.clone()));
        reg(Box::new(http_duration.clone()));
        let histogram = |name: &str, help: &str| {
            let h = prometheus::Histogram::with_opts(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
            )
            .unwrap();
            reg(Box::new(h.clone()));
            h
        };
        let delivery_latency = histogram(
            "chat_delivery_latency_seconds",
            "From a message's publish to its frame written to a recipient's socket, per delivery.",
        );
        let bus_publish_duration = histogram(
            "chat_bus_publish_duration_seconds",
            "Engine publish (store + PUBLISH) latency.",
        );
        let history_read_duration = histogram(
            "chat_history_read_duration_seconds",
            "Engine history read latency.",
        );
        let redis_reconnects = IntCounter::new(
            "chat_redis_reconnects_total",
            "Times the Redis pub/sub connection came back after an outage.",
        )
        .unwrap();
        reg(Box::new(redis_reconnects.clone()));
        let build_info = IntGaugeVec::new(
            Opts::new(
                "chat_build_info",
                "Always 1; its labels say the version and the commit this binary was built from.",
            ),
            &["version", "revision"],
        )
        .unwrap();
        build_info.with_label_values(&[VERSION, REVISION]).set(1);
        reg(Box::new(build_info));
        // process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds,
        // process_max_fds, process_threads, ...: read from /proc at each scrape.
        #[cfg(target_os = "linux")]
        reg(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        reg(Box::<memory_limit::MemoryLimit>::default());
        for (vec, values) in [(&messages_published, PATHS), (&limit_hits, LIMITS)] {
            for v in values {
                vec.with_label_values(&[v]);
            }
        }
        for code in ErrorCode::ALL {
            errors.with_label_values(&[code.as_str()]);
        }
        Self {
            registry,
            ws_connections,
            messages_published,
            deliveries,
            ws_closes,
            errors,
            joins,
            leaves,
            http_requests,
            http_duration,
            engine_ready,
            limit_hits,
            delivery_latency,
            bus_publish_duration,
            history_read_duration,
            redis_reconnects,
        }
    }

    pub fn render(&self) -> String {
        render(&self.registry)
    }

    /// One engine publish (a store) took `took`: what the shared publish path reports
    /// for each store, whichever API the message came through.
    pub fn observe_publish(&self, took: std::time::Duration) {
        self.bus_publish_duration.observe(took.as_secs_f64());
    }

    /// A message was published through `path` (`http` or `ws`): once per message a
    /// client sent, a direct message too (stored on two channels).
    pub fn count_published(&self, path: &'static str) {
        self.messages_published.with_label_values(&[path]).inc();
    }
}

/// Awaits `f` and observes how long it took in `histogram`.
pub async fn timed<T>(histogram: &prometheus::Histogram, f: impl Future<Output = T>) -> T {
    let timer = histogram.start_timer();
    let out = f.await;
    timer.observe_duration();
    out
}

/// Answers `/readyz`: true while the process can serve.
pub type ReadyFn =
    std::sync::Arc<dyn Fn() -> futures_util::future::BoxFuture<'static, bool> + Send + Sync>;

/// A [`ReadyFn`] from shared state and an async check of it.
pub fn ready_fn<T, Fut>(state: T, check: fn(T) -> Fut) -> ReadyFn
where
    T: Clone + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    std::sync::Arc::new(move || Box::pin(check(state.clone())))
}

/// Puts the ops routes on the internal listener when there is one (serving them there,
/// with the same handshake timeout as the public one), else beside the public routes.
/// Both routers answer unknown paths and wrong methods with the JSON error body.
pub fn with_ops(
    app: axum::Router,
    ops: axum::Router,
    internal: Option<tokio::net::TcpListener>,
    handshake_timeout: std::time::Duration,
    shutdown: &shutdown::Shutdown,
) -> axum::Router {
    match internal {
        Some(listener) => {
            let edge = serve::Edge::new(handshake_timeout);
            let ops = json_errors::with_json_errors(ops);
            // Up while the public listener drains: `/readyz` says 503 there meanwhile.
            tokio::spawn(serve::serve(listener, ops, edge, shutdown.done()));
            json_errors::with_json_errors(app)
        }
        None => json_errors::with_json_errors(app.merge(ops)),
    }
}

/// Mirrors the engine's readiness (what its probe saw last) into `chat_engine_ready`,
/// so an outage shows on dashboards and alerts even when nobody asks `/readyz`. Nothing
/// polls here: the gauge changes when the readiness does, and the task ends with the
/// engine's probe (which owns the watch's sender).
pub fn spawn_engine_gauge(
    metrics: std::sync::Arc<Metrics>,
    mut engine_ready: tokio::sync::watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        loop {
            let ready = *engine_ready.borrow_and_update();
            metrics.engine_ready.set(i64::from(ready));
            if engine_ready.changed().await.is_err() {
                return;
            }
        }
    });
}

/// `/healthz` (200 while the process runs), `/readyz` (200 only while it can serve) and
/// `/metrics`.
pub fn ops_router(metrics: std::sync::Arc<Metrics>, ready: ReadyFn) -> axum::Router {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    use axum::routing::get;
    axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    if ready().await {
                        (StatusCode::OK, "ready\n").into_response()
                    } else {
                        json_errors::error(
                            StatusCode::SERVICE_UNAVAILABLE,
                            ErrorCode::Unavailable,
                            "not ready: the engine does not answer, or the process is draining",
                        )
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        metrics.render(),
                    )
                }
            }),
        )
}

/// Resolves on SIGINT or SIGTERM (what Kubernetes and `docker stop` send).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
