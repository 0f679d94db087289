//! One client's session: `connect` (authentication, the drain refusal, the per-user
//! connection limit), then its commands (join, leave, typing, send, ping) within the
//! connection's frame budget.
//!
//! Frames come in through a [`Reader`] over any byte stream; every answer goes into the
//! connection's [`SendQueue`]; why the session ends is the [`Close`] it returns. No
//! socket is involved, so the tests below drive a session with WebSocket frame bytes
//! and read back what it queued (as centrifuge tests its client over a test transport).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chat_auth::User;
use chat_engine::publish::{self, Outgoing};
use chat_protocol::names::{validate_room, validate_user};
use chat_protocol::{Channel, ClientFrame, Encoding, ErrorCode, ProtocolError, ServerFrame, codec};
use tracing::Instrument;

use crate::Realtime;
use crate::close::{Close, Code};
use crate::frame;
use crate::hub::Conn;
use crate::rate::{FrameBudget, Verdict};
use crate::reader::{Inbound, ReadError, Reader, Source};
use crate::send_queue::SendQueue;

/// Bytes a client may still send after the server's close before it is cut off.
const DISCARD_AFTER_CLOSE: usize = 64 * 1024;

pub struct Session {
    rt: Arc<Realtime>,
    queue: Arc<SendQueue>,
    encoding: Encoding,
    /// Set by a successful `connect`: the connection as the hub knows it.
    conn: OnceLock<Arc<Conn>>,
    /// The authenticated user, with the rooms their token allows.
    user: parking_lot::Mutex<Option<User>>,
    bucket: parking_lot::Mutex<FrameBudget>,
    /// When the client last sent anything (`Realtime::clock_ms`).
    last_seen: AtomicU64,
}

impl Session {
    pub fn new(rt: Arc<Realtime>, queue: Arc<SendQueue>, encoding: Encoding) -> Self {
        Self {
            bucket: parking_lot::Mutex::new(FrameBudget::new(
                rt.limits.rate_limit_per_sec,
                rt.limits.rate_limit_burst,
            )),
            last_seen: AtomicU64::new(rt.clock_ms()),
            rt,
            queue,
            encoding,
            conn: OnceLock::new(),
            user: parking_lot::Mutex::new(None),
        }
    }

    /// The connection, once `connect` succeeded.
    pub fn conn(&self) -> Option<&Arc<Conn>> {
        self.conn.get()
    }

    /// How long the client has been silent.
    pub fn idle(&self) -> Duration {
        let last = self.last_seen.load(Ordering::Relaxed);
        Duration::from_millis(self.rt.clock_ms().saturating_sub(last))
    }

    /// Serves the client's frames until the session ends, and hands its close to the
    /// writer. After a close of its own the session reads on (and drops what it reads)
    /// for a while, so the client's answering close can arrive.
    pub async fn run<R: Source>(&self, mut reader: Reader<R>) {
        let Some(close) = self.read(&mut reader).await else {
            return;
        };
        self.queue.close(close);
        // The client closed, or is gone: there is nothing more to read.
        if !matches!(close.code, Code::Echo(_) | Code::Lost) {
            reader.discard(DISCARD_AFTER_CLOSE).await;
        }
    }

    /// Reads and handles frames until the connection must close, and returns why:
    /// the client's own close (echoed), a lost stream (1006, never sent), a protocol
    /// violation, no `connect` in time, or a command's close. `None` when the queue is
    /// closing already (a slow consumer, the drain, a failed write): that close stands.
    pub async fn read<R: Source>(&self, reader: &mut Reader<R>) -> Option<Close> {
        let connect_deadline = tokio::time::Instant::now() + self.rt.timing.connect_timeout;
        loop {
            let read = if self.conn.get().is_none() {
                // Boxed: only until `connect`; inline, its timer would stay in the
                // task of every connection for its life.
                match Box::pin(tokio::time::timeout_at(connect_deadline, reader.next())).await {
                    Ok(r) => r,
                    Err(_) => {
                        return Some(Close::new(Code::ConnectTimeout, "no connect within 10 s"));
                    }
                }
            } else {
                reader.next().await
            };
            let inbound = match read {
                Ok(i) => i,
                Err(ReadError::Violation(v)) => return Some(v.close()),
                // The client went away without a close: the writer stops now, not at
                // the ping timeout, so its memberships and presence end with it.
                Err(ReadError::Gone) => return Some(Close::new(Code::Lost, "connection lost")),
            };
            self.last_seen.store(self.rt.clock_ms(), Ordering::Relaxed);
            match inbound {
                Inbound::Ping(payload) => {
                    let _ = self.queue.push(frame::pong(&payload));
                }
                Inbound::Pong => {}
                // Echoed; the client sends nothing after its close (RFC 6455 §5.5.1).
                Inbound::Close(code) => return Some(Close::new(Code::Echo(code), "")),
                Inbound::Message { binary, payload } => {
                    // Boxed: handling a frame (connect, join, publish) is a deep future,
                    // and inline it would make every idle connection's task that large
                    // (~4 KiB).
                    if let Err(close) = Box::pin(self.handle(&payload, binary)).await {
                        return Some(close);
                    }
                    if self.queue.is_closing() {
                        return None;
                    }
                }
            }
        }
    }

    fn reply(&self, frame: &ServerFrame) {
        let _ = self.queue.push(frame::server(self.encoding, frame));
    }

    fn reply_error(&self, err: &ProtocolError, cid: Option<String>) {
        self.rt
            .metrics
            .errors
            .with_label_values(&[err.code.as_str()])
            .inc();
        self.reply(&ServerFrame::error(err, cid));
    }

    /// Handles one client message. An error the client can act on is answered with an
    /// `error` frame and the session goes on; `Err` ends it with that close.
    pub async fn handle(&self, payload: &[u8], binary: bool) -> Result<(), Close> {
        let frame = match codec::decode_client(payload, binary) {
            Ok(f) => f,
            Err(e) => {
                self.reply_error(&e, None);
                return Ok(());
            }
        };
        let Some(conn) = self.conn.get().cloned() else {
            return match frame {
                ClientFrame::Connect { token, user, since } => {
                    self.connect(token, user, since).await
                }
                ClientFrame::Ping => {
                    self.reply(&ServerFrame::Pong);
                    Ok(())
                }
                _ => {
                    self.reply_error(&ProtocolError::unauthorized("send connect first"), None);
                    Ok(())
                }
            };
        };
        let cid = match &frame {
            ClientFrame::Send { cid, .. } => cid.clone(),
            _ => None,
        };
        if !self.spend_budget(&cid)? {
            return Ok(());
        }
        if let Err(e) = self.command(&conn, frame).await {
            self.reply_error(&e, cid);
        }
        Ok(())
    }

    /// Spends one frame of the budget; `Ok(false)`: past it, the frame is refused
    /// (`rate_limited`). A client that keeps sending into refusals is closed (1008).
    fn spend_budget(&self, cid: &Option<String>) -> Result<bool, Close> {
        let verdict = self.bucket.lock().check(std::time::Instant::now());
        match verdict {
            Verdict::Allow => Ok(true),
            Verdict::Refuse => {
                self.rt.limit_hit("rate");
                let err = ProtocolError::new(ErrorCode::RateLimited, "slow down: too many frames");
                self.reply_error(&err, cid.clone());
                Ok(false)
            }
            Verdict::Disconnect => {
                self.rt.limit_hit("rate");
                Err(Close::new(Code::Policy, "rate limit exceeded"))
            }
        }
    }

    async fn connect(
        &self,
        token: Option<String>,
        user: Option<String>,
        since: Option<chat_protocol::Since>,
    ) -> Result<(), Close> {
        let auth = &self.rt.auth;
        let user = match (token, user) {
            (Some(token), _) => auth.verify_token(&token),
            (None, Some(name)) if auth.dev_mode => validate_user(&name)
                .map(|_| User::named(name))
                .map_err(|e| ProtocolError::unauthorized(e.message)),
            (None, Some(_)) => Err(ProtocolError::unauthorized(
                "connect by user name needs dev mode: send a token",
            )),
            (None, None) => Err(ProtocolError::unauthorized("connect needs a token")),
        };
        let user = match user {
            Ok(u) => u,
            Err(e) => {
                self.reply_error(&e, None);
                return Err(Close::new(Code::Policy, "bad or missing credentials"));
            }
        };
        if self.rt.is_draining() {
            self.reply(&ServerFrame::Reconnect { after_ms: 0 });
            return Err(Close::new(
                Code::Restart,
                "server restart: use another replica",
            ));
        }
        let max_conns = self.rt.limits.max_connections_per_user as usize;
        if self.rt.hub.connections_of(&user.id).len() >= max_conns {
            self.rt.limit_hit("connections_per_user");
            let err = ProtocolError::new(
                ErrorCode::RateLimited,
                format!("at most {max_conns} connections per user on this server"),
            );
            self.reply_error(&err, None);
            return Err(Close::new(
                Code::Policy,
                "too many connections for this user",
            ));
        }
        let conn = Arc::new(Conn::new(
            self.rt.next_conn_id(),
            user.id.clone(),
            self.encoding,
            self.queue.clone(),
        ));
        let _ = self.conn.set(conn.clone());
        self.rt.hub.register(&conn);
        let channel = format!("@{}", user.id);
        let result = self
            .rt
            .hub
            .join(&conn, &channel, since.as_ref(), |j| {
                ServerFrame::Connected {
                    user: user.id.clone(),
                    conn: conn.id.clone(),
                    channel: channel.clone(),
                    epoch: j.head.epoch.clone(),
                    seq: j.head.seq,
                    missed: j.recovered.map(|_| j.missed),
                    recovered: j.recovered,
                }
            })
            .await;
        if let Err(e) = result {
            self.reply_error(&e, None);
            return Err(Close::new(Code::Internal, "personal channel unavailable"));
        }
        *self.user.lock() = Some(user);
        Ok(())
    }

    async fn command(&self, conn: &Arc<Conn>, frame: ClientFrame) -> Result<(), ProtocolError> {
        let hub = &self.rt.hub;
        match frame {
            ClientFrame::Connect { .. } => Err(ProtocolError::bad_request("already connected")),
            ClientFrame::Ping => {
                self.reply(&ServerFrame::Pong);
                Ok(())
            }
            ClientFrame::Join { room, since } => {
                self.authorize_room(&room)?;
                // The personal channel does not count.
                let rooms = conn.channel_count().saturating_sub(1);
                let max = self.rt.limits.max_rooms_per_connection as usize;
                if !conn.is_member(&room) && rooms >= max {
                    self.rt.limit_hit("rooms_per_connection");
                    return Err(ProtocolError::forbidden(format!(
                        "at most {max} rooms per connection: leave one first"
                    )));
                }
                hub.join(conn, &room, since.as_ref(), |j| ServerFrame::Joined {
                    room: room.clone(),
                    epoch: j.head.epoch.clone(),
                    seq: j.head.seq,
                    missed: j.missed,
                    recovered: j.recovered,
                })
                .await
            }
            ClientFrame::Leave { room } => {
                validate_room(&room)?;
                hub.leave(conn, &room).await;
                self.reply(&ServerFrame::Left { room });
                Ok(())
            }
            ClientFrame::Typing { room } => {
                validate_room(&room)?;
                if !conn.is_member(&room) {
                    return Err(ProtocolError::bad_request(
                        "join the room before typing in it",
                    ));
                }
                // Typing is a hint: extra notices within a second are dropped quietly.
                if !hub.typing_allowed(&conn.user, &room) {
                    return Ok(());
                }
                hub.engine()
                    .publish_typing(&room, &conn.user)
                    .await
                    .map_err(Into::into)
            }
            ClientFrame::Send {
                room,
                to,
                text,
                cid,
            } => {
                let channel = match (room, to) {
                    (Some(room), None) => self.authorize_room(&room)?,
                    (None, Some(to)) => Channel::user(&to)?,
                    _ => {
                        return Err(ProtocolError::bad_request(
                            "send needs exactly one of room or to",
                        ));
                    }
                };
                let message = self.publish(conn, &channel, text, cid.clone()).await?;
                self.reply(&ServerFrame::Ack {
                    cid,
                    room: message.room,
                    seq: message.seq,
                });
                Ok(())
            }
        }
    }

    /// Publishes what the client sent, through the one publish path, inside the span
    /// that roots the message's trace.
    async fn publish(
        &self,
        conn: &Conn,
        channel: &Channel,
        text: String,
        cid: Option<String>,
    ) -> Result<chat_protocol::Message, ProtocolError> {
        let span = crate::trace::send_span();
        let out = Outgoing {
            channel,
            from: conn.user.clone(),
            text,
            cid,
            trace: span.in_scope(chat_telemetry::trace::context_of_current),
        };
        let metrics = &self.rt.metrics;
        let max = self.rt.text.max_bytes();
        let published = publish::publish(self.rt.hub.engine(), out, max, |took| {
            metrics.observe_publish(took)
        });
        let message = published.instrument(span).await.inspect_err(|e| {
            if e.code == ErrorCode::TooLarge {
                self.rt.limit_hit("text_size");
            }
        })?;
        metrics.count_published("ws");
        Ok(message)
    }

    /// Validates a room name and checks the user may use it.
    fn authorize_room(&self, room: &str) -> Result<Channel, ProtocolError> {
        let channel = Channel::room(room)?;
        let allowed = self
            .user
            .lock()
            .as_ref()
            .is_none_or(|u| u.may_access(&channel));
        if !allowed {
            return Err(ProtocolError::new(
                ErrorCode::Forbidden,
                format!("not allowed in room {room}"),
            ));
        }
        Ok(channel)
    }
}

/// A session driven without a socket: masked client frames (JSON and MessagePack) go
/// through a [`Reader`] over a byte slice, and the frames the session queued are
/// decoded back into [`ServerFrame`]s. The engine is the in-memory one.
#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use chat_auth::{Auth, AuthConfig};
    use chat_engine::{Engine, EngineConfig};
    use chat_protocol::codec::TextLimit;
    use chat_telemetry::Metrics;

    use super::*;
    use crate::{ConnectionLimits, Options};

    async fn realtime(limits: ConnectionLimits) -> Arc<Realtime> {
        realtime_with(Options {
            limits,
            ..Options::new(100, 0)
        })
        .await
    }

    async fn realtime_with(options: Options) -> Arc<Realtime> {
        let shutdown = chat_telemetry::Shutdown::new();
        let engine = Engine::from_config(&EngineConfig::default(), shutdown.done_token()).unwrap();
        let auth = AuthConfig {
            dev_mode: Some(true),
            ..AuthConfig::default()
        };
        let auth = Arc::new(Auth::from_config(&auth, true).unwrap());
        Realtime::start(engine, auth, Arc::new(Metrics::new()), options, shutdown)
            .await
            .unwrap()
    }

    /// A client frame as a browser sends it: FIN, masked.
    fn masked(binary: bool, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![if binary { 0x82 } else { 0x81 }];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n < 65536 => {
                f.push(0x80 | 126);
                f.extend((n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend((n as u64).to_be_bytes());
            }
        }
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        f.extend(mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    fn json(frame: &ClientFrame) -> Vec<u8> {
        masked(false, &serde_json::to_vec(frame).unwrap())
    }

    fn msgpack(frame: &ClientFrame) -> Vec<u8> {
        masked(true, &rmp_serde::to_vec_named(frame).unwrap())
    }

    fn connect(user: &str) -> ClientFrame {
        ClientFrame::Connect {
            token: None,
            user: Some(user.into()),
            since: None,
        }
    }

    fn join(room: &str) -> ClientFrame {
        ClientFrame::Join {
            room: room.into(),
            since: None,
        }
    }

    fn send(room: &str, text: &str, cid: &str) -> ClientFrame {
        ClientFrame::Send {
            room: Some(room.into()),
            to: None,
            text: text.into(),
            cid: Some(cid.into()),
        }
    }

    /// A server frame (unmasked, FIN) back into what it carries.
    fn decode(bytes: &[u8]) -> ServerFrame {
        let (len, at) = match bytes[1] {
            126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        assert_eq!(bytes.len(), at + len, "one frame per queued item");
        let binary = match bytes[0] {
            0x81 => false,
            0x82 => true,
            other => panic!("not a data frame: {other:#x}"),
        };
        codec::decode_server(&bytes[at..], binary).unwrap()
    }

    struct Client {
        rt: Arc<Realtime>,
        session: Session,
        queue: Arc<SendQueue>,
        received: VecDeque<ServerFrame>,
    }

    impl Client {
        fn new(rt: &Arc<Realtime>, encoding: Encoding) -> Self {
            let queue = Arc::new(SendQueue::new(1 << 20));
            Self {
                rt: rt.clone(),
                session: Session::new(rt.clone(), queue.clone(), encoding),
                queue,
                received: VecDeque::new(),
            }
        }

        /// Feeds the frames to the session; returns the close it ends with. The end of
        /// the bytes is a lost connection (1006).
        async fn feed(&self, frames: &[Vec<u8>]) -> Option<Close> {
            let bytes = frames.concat();
            let mut reader = Reader::new(&bytes[..], self.rt.max_frame_bytes());
            self.session.read(&mut reader).await
        }

        /// The next frame the session queued, waiting for one fanned out to it.
        async fn next(&mut self) -> ServerFrame {
            if self.received.is_empty() {
                let mut batch = Vec::new();
                let next = self.queue.next(&mut batch);
                tokio::time::timeout(Duration::from_secs(5), next)
                    .await
                    .expect("a frame within 5 s");
                self.received
                    .extend(batch.iter().map(|(bytes, _)| decode(bytes)));
            }
            self.received.pop_front().expect("a data frame")
        }

        /// Every frame queued so far.
        fn drain(&mut self) -> Vec<ServerFrame> {
            let mut batch = Vec::new();
            self.queue.take(&mut batch);
            let mut all: Vec<_> = self.received.drain(..).collect();
            all.extend(batch.iter().map(|(bytes, _)| decode(bytes)));
            all
        }
    }

    const LOST: Option<Close> = Some(Close::new(Code::Lost, "connection lost"));

    fn code(f: &ServerFrame) -> Option<ErrorCode> {
        match f {
            ServerFrame::Error { code, .. } => Some(*code),
            _ => None,
        }
    }

    fn limit_hits(rt: &Realtime, limit: &str) -> u64 {
        rt.metrics.limit_hits.with_label_values(&[limit]).get()
    }

    /// `chat_messages_published_total{path="ws"}`.
    fn published_over_ws(rt: &Realtime) -> u64 {
        rt.metrics
            .messages_published
            .with_label_values(&["ws"])
            .get()
    }

    #[tokio::test]
    async fn connect_then_join_answers_connected_then_joined() {
        let rt = realtime(ConnectionLimits::default()).await;
        for (encoding, encode) in [
            (Encoding::Json, json as fn(&ClientFrame) -> Vec<u8>),
            (Encoding::MsgPack, msgpack),
        ] {
            let mut c = Client::new(&rt, encoding);
            let ended = c
                .feed(&[encode(&connect("alice")), encode(&join("general"))])
                .await;
            assert_eq!(ended, LOST);
            let frames = c.drain();
            assert!(
                matches!(&frames[0], ServerFrame::Connected { user, channel, .. }
                    if user == "alice" && channel == "@alice"),
                "{frames:?}"
            );
            assert!(
                matches!(&frames[1], ServerFrame::Joined { room, seq: 0, missed: 0, .. }
                    if room == "general"),
                "{frames:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_command_before_connect_is_unauthorized_and_the_connection_stays() {
        let rt = realtime(ConnectionLimits::default()).await;
        let mut c = Client::new(&rt, Encoding::Json);
        let ended = c
            .feed(&[json(&join("general")), json(&connect("alice"))])
            .await;
        assert_eq!(ended, LOST, "not closed by the session");
        let frames = c.drain();
        assert_eq!(code(&frames[0]), Some(ErrorCode::Unauthorized));
        assert!(
            matches!(frames[1], ServerFrame::Connected { .. }),
            "{frames:?}"
        );
    }

    #[tokio::test]
    async fn bad_credentials_get_an_error_then_1008() {
        let rt = realtime(ConnectionLimits::default()).await;
        let mut c = Client::new(&rt, Encoding::Json);
        let bad_token = ClientFrame::Connect {
            token: Some("not-a-jwt".into()),
            user: None,
            since: None,
        };
        // What follows the refused connect is never handled.
        let ended = c.feed(&[json(&bad_token), json(&ClientFrame::Ping)]).await;
        assert_eq!(ended.map(|c| c.code.number()), Some(1008));
        assert_eq!(ended.map(|c| c.code.label()), Some("policy"));
        let frames = c.drain();
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(code(&frames[0]), Some(ErrorCode::Unauthorized));
        assert!(c.session.conn().is_none());
    }

    #[tokio::test]
    async fn send_is_acked_with_its_seq_and_the_other_member_gets_the_message() {
        let rt = realtime(ConnectionLimits::default()).await;
        let mut bob = Client::new(&rt, Encoding::Json);
        bob.feed(&[json(&connect("bob")), json(&join("general"))])
            .await;
        bob.drain();
        // Alice speaks MessagePack both ways.
        let mut alice = Client::new(&rt, Encoding::MsgPack);
        alice
            .feed(&[
                msgpack(&connect("alice")),
                msgpack(&join("general")),
                msgpack(&send("general", "hello", "c1")),
                msgpack(&send("general", "again", "c2")),
            ])
            .await;
        let acks: Vec<_> = alice
            .drain()
            .into_iter()
            .filter_map(|f| match f {
                ServerFrame::Ack { cid, room, seq } => Some((cid.unwrap(), room, seq)),
                _ => None,
            })
            .collect();
        assert_eq!(
            acks,
            [
                ("c1".into(), "general".into(), 1),
                ("c2".into(), "general".into(), 2)
            ]
        );
        let mut texts = Vec::new();
        while texts.len() < 2 {
            if let ServerFrame::Message(m) = bob.next().await {
                assert_eq!((m.room.as_str(), m.from.as_str()), ("general", "alice"));
                texts.push((m.seq, m.text));
            }
        }
        assert_eq!(texts, [(1, "hello".into()), (2, "again".into())]);
        assert_eq!(published_over_ws(&rt), 2);
    }

    #[tokio::test]
    async fn a_direct_message_is_acked_on_the_receivers_channel_and_reaches_both() {
        let rt = realtime(ConnectionLimits::default()).await;
        let mut bob = Client::new(&rt, Encoding::Json);
        bob.feed(&[json(&connect("bob"))]).await;
        bob.drain();
        let mut alice = Client::new(&rt, Encoding::Json);
        let dm = ClientFrame::Send {
            room: None,
            to: Some("bob".into()),
            text: "psst".into(),
            cid: Some("d1".into()),
        };
        alice.feed(&[json(&connect("alice")), json(&dm)]).await;
        let frames = alice.drain();
        assert!(
            frames
                .iter()
                .any(|f| matches!(f, ServerFrame::Ack { room, seq: 1, .. } if room == "@bob")),
            "{frames:?}"
        );
        // The sender's own channel carries it too, for their other devices.
        assert!(
            frames.iter().any(|f| matches!(f, ServerFrame::Message(m) if m.room == "@alice" && m.to.as_deref() == Some("bob"))),
            "{frames:?}"
        );
        let ServerFrame::Message(m) = bob.next().await else {
            panic!("bob gets the message")
        };
        assert_eq!((m.room.as_str(), m.text.as_str()), ("@bob", "psst"));
        // One message sent, counted once.
        assert_eq!(published_over_ws(&rt), 1);
    }

    #[tokio::test]
    async fn frames_past_the_budget_are_refused_then_closed_with_1008() {
        let rt = realtime(ConnectionLimits {
            rate_limit_per_sec: 1,
            rate_limit_burst: 2,
            ..ConnectionLimits::default()
        })
        .await;
        let mut c = Client::new(&rt, Encoding::Json);
        let mut frames = vec![json(&connect("alice"))];
        frames.extend(std::iter::repeat_n(json(&ClientFrame::Ping), 6));
        let ended = c.feed(&frames).await;
        // A burst of 2, then as many refusals as the burst, then the close.
        assert_eq!(ended.map(|c| c.code), Some(Code::Policy));
        let frames = c.drain();
        assert!(matches!(frames[0], ServerFrame::Connected { .. }));
        assert_eq!(frames[1..3], [ServerFrame::Pong, ServerFrame::Pong]);
        assert_eq!(code(&frames[3]), Some(ErrorCode::RateLimited));
        assert_eq!(code(&frames[4]), Some(ErrorCode::RateLimited));
        assert_eq!(frames.len(), 5, "the closing frame is not answered");
        assert_eq!(limit_hits(&rt, "rate"), 3);
    }

    #[tokio::test]
    async fn an_over_long_text_is_too_large_and_the_connection_stays() {
        let rt = realtime_with(Options {
            text: TextLimit {
                max_message_bytes: 10,
            },
            ..Options::new(100, 0)
        })
        .await;
        let mut c = Client::new(&rt, Encoding::Json);
        let ended = c
            .feed(&[
                json(&connect("alice")),
                json(&send("general", "12345678901", "big")),
                json(&ClientFrame::Ping),
            ])
            .await;
        assert_eq!(ended, LOST);
        let frames = c.drain();
        assert!(
            matches!(&frames[1], ServerFrame::Error { code: ErrorCode::TooLarge, cid: Some(cid), .. } if cid == "big"),
            "{frames:?}"
        );
        assert_eq!(frames[2], ServerFrame::Pong);
        assert_eq!(limit_hits(&rt, "text_size"), 1);
        assert_eq!(published_over_ws(&rt), 0);
    }

    #[tokio::test]
    async fn a_join_beyond_the_room_limit_is_forbidden() {
        let rt = realtime(ConnectionLimits {
            max_rooms_per_connection: 1,
            ..ConnectionLimits::default()
        })
        .await;
        let mut c = Client::new(&rt, Encoding::Json);
        c.feed(&[
            json(&connect("alice")),
            json(&join("one")),
            json(&join("two")),
            // Joining a room it is in does not count again.
            json(&join("one")),
        ])
        .await;
        // Alice's own presence in the room comes too; not what this is about.
        let frames: Vec<_> = c
            .drain()
            .into_iter()
            .filter(|f| !matches!(f, ServerFrame::Presence { .. }))
            .collect();
        assert!(matches!(&frames[1], ServerFrame::Joined { room, .. } if room == "one"));
        assert_eq!(code(&frames[2]), Some(ErrorCode::Forbidden), "{frames:?}");
        assert!(matches!(&frames[3], ServerFrame::Joined { room, .. } if room == "one"));
        assert_eq!(limit_hits(&rt, "rooms_per_connection"), 1);
    }

    #[tokio::test]
    async fn a_connect_while_draining_gets_reconnect_then_1012() {
        let rt = realtime(ConnectionLimits::default()).await;
        rt.shutdown.stop();
        let mut c = Client::new(&rt, Encoding::Json);
        let ended = c.feed(&[json(&connect("alice"))]).await;
        assert_eq!(ended.map(|c| c.code.number()), Some(1012));
        assert_eq!(c.drain(), [ServerFrame::Reconnect { after_ms: 0 }]);
        assert!(rt.hub.connections_of("alice").is_empty());
    }

    #[tokio::test]
    async fn a_connection_past_the_per_user_limit_is_refused_with_1008() {
        let rt = realtime(ConnectionLimits {
            max_connections_per_user: 1,
            ..ConnectionLimits::default()
        })
        .await;
        let first = Client::new(&rt, Encoding::Json);
        first.feed(&[json(&connect("alice"))]).await;
        let mut second = Client::new(&rt, Encoding::Json);
        let ended = second.feed(&[json(&connect("alice"))]).await;
        assert_eq!(ended.map(|c| c.code), Some(Code::Policy));
        let frames = second.drain();
        assert_eq!(code(&frames[0]), Some(ErrorCode::RateLimited), "{frames:?}");
        assert_eq!(limit_hits(&rt, "connections_per_user"), 1);
    }

    #[tokio::test]
    async fn the_run_hands_its_close_to_the_writer() {
        // `run` closes the queue with what `read` returned; the client's close is echoed.
        let rt = realtime(ConnectionLimits::default()).await;
        let c = Client::new(&rt, Encoding::Json);
        let mut close = vec![0x88, 0x80 | 2, 0, 0, 0, 0];
        close.extend(4000u16.to_be_bytes());
        let bytes = [json(&connect("alice")), close].concat();
        c.session
            .run(Reader::new(&bytes[..], rt.max_frame_bytes()))
            .await;
        let mut batch = Vec::new();
        let closed = c.queue.take(&mut batch);
        assert_eq!(closed.map(|c| c.code), Some(Code::Echo(4000)));
    }
}
