//! One WebSocket connection: a reader task that decodes and handles the client's
//! frames, and a writer that drains the send queue in batches.
//!
//! [`Reader`] reads and checks the client's frames (RFC 6455); a client that breaks the
//! protocol gets the close its [`Violation`](crate::reader::Violation) names. Writes
//! need no framing library: every server frame is already a complete WebSocket frame in
//! the queue.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chat_auth::User;
use chat_engine::Publication;
use chat_protocol::names::validate_user;
use chat_protocol::{Channel, ClientFrame, Encoding, ErrorCode, ProtocolError, ServerFrame, codec};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tracing::Instrument;

use crate::close::{Close, Code};
use crate::frame;
use crate::hub::Conn;
use crate::rate::{TokenBucket, Verdict};
use crate::reader::{Inbound, ReadError, Reader};
use crate::send_queue::{Queued, SendQueue};
use crate::socket::{self, ReadHalf, Socket};
use crate::{Realtime, Timing};

/// Serves one upgraded connection until it closes.
pub async fn serve(rt: Arc<Realtime>, upgraded: TokioIo<Upgraded>, encoding: Encoding) {
    let Some((read_half, socket)) = socket::from_upgraded(upgraded) else {
        // Every listener of ours is a TcpListener under axum::serve.
        tracing::error!("an upgraded connection is not a TCP stream: dropped");
        return;
    };
    let reader = Reader::new(read_half, rt.max_frame_bytes());

    let queue = Arc::new(SendQueue::new(rt.limits.send_queue_bytes as usize));
    let conn_slot: Arc<OnceLock<Arc<Conn>>> = Arc::new(OnceLock::new());
    let last_seen = Arc::new(AtomicU64::new(rt.clock_ms()));
    rt.metrics.ws_connections.inc();

    let session = Session {
        bucket: parking_lot::Mutex::new(TokenBucket::new(
            rt.limits.rate_limit_per_sec,
            rt.limits.rate_limit_burst,
        )),
        rt: rt.clone(),
        queue: queue.clone(),
        encoding,
        conn: conn_slot.clone(),
        user: parking_lot::Mutex::new(None),
        last_seen: last_seen.clone(),
    };
    let read_task = tokio::spawn(session.read_loop(reader));
    let abort = read_task.abort_handle();

    let close = write_loop(&socket, &queue, &last_seen, &rt).await;
    // The reader ends when the client answers our close; past a grace period the
    // connection is dead and the reader is dropped.
    if tokio::time::timeout(Duration::from_secs(1), read_task)
        .await
        .is_err()
    {
        abort.abort();
    }
    if let Some(conn) = conn_slot.get() {
        rt.hub.disconnect(conn).await;
    }
    rt.metrics.ws_connections.dec();
    // None sent counts as normal.
    let code = close.map_or(Code::Echo(1000), |c| c.code);
    if let Some(limit) = code.limit() {
        rt.limit_hit(limit);
    }
    rt.metrics
        .ws_closes
        .with_label_values(&[code.label()])
        .inc();
}

/// Drains the queue into the socket, one write per batch; pings the client and closes
/// a connection that stopped answering. Returns the close it sent.
async fn write_loop(
    socket: &Socket,
    queue: &SendQueue,
    last_seen: &AtomicU64,
    rt: &Realtime,
) -> Option<Close> {
    let Timing {
        ping_every,
        idle_timeout,
        write_timeout,
        ..
    } = rt.timing;
    let write_delay = Duration::from_millis(rt.limits.write_delay_ms.into());
    let mut batch: Vec<Queued> = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    loop {
        let mut close = tokio::select! {
            close = queue.next(&mut batch) => close,
            _ = ping.tick() => {
                let idle = rt.clock_ms().saturating_sub(last_seen.load(Ordering::Relaxed));
                if idle > idle_timeout.as_millis() as u64 {
                    Some(Close::new(Code::GoingAway, "no answer to pings"))
                } else {
                    batch.push((frame::ping(), 0));
                    None
                }
            }
        };
        if close.is_none() && !write_delay.is_zero() && !batch.is_empty() {
            // Frames that arrive meanwhile share this write.
            tokio::time::sleep(write_delay).await;
            close = queue.take(&mut batch);
        }
        if !batch.is_empty() {
            let bytes: &[u8] = if batch.len() == 1 {
                &batch[0].0
            } else {
                buf.clear();
                for (b, _) in &batch {
                    buf.extend_from_slice(b);
                }
                &buf
            };
            let failed = match socket.write_all_within(bytes, write_timeout).await {
                Ok(Ok(())) => None,
                Ok(Err(_)) => Some(Close::new(Code::Lost, "connection lost")),
                Err(_) => Some(Close::new(Code::TryAgainLater, "write timed out")),
            };
            if let Some(failed) = failed {
                let c = close.unwrap_or(failed);
                // Nothing more is queued for a connection that is gone.
                queue.close(c);
                return Some(c);
            }
            crate::trace::written(&rt.metrics, &batch);
            batch.clear();
            if buf.capacity() > 1 << 20 {
                buf = Vec::new();
            }
        }
        if let Some(c) = close {
            // 1006 is never sent: it names a connection that ended without a close.
            if c.code != Code::Lost {
                let close_frame = frame::close(c.code.number(), c.reason);
                let _ = socket
                    .write_all_within(&close_frame, Duration::from_secs(1))
                    .await;
            }
            socket.shutdown_write();
            return Some(c);
        }
    }
}

/// Bytes a client may still send after the server's close before it is cut off.
const DISCARD_AFTER_CLOSE: usize = 64 * 1024;

struct Session {
    rt: Arc<Realtime>,
    queue: Arc<SendQueue>,
    encoding: Encoding,
    conn: Arc<OnceLock<Arc<Conn>>>,
    /// The authenticated user, with the rooms their token allows.
    user: parking_lot::Mutex<Option<User>>,
    bucket: parking_lot::Mutex<TokenBucket>,
    last_seen: Arc<AtomicU64>,
}

impl Session {
    async fn read_loop(self, mut reader: Reader<ReadHalf>) {
        let connect_deadline = tokio::time::Instant::now() + self.rt.timing.connect_timeout;
        let close = loop {
            let read = if self.conn.get().is_none() {
                match tokio::time::timeout_at(connect_deadline, reader.next()).await {
                    Ok(r) => r,
                    Err(_) => break Close::new(Code::ConnectTimeout, "no connect within 10 s"),
                }
            } else {
                reader.next().await
            };
            let inbound = match read {
                Ok(i) => i,
                Err(ReadError::Violation(v)) => break v.close(),
                Err(ReadError::Gone) => {
                    // The client went away without a close: the writer stops now, not
                    // at the ping timeout, so its memberships and presence end with it.
                    self.queue.close(Close::new(Code::Lost, "connection lost"));
                    return;
                }
            };
            self.last_seen.store(self.rt.clock_ms(), Ordering::Relaxed);
            match inbound {
                Inbound::Ping(payload) => {
                    let _ = self.queue.push(frame::pong(&payload));
                }
                Inbound::Pong => {}
                Inbound::Close(code) => {
                    // Echoed; the client sends nothing after its close (RFC 6455 §5.5.1).
                    self.queue.close(Close::new(Code::Echo(code), ""));
                    return;
                }
                Inbound::Message { binary, payload } => {
                    // Boxed: handling a frame (connect, join, publish) is a deep future,
                    // and inline it would make every idle connection's task that large
                    // (~4 KiB).
                    if let Err(close) = Box::pin(self.handle(&payload, binary)).await {
                        break close;
                    }
                    if self.queue.is_closing() {
                        return;
                    }
                }
            }
        };
        self.queue.close(close);
        reader.discard(DISCARD_AFTER_CLOSE).await;
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

    /// Handles one client message. `Err` ends the connection with that close.
    async fn handle(&self, payload: &[u8], binary: bool) -> Result<(), Close> {
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
        let verdict = self.bucket.lock().check(std::time::Instant::now());
        match verdict {
            Verdict::Allow => {}
            Verdict::Refuse => {
                self.rt.limit_hit("rate");
                let err = ProtocolError::new(ErrorCode::RateLimited, "slow down: too many frames");
                self.reply_error(&err, cid);
                return Ok(());
            }
            Verdict::Disconnect => {
                self.rt.limit_hit("rate");
                return Err(Close::new(Code::Policy, "rate limit exceeded"));
            }
        }
        if let Err(e) = self.command(&conn, frame).await {
            self.reply_error(&e, cid);
        }
        Ok(())
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
            let _ = self.queue.push(frame::server(
                self.encoding,
                &ServerFrame::Reconnect { after_ms: 0 },
            ));
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
                let channel = self.authorize_room(&room)?;
                // The personal channel does not count.
                let rooms = conn.channel_count().saturating_sub(1);
                let max = self.rt.limits.max_rooms_per_connection as usize;
                if !conn.is_member(&channel) && rooms >= max {
                    self.rt.limit_hit("rooms_per_connection");
                    return Err(ProtocolError::forbidden(format!(
                        "at most {max} rooms per connection: leave one first"
                    )));
                }
                hub.join(conn, &channel, since.as_ref(), |j| ServerFrame::Joined {
                    room: room.clone(),
                    epoch: j.head.epoch.clone(),
                    seq: j.head.seq,
                    missed: j.missed,
                    recovered: j.recovered,
                })
                .await
            }
            ClientFrame::Leave { room } => {
                chat_protocol::names::validate_room(&room)?;
                hub.leave(conn, &room).await;
                self.reply(&ServerFrame::Left { room });
                Ok(())
            }
            ClientFrame::Typing { room } => {
                chat_protocol::names::validate_room(&room)?;
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
                codec::check_text(&text, self.rt.limits.max_message_bytes as usize).inspect_err(
                    |e| {
                        if e.code == ErrorCode::TooLarge {
                            self.rt.limit_hit("text_size");
                        }
                    },
                )?;
                let published = async {
                    Ok(match (room, to) {
                        (Some(room), None) => {
                            let channel = self.authorize_room(&room)?;
                            let m = self
                                .publish(&channel, conn, &text, None, cid.clone())
                                .await?;
                            (m, room)
                        }
                        (None, Some(to)) => {
                            validate_user(&to)?;
                            let target = format!("@{to}");
                            let m = self
                                .publish(&target, conn, &text, Some(to.clone()), cid.clone())
                                .await?;
                            if to != conn.user {
                                // The sender's other devices see the conversation too.
                                let own = format!("@{}", conn.user);
                                self.publish(&own, conn, &text, Some(to), cid.clone())
                                    .await?;
                            }
                            (m, target)
                        }
                        _ => {
                            return Err(ProtocolError::bad_request(
                                "send needs exactly one of room or to",
                            ));
                        }
                    })
                };
                let (channel, ack_room) = published.instrument(crate::trace::send_span()).await?;
                self.reply(&ServerFrame::Ack {
                    cid,
                    room: ack_room,
                    seq: channel.seq,
                });
                Ok(())
            }
        }
    }

    async fn publish(
        &self,
        channel: &str,
        conn: &Conn,
        text: &str,
        to: Option<String>,
        cid: Option<String>,
    ) -> Result<chat_protocol::Message, ProtocolError> {
        let p = Publication {
            channel: channel.to_owned(),
            from: conn.user.clone(),
            text: text.to_owned(),
            to,
            cid,
            trace: None,
        };
        let m = crate::trace::publish(&self.rt, p).await?;
        self.rt
            .metrics
            .messages_published
            .with_label_values(&["ws"])
            .inc();
        Ok(m)
    }

    /// Validates a room name and checks the user may use it.
    fn authorize_room(&self, room: &str) -> Result<String, ProtocolError> {
        let channel = Channel::room(room)?;
        let user = self.user.lock().clone();
        if user.is_some_and(|u| !u.may_access(&channel)) {
            return Err(ProtocolError::new(
                ErrorCode::Forbidden,
                format!("not allowed in room {room}"),
            ));
        }
        Ok(room.to_owned())
    }
}
