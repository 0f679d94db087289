//! One trace per message, as an operator's collector receives it: the gateway (in this
//! process) and a `chat-realtime` child both export over OTLP/HTTP to a receiver in
//! this test, and the message travels between them only through Redis.

mod support;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use chat_protocol::ServerFrame;
use chat_telemetry::LogFormat;
use chat_telemetry::trace::TraceExport;
use chat_testkit::topology::{API_KEY, Topology};
use chat_testkit::wait_until;
use chat_testkit::{RedisServer, WsClient, free_port};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use parking_lot::Mutex;
use prost::Message as _;
use tokio::io::AsyncBufReadExt;

/// A span as the receiver got it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

type Spans = Arc<Mutex<Vec<Received>>>;

/// An OTLP/HTTP (protobuf) trace receiver on a port-0 listener; returns its base URL.
async fn start_receiver() -> (String, Spans) {
    let spans: Spans = Arc::default();
    let sink = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: bytes::Bytes| {
            let sink = sink.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                let mut sink = sink.lock();
                for rs in request.resource_spans {
                    let service = rs
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|kv| kv.key == "service.name")
                        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                            Value::StringValue(s) => Some(s.clone()),
                            _ => None,
                        })
                        .unwrap_or_default();
                    for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                        sink.push(Received {
                            service: service.clone(),
                            name: span.name,
                            trace_id: hex(&span.trace_id),
                            span_id: hex(&span.span_id),
                            parent_span_id: hex(&span.parent_span_id),
                        });
                    }
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, spans)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_the_gateway_http_request_and_each_replica_delivery() {
    let redis = RedisServer::start();
    let (collector, spans) = start_receiver().await;
    let telemetry = chat_telemetry::trace::init(
        LogFormat::Text,
        "chat-gateway",
        &TraceExport {
            endpoint: Some(format!("{collector}/v1/traces")),
        },
    )
    .expect("tracing starts");
    assert!(chat_telemetry::trace::exporting());

    // The replica is configured the standard way, and logs JSON lines.
    let port = free_port();
    let mut child = tokio::process::Command::new(support::BIN)
        .env("CHAT_REDIS_URL", redis.url())
        .env("CHAT_REALTIME_ADDR", format!("127.0.0.1:{port}"))
        .env("CHAT_DEV_MODE", "true")
        .env("CHAT_LOG_FORMAT", "json")
        .env("RUST_LOG", "info,chat_realtime=debug")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let log_lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let sink = log_lines.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            sink.lock().push(line);
        }
    });
    let gateway = Topology::builder().gateway(&redis.url()).await.addr.port();

    let client = reqwest::Client::new();
    let ready = format!("http://127.0.0.1:{port}/readyz");
    wait_until("the replica is ready", Duration::from_secs(5), || async {
        client
            .get(&ready)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let ws = format!("ws://127.0.0.1:{port}/ws");
    let (mut bob, _) = WsClient::connect_as(&ws, "bob", false).await;
    bob.join("general").await;

    let answer = client
        .post(format!(
            "http://127.0.0.1:{gateway}/v1/rooms/general/messages"
        ))
        .bearer_auth(API_KEY)
        .json(&serde_json::json!({"text": "traced", "from": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);
    bob.recv_until(|f| matches!(f, ServerFrame::Message(m) if m.text == "traced"))
        .await;
    telemetry.flush();

    // The replica exports on its own schedule.
    let mut found = None;
    for _ in 0..100 {
        let spans = spans.lock().clone();
        let http = spans
            .iter()
            .find(|s| s.service == "chat-gateway" && s.name == "POST /v1/rooms/{room}/messages");
        let delivery = spans
            .iter()
            .find(|s| s.service == "chat-realtime" && s.name == "deliver");
        if let (Some(h), Some(d)) = (http, delivery) {
            found = Some((h.clone(), d.clone()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (http, delivery) = found.unwrap_or_else(|| panic!("spans: {:#?}", spans.lock()));
    assert_eq!(http.trace_id.len(), 32);
    assert_ne!(http.trace_id, "0".repeat(32));
    assert_eq!(
        delivery.trace_id, http.trace_id,
        "the delivery continues the HTTP request's trace"
    );
    assert_eq!(delivery.parent_span_id, http.span_id);

    // Every log line of the replica is one JSON object; the delivery's carries the
    // trace id.
    let lines = log_lines.lock().clone();
    assert!(!lines.is_empty());
    let mut delivered_in_trace = false;
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v.is_object(), "{line}");
        if v["fields"]["message"] == "message delivered" {
            assert_eq!(v["trace_id"], http.trace_id.as_str(), "{line}");
            delivered_in_trace = true;
        }
    }
    assert!(delivered_in_trace, "no delivery log line in {lines:#?}");

    // A direct message sent over the WebSocket is stored on two channels (the
    // receiver's and the sender's): still one trace, rooted at the `send`.
    let (mut carol, _) = WsClient::connect_as(&ws, "carol", false).await;
    bob.send(&chat_protocol::ClientFrame::Send {
        room: None,
        to: Some("carol".into()),
        text: "psst".into(),
        cid: None,
    })
    .await;
    carol
        .recv_until(|f| matches!(f, ServerFrame::Message(m) if m.text == "psst"))
        .await;
    bob.recv_until(|f| matches!(f, ServerFrame::Ack { .. }))
        .await;
    let mut dm = None;
    for _ in 0..100 {
        let spans = spans.lock().clone();
        if let Some(send) = spans
            .iter()
            .find(|s| s.service == "chat-realtime" && s.name == "WS send")
        {
            let deliveries: Vec<_> = spans
                .iter()
                .filter(|s| s.name == "deliver" && s.trace_id == send.trace_id)
                .cloned()
                .collect();
            if deliveries.len() == 2 {
                dm = Some((send.clone(), deliveries));
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (send, deliveries) = dm.unwrap_or_else(|| panic!("spans: {:#?}", spans.lock()));
    assert_ne!(send.trace_id, http.trace_id, "a new message, a new trace");
    assert_eq!(
        spans.lock().iter().filter(|s| s.name == "WS send").count(),
        1,
        "one root for the direct message"
    );
    for d in deliveries {
        assert_eq!(d.parent_span_id, send.span_id);
    }
}
