//! Logs and traces: one `tracing` subscriber that writes logs (text or JSON lines, each
//! with the trace id when it is written inside a traced span) and, when an OTLP
//! endpoint is configured, exports spans over OTLP/HTTP.
//!
//! A message is one trace: the publisher's span (the gateway's HTTP span or the
//! realtime's WebSocket `send`) injects its W3C context into the bus envelope, and each
//! replica's delivery span takes it as parent ([`context_of_current`], [`set_parent`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::format::{DefaultFields, Format, Full, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::LogFormat;

/// A W3C trace context (`traceparent`, `tracestate`) as carried in a bus envelope.
pub type TraceContext = HashMap<String, String>;

/// Where spans go. `None` endpoint: the standard `OTEL_*` variables decide.
#[derive(Debug, Clone, Default)]
pub struct TraceExport {
    /// An OTLP/HTTP traces URL (`http://host:4318/v1/traces`) that overrides the
    /// environment; tests use it, the binaries leave it unset.
    pub endpoint: Option<String>,
}

/// True once spans are exported: spans on hot paths are only made then.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether this process exports spans.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Keeps the exporter alive; dropping it flushes what is buffered.
#[must_use = "dropping it stops the span export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports every finished span now.
    pub fn flush(&self) {
        if let Some(p) = &self.provider {
            let _ = p.force_flush();
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// Why tracing could not start; names the setting at fault.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct TraceError {
    pub setting: &'static str,
    pub message: String,
}

/// Whether the environment asks for span export: an OTLP endpoint is set and the SDK
/// is not disabled.
fn endpoint_configured() -> bool {
    let set = |v: &str| std::env::var(v).is_ok_and(|s| !s.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
        || std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.eq_ignore_ascii_case("none"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

fn provider(service: &str, export: &TraceExport) -> Result<Option<SdkTracerProvider>, TraceError> {
    use opentelemetry_otlp::WithExportConfig;
    if export.endpoint.is_none() && !endpoint_configured() {
        return Ok(None);
    }
    let mut builder = opentelemetry_otlp::SpanExporter::builder().with_http();
    if let Some(endpoint) = &export.endpoint {
        builder = builder.with_endpoint(endpoint.clone());
    }
    let exporter = builder.build().map_err(|e| TraceError {
        setting: "OTEL_EXPORTER_OTLP_ENDPOINT",
        message: e.to_string(),
    })?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    // OTEL_SERVICE_NAME wins over the binary's name.
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service.to_owned());
    }
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build(),
    ))
}

/// Installs the process's subscriber: logs to stderr filtered by `RUST_LOG` (default
/// `info`), and spans of the chat crates exported over OTLP when an endpoint is set.
/// `service` names the process in traces unless `OTEL_SERVICE_NAME` is set.
pub fn init(
    format: LogFormat,
    service: &str,
    export: &TraceExport,
) -> Result<Telemetry, TraceError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => {
            EnvFilter::try_new(&spec).map_err(|e| TraceError {
                setting: "RUST_LOG",
                message: e.to_string(),
            })?
        }
        _ => EnvFilter::new("info"),
    };
    let provider = provider(service, export)?;
    // Only our own spans: the exporter's HTTP client must not trace its own exports.
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("chat"))
            .with_filter(EnvFilter::new(
                "off,chat=info,chat_gateway=info,chat_realtime=info,chat_engine=info,chat_telemetry=info",
            ))
    });
    let ansi = colours_wanted(
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        std::env::var_os("NO_COLOR"),
    );
    let logs = log_layer(format, ansi, std::io::stderr).with_filter(filter);
    let installed = tracing_subscriber::registry()
        .with(logs)
        .with(otel)
        .try_init()
        .is_ok();
    if installed && provider.is_some() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        EXPORTING.store(true, Ordering::Relaxed);
    }
    Ok(Telemetry {
        provider: provider.filter(|_| installed),
    })
}

/// Colour escapes only for a person at a terminal: a container runtime, a pipe or a
/// file gets plain lines (log collectors store the escapes verbatim otherwise), and a
/// non-empty `NO_COLOR` turns them off everywhere (https://no-color.org).
fn colours_wanted(is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Log lines in `format` to `writer`, with the trace id.
fn log_layer<S, W>(format: LogFormat, ansi: bool, writer: W) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(ansi)
            .event_format(WithTraceId(Format::<Full>::default()))
            .fmt_fields(DefaultFields::new())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(false)
            .event_format(WithTraceId(Format::<Full>::default().json()))
            .fmt_fields(JsonFields::new())
            .boxed(),
    }
}

/// The trace id of the innermost traced span entered on this thread. Entering a span
/// makes its OpenTelemetry context current; the dispatcher cannot be asked here, as it
/// is busy with the event being formatted.
fn current_trace_id() -> Option<String> {
    if !exporting() {
        return None;
    }
    let cx = opentelemetry::Context::current();
    let span_context = cx.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// A log line formatter that adds `trace_id` to lines written inside a traced span:
/// a field of the JSON object, or ` trace_id=…` at the end of a text line.
struct WithTraceId<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceId<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some(trace_id) = current_trace_id() else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let body = line.trim_end_matches('\n');
        match body.strip_prefix('{') {
            // The formatter's JSON object always has fields (timestamp, level), so a
            // leading member keeps it valid.
            Some(rest) => writeln!(writer, "{{\"trace_id\":\"{trace_id}\",{rest}"),
            None => writeln!(writer, "{body} trace_id={trace_id}"),
        }
    }
}

/// The W3C context of the current span, to travel with a message; `None` when the
/// current span is not traced.
pub fn context_of_current() -> Option<TraceContext> {
    if !exporting() {
        return None;
    }
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = TraceContext::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    Some(carrier)
}

/// Makes `span` a child of a propagated context. Call it before the span is first
/// entered: a started span keeps the parent it started with.
pub fn set_parent(span: &tracing::Span, carrier: &impl Extractor) {
    let cx = TraceContextPropagator::new().extract(carrier);
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// Reads a W3C context from HTTP headers (`traceparent`), for [`set_parent`].
pub struct HeaderCarrier<'a>(pub &'a axum::http::HeaderMap);

impl Extractor for HeaderCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The server span of one HTTP request, continuing the caller's trace when the request
/// carries a `traceparent`. `route` is the matched route, never the raw path.
pub fn http_span(
    method: &axum::http::Method,
    route: &str,
    headers: &axum::http::HeaderMap,
) -> tracing::Span {
    if !exporting() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        target: "chat_telemetry",
        "HTTP request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    set_parent(&span, &HeaderCarrier(headers));
    span
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn colours_only_at_a_terminal_without_no_color() {
        assert!(colours_wanted(true, None));
        assert!(colours_wanted(true, Some("".into())));
        assert!(!colours_wanted(true, Some("1".into())));
        assert!(!colours_wanted(false, None));
    }

    /// Log output captured in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;

        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    /// Runs `f` under a subscriber like [`init`]'s, with spans traced but exported
    /// nowhere; returns the log lines.
    fn traced(format: LogFormat, f: impl FnOnce()) -> Vec<String> {
        EXPORTING.store(true, Ordering::Relaxed);
        let provider = SdkTracerProvider::builder().build();
        let out = Captured::default();
        let subscriber = tracing_subscriber::registry()
            .with(log_layer(format, false, out.clone()).with_filter(EnvFilter::new("info")))
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    fn trace_id_of_current() -> String {
        tracing::Span::current()
            .context()
            .span()
            .span_context()
            .trace_id()
            .to_string()
    }

    #[test]
    fn text_lines_in_a_traced_span_end_with_its_trace_id() {
        let mut id = String::new();
        let lines = traced(LogFormat::Text, || {
            tracing::info!("outside");
            let span = tracing::info_span!("work");
            let _in = span.enter();
            id = trace_id_of_current();
            tracing::info!(n = 1, "inside");
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(!lines[0].contains("trace_id"), "{}", lines[0]);
        assert!(lines[1].contains("inside"), "{}", lines[1]);
        assert!(
            lines[1].ends_with(&format!(" trace_id={id}")),
            "{}",
            lines[1]
        );
        assert_eq!(id.len(), 32);
    }

    #[test]
    fn json_lines_are_one_object_each_with_the_trace_id_inside_a_span() {
        let mut id = String::new();
        let lines = traced(LogFormat::Json, || {
            tracing::info!("outside");
            let span = tracing::info_span!("work", room_count = 2);
            let _in = span.enter();
            id = trace_id_of_current();
            tracing::warn!(n = 1, "inside \"quoted\"");
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        let outside: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert!(outside.get("trace_id").is_none(), "{outside}");
        let inside: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(inside["trace_id"], id.as_str());
        assert_eq!(inside["fields"]["message"], "inside \"quoted\"");
        assert_eq!(inside["level"], "WARN");
    }

    #[test]
    fn a_span_given_a_propagated_context_joins_that_trace() {
        let (mut publisher, mut deliverer) = (String::new(), String::new());
        traced(LogFormat::Text, || {
            let carrier = {
                let span = tracing::info_span!("publish");
                let _in = span.enter();
                publisher = trace_id_of_current();
                context_of_current().expect("a traced span has a context")
            };
            assert!(carrier["traceparent"].contains(&publisher));
            let span = tracing::info_span!("deliver");
            set_parent(&span, &carrier);
            let _in = span.enter();
            deliverer = trace_id_of_current();
        });
        assert_eq!(publisher, deliverer);
    }
}
