//! What a replica holds, read at each scrape: the bus channels it is subscribed to, its
//! connections' channel memberships, its distinct users, and how close the busiest user
//! and IP are to their connection limits. Counted when asked rather than kept in step
//! on every join and leave, so they cannot drift.

use std::sync::Weak;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntGauge, IntGaugeVec, Opts};

use crate::Realtime;

pub struct ReplicaGauges {
    rt: Weak<Realtime>,
    channels: IntGauge,
    subscriptions: IntGauge,
    users: IntGauge,
    max_held: IntGaugeVec,
    limit: IntGaugeVec,
}

impl ReplicaGauges {
    pub fn new(rt: Weak<Realtime>) -> Self {
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid metric");
        let per = |name: &str, help: &str| {
            IntGaugeVec::new(Opts::new(name, help), &["per"]).expect("valid metric")
        };
        Self {
            rt,
            channels: gauge(
                "chat_hub_channels",
                "Bus channels this replica is subscribed to: rooms with a local member and the personal channels of its users.",
            ),
            subscriptions: gauge(
                "chat_hub_subscriptions",
                "Channel memberships of this replica's connections (each connection's personal channel included).",
            ),
            users: gauge(
                "chat_hub_users",
                "Distinct users with at least one connection on this replica.",
            ),
            max_held: per(
                "chat_connections_max_held",
                "The most connections one user (per=user) or one IP address (per=ip) holds on this replica now.",
            ),
            limit: per(
                "chat_connections_limit",
                "The connection limit of one user (per=user, CHAT_MAX_CONNECTIONS_PER_USER) or one IP address (per=ip, CHAT_MAX_CONNECTIONS_PER_IP) on this replica.",
            ),
        }
    }

    fn update(&self, rt: &Realtime) {
        let (channels, subscriptions, users, per_user) = rt.hub.holds();
        self.channels.set(channels as i64);
        self.subscriptions.set(subscriptions as i64);
        self.users.set(users as i64);
        let per_ip = rt.per_ip.lock().values().copied().max().unwrap_or(0);
        self.max_held
            .with_label_values(&["user"])
            .set(per_user as i64);
        self.max_held
            .with_label_values(&["ip"])
            .set(i64::from(per_ip));
        let limits = &rt.limits;
        self.limit
            .with_label_values(&["user"])
            .set(i64::from(limits.max_connections_per_user));
        self.limit
            .with_label_values(&["ip"])
            .set(i64::from(limits.max_connections_per_ip));
    }

    fn all(&self) -> [&dyn Collector; 5] {
        [
            &self.channels,
            &self.subscriptions,
            &self.users,
            &self.max_held,
            &self.limit,
        ]
    }
}

impl Collector for ReplicaGauges {
    fn desc(&self) -> Vec<&Desc> {
        self.all().into_iter().flat_map(|g| g.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        if let Some(rt) = self.rt.upgrade() {
            self.update(&rt);
        }
        self.all().into_iter().flat_map(|g| g.collect()).collect()
    }
}
