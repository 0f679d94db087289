//! The one HTTP server loop of `chat-gateway`, `chat-realtime` and `chat` (public and
//! internal listeners alike), in place of `axum::serve`, which waits forever for a
//! request that never comes.
//!
//! - A connection must deliver its first request's headers within the handshake
//!   timeout (the protocol sniff, then hyper's header read); later requests on a kept-
//!   alive connection must start within it too (hyper's `header_read_timeout`). A socket
//!   that sends nothing, or half a request, is closed. [`EdgeConfig`] is its setting
//!   (`CHAT_HANDSHAKE_TIMEOUT_SECS`).
//! - An [`Admit`] hook may count each accepted socket (the per-IP limit): what it
//!   returns lives as long as the connection is served by HTTP, and a WebSocket upgrade
//!   may take it over ([`take_admission`]) so that one socket never counts twice.
//! - Graceful shutdown as `axum::serve` did it: when `shutdown` resolves, stop
//!   accepting, let in-flight requests finish, then return.
//!
//! It lives here because all three services depend on this crate already.

use std::any::Any;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tower::ServiceExt;

/// What an accepted socket holds while HTTP serves it (an IP slot, say).
pub type Admission = Box<dyn Any + Send>;

/// Decides, per accepted socket, whether it is served: `None` refuses it with 429.
pub type Admit = Arc<dyn Fn(SocketAddr) -> Option<Admission> + Send + Sync>;

/// The settings of every listener's edge (public and internal alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct EdgeConfig {
    /// Seconds a new connection has to send a complete request head (and a kept-alive
    /// one its next): past it the socket is closed, so half-open clients cannot hold
    /// files (and their IP's connection slots) forever.
    #[arg(long, env = "CHAT_HANDSHAKE_TIMEOUT_SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub handshake_timeout_secs: u64,
}

impl EdgeConfig {
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }

    /// An [`Edge`] with these settings that admits every socket.
    pub fn edge(&self) -> Edge {
        Edge::new(self.handshake_timeout())
    }
}

impl Default for EdgeConfig {
    fn default() -> Self {
        chat_protocol::settings::declared_defaults()
    }
}

/// How a listener treats its connections.
#[derive(Clone)]
pub struct Edge {
    /// From accept to a request's complete headers, at most.
    pub handshake_timeout: Duration,
    pub admit: Option<Admit>,
}

impl Edge {
    pub fn new(handshake_timeout: Duration) -> Self {
        Self {
            handshake_timeout,
            admit: None,
        }
    }

    pub fn admit(mut self, admit: Admit) -> Self {
        self.admit = Some(admit);
        self
    }
}

tokio::task_local! {
    /// The admission of the connection whose request is being handled (HTTP/1 runs a
    /// connection's handlers inside its own task).
    static ADMISSION: RefCell<Option<Admission>>;
}

/// Takes the current connection's admission if it is a `T` that `matches`: the request
/// is becoming something that outlives HTTP (a WebSocket) and keeps the count with it.
pub fn take_admission<T: Any>(matches: impl FnOnce(&T) -> bool) -> Option<T> {
    ADMISSION
        .try_with(|cell| {
            let mut admission = cell.borrow_mut();
            let ours = admission.as_ref()?.downcast_ref::<T>().is_some_and(matches);
            if !ours {
                return None;
            }
            admission.take()?.downcast::<T>().ok().map(|t| *t)
        })
        .ok()
        .flatten()
}

/// One service of a process (the gateway, a realtime replica, or `chat` with both):
/// what [`run`] serves.
pub struct Service {
    /// The public routes.
    pub app: Router,
    /// `/healthz`, `/readyz`, `/metrics`: on the internal listener when there is one.
    pub ops: Router,
    pub edge: Edge,
    pub metrics: Arc<crate::Metrics>,
    /// The engine's readiness, mirrored into `chat_engine_ready`.
    pub engine_ready: tokio::sync::watch::Receiver<bool>,
    pub shutdown: crate::Shutdown,
}

/// Serves `service` on `listener` (and its ops routes on `internal`) until its
/// [`Shutdown`](crate::Shutdown) stops it: the listener closes, `drain` runs, in-flight
/// requests finish, then every background task ends. The one `run` of all three
/// binaries.
pub async fn run(
    listener: TcpListener,
    internal: Option<TcpListener>,
    service: Service,
    drain: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Service {
        app,
        ops,
        edge,
        metrics,
        engine_ready,
        shutdown,
    } = service;
    crate::spawn_engine_gauge(metrics, engine_ready);
    let app = crate::with_ops(app, ops, internal, edge.handshake_timeout, &shutdown);
    let served = serve_draining(listener, app, edge, shutdown.stopping(), drain).await;
    shutdown.finish();
    served
}

/// Refusals answered at once are bounded: past this many in flight, a refused socket is
/// just closed, so a flood cannot hold files open through its refusals.
const REFUSALS_IN_FLIGHT: usize = 64;

/// Serves `app` on `listener` until `shutdown` resolves, then lets in-flight requests
/// finish. Each request carries `ConnectInfo<SocketAddr>` (the TCP peer).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    edge: Edge,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_draining(listener, app, edge, shutdown, async {}).await
}

/// Like [`serve`], for a server that drains: when `shutdown` resolves the listener is
/// closed at once (a restarted process can bind the address while this one still
/// hands its clients over), then `drain` runs, then in-flight requests finish.
/// The drain starts only once the listener is closed: a client it moves away may come
/// straight back to the same address.
async fn serve_draining(
    listener: TcpListener,
    app: Router,
    edge: Edge,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(edge.handshake_timeout);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let refusals = Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let admission = match &edge.admit {
            Some(admit) => match admit(peer) {
                Some(admission) => Some(admission),
                None => {
                    if let Ok(permit) = refusals.clone().try_acquire_owned() {
                        tokio::spawn(async move {
                            refuse(tcp).await;
                            drop(permit);
                        });
                    }
                    continue;
                }
            },
            None => None,
        };
        // Frames are batched per write already; Nagle would only add delay (up to 40 ms).
        let _ = tcp.set_nodelay(true);
        let first_request = Arc::new(Notify::new());
        let service = {
            let (app, first_request) = (app.clone(), first_request.clone());
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                first_request.notify_one();
                req.extensions_mut().insert(ConnectInfo(peer));
                app.clone().oneshot(req)
            })
        };
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let timeout = edge.handshake_timeout;
        tokio::spawn(ADMISSION.scope(RefCell::new(admission), async move {
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
            let mut conn = std::pin::pin!(watcher.watch(conn));
            // hyper's header timer starts only once it knows the protocol: until the
            // first request this one covers the bytes it sniffs too.
            tokio::select! {
                _ = conn.as_mut() => return,
                in_time = tokio::time::timeout(timeout, first_request.notified()) => {
                    if in_time.is_err() {
                        tracing::debug!(%peer, "no request within the handshake timeout: closed");
                        return;
                    }
                }
            }
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        }));
    }
    drop(listener);
    drain.await;
    graceful.shutdown().await;
    Ok(())
}

/// The answer to a socket over its IP's limit: the contract's 429, then close. A
/// moment's linger reads what the client sent, so it gets the answer, not a reset.
async fn refuse(mut tcp: TcpStream) {
    const BODY: &str =
        r#"{"error":{"code":"rate_limited","message":"too many connections from this address"}}"#;
    let answer = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let linger = async {
        tcp.write_all(answer.as_bytes()).await?;
        tcp.shutdown().await?;
        let mut sink = [0u8; 4096];
        while tokio::io::AsyncReadExt::read(&mut tcp, &mut sink).await? > 0 {}
        std::io::Result::Ok(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), linger).await;
}

/// As `axum::serve`: a client that went away is nothing; anything else (out of files)
/// is logged and waited out.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
