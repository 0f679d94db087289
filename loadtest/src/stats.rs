//! What a worker counts, and how counts from several workers add up.
//!
//! Connections record into a few shards (a lock each, picked by connection index) so
//! that the two runtime threads rarely wait for each other. At the end a worker folds
//! its shards into one [`Tally`], which crosses process boundaries as JSON and merges
//! with the others: histograms add bucket by bucket, counters add, per-channel heads take
//! the maximum.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// Latencies are µs; anything past ten minutes is clamped there.
const HIGH_US: u64 = 600_000_000;
/// The latency-over-time plot has one point per second, for at most this many seconds.
const MAX_SECONDS: usize = 3600;
const SHARDS: usize = 4;

/// An HDR histogram of µs that travels as `[[value, count], …]`.
#[derive(Debug, Clone)]
pub struct Hist(pub Histogram<u64>);

impl Hist {
    /// 3 significant digits: the run's distributions.
    pub fn fine() -> Hist {
        Hist(Histogram::new_with_bounds(1, HIGH_US, 3).expect("valid bounds"))
    }

    /// 2 significant digits: one per second of the run.
    pub fn coarse() -> Hist {
        Hist(Histogram::new_with_bounds(1, HIGH_US, 2).expect("valid bounds"))
    }

    pub fn record(&mut self, us: u64) {
        self.0.saturating_record(us.max(1));
    }

    pub fn merge(&mut self, other: &Hist) {
        for v in other.0.iter_recorded() {
            self.0
                .saturating_record_n(v.value_iterated_to(), v.count_at_value());
        }
    }

    pub fn len(&self) -> u64 {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Hist {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let buckets: Vec<(u64, u64)> = self
            .0
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        buckets.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Hist {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let buckets: Vec<(u64, u64)> = Vec::deserialize(d)?;
        let mut h = Hist::fine();
        for (v, n) in buckets {
            h.0.saturating_record_n(v, n);
        }
        Ok(h)
    }
}

/// One channel, as the receivers and publishers of one worker saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChanStats {
    /// Connections that joined it and receive its messages.
    pub receivers: u64,
    /// The sum of the heads (seq) those connections joined at.
    pub sum_join_head: u64,
    /// Messages received with a seq above the last one the receiver saw.
    pub unique: u64,
    /// Messages received again (or out of order): a seq not above the last one seen.
    pub dups: u64,
    /// Highest seq any receiver saw.
    pub max_seen: u64,
    /// Publishes the server confirmed (`ack`, or HTTP 201).
    pub acked: u64,
    /// Highest seq a confirmation named.
    pub max_acked: u64,
}

impl ChanStats {
    fn merge(&mut self, o: &ChanStats) {
        self.receivers += o.receivers;
        self.sum_join_head += o.sum_join_head;
        self.unique += o.unique;
        self.dups += o.dups;
        self.max_seen = self.max_seen.max(o.max_seen);
        self.acked += o.acked;
        self.max_acked = self.max_acked.max(o.max_acked);
    }

    /// The channel's last seq at the end. Every channel of a run is new (seq 1, 2, …
    /// are this run's messages), so confirmed publishes count too: that covers the
    /// sender's own copy of a direct message, whose seq no ack names.
    pub fn head(&self) -> u64 {
        self.max_seen.max(self.max_acked).max(self.acked)
    }

    /// Deliveries this channel owed its receivers.
    pub fn expected(&self) -> u64 {
        (self.receivers * self.head()).saturating_sub(self.sum_join_head)
    }
}

/// Counts of one shard, one worker, or the whole run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tally {
    /// Delivery latency: receive time minus intended send time (connect-storm: the
    /// time from a connection's scheduled start to its `joined`).
    pub latency: Hist,
    /// Publish latency: confirmation time minus intended send time.
    pub publish: Hist,
    /// Setup: scheduled start of a connection to its last `joined`.
    pub connect: Hist,
    /// Delivery latency per second of intended send time.
    pub timeline: Vec<Hist>,
    /// Deliveries per second of receive time (throughput, also while lagging).
    pub received: Vec<u64>,
    pub chans: BTreeMap<u32, ChanStats>,
    pub delivered: u64,
    pub duplicates: u64,
    /// Messages of other runs or channels (should stay 0).
    pub foreign: u64,
    pub sent: u64,
    pub published: u64,
    pub publish_errors: u64,
    pub typing: u64,
    pub connected: u64,
    pub connect_failed: u64,
    /// Connections that ended before the run did.
    pub dropped: u64,
    /// Error texts and close reasons, with how often each happened.
    pub errors: BTreeMap<String, u64>,
    pub first_delivery_us: u64,
    pub last_delivery_us: u64,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            latency: Hist::fine(),
            publish: Hist::fine(),
            connect: Hist::fine(),
            timeline: Vec::new(),
            received: Vec::new(),
            chans: BTreeMap::new(),
            delivered: 0,
            duplicates: 0,
            foreign: 0,
            sent: 0,
            published: 0,
            publish_errors: 0,
            typing: 0,
            connected: 0,
            connect_failed: 0,
            dropped: 0,
            errors: BTreeMap::new(),
            first_delivery_us: 0,
            last_delivery_us: 0,
        }
    }
}

impl Tally {
    pub fn merge(&mut self, o: &Tally) {
        self.latency.merge(&o.latency);
        self.publish.merge(&o.publish);
        self.connect.merge(&o.connect);
        if self.timeline.len() < o.timeline.len() {
            self.timeline.resize_with(o.timeline.len(), Hist::coarse);
        }
        for (mine, theirs) in self.timeline.iter_mut().zip(&o.timeline) {
            mine.merge(theirs);
        }
        if self.received.len() < o.received.len() {
            self.received.resize(o.received.len(), 0);
        }
        for (mine, theirs) in self.received.iter_mut().zip(&o.received) {
            *mine += theirs;
        }
        for (id, c) in &o.chans {
            self.chans.entry(*id).or_default().merge(c);
        }
        self.delivered += o.delivered;
        self.duplicates += o.duplicates;
        self.foreign += o.foreign;
        self.sent += o.sent;
        self.published += o.published;
        self.publish_errors += o.publish_errors;
        self.typing += o.typing;
        self.connected += o.connected;
        self.connect_failed += o.connect_failed;
        self.dropped += o.dropped;
        for (e, n) in &o.errors {
            add_error(&mut self.errors, e, *n);
        }
        self.first_delivery_us = min_nonzero(self.first_delivery_us, o.first_delivery_us);
        self.last_delivery_us = self.last_delivery_us.max(o.last_delivery_us);
    }

    /// Records a delivery of a message intended at `intended_us`, `second`s into the run
    /// (`received` seconds into the run when it arrived).
    pub fn delivery(&mut self, now_us: u64, intended_us: u64, second: usize, received: usize) {
        let us = now_us.saturating_sub(intended_us);
        self.latency.record(us);
        if second < MAX_SECONDS {
            if self.timeline.len() <= second {
                self.timeline.resize_with(second + 1, Hist::coarse);
            }
            self.timeline[second].record(us);
        }
        if received < MAX_SECONDS {
            if self.received.len() <= received {
                self.received.resize(received + 1, 0);
            }
            self.received[received] += 1;
        }
        self.delivered += 1;
        self.first_delivery_us = min_nonzero(self.first_delivery_us, now_us);
        self.last_delivery_us = self.last_delivery_us.max(now_us);
    }

    pub fn chan(&mut self, id: u32) -> &mut ChanStats {
        self.chans.entry(id).or_default()
    }

    pub fn error(&mut self, what: &str) {
        add_error(&mut self.errors, what, 1);
    }

    /// Deliveries owed, over every channel.
    pub fn expected(&self) -> u64 {
        self.chans.values().map(ChanStats::expected).sum()
    }

    /// Deliveries owed and never seen.
    pub fn lost(&self) -> u64 {
        self.chans
            .values()
            .map(|c| c.expected().saturating_sub(c.unique))
            .sum()
    }
}

fn min_nonzero(a: u64, b: u64) -> u64 {
    match (a, b) {
        (0, x) | (x, 0) => x,
        (a, b) => a.min(b),
    }
}

/// Distinct error texts are capped: a flood of one failure must not grow the report.
fn add_error(map: &mut BTreeMap<String, u64>, what: &str, n: u64) {
    if let Some(c) = map.get_mut(what) {
        *c += n;
    } else if map.len() < 50 {
        map.insert(what.to_owned(), n);
    } else {
        *map.entry("(other errors)".into()).or_default() += n;
    }
}

/// A worker's live counts, shared by its connections.
pub struct Shared {
    shards: Vec<Mutex<Tally>>,
    /// Start of the run in µs since the Unix epoch (0 until it starts).
    pub t0_us: AtomicU64,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            shards: (0..SHARDS).map(|_| Mutex::new(Tally::default())).collect(),
            t0_us: AtomicU64::new(0),
        }
    }
}

/// A snapshot for the progress bar.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Progress {
    pub connected: u64,
    pub connect_failed: u64,
    pub delivered: u64,
    pub sent: u64,
    pub published: u64,
    pub publish_errors: u64,
    pub dropped: u64,
}

impl Progress {
    pub fn add(&mut self, o: &Progress) {
        self.connected += o.connected;
        self.connect_failed += o.connect_failed;
        self.delivered += o.delivered;
        self.sent += o.sent;
        self.published += o.published;
        self.publish_errors += o.publish_errors;
        self.dropped += o.dropped;
    }

    /// Every publish sent so far has been confirmed or refused.
    pub fn answered(&self) -> bool {
        self.published + self.publish_errors >= self.sent
    }
}

impl Shared {
    pub fn shard(&self, conn: usize) -> parking_lot::MutexGuard<'_, Tally> {
        self.shards[conn % SHARDS].lock()
    }

    pub fn t0(&self) -> u64 {
        self.t0_us.load(Ordering::Relaxed)
    }

    /// The second of the run a message intended at `intended_us` belongs to.
    pub fn second(&self, intended_us: u64) -> usize {
        (intended_us.saturating_sub(self.t0()) / 1_000_000) as usize
    }

    pub fn progress(&self) -> Progress {
        let mut p = Progress::default();
        for s in &self.shards {
            let t = s.lock();
            p.connected += t.connected;
            p.connect_failed += t.connect_failed;
            p.delivered += t.delivered;
            p.sent += t.sent;
            p.published += t.published;
            p.publish_errors += t.publish_errors;
            p.dropped += t.dropped;
        }
        p
    }

    /// Deliveries owed and not seen yet, as far as this worker can tell.
    pub fn missing(&self) -> u64 {
        let mut chans: BTreeMap<u32, ChanStats> = BTreeMap::new();
        for s in &self.shards {
            for (id, c) in &s.lock().chans {
                chans.entry(*id).or_default().merge(c);
            }
        }
        chans
            .values()
            .map(|c| c.expected().saturating_sub(c.unique))
            .sum()
    }

    /// Everything so far, folded into one tally.
    pub fn tally(&self) -> Tally {
        let mut all = Tally::default();
        for s in &self.shards {
            all.merge(&s.lock());
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_survive_json_and_merge() {
        let mut a = Hist::fine();
        for v in [1, 10, 100, 1000, 10_000, 123_456] {
            a.record(v);
        }
        let json = serde_json::to_string(&a).unwrap();
        let b: Hist = serde_json::from_str(&json).unwrap();
        assert_eq!(b.len(), 6);
        assert_eq!(b.0.max(), a.0.max());
        let mut c = Hist::fine();
        c.merge(&a);
        c.merge(&b);
        assert_eq!(c.len(), 12);
        assert_eq!(c.0.value_at_quantile(0.5), a.0.value_at_quantile(0.5));
    }

    #[test]
    fn losses_and_duplicates_follow_the_heads() {
        let mut t = Tally::default();
        // Two receivers joined at 0; the head ended at 10 (acked); one saw 10, one 7.
        *t.chan(0) = ChanStats {
            receivers: 2,
            sum_join_head: 0,
            unique: 17,
            dups: 1,
            max_seen: 10,
            acked: 10,
            max_acked: 10,
        };
        assert_eq!(t.expected(), 20);
        assert_eq!(t.lost(), 3);
        // Direct-message copies on the sender's channel: no seq in the ack.
        *t.chan(1) = ChanStats {
            receivers: 1,
            acked: 4,
            unique: 3,
            max_seen: 3,
            ..Default::default()
        };
        assert_eq!(t.lost(), 4);
    }

    #[test]
    fn tallies_add_up() {
        let mut a = Tally::default();
        a.delivery(2_000_100, 2_000_000, 0, 0);
        a.chan(3).receivers = 1;
        a.error("boom");
        let mut b = Tally::default();
        b.delivery(5_000_000, 3_000_000, 1, 3);
        b.chan(3).max_acked = 9;
        b.error("boom");
        let wire: Tally = serde_json::from_str(&serde_json::to_string(&b).unwrap()).unwrap();
        a.merge(&wire);
        assert_eq!(a.delivered, 2);
        assert_eq!(a.timeline.len(), 2);
        assert_eq!(a.received, vec![1, 0, 0, 1]);
        assert_eq!(a.chans[&3].expected(), 9);
        assert_eq!(a.errors["boom"], 2);
        assert_eq!(a.first_delivery_us, 2_000_100);
        assert_eq!(a.last_delivery_us, 5_000_000);
    }
}
