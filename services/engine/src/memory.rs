//! The in-memory engine: one process, no Redis, the same behaviour as [`crate::redis`].
//!
//! Each channel keeps a ring buffer of its last `history_size` messages, and its own
//! locks: publishes to different channels never wait on each other. Publishing
//! assigns the seq and queues the message for the hub under the channel's lock, so
//! the channel's queue is in seq order whatever the publishers' race; the queue is
//! handed to the hub after every lock is released (see [`deliver`]), so a handler may
//! call back into the engine.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use chat_protocol::{Message, now_ms};
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use crate::{
    BusHandler, Control, EngineConfig, Envelope, Head, History, PresenceEntry, PresenceEvent,
    Publication, Range, Result,
};

struct ChannelLog {
    epoch: String,
    seq: u64,
    messages: VecDeque<Message>,
    touched: Instant,
}

impl ChannelLog {
    fn new(now: Instant) -> Self {
        Self {
            epoch: crate::epoch::new_epoch(),
            seq: 0,
            messages: VecDeque::new(),
            touched: now,
        }
    }

    /// A log idle past the TTL is gone, as a Redis key would be, and comes back with a
    /// new epoch.
    fn expire(&mut self, ttl: Duration) -> &mut Self {
        let now = Instant::now();
        if now.duration_since(self.touched) > ttl {
            *self = Self::new(now);
        }
        self
    }
}

/// One channel: its log, and what it has for the hub. Lock order: `log`, then the
/// engine's `subscribed`, then `outbox`; none is held while a handler runs.
struct Slot {
    log: Mutex<ChannelLog>,
    outbox: Mutex<Outbox>,
}

/// What the hub is handed, in the order the engine decided.
enum Delivery {
    Published(Message, Envelope),
    Typing {
        channel: String,
        user: String,
    },
    Presence {
        channel: String,
        user: String,
        event: PresenceEvent,
    },
    Control(Control),
}

impl Delivery {
    fn hand_to(self, h: &dyn BusHandler) {
        match self {
            Delivery::Published(m, envelope) => h.on_published(m, envelope),
            Delivery::Typing { channel, user } => h.on_typing(&channel, &user),
            Delivery::Presence {
                channel,
                user,
                event,
            } => h.on_presence(&channel, &user, event),
            Delivery::Control(c) => h.on_control(c),
        }
    }
}

#[derive(Default)]
struct Outbox {
    queue: VecDeque<Delivery>,
    /// Someone is handing the queue to the hub; whoever queues more leaves it to them.
    draining: bool,
}

/// Clears `draining` if a handler panics, so later deliveries are not stuck behind it.
struct PanicGuard<'a>(&'a Mutex<Outbox>);

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.lock().draining = false;
        }
    }
}

pub struct MemoryEngine {
    channels: RwLock<HashMap<String, Arc<Slot>>>,
    subscribed: RwLock<HashSet<String>>,
    handler: RwLock<Option<Weak<dyn BusHandler>>>,
    /// Control commands, which belong to no channel.
    control: Mutex<Outbox>,
    /// room → user → connections. One process: nothing can die without us.
    presence: Mutex<HashMap<String, HashMap<String, HashSet<String>>>>,
    pub(crate) presence_ttl: Duration,
    history_size: usize,
    ttl: Duration,
    /// Always true: one process, nothing to lose touch with. No sender is kept, so the
    /// value never changes.
    ready: watch::Receiver<bool>,
}

impl MemoryEngine {
    pub fn new(config: &EngineConfig) -> Self {
        Self {
            channels: RwLock::new(HashMap::new()),
            subscribed: RwLock::new(HashSet::new()),
            handler: RwLock::new(None),
            control: Mutex::new(Outbox::default()),
            presence: Mutex::new(HashMap::new()),
            presence_ttl: Duration::from_secs(config.presence_ttl_secs),
            history_size: config.history_size as usize,
            ttl: Duration::from_secs(config.history_ttl_secs),
            ready: watch::channel(true).1,
        }
    }

    fn handler(&self) -> Option<Arc<dyn BusHandler>> {
        self.handler.read().as_ref().and_then(Weak::upgrade)
    }

    fn is_wanted(&self, channel: &str) -> bool {
        self.subscribed.read().contains(channel)
    }

    fn slot(&self, channel: &str) -> Arc<Slot> {
        if let Some(slot) = self.channels.read().get(channel) {
            return slot.clone();
        }
        self.channels
            .write()
            .entry(channel.to_owned())
            .or_insert_with(|| {
                Arc::new(Slot {
                    log: Mutex::new(ChannelLog::new(Instant::now())),
                    outbox: Mutex::new(Outbox::default()),
                })
            })
            .clone()
    }

    /// Queues `d` on `outbox` and hands that outbox to the hub.
    fn send(&self, outbox: &Mutex<Outbox>, d: Delivery) {
        outbox.lock().queue.push_back(d);
        self.deliver(outbox);
    }

    /// Hands the queued deliveries to the hub, with no lock of the engine held, so a
    /// handler may publish, subscribe or read from inside its callback. One caller
    /// drains an outbox at a time, which keeps its order; a caller that finds someone
    /// draining (another publisher, or a handler calling back into the engine) leaves
    /// its deliveries to them and returns.
    fn deliver(&self, outbox: &Mutex<Outbox>) {
        let mut batch = {
            let mut o = outbox.lock();
            if o.draining || o.queue.is_empty() {
                return;
            }
            o.draining = true;
            std::mem::take(&mut o.queue)
        };
        let _guard = PanicGuard(outbox);
        loop {
            match self.handler() {
                Some(h) => batch.drain(..).for_each(|d| d.hand_to(&*h)),
                None => batch.clear(),
            }
            let mut o = outbox.lock();
            if o.queue.is_empty() {
                o.draining = false;
                return;
            }
            std::mem::swap(&mut batch, &mut o.queue);
        }
    }

    pub async fn publish(&self, p: Publication) -> Result<Message> {
        let slot = self.slot(&p.channel);
        let message = self.store(&slot, p);
        self.deliver(&slot.outbox);
        Ok(message)
    }

    /// Assigns the seq, appends to history and queues the delivery, in one step under
    /// the channel's lock: queue order is seq order.
    fn store(&self, slot: &Slot, p: Publication) -> Message {
        let mut log = slot.log.lock();
        let log = log.expire(self.ttl);
        log.seq += 1;
        log.touched = Instant::now();
        let message = Message {
            room: p.channel,
            seq: log.seq,
            epoch: log.epoch.clone(),
            from: p.from,
            text: p.text,
            ts: now_ms(),
            to: p.to,
            cid: p.cid,
        };
        if log.messages.len() == self.history_size {
            log.messages.pop_front();
        }
        log.messages.push_back(message.clone());
        if self.is_wanted(&message.room) {
            let envelope = Envelope {
                trace: p.trace,
                published_us: Some(crate::now_us()),
            };
            slot.outbox
                .lock()
                .queue
                .push_back(Delivery::Published(message.clone(), envelope));
        }
        message
    }

    pub async fn head(&self, channel: &str) -> Result<Head> {
        let slot = self.slot(channel);
        let mut log = slot.log.lock();
        let log = log.expire(self.ttl);
        Ok(Head {
            epoch: log.epoch.clone(),
            seq: log.seq,
        })
    }

    pub async fn history(&self, channel: &str, range: Range) -> Result<History> {
        let slot = self.slot(channel);
        let mut log = slot.log.lock();
        let log = log.expire(self.ttl);
        let messages = match range {
            Range::After { seq, limit } => log
                .messages
                .iter()
                .filter(|m| m.seq > seq)
                .take(limit)
                .cloned()
                .collect(),
            Range::Before { seq, limit } => log
                .messages
                .iter()
                .rev()
                .filter(|m| seq.is_none_or(|before| m.seq < before))
                .take(limit)
                .cloned()
                .collect(),
        };
        Ok(History {
            head: Head {
                epoch: log.epoch.clone(),
                seq: log.seq,
            },
            messages,
        })
    }

    pub async fn subscribe(&self, channel: &str) -> Result<()> {
        // Taken under the channel's lock so that no publish is half-way between "not
        // subscribed" and "delivered" when the caller reads history next.
        let slot = self.slot(channel);
        let _log = slot.log.lock();
        self.subscribed.write().insert(channel.to_owned());
        Ok(())
    }

    pub async fn is_subscribed(&self, channel: &str) -> Result<bool> {
        Ok(self.subscribed.read().contains(channel))
    }

    pub async fn unsubscribe(&self, channel: &str) -> Result<()> {
        self.subscribed.write().remove(channel);
        Ok(())
    }

    pub async fn publish_typing(&self, channel: &str, user: &str) -> Result<()> {
        if self.is_wanted(channel) {
            let d = Delivery::Typing {
                channel: channel.to_owned(),
                user: user.to_owned(),
            };
            self.send(&self.slot(channel).outbox, d);
        }
        Ok(())
    }

    pub async fn publish_control(&self, control: &Control) -> Result<()> {
        self.send(&self.control, Delivery::Control(control.clone()));
        Ok(())
    }

    pub async fn presence_join(&self, e: &PresenceEntry) -> Result<bool> {
        let mut p = self.presence.lock();
        let conns = p
            .entry(e.room.clone())
            .or_default()
            .entry(e.user.clone())
            .or_default();
        let first = conns.is_empty();
        conns.insert(e.conn.clone());
        Ok(first)
    }

    pub async fn presence_leave(&self, e: &PresenceEntry) -> Result<bool> {
        let mut p = self.presence.lock();
        let Some(users) = p.get_mut(&e.room) else {
            return Ok(false);
        };
        let Some(conns) = users.get_mut(&e.user) else {
            return Ok(false);
        };
        let removed = conns.remove(&e.conn);
        let last = removed && conns.is_empty();
        if conns.is_empty() {
            users.remove(&e.user);
        }
        if users.is_empty() {
            p.remove(&e.room);
        }
        Ok(last)
    }

    pub async fn presence_refresh(&self, _entries: &[PresenceEntry]) -> Result<()> {
        Ok(())
    }

    pub async fn presence_sweep(&self, _room: &str) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    pub async fn presence_list(&self, room: &str) -> Result<Vec<String>> {
        let mut users: Vec<String> = self
            .presence
            .lock()
            .get(room)
            .map(|u| u.keys().cloned().collect())
            .unwrap_or_default();
        users.sort();
        Ok(users)
    }

    pub async fn publish_presence(
        &self,
        room: &str,
        user: &str,
        event: PresenceEvent,
    ) -> Result<()> {
        if self.is_wanted(room) {
            let d = Delivery::Presence {
                channel: room.to_owned(),
                user: user.to_owned(),
                event,
            };
            self.send(&self.slot(room).outbox, d);
        }
        Ok(())
    }

    pub async fn start_bus(&self, handler: Weak<dyn BusHandler>) -> Result<()> {
        *self.handler.write() = Some(handler);
        Ok(())
    }

    pub fn readiness(&self) -> watch::Receiver<bool> {
        self.ready.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use futures_util::FutureExt;

    use super::*;

    fn publication(channel: &str, text: &str) -> Publication {
        Publication {
            channel: channel.into(),
            from: "alice".into(),
            text: text.into(),
            to: None,
            cid: None,
            trace: None,
        }
    }

    /// The memory engine never waits, so its futures finish on the first poll.
    fn now<T>(f: impl Future<Output = T>) -> T {
        f.now_or_never().expect("the memory engine never waits")
    }

    /// Runs `f` on a thread of its own and fails if it has not finished in 5 s.
    fn without_deadlock(f: impl FnOnce() + Send + 'static) {
        let (done, finished) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            f();
            let _ = done.send(());
        });
        match finished.recv_timeout(Duration::from_secs(5)) {
            Ok(()) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                std::panic::resume_unwind(thread.join().expect_err("it did not finish"))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("deadlock: still running after 5 s"),
        }
    }

    /// Records what it is handed; a "ping" makes it subscribe to `pongs` and publish a
    /// "pong" there, and a typing notice, from inside its callback.
    struct Echo {
        engine: Arc<MemoryEngine>,
        got: Mutex<Vec<(String, u64, String)>>,
        typing: Mutex<Vec<String>>,
    }

    impl BusHandler for Echo {
        fn on_published(&self, m: Message, _: Envelope) {
            self.got
                .lock()
                .push((m.room.clone(), m.seq, m.text.clone()));
            if m.text == "ping" {
                now(self.engine.subscribe("pongs")).unwrap();
                now(self.engine.publish(publication("pongs", "pong"))).unwrap();
                now(self.engine.publish_typing("pings", "echo")).unwrap();
                let seen = now(self
                    .engine
                    .history(&m.room, Range::After { seq: 0, limit: 10 }));
                assert_eq!(seen.unwrap().head.seq, m.seq);
            }
        }
        fn on_typing(&self, _: &str, user: &str) {
            self.typing.lock().push(user.to_owned());
        }
        fn on_presence(&self, _: &str, _: &str, _: PresenceEvent) {}
        fn on_control(&self, _: Control) {}
        fn on_bus_restored(&self) {}
    }

    fn echo() -> (Arc<MemoryEngine>, Arc<Echo>) {
        let engine = Arc::new(MemoryEngine::new(&EngineConfig::default()));
        let echo = Arc::new(Echo {
            engine: engine.clone(),
            got: Mutex::new(Vec::new()),
            typing: Mutex::new(Vec::new()),
        });
        let handler: Arc<dyn BusHandler> = echo.clone();
        now(engine.start_bus(Arc::downgrade(&handler))).unwrap();
        (engine, echo)
    }

    #[test]
    fn a_handler_may_publish_and_subscribe_from_inside_its_callback() {
        without_deadlock(|| {
            let (engine, echo) = echo();
            now(engine.subscribe("pings")).unwrap();
            now(engine.publish(publication("pings", "ping"))).unwrap();
            // The callback's own deliveries follow the one it was handed, before the
            // outer publish returns (nobody else was delivering).
            assert_eq!(
                *echo.got.lock(),
                vec![
                    ("pings".to_owned(), 1, "ping".to_owned()),
                    ("pongs".to_owned(), 1, "pong".to_owned()),
                ]
            );
            assert_eq!(*echo.typing.lock(), vec!["echo".to_owned()]);
        });
    }

    #[test]
    fn concurrent_publishers_are_delivered_in_seq_order_per_channel() {
        without_deadlock(|| {
            let (engine, echo) = echo();
            for c in ["a", "b"] {
                now(engine.subscribe(c)).unwrap();
            }
            let threads: Vec<_> = (0..4)
                .map(|t| {
                    let engine = engine.clone();
                    std::thread::spawn(move || {
                        for i in 0..250 {
                            let c = if (t + i) % 2 == 0 { "a" } else { "b" };
                            now(engine.publish(publication(c, "x"))).unwrap();
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            let got = echo.got.lock();
            for c in ["a", "b"] {
                let seqs: Vec<u64> = got.iter().filter(|m| m.0 == c).map(|m| m.1).collect();
                assert_eq!(seqs, (1..=500).collect::<Vec<_>>(), "channel {c}");
            }
        });
    }

    /// Holds its callback for `slow` until released; records every other channel.
    struct Gate {
        entered: mpsc::SyncSender<()>,
        release: Mutex<mpsc::Receiver<()>>,
        fast: mpsc::SyncSender<u64>,
    }

    impl BusHandler for Gate {
        fn on_published(&self, m: Message, _: Envelope) {
            if m.room == "slow" {
                let _ = self.entered.send(());
                let _ = self.release.lock().recv();
            } else {
                let _ = self.fast.send(m.seq);
            }
        }
        fn on_typing(&self, _: &str, _: &str) {}
        fn on_presence(&self, _: &str, _: &str, _: PresenceEvent) {}
        fn on_control(&self, _: Control) {}
        fn on_bus_restored(&self) {}
    }

    #[test]
    fn a_channel_whose_delivery_is_busy_holds_up_no_other_channel() {
        without_deadlock(|| {
            let engine = Arc::new(MemoryEngine::new(&EngineConfig::default()));
            let (entered, slow_entered) = mpsc::sync_channel(1);
            let (release, released) = mpsc::sync_channel(1);
            let (fast, fast_delivered) = mpsc::sync_channel(16);
            let gate: Arc<dyn BusHandler> = Arc::new(Gate {
                entered,
                release: Mutex::new(released),
                fast,
            });
            now(engine.start_bus(Arc::downgrade(&gate))).unwrap();
            for c in ["slow", "fast"] {
                now(engine.subscribe(c)).unwrap();
            }
            let slow = {
                let engine = engine.clone();
                std::thread::spawn(move || now(engine.publish(publication("slow", "x"))))
            };
            slow_entered.recv().unwrap();
            // While "slow" is being handed to the hub, "fast" is delivered by its own
            // publisher, not queued behind it.
            now(engine.publish(publication("fast", "y"))).unwrap();
            assert_eq!(fast_delivered.try_recv(), Ok(1));
            release.send(()).unwrap();
            slow.join().unwrap().unwrap();
            drop(gate);
        });
    }
}
