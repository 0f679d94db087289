//! The hub: a replica's connections and their channel memberships.
//!
//! It keeps exactly one engine subscription per channel that has local members and fans
//! each bus message out to them: encoded at most once per encoding, the same bytes
//! queued to every member. A member that is still joining buffers live messages until
//! its history is sent, so the seam between history and live has no gap and no
//! duplicate. What reaches the bus out of order (a hole, a new epoch, a bus that was
//! down) is decided by each channel's [`ChannelSync`]; the hub reads the history it
//! asks for and applies its steps.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_engine::{
    BusHandler, Control, Engine, Envelope, Head, PresenceEntry, PresenceEvent, Range,
};
use chat_protocol::{Encoding, Message, ProtocolError, ServerFrame, Since};
use chat_telemetry::Metrics;
use parking_lot::{Mutex, RwLock};

use crate::frame::{self, Prepared};
use crate::recovery::{ChannelSync, Position, Repair, Step};
use crate::send_queue::{Closing, SendQueue};
use crate::trace::stored_us;

/// One WebSocket connection, as the hub sees it.
pub struct Conn {
    pub id: String,
    pub user: String,
    pub encoding: Encoding,
    pub queue: Arc<SendQueue>,
    channels: Mutex<HashSet<String>>,
}

impl Conn {
    pub fn new(id: String, user: String, encoding: Encoding, queue: Arc<SendQueue>) -> Self {
        Self {
            id,
            user,
            encoding,
            queue,
            channels: Mutex::new(HashSet::new()),
        }
    }

    pub fn send(&self, frame: &ServerFrame) -> Result<(), Closing> {
        self.queue.push(frame::server(self.encoding, frame))
    }

    pub fn is_member(&self, channel: &str) -> bool {
        self.channels.lock().contains(channel)
    }

    pub fn channel_count(&self) -> usize {
        self.channels.lock().len()
    }
}

enum State {
    /// Joining: live messages wait here until history has been sent.
    Buffering(Vec<Message>),
    /// Receives messages newer than `after` (or of another epoch).
    Live { epoch: String, after: u64 },
}

struct Member {
    conn: Arc<Conn>,
    state: State,
    /// Set while joining when the channel lost messages (see [`Step::Lost`]): the
    /// member is told when it goes live unless its join head is already past it.
    lost: Option<Position>,
}

#[derive(Default)]
struct Members {
    by_conn: HashMap<String, Member>,
    /// What was fanned out last, and the repair of any hole in the bus.
    sync: ChannelSync,
}

pub struct Hub {
    me: std::sync::Weak<Hub>,
    engine: Engine,
    metrics: Arc<Metrics>,
    channels: RwLock<HashMap<String, Arc<Mutex<Members>>>>,
    users: Mutex<HashMap<String, Vec<Arc<Conn>>>>,
    /// Subscribe and unsubscribe decisions, one at a time: a channel is subscribed
    /// exactly while it has local members.
    subscriptions: tokio::sync::Mutex<()>,
    history_limit: usize,
    /// When each (user, room) last had a typing notice forwarded.
    typing: Mutex<HashMap<(String, String), Instant>>,
}

/// At most one typing notice per user per room per this long is forwarded.
const TYPING_EVERY: Duration = Duration::from_secs(1);

/// What a join found: the channel's head, and whether `since` was honoured.
pub struct Joined {
    pub head: Head,
    pub missed: u64,
    pub recovered: Option<bool>,
}

impl Hub {
    pub fn new(engine: Engine, metrics: Arc<Metrics>, history_limit: usize) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            engine,
            metrics,
            channels: RwLock::new(HashMap::new()),
            users: Mutex::new(HashMap::new()),
            subscriptions: tokio::sync::Mutex::new(()),
            history_limit,
            typing: Mutex::new(HashMap::new()),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn register(&self, conn: &Arc<Conn>) {
        self.users
            .lock()
            .entry(conn.user.clone())
            .or_default()
            .push(conn.clone());
    }

    /// Removes the connection and all its memberships.
    pub async fn disconnect(&self, conn: &Arc<Conn>) {
        {
            let mut users = self.users.lock();
            if let Some(list) = users.get_mut(&conn.user) {
                list.retain(|c| c.id != conn.id);
                if list.is_empty() {
                    users.remove(&conn.user);
                }
            }
        }
        let channels: Vec<String> = conn.channels.lock().iter().cloned().collect();
        for channel in channels {
            self.leave(conn, &channel).await;
        }
    }

    /// Joins `conn` to `channel`: subscribe (if first here), read the head or the
    /// history after `since`, queue `answer`, the recovered messages, then whatever
    /// arrived live meanwhile.
    pub async fn join(
        &self,
        conn: &Arc<Conn>,
        channel: &str,
        since: Option<&Since>,
        answer: impl FnOnce(&Joined) -> ServerFrame,
    ) -> Result<(), ProtocolError> {
        self.add_buffering_member(conn, channel).await?;
        let read = match since {
            None => self
                .engine
                .head(channel)
                .await
                .map(|head| (head, Vec::new())),
            Some(s) => chat_telemetry::timed(
                &self.metrics.history_read_duration,
                self.engine.history(
                    channel,
                    Range::After {
                        seq: s.seq,
                        limit: self.history_limit,
                    },
                ),
            )
            .await
            .map(|h| (h.head, h.messages)),
        };
        let (head, messages) = match read {
            Ok(r) => r,
            Err(e) => {
                self.leave(conn, channel).await;
                return Err(e.into());
            }
        };
        let (messages, recovered) = match since {
            None => (Vec::new(), None),
            Some(s) if recoverable(s, &head, &messages) => (messages, Some(true)),
            Some(_) => (Vec::new(), Some(false)),
        };
        let joined = Joined {
            head,
            missed: messages.len() as u64,
            recovered,
        };
        let _ = conn.send(&answer(&joined));
        // At the client's pace: a backlog larger than the send queue is not a slow
        // consumer. Live messages wait in the member's buffer meanwhile.
        for m in &messages {
            if conn
                .queue
                .push_paced(frame::message(conn.encoding, m), 0)
                .await
                .is_err()
            {
                break;
            }
        }
        self.catch_up(conn, channel, &joined.head).await;
        self.go_live(conn, channel, &joined.head);
        self.metrics.joins.inc();
        self.presence_changed(conn, channel, PresenceEvent::Join)
            .await;
        Ok(())
    }

    /// Records a room join or leave in presence and announces the user's first join /
    /// last leave. Presence is best effort: a failure is logged, never fatal.
    async fn presence_changed(&self, conn: &Conn, channel: &str, event: PresenceEvent) {
        if channel.starts_with('@') {
            return;
        }
        let entry = PresenceEntry {
            room: channel.to_owned(),
            user: conn.user.clone(),
            conn: conn.id.clone(),
        };
        let changed = match event {
            PresenceEvent::Join => self.engine.presence().join(&entry).await,
            PresenceEvent::Leave => self.engine.presence().leave(&entry).await,
        };
        let result = match changed {
            Ok(true) => {
                self.engine
                    .presence()
                    .publish(channel, &conn.user, event)
                    .await
            }
            Ok(false) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(channel, error = %e, "presence update failed");
        }
    }

    /// Every (room, user, connection) of this replica, for the presence refresh.
    pub fn presence_entries(&self) -> Vec<PresenceEntry> {
        let channels: Vec<(String, Arc<Mutex<Members>>)> = self
            .channels
            .read()
            .iter()
            .filter(|(c, _)| !c.starts_with('@'))
            .map(|(c, m)| (c.clone(), m.clone()))
            .collect();
        let mut entries = Vec::new();
        for (room, members) in channels {
            for member in members.lock().by_conn.values() {
                entries.push(PresenceEntry {
                    room: room.clone(),
                    user: member.conn.user.clone(),
                    conn: member.conn.id.clone(),
                });
            }
        }
        entries
    }

    /// Rooms with local members.
    pub fn rooms(&self) -> Vec<String> {
        self.channels
            .read()
            .keys()
            .filter(|c| !c.starts_with('@'))
            .cloned()
            .collect()
    }

    /// Keeps this replica's presence alive, and announces users whose replica died.
    pub async fn refresh_presence(&self) {
        let presence = self.engine.presence();
        if let Err(e) = presence.refresh(&self.presence_entries()).await {
            tracing::warn!(error = %e, "presence refresh failed");
            return;
        }
        for room in self.rooms() {
            match presence.sweep(&room).await {
                Ok(gone) => {
                    for user in gone {
                        let _ = presence.publish(&room, &user, PresenceEvent::Leave).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "presence sweep failed"),
            }
        }
    }

    /// Whether a typing notice of `user` in `room` may be forwarded now.
    pub fn typing_allowed(&self, user: &str, room: &str) -> bool {
        let now = Instant::now();
        let mut typing = self.typing.lock();
        if typing.len() > 10_000 {
            typing.retain(|_, at| now.duration_since(*at) < TYPING_EVERY);
        }
        let key = (user.to_owned(), room.to_owned());
        match typing.get(&key) {
            Some(at) if now.duration_since(*at) < TYPING_EVERY => false,
            _ => {
                typing.insert(key, now);
                true
            }
        }
    }

    async fn add_buffering_member(
        &self,
        conn: &Arc<Conn>,
        channel: &str,
    ) -> Result<(), ProtocolError> {
        let _one_at_a_time = self.subscriptions.lock().await;
        let members = self
            .channels
            .write()
            .entry(channel.to_owned())
            .or_default()
            .clone();
        let first = {
            let mut m = members.lock();
            let first = m.by_conn.is_empty();
            m.by_conn.insert(
                conn.id.clone(),
                Member {
                    conn: conn.clone(),
                    state: State::Buffering(Vec::new()),
                    lost: None,
                },
            );
            first
        };
        conn.channels.lock().insert(channel.to_owned());
        if first && let Err(e) = self.engine.subscribe(channel).await {
            members.lock().by_conn.remove(&conn.id);
            conn.channels.lock().remove(channel);
            if members.lock().by_conn.is_empty() {
                self.channels.write().remove(channel);
            }
            return Err(e.into());
        }
        Ok(())
    }

    /// Sends the live messages buffered while a backlog went out, at the client's pace,
    /// round after round while each round is smaller than the one before (the client
    /// reads faster than the room publishes). What is left, and a client that does not
    /// keep up, go to [`Hub::go_live`], where the send queue's bound decides.
    async fn catch_up(&self, conn: &Arc<Conn>, channel: &str, head: &Head) {
        let mut previous = usize::MAX;
        loop {
            let Some(pending) = self.take_buffered(conn, channel) else {
                return;
            };
            if pending.is_empty() {
                return;
            }
            let round = pending.len();
            let mut delivered = 0;
            for msg in pending.iter().filter(|m| after_head(m, head)) {
                let frame = frame::message(conn.encoding, msg);
                if conn.queue.push_paced(frame, stored_us(msg)).await.is_err() {
                    return;
                }
                delivered += 1;
            }
            self.metrics.deliveries.inc_by(delivered);
            if round >= previous {
                return;
            }
            previous = round;
        }
    }

    /// Takes what a buffering member holds so far; it goes on buffering. `None` when
    /// it is no longer a buffering member.
    fn take_buffered(&self, conn: &Arc<Conn>, channel: &str) -> Option<Vec<Message>> {
        let members = self.channels.read().get(channel).cloned()?;
        let mut m = members.lock();
        match &mut m.by_conn.get_mut(&conn.id)?.state {
            State::Buffering(buffered) => Some(std::mem::take(buffered)),
            State::Live { .. } => None,
        }
    }

    /// Queues what was buffered during the join (only what is newer than the head the
    /// client was given) and switches the member to live delivery, under the channel's
    /// lock so no live message slips between.
    fn go_live(&self, conn: &Arc<Conn>, channel: &str, head: &Head) {
        let Some(members) = self.channels.read().get(channel).cloned() else {
            return;
        };
        let mut m = members.lock();
        m.sync.start_at(head);
        let Some(member) = m.by_conn.get_mut(&conn.id) else {
            return;
        };
        // Messages were lost while it joined, after the head it was given: it is told,
        // and goes live from where the channel goes on.
        let head = match member.lost.take() {
            Some(at) if at.epoch != head.epoch || at.seq > head.seq => {
                let _ = conn.send(&lost_frame(channel, &at));
                Head {
                    epoch: at.epoch,
                    seq: at.seq,
                }
            }
            _ => head.clone(),
        };
        let head = &head;
        let live = State::Live {
            epoch: head.epoch.clone(),
            after: head.seq,
        };
        if let State::Buffering(buffered) = std::mem::replace(&mut member.state, live) {
            let mut delivered = 0;
            for msg in buffered {
                if after_head(&msg, head)
                    && conn
                        .queue
                        .push_message(frame::message(conn.encoding, &msg), stored_us(&msg))
                        .is_ok()
                {
                    delivered += 1;
                }
            }
            self.metrics.deliveries.inc_by(delivered);
        }
    }

    /// Removes the membership; unsubscribes when the channel has no local member left.
    /// Returns whether `conn` was a member.
    pub async fn leave(&self, conn: &Arc<Conn>, channel: &str) -> bool {
        let _one_at_a_time = self.subscriptions.lock().await;
        conn.channels.lock().remove(channel);
        let Some(members) = self.channels.read().get(channel).cloned() else {
            return false;
        };
        let (was_member, empty) = {
            let mut m = members.lock();
            let was = m.by_conn.remove(&conn.id).is_some();
            (was, m.by_conn.is_empty())
        };
        if empty {
            self.channels.write().remove(channel);
            if let Err(e) = self.engine.unsubscribe(channel).await {
                tracing::warn!(channel, error = %e, "unsubscribe failed");
            }
        }
        drop(_one_at_a_time);
        if was_member {
            self.metrics.leaves.inc();
            self.presence_changed(conn, channel, PresenceEvent::Leave)
                .await;
        }
        was_member
    }

    /// Every connection that sent `connect`.
    pub fn all_connections(&self) -> Vec<Arc<Conn>> {
        self.users.lock().values().flatten().cloned().collect()
    }

    /// The user's live connections on this replica.
    pub fn connections_of(&self, user: &str) -> Vec<Arc<Conn>> {
        self.users.lock().get(user).cloned().unwrap_or_default()
    }

    /// Queues a frame to every live member of `channel` (encoded once per encoding),
    /// except `skip_user`'s connections.
    fn broadcast(&self, channel: &str, frame: &ServerFrame, skip_user: Option<&str>) {
        let Some(members) = self.channels.read().get(channel).cloned() else {
            return;
        };
        let mut encoded: [Option<bytes::Bytes>; 2] = [None, None];
        for member in members.lock().by_conn.values() {
            if skip_user == Some(member.conn.user.as_str())
                || matches!(member.state, State::Buffering(_))
            {
                continue;
            }
            let enc = member.conn.encoding;
            let slot = &mut encoded[enc as usize];
            let bytes = slot
                .get_or_insert_with(|| frame::server(enc, frame))
                .clone();
            let _ = member.conn.queue.push(bytes);
        }
    }
}

impl Hub {
    /// Fans a bus message out, or holds it while a hole before it is repaired.
    /// `published_us`: its publish time, 0 when unknown.
    fn fan_out(&self, msg: Message, published_us: u64) {
        let Some(members) = self.channels.read().get(&msg.room).cloned() else {
            return;
        };
        let mut m = members.lock();
        let (now, repair) = m.sync.live(msg);
        if let Some(msg) = now {
            self.deliver(&mut m, &msg, published_us);
        }
        // The channel's name is copied only for a repair: never per live message.
        if let Some(from) = repair {
            let channel = m.sync.held_channel().unwrap_or_default().to_owned();
            drop(m);
            self.repair(channel, from);
        }
    }

    /// Fans one message out to the channel's members.
    fn deliver(&self, m: &mut Members, msg: &Message, published_us: u64) {
        let mut prepared = Prepared::new(msg);
        let mut delivered = 0;
        for member in m.by_conn.values_mut() {
            match &mut member.state {
                State::Buffering(buffer) => buffer.push(msg.clone()),
                State::Live { epoch, after } => {
                    if msg.seq > *after || msg.epoch != *epoch {
                        let conn = &member.conn;
                        let frame = prepared.get(conn.encoding);
                        if conn.queue.push_message(frame, published_us).is_ok() {
                            delivered += 1;
                        }
                    }
                }
            }
        }
        self.metrics.deliveries.inc_by(delivered);
    }

    /// Tells every member that the messages before `at` cannot be delivered: live
    /// members get `joined` with `recovered: false` (they reload history and go on
    /// after `at`); joining ones are told when they go live.
    fn report_lost(&self, channel: &str, m: &mut Members, at: &Position) {
        tracing::warn!(
            channel,
            epoch = at.epoch,
            seq = at.seq,
            "messages missed on the bus are not in history: members are told"
        );
        for member in m.by_conn.values_mut() {
            match &mut member.state {
                State::Buffering(buffer) => {
                    buffer.clear();
                    member.lost = Some(at.clone());
                }
                State::Live { epoch, after } => {
                    let _ = member.conn.send(&lost_frame(channel, at));
                    (*epoch, *after) = (at.epoch.clone(), at.seq);
                }
            }
        }
    }

    /// Reads history from `from` on, and delivers what the bus skipped, then what
    /// arrived meanwhile, in seq order; again while the channel says so.
    fn repair(&self, channel: String, mut from: Repair) {
        let Some(hub) = self.me.upgrade() else { return };
        tracing::info!(
            channel,
            epoch = from.epoch,
            after = from.seq,
            "hole in the bus: repairing from history"
        );
        tokio::spawn(async move {
            loop {
                let range = Range::After {
                    seq: from.seq,
                    limit: hub.history_limit,
                };
                let mut read = None;
                for attempt in 0..6 {
                    match hub.engine.history(&channel, range).await {
                        Ok(h) => {
                            read = Some(h);
                            break;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(100 << attempt)).await,
                    }
                }
                let Some(members) = hub.channels.read().get(&channel).cloned() else {
                    return;
                };
                let mut m = members.lock();
                let repaired = m.sync.repaired(&from, read);
                for step in &repaired.steps {
                    match step {
                        Step::Deliver(msg) => hub.deliver(&mut m, msg, stored_us(msg)),
                        Step::Lost(at) => hub.report_lost(&channel, &mut m, at),
                    }
                }
                match repaired.again {
                    Some(next) => from = next,
                    None => return,
                }
            }
        });
    }
}

/// The `recovered: false` signal for messages of `channel` before `at` that cannot be
/// delivered: the same frame a rejoin with a stale `since` gets.
fn lost_frame(channel: &str, at: &Position) -> ServerFrame {
    ServerFrame::Joined {
        room: channel.to_owned(),
        epoch: at.epoch.clone(),
        seq: at.seq,
        missed: 0,
        recovered: Some(false),
    }
}

/// Whether a message buffered during a join is newer than the head the client was
/// given (older ones reached it as the recovered backlog, or predate its join).
fn after_head(msg: &Message, head: &Head) -> bool {
    msg.epoch != head.epoch || msg.seq > head.seq
}

/// `since` can be honoured when it names this epoch, is not ahead of the head, and
/// history still holds every message after it.
fn recoverable(since: &Since, head: &Head, messages: &[Message]) -> bool {
    if since.epoch != head.epoch || since.seq > head.seq {
        return false;
    }
    if since.seq == head.seq {
        return true;
    }
    messages.first().map(|m| m.seq) == Some(since.seq + 1)
        && messages.last().map(|m| m.seq) == Some(head.seq)
}

impl BusHandler for Hub {
    fn on_published(&self, msg: Message, envelope: Envelope) {
        let published_us = crate::trace::published_us(&msg, &envelope);
        let _span = crate::trace::delivery_span(&msg, &envelope).entered();
        let seq = msg.seq;
        self.fan_out(msg, published_us);
        // Inside the delivery span: the log line carries the message's trace id.
        tracing::debug!(seq, "message delivered");
    }

    fn on_typing(&self, channel: &str, user: &str) {
        let frame = ServerFrame::Typing {
            room: channel.to_owned(),
            user: user.to_owned(),
        };
        self.broadcast(channel, &frame, Some(user));
    }

    fn on_control(&self, control: Control) {
        let (user, room, join) = match control {
            Control::Join { user, room } => (user, room, true),
            Control::Leave { user, room } => (user, room, false),
        };
        let conns = self.connections_of(&user);
        if conns.is_empty() {
            return;
        }
        // Joins await the engine: they run on their own task, never in the bus listener.
        let Some(hub) = self.me.upgrade() else { return };
        tokio::spawn(async move {
            for conn in conns {
                if join {
                    let result = hub
                        .join(&conn, &room, None, |j| ServerFrame::Joined {
                            room: room.clone(),
                            epoch: j.head.epoch.clone(),
                            seq: j.head.seq,
                            missed: 0,
                            recovered: None,
                        })
                        .await;
                    if let Err(e) = result {
                        let _ = conn.send(&ServerFrame::error(&e, None));
                    }
                } else {
                    hub.leave(&conn, &room).await;
                    let _ = conn.send(&ServerFrame::Left { room: room.clone() });
                }
            }
        });
    }

    fn on_presence(&self, channel: &str, user: &str, event: PresenceEvent) {
        let frame = ServerFrame::Presence {
            room: channel.to_owned(),
            user: user.to_owned(),
            event,
        };
        self.broadcast(channel, &frame, None);
    }

    /// Messages published while the bus was down never reached us: compare each
    /// channel's head with what we delivered and repair the difference, also across a
    /// new epoch (a store that came back empty).
    fn on_bus_restored(&self) {
        self.metrics.redis_reconnects.inc();
        let Some(hub) = self.me.upgrade() else { return };
        let known: Vec<String> = self
            .channels
            .read()
            .iter()
            .filter(|(_, m)| m.lock().sync.last().is_some())
            .map(|(c, _)| c.clone())
            .collect();
        tokio::spawn(async move {
            for channel in known {
                let Ok(head) = hub.engine.head(&channel).await else {
                    continue;
                };
                let Some(members) = hub.channels.read().get(&channel).cloned() else {
                    continue;
                };
                let repair = members.lock().sync.restored(&head);
                if let Some(from) = repair {
                    hub.repair(channel, from);
                }
            }
        });
    }
}
