//! Starts real servers on loopback port 0 (the split deployment over a real Redis, or
//! the all-in-one `chat`) and describes them as a [`Topology`] the scenarios run on.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chat_auth::{Auth, AuthConfig, LimitsConfig};
use chat_engine::{Engine, EngineConfig};
use chat_gateway::Gateway;
use chat_realtime::{Options, Realtime};
use chat_telemetry::Metrics;
use tokio::net::TcpListener;

pub const API_KEY: &str = "test-api-key";

pub fn auth_config(dev: bool) -> AuthConfig {
    AuthConfig {
        dev_mode: Some(dev),
        jwt_secret: Some("a-test-secret-of-enough-bytes".into()),
        api_keys: vec![API_KEY.into()],
        jwt_public_key_file: Some(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../auth/tests/keys/rsa-public.pem"
            )
            .into(),
        ),
        allowed_origins: Some(vec!["https://chat.example".into()]),
    }
}

pub fn engine_config(redis_url: Option<String>) -> EngineConfig {
    EngineConfig {
        redis_url,
        history_size: history_size(),
        ..EngineConfig::default()
    }
}

thread_local! {
    static DEV_MODE: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
    static OPTIONS: std::cell::RefCell<Options> =
        std::cell::RefCell::new(Options::new(LimitsConfig::default(), 1000, 2));
}

/// Adjusts the options of the servers this test starts next (tests run on their own
/// threads).
pub fn configure(f: impl FnOnce(&mut Options)) {
    OPTIONS.with(|o| f(&mut o.borrow_mut()));
}

/// Whether the servers this test starts next run in dev mode (default: yes).
pub fn set_dev_mode(dev: bool) {
    DEV_MODE.with(|d| d.set(dev));
}

fn dev_mode() -> bool {
    DEV_MODE.with(|d| d.get())
}

pub fn set_history_size(n: u64) {
    configure(|o| o.history_size = n);
}

fn options() -> Options {
    OPTIONS.with(|o| o.borrow().clone())
}

fn history_size() -> u64 {
    options().history_size
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

pub async fn spawn_realtime(redis_url: &str) -> (SocketAddr, Arc<Realtime>) {
    let engine = Engine::from_config(&engine_config(Some(redis_url.into()))).unwrap();
    let auth = Arc::new(Auth::from_config(&auth_config(dev_mode()), false).unwrap());
    let rt = Realtime::start(engine, auth, Arc::new(Metrics::new()), options())
        .await
        .unwrap();
    let listener = bind().await;
    let addr = listener.local_addr().unwrap();
    tokio::spawn(chat_realtime::run(
        listener,
        None,
        rt.clone(),
        std::future::pending(),
    ));
    (addr, rt)
}

pub async fn spawn_gateway(redis_url: &str) -> SocketAddr {
    let engine = Engine::from_config(&engine_config(Some(redis_url.into()))).unwrap();
    let auth = Arc::new(Auth::from_config(&auth_config(dev_mode()), false).unwrap());
    let gw = Gateway::new(engine, auth, &options().limits, Arc::new(Metrics::new()));
    let listener = bind().await;
    let addr = listener.local_addr().unwrap();
    tokio::spawn(chat_gateway::run(
        listener,
        None,
        gw,
        std::future::pending(),
    ));
    addr
}

pub async fn spawn_chat(redis_url: Option<String>) -> SocketAddr {
    let chat = chat::Chat::start(
        &engine_config(redis_url),
        &auth_config(dev_mode()),
        options(),
    )
    .await
    .unwrap();
    let listener = bind().await;
    let addr = listener.local_addr().unwrap();
    tokio::spawn(chat::run(listener, None, chat, std::future::pending()));
    addr
}

/// Where clients connect: WebSocket replicas and HTTP gateways.
pub struct Topology {
    pub ws: Vec<SocketAddr>,
    pub http: Vec<SocketAddr>,
}

impl Topology {
    /// Two realtime replicas and two gateways on one Redis.
    pub async fn split(redis_url: &str) -> Topology {
        let (rt1, _) = spawn_realtime(redis_url).await;
        let (rt2, _) = spawn_realtime(redis_url).await;
        Topology {
            ws: vec![rt1, rt2],
            http: vec![
                spawn_gateway(redis_url).await,
                spawn_gateway(redis_url).await,
            ],
        }
    }

    /// One `chat` process plays every part.
    pub async fn all_in_one() -> Topology {
        let addr = spawn_chat(None).await;
        Topology {
            ws: vec![addr, addr],
            http: vec![addr, addr],
        }
    }

    pub fn ws_url(&self, i: usize) -> String {
        format!("ws://{}/ws", self.ws[i % self.ws.len()])
    }

    pub fn http_url(&self, i: usize, path: &str) -> String {
        format!("http://{}{path}", self.http[i % self.http.len()])
    }

    /// `POST` here publishes to `room` through gateway `i`.
    pub fn messages_url(&self, i: usize, room: &str) -> String {
        self.http_url(i, &format!("/v1/rooms/{room}/messages"))
    }
}

/// Publishes `text` to a room's messages URL as a trusted backend (the API key, `from`
/// "backend"); the status and the JSON body.
pub async fn post_text(url: &str, text: &str) -> (u16, serde_json::Value) {
    let r = http()
        .post(url)
        .bearer_auth(API_KEY)
        .json(&serde_json::json!({"text": text, "from": "backend"}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A dev-mode user token from the server at `base` (`http://host:port`).
pub async fn dev_token(base: &str, user: &str) -> String {
    let v: serde_json::Value = http()
        .post(format!("{base}/v1/auth/dev-token"))
        .json(&serde_json::json!({ "user": user }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["token"].as_str().unwrap().to_owned()
}

/// The `/metrics` body of the server at `addr` (`host:port`).
pub async fn metrics_of(addr: impl std::fmt::Display) -> String {
    let r = http()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// The value of an unlabelled sample of a /metrics body.
pub fn sample(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

/// Polls `url` until it answers `status`.
pub async fn wait_status(url: &str, status: u16) {
    let client = http();
    for _ in 0..150 {
        if let Ok(r) = client.get(url).send().await
            && r.status().as_u16() == status
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never answered {status}");
}
