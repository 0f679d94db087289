//! `chat_memory_limit_bytes`: the memory this process may use before it is killed, read
//! at each scrape, so an alert can compare `process_resident_memory_bytes` with it in
//! compose and in Kubernetes alike (no cAdvisor or kube-state-metrics needed).

use prometheus::IntGauge;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;

pub struct MemoryLimit {
    gauge: IntGauge,
}

impl MemoryLimit {
    pub fn new() -> Self {
        Self {
            gauge: IntGauge::new(
                "chat_memory_limit_bytes",
                "The memory this process may use: its cgroup's limit (the container's), or the machine's memory where the cgroup sets none.",
            )
            .expect("valid metric"),
        }
    }
}

impl Default for MemoryLimit {
    fn default() -> Self {
        Self::new()
    }
}

impl Collector for MemoryLimit {
    fn desc(&self) -> Vec<&Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        match limit_bytes() {
            Some(bytes) => {
                self.gauge.set(i64::try_from(bytes).unwrap_or(i64::MAX));
                self.gauge.collect()
            }
            None => Vec::new(),
        }
    }
}

/// The smaller of the cgroup's limit (v2 `memory.max`, v1 `memory.limit_in_bytes`; an
/// unlimited v1 cgroup reports a huge number, which the machine's memory then beats)
/// and the machine's `MemTotal`.
pub fn limit_bytes() -> Option<u64> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let cgroups = read("/proc/self/cgroup").unwrap_or_default();
    let mut candidates = Vec::new();
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next(), parts.next());
        let (Some(controllers), Some(path)) = (controllers, path) else {
            continue;
        };
        let path = path.trim_end_matches('/');
        if controllers.is_empty() {
            candidates.push(format!("/sys/fs/cgroup{path}/memory.max"));
        } else if controllers.split(',').any(|c| c == "memory") {
            candidates.push(format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes"));
        }
    }
    // Inside a container's cgroup namespace the own group is the mount's root.
    candidates.push("/sys/fs/cgroup/memory.max".into());
    candidates.push("/sys/fs/cgroup/memory/memory.limit_in_bytes".into());
    let cgroup = candidates
        .iter()
        .filter_map(|p| read(p)?.trim().parse::<u64>().ok())
        .min();
    let machine = read("/proc/meminfo").and_then(|m| {
        let kib = m.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
        Some(
            kib.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()?
                * 1024,
        )
    });
    match (cgroup, machine) {
        (Some(c), Some(m)) => Some(c.min(m)),
        (c, m) => c.or(m),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_limit_is_at_most_the_machines_memory() {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
        let total: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .unwrap()
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap();
        let limit = super::limit_bytes().unwrap();
        assert!(limit > 0 && limit <= total * 1024, "{limit} vs {total} KiB");
    }
}
