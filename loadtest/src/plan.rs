//! What a scenario means in connections, channels and messages, computed the same way
//! by the parent and by every worker process, so they agree without talking.
//!
//! Rooms and users are named after the run id (`lt<run>-r3`, `lt<run>-u17`), so every
//! channel of a run is new: its seqs start at 1 and only this run's messages are in it.
//! That is what lets deliveries be checked exactly against the channel heads.

use std::collections::HashMap;
use std::ops::Range;

use crate::config::{Config, Scenario, Via};

/// One client connection: who it is and which channels it receives.
#[derive(Debug, Clone)]
pub struct ConnSpec {
    pub user: String,
    /// Rooms it joins (channel ids).
    pub joins: Vec<u32>,
    /// Its personal channel, when the scenario sends direct messages (channel id).
    pub personal: Option<u32>,
}

/// Where message `k` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    Room(u32),
    /// A direct message to the user of connection `to`.
    User(usize),
    /// A typing notice in a room: not a message, not counted.
    Typing(u32),
}

/// Message `k` of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msg {
    pub k: u64,
    /// The sending connection (`None`: an HTTP publisher with no connection).
    pub sender: Option<usize>,
    pub dest: Dest,
    pub via: Via,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub scenario: Scenario,
    pub run: String,
    pub conns: Vec<ConnSpec>,
    /// Channel names by id.
    pub channels: Vec<String>,
    pub channel_ids: HashMap<String, u32>,
    /// Scheduled events: messages (and typing notices), or connections for connect-storm.
    pub total: u64,
    /// Per second.
    pub rate: f64,
    /// The user an HTTP fan-out publisher publishes as.
    pub publisher_user: String,
    /// Fan-out over WebSocket: connections 0..publishers send, in turn.
    publishers: usize,
    via: Via,
    members: usize,
    dm_ratio: f64,
    http_share: bool,
}

impl Plan {
    pub fn new(cfg: &Config, run: &str) -> Plan {
        let members = cfg.members();
        let mut channels = Vec::new();
        let mut conns = Vec::new();
        let room = |i: usize| format!("lt{run}-r{i}");
        let user = |i: usize| format!("lt{run}-u{i}");
        let publisher_user = format!("lt{run}-pub");
        let via = cfg.via();
        let publishers = if cfg.scenario == Scenario::Fanout && via == Via::Ws {
            cfg.publishers()
        } else {
            0
        };
        match cfg.scenario {
            Scenario::Fanout => {
                channels.push(room(0));
                conns.extend((0..publishers).map(|i| ConnSpec {
                    user: format!("{publisher_user}{i}"),
                    joins: vec![],
                    personal: None,
                }));
                conns.extend((0..members).map(|i| ConnSpec {
                    user: user(i),
                    joins: vec![0],
                    personal: None,
                }));
            }
            Scenario::Rooms | Scenario::Mixed => {
                let n = cfg.rooms * members;
                channels.extend((0..cfg.rooms).map(room));
                let dms = cfg.scenario == Scenario::Mixed;
                conns.extend((0..n).map(|i| ConnSpec {
                    user: user(i),
                    joins: vec![(i / members) as u32],
                    personal: dms.then(|| (cfg.rooms + i) as u32),
                }));
                if dms {
                    channels.extend((0..n).map(|i| format!("@{}", user(i))));
                }
            }
            Scenario::Direct => {
                let n = cfg.connections();
                channels.extend((0..n).map(|i| format!("@{}", user(i))));
                conns.extend((0..n).map(|i| ConnSpec {
                    user: user(i),
                    joins: vec![],
                    personal: Some(i as u32),
                }));
            }
            Scenario::ConnectStorm | Scenario::Idle => {
                let n = cfg.connections();
                let rooms = n.div_ceil(members);
                channels.extend((0..rooms).map(room));
                conns.extend((0..n).map(|i| ConnSpec {
                    user: user(i),
                    joins: vec![(i / members) as u32],
                    personal: None,
                }));
            }
        }
        let scheduled = (cfg.rate * cfg.duration.as_secs_f64()).floor() as u64;
        let total = match cfg.scenario {
            Scenario::Idle => 0,
            Scenario::ConnectStorm => scheduled.min(conns.len() as u64),
            _ => scheduled,
        };
        let channel_ids = channels
            .iter()
            .enumerate()
            .map(|(i, c)| (c.clone(), i as u32))
            .collect();
        Plan {
            scenario: cfg.scenario,
            run: run.to_owned(),
            conns,
            channels,
            channel_ids,
            total,
            rate: cfg.rate,
            publisher_user,
            publishers,
            via,
            members,
            dm_ratio: cfg.dm_ratio,
            http_share: cfg.api_key.is_some() || cfg.token_secret.is_some(),
        }
    }

    /// The connections of worker `w` of `n`: a contiguous slice, so rooms stay mostly
    /// within one worker.
    pub fn slice(&self, w: usize, n: usize) -> Range<usize> {
        let c = self.conns.len();
        (w * c / n)..((w + 1) * c / n)
    }

    /// The personal channel id of connection `i`'s user, when tracked.
    pub fn personal(&self, i: usize) -> Option<u32> {
        self.conns[i].personal
    }

    /// Connections opened during setup (connect-storm opens its own during the run).
    pub fn connects_in_setup(&self) -> bool {
        self.scenario != Scenario::ConnectStorm
    }

    /// The schedule indices this worker sends, in time order.
    pub fn my_events(
        &self,
        slice: Range<usize>,
        first_worker: bool,
    ) -> Box<dyn Iterator<Item = u64> + Send> {
        let total = self.total;
        // Senders take turns: event k is sent by sender k % c.
        let turns = |c: usize| -> Box<dyn Iterator<Item = u64> + Send> {
            let (a, b) = (slice.start.min(c) as u64, slice.end.min(c) as u64);
            if a >= b {
                return Box::new(std::iter::empty());
            }
            let c = c as u64;
            Box::new(
                (0..)
                    .flat_map(move |cycle| (a..b).map(move |s| cycle * c + s))
                    .take_while(move |&k| k < total),
            )
        };
        match self.scenario {
            Scenario::Idle => Box::new(std::iter::empty()),
            Scenario::Fanout if self.via == Via::Http => {
                if first_worker {
                    Box::new(0..total)
                } else {
                    Box::new(std::iter::empty())
                }
            }
            Scenario::Fanout => turns(self.publishers),
            // Connection k is opened at event k.
            Scenario::ConnectStorm => {
                Box::new((slice.start as u64..slice.end as u64).take_while(move |&k| k < total))
            }
            _ => turns(self.conns.len()),
        }
    }

    /// When event `k` is due, in µs after the start.
    pub fn offset_us(&self, k: u64) -> u64 {
        (k as f64 * 1e6 / self.rate) as u64
    }

    /// Message `k` (not for connect-storm or idle).
    pub fn message(&self, k: u64) -> Msg {
        let c = self.conns.len() as u64;
        match self.scenario {
            Scenario::Fanout => Msg {
                k,
                sender: (self.via == Via::Ws).then(|| (k % self.publishers as u64) as usize),
                dest: Dest::Room(0),
                via: self.via,
            },
            Scenario::Rooms => {
                let s = (k % c) as usize;
                Msg {
                    k,
                    sender: Some(s),
                    dest: Dest::Room((s / self.members) as u32),
                    via: self.via,
                }
            }
            Scenario::Direct => {
                let s = (k % c) as usize;
                Msg {
                    k,
                    sender: Some(s),
                    dest: Dest::User(dm_target(s, k, c)),
                    via: self.via,
                }
            }
            Scenario::Mixed => {
                let s = (k % c) as usize;
                let room = (s / self.members) as u32;
                // A fixed pseudo-random draw per k: every process computes the same.
                let draw =
                    (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as f64 / (1u64 << 24) as f64;
                let dest = if draw < self.dm_ratio && c > 1 {
                    Dest::User(dm_target(s, k, c))
                } else if k % 20 == 7 {
                    Dest::Typing(room)
                } else {
                    Dest::Room(room)
                };
                let via = if self.http_share && k % 10 == 3 && !matches!(dest, Dest::Typing(_)) {
                    Via::Http
                } else {
                    Via::Ws
                };
                Msg {
                    k,
                    sender: Some(s),
                    dest,
                    via,
                }
            }
            Scenario::ConnectStorm | Scenario::Idle => {
                unreachable!("no messages in {:?}", self.scenario)
            }
        }
    }
}

/// Someone other than `s`, varying with `k`.
fn dm_target(s: usize, k: u64, c: u64) -> usize {
    ((s as u64 + 1 + (k / c) % (c - 1)) % c) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn plan(args: &[&str]) -> Plan {
        let cfg = Config::parse_from(std::iter::once("chat-loadtest").chain(args.iter().copied()));
        Plan::new(&cfg, "t1")
    }

    #[test]
    fn rooms_are_filled_in_order_and_everyone_sends() {
        let p = plan(&[
            "rooms",
            "--rooms",
            "3",
            "--members",
            "4",
            "--rate",
            "10",
            "--duration",
            "2",
        ]);
        assert_eq!(p.conns.len(), 12);
        assert_eq!(p.conns[5].joins, vec![1]);
        assert_eq!(p.total, 20);
        let senders: std::collections::HashSet<_> =
            (0..12).map(|k| p.message(k).sender.unwrap()).collect();
        assert_eq!(senders.len(), 12);
    }

    #[test]
    fn worker_slices_split_the_schedule_without_overlap() {
        let p = plan(&[
            "direct",
            "--connections",
            "10",
            "--rate",
            "100",
            "--duration",
            "1",
        ]);
        let mut all: Vec<u64> = (0..3)
            .flat_map(|w| p.my_events(p.slice(w, 3), w == 0).collect::<Vec<_>>())
            .collect();
        all.sort();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        for k in 0..100 {
            let m = p.message(k);
            assert!(matches!(m.dest, Dest::User(to) if to != m.sender.unwrap()));
        }
    }

    #[test]
    fn fanout_over_ws_has_a_publisher_connection_that_joins_nothing() {
        let p = plan(&[
            "fanout",
            "--members",
            "5",
            "--publish",
            "ws",
            "--rate",
            "20",
        ]);
        assert_eq!(p.conns.len(), 7);
        assert!(p.conns[0].joins.is_empty() && p.conns[1].joins.is_empty());
        assert_eq!(p.message(3).sender, Some(1));
        let mut all: Vec<u64> = (0..3)
            .flat_map(|w| p.my_events(p.slice(w, 3), w == 0).collect::<Vec<_>>())
            .collect();
        all.sort();
        assert_eq!(all, (0..p.total).collect::<Vec<_>>());
        let p = plan(&["fanout", "--members", "5"]);
        assert_eq!(p.conns.len(), 5);
        assert_eq!(p.message(3).sender, None);
        assert_eq!(p.my_events(p.slice(1, 2), false).count(), 0);
    }

    #[test]
    fn more_workers_than_senders_leave_some_idle() {
        let p = plan(&[
            "rooms",
            "--rooms",
            "1",
            "--members",
            "2",
            "--rate",
            "10",
            "--duration",
            "1",
        ]);
        assert_eq!(p.my_events(p.slice(0, 4), true).count(), 0);
        assert_eq!(p.my_events(p.slice(3, 4), false).count(), 5);
    }

    #[test]
    fn mixed_has_some_direct_messages_and_typing() {
        let p = plan(&[
            "mixed",
            "--rooms",
            "2",
            "--members",
            "5",
            "--rate",
            "1000",
            "--duration",
            "1",
        ]);
        let dms = (0..1000)
            .filter(|&k| matches!(p.message(k).dest, Dest::User(_)))
            .count();
        let typing = (0..1000)
            .filter(|&k| matches!(p.message(k).dest, Dest::Typing(_)))
            .count();
        assert!((50..200).contains(&dms), "{dms}");
        assert!(typing > 20, "{typing}");
    }
}
