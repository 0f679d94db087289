//! The result of a run: one document for `--json`, the human summary, and the data the
//! HTML report plots.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::config::{Config, Dialect, Enc, Scenario, Via};
use crate::plan::Plan;
use crate::procstat::Sample;
use crate::stats::{Hist, Tally};

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    pub scenario: Scenario,
    pub run_id: String,
    /// No loss, no duplicate, no failed connection or publish, no dropped connection.
    pub ok: bool,
    /// `--max-…` thresholds, each with the value it was held against.
    pub thresholds: Vec<Threshold>,
    /// What the process exits with: 0 clean, 3 problems (losses within `--max-lost`
    /// excepted), 99 a threshold crossed.
    pub exit_status: i32,
    pub settings: Settings,
    pub connections: Connections,
    pub messages: Messages,
    /// Delivery latency in µs: receive time minus intended send time (connect-storm:
    /// scheduled start of a connection to its `joined`).
    pub latency: Latency,
    /// Publish confirmation (ack or HTTP 201) minus intended send time, µs.
    pub publish_latency: Latency,
    /// One entry per second of the run: latency by intended send time, and how many
    /// deliveries arrived in that second.
    pub timeline: Vec<Second>,
    /// Latency by percentile, for the distribution plot.
    pub distribution: Vec<Point>,
    pub server: Option<Server>,
    /// Error texts and close reasons, with counts.
    pub errors: BTreeMap<String, u64>,
    /// Wall time of the whole run, setup included.
    pub elapsed_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub dialect: Dialect,
    /// How deliveries were checked: `seq` (chat: every seq of a channel once, in order,
    /// to each member) or `index` (peers: every message index once to each member of
    /// its room, in any order; no seqs, so no order check).
    pub loss_check: &'static str,
    pub targets: Vec<String>,
    pub http: Vec<String>,
    pub encoding: Enc,
    pub publish: Option<Via>,
    pub members: usize,
    pub rooms: usize,
    pub rate: f64,
    pub duration_s: f64,
    pub message_size: usize,
    pub workers: usize,
    pub source_addrs: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Threshold {
    /// `p99`, `lost`, …
    pub name: &'static str,
    /// The flag's value (µs for latencies, a count for `lost`).
    pub limit: u64,
    pub value: u64,
    pub ok: bool,
}

/// The thresholds given on the command line, held against the run's latency and losses.
fn thresholds(cfg: &Config, latency: &Latency, lost: u64) -> Vec<Threshold> {
    let us = |d: std::time::Duration| d.as_micros() as u64;
    let mut out = Vec::new();
    let mut check = |name, limit: Option<u64>, value: u64| {
        if let Some(limit) = limit {
            out.push(Threshold {
                name,
                limit,
                value,
                ok: value <= limit,
            });
        }
    };
    check("p50", cfg.max_p50.map(us), latency.p50_us);
    check("p99", cfg.max_p99.map(us), latency.p99_us);
    check("p99.9", cfg.max_p999.map(us), latency.p999_us);
    check("lost", cfg.max_lost, lost);
    out
}

/// 99 when a threshold is crossed; else 3 when the run saw problems (losses within
/// `--max-lost` excepted); else 0.
fn exit_status(
    thresholds: &[Threshold],
    clean_but_losses: bool,
    lost: u64,
    max_lost: Option<u64>,
) -> i32 {
    let losses_ok = lost == 0 || max_lost.is_some_and(|max| lost <= max);
    if thresholds.iter().any(|t| !t.ok) {
        crate::EXIT_THRESHOLDS
    } else if clean_but_losses && losses_ok {
        0
    } else {
        crate::EXIT_PROBLEMS
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Connections {
    pub planned: usize,
    pub connected: u64,
    pub failed: u64,
    /// Ended by the server or the network before the run did.
    pub dropped: u64,
    pub setup_s: f64,
    /// Scheduled start of a connection to its last `joined`, µs (setup).
    pub connect_latency: Latency,
}

#[derive(Debug, Clone, Serialize)]
pub struct Messages {
    /// Events on the schedule: messages (connect-storm: connections).
    pub scheduled: u64,
    pub sent: u64,
    /// Confirmed by the server.
    pub published: u64,
    pub publish_errors: u64,
    /// Sent, and neither confirmed nor refused by the end of the drain.
    pub unanswered: u64,
    pub typing: u64,
    /// Deliveries owed: for each channel, its receivers times its final seq, minus the
    /// seq each joined at.
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicates: u64,
    /// Messages of another run or an unknown channel.
    pub foreign: u64,
    pub deliveries_per_sec: f64,
    pub sent_per_sec: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub count: u64,
    pub min_us: u64,
    pub mean_us: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Latency {
    pub fn of(h: &Hist) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let q = |p: f64| h.0.value_at_quantile(p);
        Latency {
            count: h.len(),
            min_us: h.0.min(),
            mean_us: h.0.mean() as u64,
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: h.0.max(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Second {
    pub t: usize,
    /// Messages intended in this second that were delivered.
    pub count: u64,
    /// Deliveries that arrived in this second.
    pub received: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub percentile: f64,
    pub latency_us: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Server {
    pub processes: Vec<Process>,
    /// CPU time of every measured process during the load.
    pub cpu_us: u64,
    /// What one unit of work cost: a delivered message (connect-storm: an opened and
    /// joined connection).
    pub cpu_us_per_delivery: Option<f64>,
    /// RSS growth per connection while the connections were set up (connect-storm:
    /// during the storm).
    pub kib_per_connection: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Process {
    pub pid: u32,
    /// CPU time during the load.
    pub cpu_us: u64,
    pub rss_start_kib: u64,
    /// After setup (all connections open), before the load.
    pub rss_loaded_kib: u64,
    pub rss_end_kib: u64,
}

/// Server samples: before any connection, after setup, after the load.
pub struct Samples {
    pub pids: Vec<u32>,
    pub start: Vec<Sample>,
    pub loaded: Vec<Sample>,
    pub end: Vec<Sample>,
}

pub struct Inputs<'a> {
    pub cfg: &'a Config,
    pub plan: &'a Plan,
    pub tally: &'a Tally,
    pub workers: usize,
    pub samples: Option<Samples>,
    pub setup_s: f64,
    pub elapsed_s: f64,
    pub t0_us: u64,
}

/// The gateways HTTP publishing went to (none when the run published no HTTP).
fn http_used(cfg: &Config) -> Vec<String> {
    if !crate::uses_http(cfg) {
        return Vec::new();
    }
    if !cfg.http.is_empty() {
        return cfg.http.clone();
    }
    cfg.targets
        .first()
        .and_then(|t| crate::client::Target::parse(t).ok())
        .map(|t| vec![t.http_base()])
        .unwrap_or_default()
}

impl Report {
    pub fn build(i: Inputs<'_>) -> Report {
        let Inputs {
            cfg, plan, tally, ..
        } = i;
        let storm = cfg.scenario == Scenario::ConnectStorm;
        let setup_connects = plan.connects_in_setup();
        let (expected, lost) = if storm {
            (plan.total, plan.total.saturating_sub(tally.connected))
        } else {
            (tally.expected(), tally.lost())
        };
        let duration_s = cfg.duration.as_secs_f64();
        // The storm ends when its last connection is made; other loads last --duration
        // at least (longer when deliveries lag behind).
        let span_s = (tally.last_delivery_us > i.t0_us)
            .then(|| (tally.last_delivery_us - i.t0_us) as f64 / 1e6);
        let window_s = match (storm, span_s) {
            (true, Some(s)) => s.max(1e-3),
            (false, Some(s)) => s.max(duration_s),
            (_, None) => duration_s,
        };
        let sent_per_sec = if storm {
            cfg.rate.min(plan.total as f64 / window_s)
        } else {
            tally.sent as f64 / duration_s
        };
        let unanswered = if storm {
            0
        } else {
            tally
                .sent
                .saturating_sub(tally.published + tally.publish_errors)
        };
        let messages = Messages {
            scheduled: plan.total,
            sent: if storm { plan.total } else { tally.sent },
            published: tally.published,
            publish_errors: tally.publish_errors,
            unanswered,
            typing: tally.typing,
            expected,
            delivered: tally.delivered,
            lost,
            duplicates: tally.duplicates,
            foreign: tally.foreign,
            deliveries_per_sec: tally.delivered as f64 / window_s,
            sent_per_sec,
        };
        let connections = Connections {
            planned: plan.conns.len(),
            connected: tally.connected,
            failed: tally.connect_failed,
            dropped: tally.dropped,
            setup_s: i.setup_s,
            connect_latency: Latency::of(&tally.connect),
        };
        let server = i.samples.map(|s| {
            let processes: Vec<Process> = s
                .pids
                .iter()
                .enumerate()
                .map(|(n, &pid)| Process {
                    pid,
                    cpu_us: s.end[n].cpu_us.saturating_sub(s.loaded[n].cpu_us),
                    rss_start_kib: s.start[n].rss_kib,
                    rss_loaded_kib: s.loaded[n].rss_kib,
                    rss_end_kib: s.end[n].rss_kib,
                })
                .collect();
            let cpu_us: u64 = processes.iter().map(|p| p.cpu_us).sum();
            let sum = |v: &[Sample]| v.iter().map(|x| x.rss_kib as f64).sum::<f64>();
            let (grown, conns) = if storm {
                (sum(&s.end) - sum(&s.loaded), tally.connected)
            } else if setup_connects {
                (sum(&s.loaded) - sum(&s.start), tally.connected)
            } else {
                (0.0, 0)
            };
            Server {
                processes,
                cpu_us,
                cpu_us_per_delivery: (tally.delivered > 0)
                    .then(|| cpu_us as f64 / tally.delivered as f64),
                kib_per_connection: (conns > 0).then(|| grown / conns as f64),
            }
        });
        let empty = Hist::coarse();
        let timeline = (0..tally.timeline.len().max(tally.received.len()))
            .map(|t| (t, tally.timeline.get(t).unwrap_or(&empty)))
            .map(|(t, h)| Second {
                t,
                count: h.len(),
                received: tally.received.get(t).copied().unwrap_or(0),
                p50_us: if h.is_empty() {
                    0
                } else {
                    h.0.value_at_quantile(0.5)
                },
                p99_us: if h.is_empty() {
                    0
                } else {
                    h.0.value_at_quantile(0.99)
                },
                max_us: if h.is_empty() { 0 } else { h.0.max() },
            })
            .collect();
        let clean_but_losses = tally.duplicates == 0
            && tally.connect_failed == 0
            && tally.dropped == 0
            && tally.publish_errors == 0
            && unanswered == 0
            && tally.foreign == 0;
        let ok = lost == 0 && clean_but_losses;
        let latency = Latency::of(&tally.latency);
        let thresholds = thresholds(cfg, &latency, lost);
        let exit_status = exit_status(&thresholds, clean_but_losses, lost, cfg.max_lost);
        Report {
            tool: "chat-loadtest",
            version: env!("CARGO_PKG_VERSION"),
            scenario: cfg.scenario,
            run_id: plan.run.clone(),
            ok,
            thresholds,
            exit_status,
            settings: Settings {
                dialect: cfg.dialect,
                loss_check: if cfg.dialect.is_peer() {
                    "index"
                } else {
                    "seq"
                },
                targets: cfg.targets.clone(),
                http: http_used(cfg),
                encoding: if cfg.msgpack() {
                    Enc::Msgpack
                } else {
                    Enc::Json
                },
                publish: cfg.scenario.sends_messages().then(|| cfg.via()),
                members: cfg.members(),
                rooms: cfg.rooms_used(),
                rate: cfg.rate,
                duration_s,
                message_size: cfg.message_size,
                workers: i.workers,
                source_addrs: cfg.source_addrs.clone(),
            },
            connections,
            messages,
            latency,
            publish_latency: Latency::of(&tally.publish),
            timeline,
            distribution: distribution(&tally.latency),
            server,
            errors: tally.errors.clone(),
            elapsed_s: i.elapsed_s,
        }
    }

    /// The human summary.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let m = &self.messages;
        let c = &self.connections;
        let _ = writeln!(
            s,
            "chat-loadtest {}{} (run {}): {}",
            self.scenario_name(),
            match self.settings.dialect {
                Dialect::Chat => String::new(),
                d => format!(" --dialect {}", d.name()),
            },
            self.run_id,
            match (self.exit_status, self.ok) {
                (crate::EXIT_THRESHOLDS, _) => "THRESHOLD CROSSED (see below)",
                (_, true) => "OK",
                (0, false) => "OK within --max-lost",
                _ => "PROBLEMS (see below)",
            }
        );
        let _ = writeln!(
            s,
            "  connections  {} planned, {} connected, {} failed, {} dropped; setup {:.1} s, connect p50 {} p99 {}",
            c.planned,
            c.connected,
            c.failed,
            c.dropped,
            c.setup_s,
            ms(c.connect_latency.p50_us),
            ms(c.connect_latency.p99_us)
        );
        if self.scenario == Scenario::ConnectStorm {
            let _ = writeln!(
                s,
                "  storm        {} scheduled at {}/s, {} joined, {} failed",
                m.scheduled, self.settings.rate, m.delivered, m.lost
            );
        } else if self.scenario.sends_messages() {
            let _ = writeln!(
                s,
                "  messages     {} scheduled, {} sent ({:.0}/s), {} published, {} refused, {} unanswered",
                m.scheduled, m.sent, m.sent_per_sec, m.published, m.publish_errors, m.unanswered
            );
            let _ = writeln!(
                s,
                "  deliveries   {} of {} expected ({:.0}/s); lost {}, duplicates {}",
                m.delivered, m.expected, m.deliveries_per_sec, m.lost, m.duplicates
            );
        }
        if self.latency.count > 0 {
            let l = &self.latency;
            let _ = writeln!(
                s,
                "  latency      p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  ({} samples)",
                ms(l.p50_us),
                ms(l.p90_us),
                ms(l.p99_us),
                ms(l.p999_us),
                ms(l.max_us),
                l.count
            );
        }
        if let Some(sv) = &self.server {
            for p in &sv.processes {
                let _ = writeln!(
                    s,
                    "  server {:<6} cpu {:.2} s, rss {} -> {} -> {} MiB",
                    p.pid,
                    p.cpu_us as f64 / 1e6,
                    p.rss_start_kib / 1024,
                    p.rss_loaded_kib / 1024,
                    p.rss_end_kib / 1024
                );
            }
            if let Some(x) = sv.cpu_us_per_delivery {
                let unit = if self.scenario == Scenario::ConnectStorm {
                    "connection"
                } else {
                    "delivery"
                };
                let _ = writeln!(s, "  server cost  {x:.2} µs CPU per {unit}");
            }
            if let Some(k) = sv.kib_per_connection {
                let _ = writeln!(s, "  server mem   {k:.1} KiB RSS per connection");
            }
        }
        for t in &self.thresholds {
            let show = |v: u64| {
                if t.name == "lost" {
                    v.to_string()
                } else {
                    ms(v)
                }
            };
            let _ = writeln!(
                s,
                "  threshold    {} {} (max {}): {}",
                t.name,
                show(t.value),
                show(t.limit),
                if t.ok { "ok" } else { "CROSSED" }
            );
        }
        for (e, n) in &self.errors {
            let _ = writeln!(s, "  error ×{n}: {e}");
        }
        s
    }

    fn scenario_name(&self) -> &'static str {
        self.scenario.name()
    }
}

/// `1.23 ms`.
pub fn ms(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.0} ms", us as f64 / 1000.0)
    } else {
        format!("{:.2} ms", us as f64 / 1000.0)
    }
}

/// Points of the percentile curve, dense towards the tail: 0, 50, 90, 99, 99.9, … 100.
fn distribution(h: &Hist) -> Vec<Point> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    // x = log10(1 / (1 - p)) from 0 to 5, then the maximum.
    for i in 0..=100 {
        let x = i as f64 * 0.05;
        let p = 1.0 - 10f64.powf(-x);
        out.push(Point {
            percentile: p * 100.0,
            latency_us: h.0.value_at_quantile(p),
        });
    }
    out.push(Point {
        percentile: 100.0,
        latency_us: h.0.max(),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ok: bool) -> Threshold {
        Threshold {
            name: "p99",
            limit: 1,
            value: if ok { 1 } else { 2 },
            ok,
        }
    }

    #[test]
    fn the_exit_status_follows_thresholds_then_problems() {
        assert_eq!(exit_status(&[], true, 0, None), 0);
        assert_eq!(exit_status(&[t(true)], true, 0, None), 0);
        assert_eq!(exit_status(&[t(true), t(false)], true, 0, None), 99);
        // A crossed threshold wins over problems.
        assert_eq!(exit_status(&[t(false)], false, 5, None), 99);
        // Losses: 3, unless --max-lost tolerates them.
        assert_eq!(exit_status(&[], true, 5, None), 3);
        assert_eq!(exit_status(&[], true, 5, Some(5)), 0);
        assert_eq!(exit_status(&[], true, 5, Some(4)), 3);
        // Other problems (duplicates, failures) are not tolerated by --max-lost.
        assert_eq!(exit_status(&[], false, 0, Some(10)), 3);
    }
}
