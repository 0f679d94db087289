//! The hub: a replica's connections and their channel memberships.
//!
//! It keeps exactly one engine subscription per channel that has local members and fans
//! each bus message out to them: encoded at most once per encoding, the same bytes
//! queued to every member. Its parts, by domain:
//!
//! - [`registry`]: the connections, by user.
//! - [`channel`]: one channel's state (members buffering while they join, then live,
//!   and the channel's [`ChannelSync`](crate::recovery::ChannelSync)), written only
//!   through its synchronous, unit-tested methods.
//! - [`subscriptions`]: join and leave, the subscription per channel, and the seam
//!   between a joiner's history and the live messages.
//! - [`fanout`]: bus messages to members, holes in the bus repaired from history.
//! - [`presence`]: presence recorded, refreshed and announced.
//! - [`typing`]: typing notices, throttled.
//! - [`control`]: join and leave commands from the gateway.

mod channel;
mod control;
mod fanout;
mod presence;
mod registry;
mod subscriptions;
mod typing;

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Instant;

use chat_engine::{BusHandler, Control, Engine, Envelope, PresenceEvent};
use chat_protocol::{Message, ServerFrame};
use chat_telemetry::Metrics;
use parking_lot::{Mutex, RwLock};

use channel::Channel;
pub use registry::Conn;
use registry::Registry;
pub use subscriptions::Joined;
use typing::Typing;

pub struct Hub {
    me: Weak<Hub>,
    engine: Engine,
    metrics: Arc<Metrics>,
    channels: RwLock<HashMap<String, Arc<Mutex<Channel>>>>,
    registry: Registry,
    /// Subscribe and unsubscribe decisions, one at a time: a channel is subscribed
    /// exactly while it has local members.
    subscriptions: tokio::sync::Mutex<()>,
    history_limit: usize,
    typing: Typing,
}

impl Hub {
    pub fn new(engine: Engine, metrics: Arc<Metrics>, history_limit: usize) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            engine,
            metrics,
            channels: RwLock::new(HashMap::new()),
            registry: Registry::default(),
            subscriptions: tokio::sync::Mutex::new(()),
            history_limit,
            typing: Typing::default(),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn register(&self, conn: &Arc<Conn>) {
        self.registry.add(conn);
    }

    /// Every connection that sent `connect`.
    pub fn all_connections(&self) -> Vec<Arc<Conn>> {
        self.registry.all()
    }

    /// The user's live connections on this replica.
    pub fn connections_of(&self, user: &str) -> Vec<Arc<Conn>> {
        self.registry.of(user)
    }

    /// Whether a typing notice of `user` in `room` may be forwarded now.
    pub fn typing_allowed(&self, user: &str, room: &str) -> bool {
        self.typing.allowed(user, room, Instant::now())
    }

    /// What this replica holds now: (channels subscribed, memberships, distinct
    /// users, the most connections one user has).
    pub fn holds(&self) -> (usize, usize, usize, usize) {
        let channels: Vec<_> = self.channels.read().values().cloned().collect();
        let memberships = channels.iter().map(|ch| ch.lock().len()).sum();
        let (users, most) = self.registry.user_counts();
        (channels.len(), memberships, users, most)
    }

    fn channel(&self, name: &str) -> Option<Arc<Mutex<Channel>>> {
        self.channels.read().get(name).cloned()
    }

    /// The rooms (not the personal channels) with local members.
    fn rooms_with_members(&self) -> Vec<Arc<Mutex<Channel>>> {
        self.channels
            .read()
            .iter()
            .filter(|(c, _)| !c.starts_with('@'))
            .map(|(_, ch)| ch.clone())
            .collect()
    }
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
        // Members never see their own notice.
        if let Some(ch) = self.channel(channel) {
            ch.lock().broadcast(&frame, Some(user));
        }
    }

    fn on_control(&self, control: Control) {
        self.control(control);
    }

    fn on_presence(&self, channel: &str, user: &str, event: PresenceEvent) {
        self.presence_event(channel, user, event);
    }

    fn on_bus_restored(&self) {
        self.bus_restored();
    }
}
