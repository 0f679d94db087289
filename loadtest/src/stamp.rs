//! The stamp every message text starts with: `RUN.K.T|` then padding, where `RUN` is the
//! run id, `K` the message's index in the schedule and `T` its *intended* send time in
//! µs since the Unix epoch, both in hex. Latency is measured from `T`, not from when the
//! message actually left, so a publisher that falls behind cannot hide the delay
//! (no coordinated omission).

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch. Wall-clock time, so that worker processes and the
/// parent agree on it (they run on one machine).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The text of message `k` of run `run`, padded to `size` bytes (longer only when the
/// stamp itself is).
pub fn text(run: &str, k: u64, intended_us: u64, size: usize) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(size.max(40));
    let _ = write!(s, "{run}.{k:x}.{intended_us:x}|");
    while s.len() < size {
        s.push('x');
    }
    s
}

/// A parsed stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub k: u64,
    pub intended_us: u64,
}

/// Reads the stamp of `text` if it belongs to run `run`.
pub fn parse(run: &str, text: &str) -> Option<Stamp> {
    let rest = text.strip_prefix(run)?.strip_prefix('.')?;
    let (head, _) = rest.split_once('|')?;
    let (k, t) = head.split_once('.')?;
    Some(Stamp {
        k: u64::from_str_radix(k, 16).ok()?,
        intended_us: u64::from_str_radix(t, 16).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_round_trips_and_pads_to_size() {
        let t = text("ab12cd", 1234, 1_700_000_000_123_456, 100);
        assert_eq!(t.len(), 100);
        assert_eq!(
            parse("ab12cd", &t),
            Some(Stamp {
                k: 1234,
                intended_us: 1_700_000_000_123_456
            })
        );
    }

    #[test]
    fn other_runs_and_plain_text_are_not_ours() {
        let t = text("ab12cd", 1, 2, 50);
        assert_eq!(parse("ab12ce", &t), None);
        assert_eq!(parse("ab12c", &t), None);
        assert_eq!(parse("ab12cd", "hello"), None);
        assert_eq!(parse("ab12cd", "ab12cd.zz.1|"), None);
    }

    #[test]
    fn the_longest_stamp_still_parses() {
        let t = text("0123456789abcdef", u64::MAX, u64::MAX, 10);
        assert!(t.len() > 10);
        assert_eq!(parse("0123456789abcdef", &t).unwrap().k, u64::MAX);
    }
}
