//! One client connection on the fastwebsockets client: TCP from a chosen source
//! address (TLS for `wss://`), the HTTP upgrade through hyper, `connect` and `join`, then
//! a reader task that checks and times every message. Peer servers (`--dialect bun`,
//! `socketio`) get their own handshake and frames (see [`crate::peer`]), and their
//! deliveries are checked by message index instead of seq.
//!
//! fastwebsockets' `read_frame` is not cancel-safe, so after setup it is never raced:
//! the reader task owns the read half and is aborted whole at the end. Writes (sends,
//! and the pongs and close echoes the reader owes) share the write half behind a lock;
//! each `write_frame` is one write.

use std::borrow::Cow;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chat_protocol::{ClientFrame, Encoding, ServerFrame, codec};
use fastwebsockets::{Frame, OpCode, Payload, WebSocketError, WebSocketRead, WebSocketWrite};
use http_body_util::Empty;
use hyper::Request;
use hyper::header::{CONNECTION, HOST, UPGRADE};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;

use crate::config::Dialect;
use crate::peer::{self, Incoming};
use crate::plan::Plan;
use crate::stamp;
use crate::stats::Shared;

type Io = TokioIo<Upgraded>;
type Reader = WebSocketRead<ReadHalf<Io>>;
type Writer = WebSocketWrite<WriteHalf<Io>>;

/// Connecting and each setup answer must come within this.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// A `ws://host:port/path` or `wss://host:port/path` URL.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    /// `wss://`: TLS.
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub path: String,
    /// Filled in by [`Target::resolve`].
    pub addr: Option<SocketAddr>,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let (tls, rest) = match (url.strip_prefix("ws://"), url.strip_prefix("wss://")) {
            (Some(rest), _) => (false, rest),
            (_, Some(rest)) => (true, rest),
            _ => {
                return Err(format!(
                    "--target {url:?}: expected ws://host:port/path or wss://host:port/path"
                ));
            }
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/ws"),
        };
        let (host, port) = split_host_port(authority, if tls { 443 } else { 80 })
            .ok_or_else(|| format!("--target {url:?}: bad host or port"))?;
        Ok(Target {
            url: url.to_owned(),
            tls,
            host,
            port,
            path: path.to_owned(),
            addr: None,
        })
    }

    pub async fn resolve(&mut self) -> Result<SocketAddr, String> {
        let mut addrs = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", self.url))?;
        let addr = addrs
            .next()
            .ok_or_else(|| format!("cannot resolve {}", self.url))?;
        self.addr = Some(addr);
        Ok(addr)
    }

    /// `http://host:port` (`https://` for a wss:// target): where the same server
    /// answers HTTP.
    pub fn http_base(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }

    /// The request path of connection `user`'s upgrade in `dialect`.
    fn request_path(&self, dialect: Dialect, user: &str) -> String {
        let sep = if self.path.contains('?') { '&' } else { '?' };
        match dialect {
            Dialect::Chat => self.path.clone(),
            Dialect::Bun => format!("{}{sep}user={user}", self.path),
            Dialect::Socketio if self.path.contains("EIO=") => self.path.clone(),
            Dialect::Socketio => format!("{}{sep}{}", self.path, peer::sio::QUERY),
        }
    }

    fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// `host`, `host:port`, `[v6]:port`.
pub fn split_host_port(authority: &str, default_port: u16) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        (h.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().ok()?),
            None => (authority.to_owned(), default_port),
        }
    };
    if host.is_empty() || host.contains('/') {
        return None;
    }
    Some((host, port))
}

/// What every connection of a worker shares.
pub struct Ctx {
    pub plan: Arc<Plan>,
    pub shared: Arc<Shared>,
    pub targets: Vec<Target>,
    pub sources: Vec<IpAddr>,
    pub encoding: Encoding,
    pub token_secret: Option<String>,
    pub dialect: Dialect,
    /// For wss:// targets.
    pub tls: Option<tokio_rustls::TlsConnector>,
}

/// An open, connected, joined connection. Dropping it stops its reader and closes the
/// socket.
pub struct Conn {
    pub idx: usize,
    encoding: Encoding,
    dialect: Dialect,
    writer: Arc<tokio::sync::Mutex<Writer>>,
    reader: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Conn {
    /// Sends one frame in this connection's encoding: one write.
    pub async fn send(&self, frame: &ClientFrame) -> Result<(), String> {
        send(&self.writer, self.encoding, frame).await
    }

    /// Sends message text `text` (schedule index `k`) to a room or a user, in this
    /// connection's dialect. The peers know rooms only.
    pub async fn send_message(
        &self,
        room: Option<String>,
        to: Option<String>,
        text: String,
        k: u64,
    ) -> Result<(), String> {
        match (self.dialect, room) {
            (Dialect::Chat, room) => {
                let frame = ClientFrame::Send {
                    room,
                    to,
                    text,
                    cid: Some(k.to_string()),
                };
                self.send(&frame).await
            }
            (Dialect::Bun, Some(room)) => {
                send_text(&self.writer, peer::bun::send(&room, &text)).await
            }
            (Dialect::Socketio, Some(room)) => {
                send_text(&self.writer, peer::sio::send(&room, &text)).await
            }
            (_, None) => Err("the peers have no direct messages".into()),
        }
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }
}

/// One text frame: one write.
async fn send_text(writer: &tokio::sync::Mutex<Writer>, text: String) -> Result<(), String> {
    writer
        .lock()
        .await
        .write_frame(Frame::text(Payload::Owned(text.into_bytes())))
        .await
        .map_err(|e| format!("write failed: {e}"))
}

async fn send(
    writer: &tokio::sync::Mutex<Writer>,
    encoding: Encoding,
    frame: &ClientFrame,
) -> Result<(), String> {
    let (opcode, bytes) = match encoding {
        Encoding::MsgPack => (OpCode::Binary, encoding.encode(frame)),
        Encoding::Json => (OpCode::Text, encoding.encode(frame)),
    };
    writer
        .lock()
        .await
        .write_frame(Frame::new(true, opcode, None, Payload::Owned(bytes)))
        .await
        .map_err(|e| format!("write failed: {e}"))
}

struct SpawnExecutor;

impl<Fut> hyper::rt::Executor<Fut> for SpawnExecutor
where
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    fn execute(&self, fut: Fut) {
        tokio::spawn(fut);
    }
}

/// A TCP connection to `to`, from `from` when given (so that one machine can open more
/// than one address's worth of ephemeral ports).
pub async fn tcp(to: SocketAddr, from: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let socket = if to.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = from
        && ip.is_ipv4() == to.is_ipv4()
    {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(to).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

async fn upgrade<S>(
    stream: S,
    target: &Target,
    dialect: Dialect,
    user: &str,
    msgpack: bool,
) -> Result<(Reader, Writer), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let protocol = if msgpack {
        codec::SUBPROTOCOL_MSGPACK
    } else {
        codec::SUBPROTOCOL_JSON
    };
    let mut req = Request::builder()
        .method("GET")
        .uri(target.request_path(dialect, user))
        .header(HOST, target.host_header())
        .header(UPGRADE, "websocket")
        .header(CONNECTION, "upgrade")
        .header(
            "Sec-WebSocket-Key",
            fastwebsockets::handshake::generate_key(),
        )
        .header("Sec-WebSocket-Version", "13");
    if dialect == Dialect::Chat {
        req = req.header("Sec-WebSocket-Protocol", protocol);
    }
    let req = req.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
    let (ws, response) = fastwebsockets::handshake::client(&SpawnExecutor, req, stream)
        .await
        .map_err(|e| format!("upgrade failed: {e}"))?;
    if msgpack
        && response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok())
            != Some(codec::SUBPROTOCOL_MSGPACK)
    {
        return Err("the server did not accept the chat.v1.msgpack subprotocol".into());
    }
    Ok(ws.split(tokio::io::split))
}

/// The pongs and close echoes fastwebsockets asks the reader to send.
fn obligated(
    writer: Arc<tokio::sync::Mutex<Writer>>,
) -> impl FnMut(Frame<'_>) -> std::pin::Pin<Box<dyn Future<Output = Result<(), WebSocketError>> + Send>>
{
    move |frame: Frame<'_>| {
        let owned = Frame::new(
            true,
            frame.opcode,
            None,
            Payload::Owned(frame.payload.to_vec()),
        );
        let writer = writer.clone();
        Box::pin(async move { writer.lock().await.write_frame(owned).await })
    }
}

/// Opens connection `idx` of the plan: TCP, upgrade, `connect`, `join` each room.
/// Records the channels it receives; returns once the last `joined` arrived.
pub async fn open(ctx: &Arc<Ctx>, idx: usize) -> Result<Arc<Conn>, String> {
    let target = &ctx.targets[idx % ctx.targets.len()];
    let addr = target.addr.ok_or("target not resolved")?;
    let source = (!ctx.sources.is_empty()).then(|| ctx.sources[idx % ctx.sources.len()]);
    let stream = tokio::time::timeout(STEP_TIMEOUT, tcp(addr, source))
        .await
        .map_err(|_| format!("connect to {} timed out", target.url))?
        .map_err(|e| match source {
            Some(s) => format!("connect to {} from {s}: {e}", target.url),
            None => format!("connect to {}: {e}", target.url),
        })?;
    let msgpack = ctx.encoding == Encoding::MsgPack;
    let spec = &ctx.plan.conns[idx];
    let handshake = async {
        match (&ctx.tls, target.tls) {
            (Some(tls), true) => {
                let stream = crate::tls::connect(tls, &target.host, stream).await?;
                upgrade(stream, target, ctx.dialect, &spec.user, msgpack).await
            }
            (None, true) => Err("wss:// target without a TLS configuration".to_owned()),
            (_, false) => upgrade(stream, target, ctx.dialect, &spec.user, msgpack).await,
        }
    };
    let (mut reader, writer) = tokio::time::timeout(STEP_TIMEOUT, handshake)
        .await
        .map_err(|_| format!("upgrade at {} timed out", target.url))??;
    reader.set_auto_pong(true);
    reader.set_auto_close(true);
    reader.set_max_message_size(16 << 20);
    let writer = Arc::new(tokio::sync::Mutex::new(writer));
    let mut obligated = obligated(writer.clone());
    if ctx.dialect.is_peer() {
        return open_peer(ctx, idx, reader, writer, obligated).await;
    }

    let connect = match &ctx.token_secret {
        Some(secret) => ClientFrame::Connect {
            token: Some(crate::auth::mint(secret, &spec.user)?),
            user: None,
            since: None,
        },
        None => ClientFrame::Connect {
            token: None,
            user: Some(spec.user.clone()),
            since: None,
        },
    };
    send(&writer, ctx.encoding, &connect).await?;
    let personal_head = match next_answer(&mut reader, &mut obligated).await? {
        ServerFrame::Connected { seq, .. } => seq,
        other => return Err(format!("expected connected, got {other:?}")),
    };
    let mut tracks = Vec::new();
    let mut heads = Vec::new();
    if let Some(id) = spec.personal {
        tracks.push(Track {
            name: ctx.plan.channels[id as usize].clone(),
            id,
            last: personal_head,
            seen: Vec::new(),
        });
        heads.push((id, personal_head));
    }
    for &id in &spec.joins {
        let room = ctx.plan.channels[id as usize].clone();
        send(
            &writer,
            ctx.encoding,
            &ClientFrame::Join {
                room: room.clone(),
                since: None,
            },
        )
        .await?;
        let head = match next_answer(&mut reader, &mut obligated).await? {
            ServerFrame::Joined { seq, .. } => seq,
            other => return Err(format!("expected joined, got {other:?}")),
        };
        tracks.push(Track {
            name: room,
            id,
            last: head,
            seen: Vec::new(),
        });
        heads.push((id, head));
    }
    {
        let mut t = ctx.shared.shard(idx);
        for (id, head) in heads {
            let c = t.chan(id);
            c.receivers += 1;
            c.sum_join_head += head;
        }
    }
    Ok(start_reading(ctx, idx, reader, obligated, tracks, writer))
}

/// Hands a connection that finished its setup to its read loop.
fn start_reading<F, R>(
    ctx: &Arc<Ctx>,
    idx: usize,
    reader: Reader,
    obligated: F,
    tracks: Vec<Track>,
    writer: Arc<tokio::sync::Mutex<Writer>>,
) -> Arc<Conn>
where
    F: FnMut(Frame<'_>) -> R + Send + 'static,
    R: Future<Output = Result<(), WebSocketError>> + Send + 'static,
{
    let state = ReaderState {
        idx,
        ctx: ctx.clone(),
        tracks,
        own: format!("@{}", ctx.plan.conns[idx].user),
        writer: writer.clone(),
    };
    let task = tokio::spawn(read_loop(reader, obligated, state));
    Arc::new(Conn {
        idx,
        encoding: ctx.encoding,
        dialect: ctx.dialect,
        writer,
        reader: task,
    })
}

/// The setup of a peer connection: Socket.IO's open and namespace connect, then a join
/// per room, each answered by `joined`.
async fn open_peer<F, R>(
    ctx: &Arc<Ctx>,
    idx: usize,
    mut reader: Reader,
    writer: Arc<tokio::sync::Mutex<Writer>>,
    mut obligated: F,
) -> Result<Arc<Conn>, String>
where
    F: FnMut(Frame<'_>) -> R + Send + 'static,
    R: Future<Output = Result<(), WebSocketError>> + Send + 'static,
{
    let spec = &ctx.plan.conns[idx];
    let dialect = ctx.dialect;
    if dialect == Dialect::Socketio {
        match next_peer_answer(&mut reader, &mut obligated, &writer, dialect).await? {
            Incoming::Open => {}
            other => return Err(format!("expected the engine.io open packet, got {other:?}")),
        }
        send_text(&writer, peer::sio::connect(&spec.user)).await?;
        match next_peer_answer(&mut reader, &mut obligated, &writer, dialect).await? {
            Incoming::Connected => {}
            other => {
                return Err(format!(
                    "expected the socket.io connect answer, got {other:?}"
                ));
            }
        }
    }
    let mut tracks = Vec::new();
    for &id in &spec.joins {
        let room = ctx.plan.channels[id as usize].clone();
        let join = match dialect {
            Dialect::Bun => peer::bun::join(&room),
            _ => peer::sio::join(&room),
        };
        send_text(&writer, join).await?;
        match next_peer_answer(&mut reader, &mut obligated, &writer, dialect).await? {
            Incoming::Joined(r) if r == room => {}
            other => return Err(format!("expected joined {room}, got {other:?}")),
        }
        tracks.push(Track {
            name: room,
            id,
            last: 0,
            seen: Vec::new(),
        });
    }
    {
        let mut t = ctx.shared.shard(idx);
        for track in &tracks {
            t.chan(track.id).receivers += 1;
        }
    }
    Ok(start_reading(ctx, idx, reader, obligated, tracks, writer))
}

/// The next data frame during setup (whether binary, and its payload), control
/// frames skipped; or why none came before `deadline`. Copied out: setup is a few
/// frames per connection.
async fn setup_frame<F, R>(
    reader: &mut Reader,
    obligated: &mut F,
    deadline: tokio::time::Instant,
) -> Result<(bool, Vec<u8>), String>
where
    F: FnMut(Frame<'_>) -> R,
    R: Future<Output = Result<(), WebSocketError>>,
{
    loop {
        let frame = tokio::time::timeout_at(deadline, reader.read_frame(obligated))
            .await
            .map_err(|_| "no answer from the server within 10 s".to_owned())?
            .map_err(|e| format!("connection lost during setup: {e}"))?;
        match frame.opcode {
            OpCode::Binary => return Ok((true, frame.payload.to_vec())),
            OpCode::Text => return Ok((false, frame.payload.to_vec())),
            OpCode::Close => {
                return Err(format!(
                    "closed during setup: {}",
                    close_text(&frame.payload)
                ));
            }
            _ => continue,
        }
    }
}

/// The next setup answer of a peer (pings answered on the way).
async fn next_peer_answer<F, R>(
    reader: &mut Reader,
    obligated: &mut F,
    writer: &tokio::sync::Mutex<Writer>,
    dialect: Dialect,
) -> Result<Incoming<'static>, String>
where
    F: FnMut(Frame<'_>) -> R,
    R: Future<Output = Result<(), WebSocketError>>,
{
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    loop {
        let (_, payload) = setup_frame(reader, obligated, deadline).await?;
        let incoming = match dialect {
            Dialect::Socketio => peer::sio::decode(&payload),
            _ => peer::bun::decode(&payload),
        };
        match incoming {
            Incoming::Ping => send_text(writer, peer::sio::PONG.into()).await?,
            Incoming::Closed(why) => return Err(format!("refused: {why}")),
            Incoming::Open => return Ok(Incoming::Open),
            Incoming::Connected => return Ok(Incoming::Connected),
            Incoming::Joined(r) => return Ok(Incoming::Joined(r.into_owned().into())),
            Incoming::Message { .. } | Incoming::Other => {}
        }
    }
}

/// The next answer during setup (`connected`, `joined` or an `error`), skipping
/// notices. Racing `read_frame` with a timeout is fine here: on timeout the connection
/// is given up.
async fn next_answer<F, R>(reader: &mut Reader, obligated: &mut F) -> Result<ServerFrame, String>
where
    F: FnMut(Frame<'_>) -> R,
    R: Future<Output = Result<(), WebSocketError>>,
{
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    loop {
        let (binary, payload) = setup_frame(reader, obligated, deadline).await?;
        match codec::decode_server(&payload, binary) {
            Ok(ServerFrame::Error { code, message, .. }) => {
                return Err(format!("refused: {code}: {message}"));
            }
            Ok(f @ (ServerFrame::Connected { .. } | ServerFrame::Joined { .. })) => return Ok(f),
            Ok(_) => continue,
            Err(e) => return Err(format!("undecodable frame: {}", e.message)),
        }
    }
}

fn close_text(payload: &[u8]) -> String {
    match payload {
        [a, b, reason @ ..] => format!(
            "{} {}",
            u16::from_be_bytes([*a, *b]),
            String::from_utf8_lossy(reason)
        ),
        _ => "no close code".into(),
    }
}

/// A channel this connection receives, and the last seq it saw there.
struct Track {
    name: String,
    id: u32,
    last: u64,
    /// Peers: the message indices seen, one bit each (they have no seqs).
    seen: Vec<u64>,
}

struct ReaderState {
    idx: usize,
    ctx: Arc<Ctx>,
    tracks: Vec<Track>,
    /// `@user` of this connection: a direct message it sends lands there too.
    own: String,
    /// Where the Socket.IO pongs go.
    writer: Arc<tokio::sync::Mutex<Writer>>,
}

/// The fields the reader looks at, borrowed from the frame: the common frames are
/// checked without allocating. Anything this cannot read goes through the protocol
/// crate's full decoder.
#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(default)]
    room: Option<&'a str>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    text: Option<&'a str>,
    #[serde(default)]
    cid: Option<&'a str>,
}

async fn read_loop<F, R>(mut reader: Reader, mut obligated: F, mut st: ReaderState)
where
    F: FnMut(Frame<'_>) -> R,
    R: Future<Output = Result<(), WebSocketError>>,
{
    loop {
        match reader.read_frame(&mut obligated).await {
            Ok(frame) => match frame.opcode {
                OpCode::Binary | OpCode::Text if st.ctx.dialect.is_peer() => {
                    if let Err(why) = st.on_peer_frame(&frame.payload).await {
                        st.ended(why);
                        return;
                    }
                }
                OpCode::Binary => st.on_frame(&frame.payload, true),
                OpCode::Text => st.on_frame(&frame.payload, false),
                OpCode::Close => {
                    st.ended(format!(
                        "closed by the server: {}",
                        close_text(&frame.payload)
                    ));
                    return;
                }
                _ => {}
            },
            Err(e) => {
                st.ended(format!("connection lost: {e}"));
                return;
            }
        }
    }
}

impl ReaderState {
    /// A peer's frame; `Err` when the server ended the session.
    async fn on_peer_frame(&mut self, payload: &[u8]) -> Result<(), String> {
        let incoming = match self.ctx.dialect {
            Dialect::Socketio => peer::sio::decode(payload),
            _ => peer::bun::decode(payload),
        };
        match incoming {
            Incoming::Message { room, text } => self.on_peer_message(&room, &text),
            Incoming::Ping => send_text(&self.writer, peer::sio::PONG.into()).await?,
            Incoming::Closed(why) => return Err(format!("closed by the server: {why}")),
            _ => {}
        }
        Ok(())
    }

    /// A peer's room message: checked by its message index (each owed once to each
    /// member), timed by its stamp.
    fn on_peer_message(&mut self, room: &str, text: &str) {
        let now = stamp::now_us();
        let shared = &self.ctx.shared;
        let plan = &self.ctx.plan;
        let (Some(track), Some(stamp)) = (
            self.tracks.iter_mut().find(|t| t.name == room),
            stamp::parse(&plan.run, text),
        ) else {
            shared.shard(self.idx).foreign += 1;
            return;
        };
        if stamp.k >= plan.total {
            shared.shard(self.idx).foreign += 1;
            return;
        }
        let (word, bit) = ((stamp.k / 64) as usize, stamp.k % 64);
        if track.seen.len() <= word {
            track.seen.resize(word + 1, 0);
        }
        let mut t = shared.shard(self.idx);
        let c = t.chan(track.id);
        if track.seen[word] & (1 << bit) != 0 {
            c.dups += 1;
            t.duplicates += 1;
            return;
        }
        track.seen[word] |= 1 << bit;
        c.unique += 1;
        let second = shared.second(stamp.intended_us);
        t.delivery(now, stamp.intended_us, second, shared.second(now));
    }

    fn on_frame(&mut self, payload: &[u8], binary: bool) {
        let peek: Result<Peek<'_>, ()> = if binary {
            rmp_serde::from_slice(payload).map_err(|_| ())
        } else {
            serde_json::from_slice(payload).map_err(|_| ())
        };
        match peek {
            Ok(Peek {
                kind: "message",
                room: Some(room),
                seq: Some(seq),
                text: Some(text),
                ..
            }) => self.on_message(room, seq, text),
            Ok(Peek {
                kind: "ack",
                room: Some(room),
                seq: Some(seq),
                cid,
                ..
            }) => self.on_ack(room, seq, cid),
            Ok(Peek {
                kind: "presence" | "typing" | "pong" | "joined" | "left",
                ..
            }) => {}
            _ => self.on_other(payload, binary),
        }
    }

    fn on_message(&mut self, room: &str, seq: u64, text: &str) {
        let now = stamp::now_us();
        let shared = &self.ctx.shared;
        let Some(track) = self.tracks.iter_mut().find(|t| t.name == room) else {
            shared.shard(self.idx).foreign += 1;
            return;
        };
        let stamp = stamp::parse(&self.ctx.plan.run, text);
        let mut t = shared.shard(self.idx);
        let c = t.chan(track.id);
        c.max_seen = c.max_seen.max(seq);
        if seq <= track.last {
            c.dups += 1;
            t.duplicates += 1;
            return;
        }
        c.unique += 1;
        track.last = seq;
        match stamp {
            Some(s) => {
                let second = shared.second(s.intended_us);
                t.delivery(now, s.intended_us, second, shared.second(now));
            }
            None => t.foreign += 1,
        }
    }

    /// The server stored one of our `send`s.
    fn on_ack(&mut self, room: &str, seq: u64, cid: Option<&str>) {
        let now = stamp::now_us();
        let plan = &self.ctx.plan;
        let shared = &self.ctx.shared;
        let mut t = shared.shard(self.idx);
        if let Some(&id) = plan.channel_ids.get(room) {
            let c = t.chan(id);
            c.acked += 1;
            c.max_acked = c.max_acked.max(seq);
        }
        // A direct message is stored on the receiver's channel and on ours.
        if room.starts_with('@')
            && room != self.own
            && let Some(&id) = plan.channel_ids.get(self.own.as_str())
        {
            t.chan(id).acked += 1;
        }
        t.published += 1;
        if let Some(k) = cid.and_then(|c| c.parse::<u64>().ok()) {
            let intended = shared.t0() + plan.offset_us(k);
            t.publish.record(now.saturating_sub(intended));
        }
    }

    fn on_other(&mut self, payload: &[u8], binary: bool) {
        let mut t = self.ctx.shared.shard(self.idx);
        match codec::decode_server(payload, binary) {
            Ok(ServerFrame::Error { code, message, cid }) => {
                if cid.is_some() {
                    t.publish_errors += 1;
                    t.error(&format!("send refused: {code}: {message}"));
                } else {
                    t.error(&format!("server error: {code}: {message}"));
                }
            }
            Ok(ServerFrame::Reconnect { .. }) => t.error("server draining: asked to reconnect"),
            Ok(ServerFrame::Message(m)) => {
                // Not caught by the fast path (escaped JSON text): same checks.
                drop(t);
                self.on_message(&m.room, m.seq, &m.text);
            }
            Ok(_) => {}
            Err(e) => t.error(&format!("undecodable frame: {}", truncate(&e.message))),
        }
    }

    fn ended(&mut self, why: String) {
        let mut t = self.ctx.shared.shard(self.idx);
        t.dropped += 1;
        t.error(&why);
    }
}

fn truncate(s: &str) -> Cow<'_, str> {
    if s.len() <= 120 {
        Cow::Borrowed(s)
    } else {
        let mut end = 120;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        Cow::Owned(format!("{}…", &s[..end]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_host_port_and_path() {
        let t = Target::parse("ws://127.0.0.1:8081/ws").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 8081, "/ws")
        );
        assert!(!t.tls);
        assert_eq!(t.http_base(), "http://127.0.0.1:8081");
        let t = Target::parse("wss://chat.example.com/ws").unwrap();
        assert_eq!((t.tls, t.port), (true, 443));
        assert_eq!(t.http_base(), "https://chat.example.com:443");
        let t = Target::parse("ws://localhost").unwrap();
        assert_eq!((t.port, t.path.as_str()), (80, "/ws"));
        let t = Target::parse("ws://[::1]:9000/x").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9000));
        assert_eq!(t.http_base(), "http://[::1]:9000");
        assert!(Target::parse("http://x/ws").is_err());
        assert!(Target::parse("ws://:80/ws").is_err());
        assert!(Target::parse("ws://h:port/ws").is_err());
    }

    #[test]
    fn each_dialect_has_its_upgrade_path() {
        let t = Target::parse("ws://127.0.0.1:3001/ws").unwrap();
        assert_eq!(t.request_path(Dialect::Chat, "u1"), "/ws");
        assert_eq!(t.request_path(Dialect::Bun, "u1"), "/ws?user=u1");
        let t = Target::parse("ws://127.0.0.1:3101/socket.io/").unwrap();
        assert_eq!(
            t.request_path(Dialect::Socketio, "u1"),
            "/socket.io/?EIO=4&transport=websocket"
        );
        let t = Target::parse("ws://h:1/socket.io/?EIO=4&transport=websocket").unwrap();
        assert_eq!(
            t.request_path(Dialect::Socketio, "u1"),
            "/socket.io/?EIO=4&transport=websocket"
        );
    }

    #[test]
    fn peek_reads_messages_in_both_encodings() {
        let m = chat_protocol::Message {
            room: "r".into(),
            seq: 5,
            epoch: "e".into(),
            from: "a".into(),
            text: "t\"q".into(),
            ts: 1,
            to: None,
            cid: None,
        };
        let mp = Encoding::MsgPack.encode_message(&m);
        let p: Peek<'_> = rmp_serde::from_slice(&mp).unwrap();
        assert_eq!(
            (p.kind, p.room, p.seq, p.text),
            ("message", Some("r"), Some(5), Some("t\"q"))
        );
        // JSON with an escape cannot be borrowed: the full decoder takes it.
        let json = Encoding::Json.encode_message(&m);
        assert!(serde_json::from_slice::<Peek<'_>>(&json).is_err());
        let plain = Encoding::Json.encode_message(&chat_protocol::Message {
            text: "plain".into(),
            ..m
        });
        let p: Peek<'_> = serde_json::from_slice(&plain).unwrap();
        assert_eq!(p.text, Some("plain"));
    }
}
