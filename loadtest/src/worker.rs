//! One worker: a slice of the plan's connections, opened at a bounded rate, and the
//! part of the schedule those connections (or this worker's HTTP publisher) send.
//!
//! The schedule is open-loop: event `k` is due at `t0 + k / rate` whatever happened to
//! the events before it. Sends are spawned, so one slow socket delays only itself, and
//! every message carries its intended time, so any lag shows in the latency.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use chat_protocol::ClientFrame;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::{self, Conn, Ctx};
use crate::config::{Config, Scenario, Via};
use crate::plan::{Dest, Plan};
use crate::publish::HttpPublisher;
use crate::stamp;
use crate::stats::{Shared, Tally};

/// Deliveries have stopped when none arrived for this long after the schedule ended.
const QUIET: Duration = Duration::from_secs(1);

pub struct Worker {
    ctx: Arc<Ctx>,
    cfg: Config,
    slice: Range<usize>,
    first: bool,
    /// The only worker: it sees every publisher and every receiver.
    alone: bool,
    /// Connections of the slice, by position in it (`None`: failed to open).
    conns: Vec<Option<Arc<Conn>>>,
    http: Option<Arc<HttpPublisher>>,
}

impl Worker {
    pub fn new(
        cfg: &Config,
        ctx: Arc<Ctx>,
        http_bases: Vec<String>,
        (w, n): (usize, usize),
    ) -> Result<Worker, String> {
        let http = if http_bases.is_empty() {
            None
        } else {
            Some(Arc::new(HttpPublisher::new(
                http_bases,
                cfg.api_key.clone(),
                cfg.token_secret.clone(),
                ctx.plan.clone(),
                ctx.shared.clone(),
                cfg.dialect,
            )?))
        };
        let slice = ctx.plan.slice(w, n);
        Ok(Worker {
            conns: (0..slice.len()).map(|_| None).collect(),
            ctx,
            cfg: cfg.clone(),
            slice,
            first: w == 0,
            alone: n == 1,
            http,
        })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.ctx.shared
    }

    fn plan(&self) -> &Plan {
        &self.ctx.plan
    }

    /// Connections this worker opens during setup.
    pub fn setup_size(&self) -> usize {
        if self.plan().connects_in_setup() {
            self.slice.len()
        } else {
            0
        }
    }

    /// Opens this worker's connections at `--ramp-rate`, at most
    /// `--connect-concurrency` handshakes at once.
    pub async fn setup(&mut self) {
        if !self.plan().connects_in_setup() {
            return;
        }
        let events: Vec<u64> = (self.slice.start as u64..self.slice.end as u64).collect();
        self.open_many(events, self.cfg.ramp_rate, Instant::now(), false)
            .await;
    }

    /// Opens connection `k` at `start + i / rate` for the i-th of `events`. With
    /// `storm`, each connect is the measured event (latency, timeline); otherwise it is
    /// setup (the connect histogram).
    async fn open_many(&mut self, events: Vec<u64>, rate: f64, start: Instant, storm: bool) {
        let slots = Arc::new(tokio::sync::Semaphore::new(self.cfg.connect_concurrency));
        let t0 = self.ctx.shared.t0();
        let mut tasks = Vec::with_capacity(events.len());
        let plan = self.ctx.plan.clone();
        let schedule = events.into_iter().enumerate().map(move |(i, k)| {
            let offset = if storm {
                plan.offset_us(k)
            } else {
                (i as f64 * 1e6 / rate) as u64
            };
            (k, start + Duration::from_micros(offset))
        });
        let mut pacer = match Pacer::start(schedule, None) {
            Ok(p) => p,
            Err(e) => {
                self.ctx.shared.shard(0).error(&e);
                return;
            }
        };
        while let Some((k, due)) = pacer.next().await {
            let slot = slots.clone().acquire_owned().await.expect("never closed");
            let ctx = self.ctx.clone();
            let intended_us =
                stamp::now_us() - Instant::now().saturating_duration_since(due).as_micros() as u64;
            let idx = k as usize;
            tasks.push(tokio::spawn(async move {
                let result = client::open(&ctx, idx).await;
                drop(slot);
                let now = stamp::now_us();
                let mut t = ctx.shared.shard(idx);
                match &result {
                    Ok(_) => {
                        t.connected += 1;
                        if storm {
                            let second = |us: u64| (us.saturating_sub(t0) / 1_000_000) as usize;
                            t.delivery(now, intended_us, second(intended_us), second(now));
                        } else {
                            t.connect.record(now.saturating_sub(intended_us));
                        }
                    }
                    Err(e) => {
                        t.connect_failed += 1;
                        t.error(e);
                    }
                }
                (idx, result.ok())
            }));
        }
        for task in tasks {
            if let Ok((idx, conn)) = task.await {
                self.conns[idx - self.slice.start] = conn;
            }
        }
    }

    /// Runs the load from `t0_us` (µs since the Unix epoch) for `--duration`, waits for
    /// the last deliveries, and returns what this worker counted. Connections stay open
    /// until the worker is dropped, so the servers can be measured first.
    pub async fn run(&mut self, t0_us: u64) -> Tally {
        let shared = self.ctx.shared.clone();
        shared
            .t0_us
            .store(t0_us, std::sync::atomic::Ordering::Relaxed);
        let start = instant_at(t0_us);
        tokio::time::sleep_until(start).await;
        let end = start + self.cfg.duration;
        match self.cfg.scenario {
            Scenario::Idle => tokio::time::sleep_until(end).await,
            Scenario::ConnectStorm => {
                let events: Vec<u64> = self
                    .plan()
                    .my_events(self.slice.clone(), self.first)
                    .collect();
                let rate = self.plan().rate;
                self.open_many(events, rate, start, true).await;
            }
            _ => {
                let sender = Sender {
                    ctx: self.ctx.clone(),
                    cfg: self.cfg.clone(),
                    slice: self.slice.clone(),
                    first: self.first,
                    conns: self.conns.clone(),
                    http: self.http.clone(),
                };
                let (done, finished) = tokio::sync::oneshot::channel();
                let spawned =
                    std::thread::Builder::new()
                        .name("publisher".into())
                        .spawn(move || {
                            match tokio::runtime::Builder::new_current_thread()
                                .enable_all()
                                .build()
                            {
                                Ok(rt) => rt.block_on(sender.publish(t0_us, start, end)),
                                Err(e) => sender
                                    .ctx
                                    .shared
                                    .shard(0)
                                    .error(&format!("cannot start the publisher runtime: {e}")),
                            }
                            let _ = done.send(());
                        });
                match spawned {
                    Ok(_) => {
                        let _ = finished.await;
                    }
                    Err(e) => shared
                        .shard(0)
                        .error(&format!("cannot start the publisher thread: {e}")),
                }
                self.drain(end).await;
            }
        }
        shared.tally()
    }

    /// Waits until every publish is answered and deliveries have stopped (or, alone,
    /// until every owed delivery arrived), at most `--drain` after the schedule's end.
    async fn drain(&self, end: Instant) {
        let limit = end + self.cfg.drain;
        let shared = &self.ctx.shared;
        let mut last = shared.progress().delivered;
        let mut since = Instant::now();
        loop {
            let now = Instant::now();
            if now >= limit {
                return;
            }
            let p = shared.progress();
            if p.answered() {
                if self.alone && shared.missing() == 0 {
                    return;
                }
                if p.delivered == last && now >= end && now - since >= QUIET {
                    return;
                }
            }
            if p.delivered != last {
                last = p.delivered;
                since = now;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The tokio instant of a wall-clock time in µs since the Unix epoch.
pub fn instant_at(unix_us: u64) -> Instant {
    let now_us = stamp::now_us();
    let now = Instant::now();
    if unix_us >= now_us {
        now + Duration::from_micros(unix_us - now_us)
    } else {
        now.checked_sub(Duration::from_micros(now_us - unix_us))
            .unwrap_or(now)
    }
}

/// Keeps a schedule on a thread of its own and hands each event to the runtime when it
/// is due. tokio's timer rounds every wake-up up to the next millisecond, which would add
/// up to 1 ms of the generator's own lateness to every measured latency; a thread's sleep
/// is late by tens of µs.
struct Pacer {
    due: tokio::sync::mpsc::UnboundedReceiver<(u64, Instant)>,
    thread: std::thread::JoinHandle<u64>,
}

impl Pacer {
    /// Starts pacing `(event, due)` pairs, in order. With `give_up`, events still
    /// waiting past it are counted (see [`Pacer::unsent`]), not handed over.
    fn start<I>(schedule: I, give_up: Option<Instant>) -> Result<Pacer, String>
    where
        I: Iterator<Item = (u64, Instant)> + Send + 'static,
    {
        let (tx, due) = tokio::sync::mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("pacer".into())
            .spawn(move || {
                let mut unsent = 0u64;
                for (k, at) in schedule {
                    let now = Instant::now();
                    if now < at {
                        std::thread::sleep(at - now);
                    } else if give_up.is_some_and(|g| now > g) {
                        unsent += 1;
                        continue;
                    }
                    if tx.send((k, at)).is_err() {
                        break;
                    }
                }
                unsent
            })
            .map_err(|e| format!("cannot start the pacer thread: {e}"))?;
        Ok(Pacer { due, thread })
    }

    /// The next due event; `None` once the schedule is over.
    async fn next(&mut self) -> Option<(u64, Instant)> {
        self.due.recv().await
    }

    /// How many events were given up; call after [`Pacer::next`] returned `None`.
    fn unsent(self) -> u64 {
        self.thread.join().unwrap_or(0)
    }
}

/// The sending side of a worker, run on a thread and runtime of its own so that the
/// schedule is kept however busy the receivers are (their delay is what is measured).
struct Sender {
    ctx: Arc<Ctx>,
    cfg: Config,
    slice: Range<usize>,
    first: bool,
    conns: Vec<Option<Arc<Conn>>>,
    http: Option<Arc<HttpPublisher>>,
}

impl Sender {
    /// Sends this worker's part of the schedule, then waits (up to `--drain` past the
    /// end) for the sends and HTTP requests still in flight.
    async fn publish(&self, t0_us: u64, start: Instant, end: Instant) {
        let hard_stop = end + self.cfg.drain;
        let plan = self.ctx.plan.clone();
        let schedule = plan
            .my_events(self.slice.clone(), self.first)
            .map(move |k| (k, start + Duration::from_micros(plan.offset_us(k))));
        let mut pacer = match Pacer::start(schedule, Some(hard_stop)) {
            Ok(p) => p,
            Err(e) => {
                self.refused(0, &e);
                return;
            }
        };
        let mut tasks = JoinSet::new();
        while let Some((k, _)) = pacer.next().await {
            self.dispatch(k, t0_us, &mut tasks).await;
            while tasks.try_join_next().is_some() {}
        }
        let unsent = pacer.unsent();
        if unsent > 0 {
            let mut t = self.ctx.shared.shard(0);
            t.error(&format!(
                "{unsent} scheduled messages never left: the publisher fell more than --drain behind"
            ));
        }
        while let Ok(Some(_)) = tokio::time::timeout_at(hard_stop, tasks.join_next()).await {}
    }

    async fn dispatch(&self, k: u64, t0_us: u64, tasks: &mut JoinSet<()>) {
        let plan = &self.ctx.plan;
        let m = plan.message(k);
        let intended_us = t0_us + plan.offset_us(k);
        let shard = m.sender.unwrap_or(k as usize);
        let from = match m.sender {
            Some(s) => plan.conns[s].user.clone(),
            None => plan.publisher_user.clone(),
        };
        if let Dest::Typing(room) = m.dest {
            self.ctx.shared.shard(shard).typing += 1;
            if let Some(conn) = m.sender.and_then(|s| self.conn(s)) {
                let frame = ClientFrame::Typing {
                    room: plan.channels[room as usize].clone(),
                };
                tasks.spawn(async move {
                    let _ = conn.send(&frame).await;
                });
            }
            return;
        }
        self.ctx.shared.shard(shard).sent += 1;
        let text = stamp::text(&plan.run, k, intended_us, self.cfg.message_size);
        match m.via {
            Via::Http => {
                let Some(http) = &self.http else {
                    self.refused(shard, "no HTTP publisher configured");
                    return;
                };
                let slot = http
                    .slots
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("never closed");
                tasks.spawn(http.clone().publish(m, from, text, intended_us, slot));
            }
            Via::Ws => {
                let Some(conn) = m.sender.and_then(|s| self.conn(s)) else {
                    self.refused(shard, "sender not connected");
                    return;
                };
                let (room, to, room_id) = match m.dest {
                    Dest::Room(id) => (Some(plan.channels[id as usize].clone()), None, Some(id)),
                    Dest::User(to) => (None, Some(plan.conns[to].user.clone()), None),
                    Dest::Typing(_) => unreachable!("handled above"),
                };
                let shared = self.ctx.shared.clone();
                tasks.spawn(async move {
                    let peer = conn.dialect().is_peer();
                    match conn.send_message(room, to, text, k).await {
                        // A peer confirms nothing: the message counts as published,
                        // and owed to the room's members, once written.
                        Ok(()) if peer => {
                            let now = stamp::now_us();
                            let mut t = shared.shard(shard);
                            t.published += 1;
                            t.publish.record(now.saturating_sub(intended_us));
                            if let Some(id) = room_id {
                                t.chan(id).acked += 1;
                            }
                        }
                        Ok(()) => {}
                        Err(e) => {
                            let mut t = shared.shard(shard);
                            t.publish_errors += 1;
                            t.error(&e);
                        }
                    }
                });
            }
        }
    }

    fn refused(&self, shard: usize, why: &str) {
        let mut t = self.ctx.shared.shard(shard);
        t.publish_errors += 1;
        t.error(why);
    }

    fn conn(&self, idx: usize) -> Option<Arc<Conn>> {
        idx.checked_sub(self.slice.start)
            .and_then(|i| self.conns.get(i))
            .and_then(|c| c.clone())
    }
}
