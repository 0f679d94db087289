//! Test support shared by the crates' integration tests: real services, real sockets.
//!
//! - [`RedisServer`]: a `redis-server` child on a free port that a test can stop and
//!   start again on the same port.
//! - [`WsClient`]: a WebSocket client (tungstenite, an implementation independent of the
//!   server's) speaking JSON or MessagePack.
//! - [`Gate`]: a TCP proxy that cuts one process off a server and lets it back.
//! - [`wait_until`], [`holds_within`]: wait for an observable condition, with a deadline.
//! - `topology` (feature `topology`): gateway, realtime and all-in-one servers started
//!   in-process on port 0, with a builder for their options.

mod gate;
pub use gate::Gate;

#[cfg(feature = "topology")]
pub mod topology;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chat_protocol::{ClientFrame, ServerFrame, codec};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `condition` until it holds, panicking with `what` if it still does not after
/// `within`. For states no event announces (a counter reached, a probe answering);
/// where the system sends an event (`joined`, a message), wait on that instead.
pub async fn wait_until<F, Fut>(what: &str, within: Duration, condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    assert!(
        holds_within(within, condition).await,
        "not within {within:?}: {what}"
    );
}

/// Polls `condition` until it holds (true) or `within` passes (false), for a test that
/// reports the failure in its own detail.
pub async fn holds_within<F, Fut>(within: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
    extra: Vec<String>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Starts with extra arguments, e.g. `["--requirepass", "secret"]`.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        Self::start_on(free_port(), extra.iter().map(|s| s.to_string()).collect())
    }

    /// Starts with TLS only (no plain-text port), `cert` and `key` in PEM; connect with
    /// [`RedisServer::tls_url`]. Clients need no certificate of their own.
    pub fn start_tls(cert: &Path, key: &Path, extra: &[&str]) -> RedisServer {
        let port = free_port();
        let mut args: Vec<String> = ["--port", "0", "--tls-port", &port.to_string()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for (flag, path) in [("--tls-cert-file", cert), ("--tls-key-file", key)] {
            args.extend([flag.to_owned(), path.display().to_string()]);
        }
        args.extend(["--tls-auth-clients".into(), "no".into()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::start_on(port, args)
    }

    fn start_on(port: u16, extra: Vec<String>) -> RedisServer {
        let dir = std::env::temp_dir().join(format!("chat-redis-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = RedisServer {
            port,
            child: None,
            dir,
            extra,
        };
        server.start_again();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The `rediss://` URL of a [`RedisServer::start_tls`] server, by the name its
    /// certificate carries.
    pub fn tls_url(&self) -> String {
        format!("rediss://localhost:{}/", self.port)
    }

    /// Kills the server: it keeps nothing, like a Redis without persistence.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "already running");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let child = Command::new("redis-server")
                .args(["--port", &self.port.to_string()])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--dir", self.dir.to_str().unwrap()])
                .args(&self.extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server is installed (apt-get install redis-server)");
            self.child = Some(child);
            while Instant::now() < deadline {
                if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    return;
                }
                if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                    break; // exited: the port may still be in TIME_WAIT; try again
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            self.child = None;
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs a redis-cli command against this server and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A WebSocket chat client for tests.
pub struct WsClient {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    pub msgpack: bool,
}

/// How a connection ended, as the client saw it.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    Code(u16),
    NoCloseFrame,
}

pub const TIMEOUT: Duration = Duration::from_secs(10);

impl WsClient {
    /// Connects to `ws://addr/ws`, offering the msgpack subprotocol when asked.
    pub async fn open(url: &str, msgpack: bool) -> WsClient {
        Self::try_open(url, msgpack, &[])
            .await
            .expect("websocket upgrade")
    }

    pub async fn try_open(
        url: &str,
        msgpack: bool,
        headers: &[(&str, &str)],
    ) -> Result<WsClient, tungstenite::Error> {
        let mut req = url.into_client_request()?;
        if msgpack {
            req.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                codec::SUBPROTOCOL_MSGPACK.parse().unwrap(),
            );
        }
        for (k, v) in headers {
            let name: tungstenite::http::HeaderName = k.parse().unwrap();
            req.headers_mut().insert(name, v.parse().unwrap());
        }
        let (ws, _resp) = tokio_tungstenite::connect_async(req).await?;
        Ok(WsClient { ws, msgpack })
    }

    /// Opens and sends `connect` as `user` (dev mode), returning the `connected` frame.
    pub async fn connect_as(url: &str, user: &str, msgpack: bool) -> (WsClient, ServerFrame) {
        let mut c = Self::open(url, msgpack).await;
        c.send(&ClientFrame::Connect {
            token: None,
            user: Some(user.into()),
            since: None,
        })
        .await;
        let f = c.recv().await;
        assert!(matches!(f, ServerFrame::Connected { .. }), "{f:?}");
        (c, f)
    }

    /// Sends a frame in the client's own encoding.
    pub async fn send(&mut self, frame: &ClientFrame) {
        let msg = if self.msgpack {
            WsMessage::Binary(rmp_serde::to_vec_named(frame).unwrap().into())
        } else {
            WsMessage::Text(serde_json::to_string(frame).unwrap().into())
        };
        self.ws.send(msg).await.expect("send frame");
    }

    pub async fn send_raw(&mut self, msg: WsMessage) {
        self.ws.send(msg).await.expect("send raw frame");
    }

    pub async fn join(&mut self, room: &str) -> ServerFrame {
        self.send(&ClientFrame::Join {
            room: room.into(),
            since: None,
        })
        .await;
        let f = self.recv().await;
        assert!(matches!(f, ServerFrame::Joined { .. }), "{f:?}");
        f
    }

    /// The next frame that is not a `presence` or `typing` notice (most tests are
    /// about messages; those that are not use [`WsClient::recv_any`]).
    pub async fn recv(&mut self) -> ServerFrame {
        loop {
            match self.recv_any().await {
                ServerFrame::Presence { .. } | ServerFrame::Typing { .. } => continue,
                f => return f,
            }
        }
    }

    /// The next data frame, decoded; checks that its kind matches the subprotocol.
    pub async fn recv_any(&mut self) -> ServerFrame {
        match self.try_recv(TIMEOUT).await {
            Some(Ok(f)) => f,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// `None` on timeout, `Some(Err)` when the connection closed.
    pub async fn try_recv(&mut self, timeout: Duration) -> Option<Result<ServerFrame, Closed>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            return Some(match next {
                Some(Ok(WsMessage::Text(t))) => {
                    assert!(!self.msgpack, "text frame on a msgpack connection");
                    Ok(codec::decode_server(t.as_bytes(), false).expect("server JSON"))
                }
                Some(Ok(WsMessage::Binary(b))) => {
                    assert!(self.msgpack, "binary frame on a JSON connection");
                    Ok(codec::decode_server(&b, true).expect("server MessagePack"))
                }
                Some(Ok(WsMessage::Close(Some(cf)))) => Err(Closed::Code(u16::from(cf.code))),
                Some(Ok(WsMessage::Close(None))) => Err(Closed::NoCloseFrame),
                Some(Ok(_)) => continue, // ping / pong
                Some(Err(_)) | None => Err(Closed::NoCloseFrame),
            });
        }
    }

    /// Waits for the server to close the connection and returns its close code.
    pub async fn closed(&mut self) -> Closed {
        loop {
            match self.try_recv(TIMEOUT).await {
                Some(Err(c)) => return c,
                Some(Ok(_)) => continue,
                None => panic!("connection not closed within {TIMEOUT:?}"),
            }
        }
    }

    /// Skips frames until `pred` matches one.
    pub async fn recv_until(&mut self, mut pred: impl FnMut(&ServerFrame) -> bool) -> ServerFrame {
        loop {
            let f = self.recv().await;
            if pred(&f) {
                return f;
            }
        }
    }

    /// Skips frames, notices included, until `pred` matches one.
    pub async fn recv_until_any(
        &mut self,
        mut pred: impl FnMut(&ServerFrame) -> bool,
    ) -> ServerFrame {
        loop {
            let f = self.recv_any().await;
            if pred(&f) {
                return f;
            }
        }
    }

    /// Asserts no message, ack or error arrives for `wait` (notices are skipped).
    pub async fn expect_silence(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.try_recv(left).await {
                None => return,
                Some(Ok(ServerFrame::Presence { .. } | ServerFrame::Typing { .. })) => continue,
                Some(f) => panic!("expected silence, got {f:?}"),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self
            .ws
            .close(Some(tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }))
            .await;
    }
}

impl WsClient {
    /// Sends a text message of `total` bytes as fragments of `chunk` bytes, stopping at
    /// the first failed write (the server closed). Returns how many fragments went out.
    pub async fn send_fragments(&mut self, total: usize, chunk: usize) -> usize {
        use tokio_tungstenite::tungstenite::protocol::frame::{
            Frame,
            coding::{Data, OpCode},
        };
        let n = total.div_ceil(chunk);
        for i in 0..n {
            let opcode = if i == 0 {
                OpCode::Data(Data::Text)
            } else {
                OpCode::Data(Data::Continue)
            };
            let mut frame = Frame::message(vec![b'z'; chunk], opcode, i == n - 1);
            frame.header_mut().is_final = i == n - 1;
            if self.ws.send(WsMessage::Frame(frame)).await.is_err() {
                return i;
            }
            // Give the server a chance to refuse before we flood it.
            if i % 4 == 3 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        n
    }
}
