//! What the servers spend: CPU time (`utime + stime` of `/proc/PID/stat`) and resident
//! memory (`VmRSS` of `/proc/PID/status`) of the processes named by `--server-pid`.

use serde::Serialize;

/// Linux reports CPU time in clock ticks of `USER_HZ`, which is 100 on every
/// architecture's user ABI.
const TICKS_PER_SEC: u64 = 100;

/// One process at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Sample {
    pub cpu_us: u64,
    pub rss_kib: u64,
}

pub fn sample(pid: u32) -> Result<Sample, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("--server-pid {pid}: cannot read /proc/{pid}/stat: {e}"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("--server-pid {pid}: cannot read /proc/{pid}/status: {e}"))?;
    let ticks = cpu_ticks(&stat)
        .ok_or_else(|| format!("--server-pid {pid}: unreadable /proc/{pid}/stat"))?;
    Ok(Sample {
        cpu_us: ticks * (1_000_000 / TICKS_PER_SEC),
        rss_kib: rss_kib(&status).unwrap_or(0),
    })
}

/// CPU time of the calling thread so far (`/proc/thread-self/stat`), in µs; 0 when
/// unreadable. Tick resolution (10 ms): for runs of seconds.
pub fn thread_cpu_us() -> u64 {
    std::fs::read_to_string("/proc/thread-self/stat")
        .ok()
        .and_then(|s| cpu_ticks(&s))
        .map_or(0, |t| t * (1_000_000 / TICKS_PER_SEC))
}

/// `utime + stime` (fields 14 and 15). The command name (field 2) may hold spaces and
/// parentheses, so fields are counted from the last `)`.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state): utime is field 14, at index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Samples every process; the first error names the pid.
pub fn sample_all(pids: &[u32]) -> Result<Vec<Sample>, String> {
    pids.iter().map(|&p| sample(p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_tricky_command_name() {
        let stat =
            "1234 (chat (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 100 0 0";
        assert_eq!(cpu_ticks(stat), Some(300));
        assert_eq!(rss_kib("Name:\tx\nVmRSS:\t  20480 kB\n"), Some(20480));
    }

    #[test]
    fn samples_this_process() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_kib > 0);
        assert!(sample(u32::MAX).is_err());
    }
}
