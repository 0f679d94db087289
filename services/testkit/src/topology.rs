//! Real servers started in this process on loopback port 0: the split deployment
//! (realtime replicas and gateways over one Redis) or the all-in-one `chat`.
//!
//! A [`Builder`] holds what the servers it starts share: dev mode, the realtime
//! [`Options`] (text limit, connection limits, edge, history size, timers; the gateway
//! takes the text limit and edge from them), the gateway's [`PublishBudget`] and
//! whether each gets an internal ops listener. Every server is constructed and run here, and nowhere else, so a change
//! to an entry point's signature is one edit.
//!
//! ```ignore
//! let t = Topology::builder().dev_mode(false).history_size(5).split(&redis.url()).await;
//! let chat = Topology::builder().options(|o| o.limits.max_connections_per_ip = 1).chat(None).await;
//! let gw = Topology::builder().publish_budget(|b| b.http_rate_limit_burst = 3).gateway_state(None);
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use chat_auth::{Auth, AuthConfig};
use chat_engine::{Engine, EngineConfig};
use chat_gateway::Gateway;
use chat_gateway::rate::PublishBudget;
use chat_realtime::{Options, Realtime};
use chat_telemetry::{Metrics, Shutdown};
use tokio::net::TcpListener;

/// The server API key every server started here accepts.
pub const API_KEY: &str = "test-api-key";

/// The HS256 secret that signs user tokens on every server started here.
pub const JWT_SECRET: &str = "a-test-secret-of-enough-bytes";

/// Where clients connect: WebSocket replicas and HTTP gateways.
pub struct Topology {
    pub ws: Vec<SocketAddr>,
    pub http: Vec<SocketAddr>,
}

impl Topology {
    /// Servers with the defaults: dev mode, history 1000, default limits.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Two realtime replicas and two gateways on one Redis, with the defaults.
    pub async fn split(redis_url: &str) -> Topology {
        Self::builder().split(redis_url).await
    }

    /// One `chat` process (memory engine) plays every part, with the defaults.
    pub async fn all_in_one() -> Topology {
        Self::builder().all_in_one().await
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

/// The options of the servers it starts; start as many as a test needs.
#[derive(Clone)]
pub struct Builder {
    dev_mode: bool,
    options: Options,
    publish: PublishBudget,
    internal: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            dev_mode: true,
            options: Options::new(1000, 2),
            publish: PublishBudget::default(),
            internal: false,
        }
    }
}

/// A running realtime replica.
pub struct RealtimeHandle {
    pub addr: SocketAddr,
    /// The internal ops listener, when the builder asked for one.
    pub internal: Option<SocketAddr>,
    pub realtime: Arc<Realtime>,
}

/// A running gateway.
pub struct GatewayHandle {
    pub addr: SocketAddr,
    pub internal: Option<SocketAddr>,
    pub gateway: Arc<Gateway>,
}

/// A running all-in-one `chat`.
pub struct ChatHandle {
    pub addr: SocketAddr,
    pub internal: Option<SocketAddr>,
    pub realtime: Arc<Realtime>,
    pub gateway: Arc<Gateway>,
}

impl Builder {
    /// Whether the servers run in dev mode (default: yes).
    pub fn dev_mode(mut self, dev: bool) -> Self {
        self.dev_mode = dev;
        self
    }

    /// Messages kept per channel, by the engine and for recovery (default: 1000).
    pub fn history_size(mut self, n: u64) -> Self {
        self.options.history_size = n;
        self
    }

    /// Adjusts the realtime options (limits, timers); the gateway takes their text
    /// limit and edge (`handshake_timeout_secs`) too.
    pub fn options(mut self, f: impl FnOnce(&mut Options)) -> Self {
        f(&mut self.options);
        self
    }

    /// Adjusts the gateways' per-user budget of HTTP publishes.
    pub fn publish_budget(mut self, f: impl FnOnce(&mut PublishBudget)) -> Self {
        f(&mut self.publish);
        self
    }

    /// What a gateway started here is given.
    fn gateway_options(&self) -> chat_gateway::Options {
        chat_gateway::Options {
            text: self.options.text,
            publish: self.publish,
            edge: self.options.edge,
        }
    }

    /// Each server also listens on an internal ops address (`CHAT_INTERNAL_ADDR`).
    pub fn internal_listener(mut self) -> Self {
        self.internal = true;
        self
    }

    /// The authentication settings: [`API_KEY`], [`JWT_SECRET`], the auth crate's test
    /// RSA key, and `https://chat.example` as the one allowed browser origin.
    pub fn auth_config(&self) -> AuthConfig {
        AuthConfig {
            dev_mode: Some(self.dev_mode),
            jwt_secret: Some(JWT_SECRET.into()),
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

    /// The engine settings: Redis at `redis_url`, or memory.
    pub fn engine_config(&self, redis_url: Option<&str>) -> EngineConfig {
        EngineConfig {
            redis_url: redis_url.map(str::to_owned),
            history_size: self.options.history_size,
            ..EngineConfig::default()
        }
    }

    fn auth(&self) -> Arc<Auth> {
        Arc::new(Auth::from_config(&self.auth_config(), false).unwrap())
    }

    /// A gateway that is not listening, for tests that drive its router in-process
    /// (`tower::ServiceExt::oneshot`). Memory engine when `redis_url` is `None`.
    pub fn gateway_state(&self, redis_url: Option<&str>) -> Arc<Gateway> {
        // Each server its own stop, never given: it stops with the test (or through
        // `gateway.shutdown`).
        let shutdown = Shutdown::new();
        let engine =
            Engine::from_config(&self.engine_config(redis_url), shutdown.done_token()).unwrap();
        Gateway::new(
            engine,
            self.auth(),
            self.gateway_options(),
            Arc::new(Metrics::new()),
            shutdown,
        )
    }

    /// A realtime hub connected to its engine's bus, not listening.
    pub async fn realtime_state(&self, redis_url: Option<&str>) -> Arc<Realtime> {
        let shutdown = Shutdown::new();
        let engine =
            Engine::from_config(&self.engine_config(redis_url), shutdown.done_token()).unwrap();
        Realtime::start(
            engine,
            self.auth(),
            Arc::new(Metrics::new()),
            self.options.clone(),
            shutdown,
        )
        .await
        .unwrap()
    }

    /// A realtime replica on Redis at `redis_url`.
    pub async fn realtime(&self, redis_url: &str) -> RealtimeHandle {
        let realtime = self.realtime_state(Some(redis_url)).await;
        let (listener, addr, internal, internal_addr) = self.listeners().await;
        tokio::spawn(chat_realtime::run(listener, internal, realtime.clone()));
        RealtimeHandle {
            addr,
            internal: internal_addr,
            realtime,
        }
    }

    /// A gateway on Redis at `redis_url`.
    pub async fn gateway(&self, redis_url: &str) -> GatewayHandle {
        let gateway = self.gateway_state(Some(redis_url));
        let (listener, addr, internal, internal_addr) = self.listeners().await;
        tokio::spawn(chat_gateway::run(listener, internal, gateway.clone()));
        GatewayHandle {
            addr,
            internal: internal_addr,
            gateway,
        }
    }

    /// The all-in-one `chat`: on Redis at `redis_url`, or the memory engine.
    pub async fn chat(&self, redis_url: Option<&str>) -> ChatHandle {
        let chat = chat::Chat::start(
            &self.engine_config(redis_url),
            &self.auth_config(),
            self.options.clone(),
            self.publish,
            Shutdown::new(),
        )
        .await
        .unwrap();
        let (realtime, gateway) = (chat.realtime.clone(), chat.gateway.clone());
        let (listener, addr, internal, internal_addr) = self.listeners().await;
        tokio::spawn(chat::run(listener, internal, chat));
        ChatHandle {
            addr,
            internal: internal_addr,
            realtime,
            gateway,
        }
    }

    /// Two realtime replicas and two gateways on one Redis.
    pub async fn split(&self, redis_url: &str) -> Topology {
        let ws = vec![
            self.realtime(redis_url).await.addr,
            self.realtime(redis_url).await.addr,
        ];
        let http = vec![
            self.gateway(redis_url).await.addr,
            self.gateway(redis_url).await.addr,
        ];
        Topology { ws, http }
    }

    /// One `chat` process (memory engine) plays every part.
    pub async fn all_in_one(&self) -> Topology {
        let addr = self.chat(None).await.addr;
        Topology {
            ws: vec![addr, addr],
            http: vec![addr, addr],
        }
    }

    async fn listeners(
        &self,
    ) -> (
        TcpListener,
        SocketAddr,
        Option<TcpListener>,
        Option<SocketAddr>,
    ) {
        let public = bind().await;
        let addr = public.local_addr().unwrap();
        let internal = match self.internal {
            true => Some(bind().await),
            false => None,
        };
        let internal_addr = internal.as_ref().map(|l| l.local_addr().unwrap());
        (public, addr, internal, internal_addr)
    }
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}
