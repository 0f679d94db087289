//! The publish routes' budget: a token bucket per user, refilled at `rate` per second and
//! holding at most `burst`, on each gateway replica. A caller past it gets 429
//! `rate_limited` with `Retry-After`. Server API keys are not limited: a backend
//! publishes for many users, and its own load is its operator's to size.
//! [`PublishBudget`] is its settings (`CHAT_HTTP_RATE_LIMIT_*`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chat_protocol::rate::TokenBucket;
use parking_lot::Mutex;

/// Buckets kept before idle ones are swept: a full bucket says nothing a new one would
/// not, so sweeping them bounds memory by the callers active within one refill.
const SWEEP_ABOVE: usize = 4096;

/// The publish budget's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct PublishBudget {
    /// HTTP publishes per second one user may make on a gateway (token bucket refill
    /// rate); past it 429 with `Retry-After`. Server API keys are not limited.
    #[arg(long, env = "CHAT_HTTP_RATE_LIMIT_PER_SEC", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub http_rate_limit_per_sec: u32,

    /// HTTP publishes one user may make in a burst (token bucket size).
    #[arg(long, env = "CHAT_HTTP_RATE_LIMIT_BURST", default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..))]
    pub http_rate_limit_burst: u32,
}

impl Default for PublishBudget {
    fn default() -> Self {
        chat_protocol::settings::declared_defaults()
    }
}

pub struct PublishLimiter {
    rate: u32,
    burst: u32,
    buckets: Mutex<HashMap<String, TokenBucket>>,
}

impl PublishLimiter {
    pub fn from_budget(budget: &PublishBudget) -> Self {
        Self::new(budget.http_rate_limit_per_sec, budget.http_rate_limit_burst)
    }

    pub fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one publish from `key`'s bucket, or says how long until one is there.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock();
        if buckets.len() > SWEEP_ABOVE {
            buckets.retain(|_, b| !b.is_full(now));
        }
        // The key is copied only for a caller without a bucket yet.
        let bucket = match buckets.get_mut(key) {
            Some(b) => b,
            None => buckets
                .entry(key.to_owned())
                .or_insert_with(|| TokenBucket::new(self.rate, self.burst, now)),
        };
        bucket.take(now)
    }
}

/// `Retry-After` is whole seconds: round up, so a caller that waits it is let through.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_per_user() {
        let t0 = Instant::now();
        let limiter = PublishLimiter::new(2, 3);
        for _ in 0..3 {
            assert_eq!(limiter.check("alice", t0), Ok(()));
        }
        let wait = limiter.check("alice", t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert_eq!(retry_after_secs(wait), 1);
        // Bob has a bucket of his own.
        assert_eq!(limiter.check("bob", t0), Ok(()));
        // Half a second at 2/s refills one.
        assert_eq!(limiter.check("alice", t0 + wait), Ok(()));
        assert!(limiter.check("alice", t0 + wait).is_err());
    }

    #[test]
    fn full_buckets_are_swept_as_a_new_one_would_be() {
        let t0 = Instant::now();
        let limiter = PublishLimiter::new(1, 1);
        limiter.check("busy", t0).unwrap();
        for i in 0..=SWEEP_ABOVE {
            limiter.check(&format!("u{i}"), t0).unwrap();
        }
        // One second later every bucket is full again, so the sweep drops them all;
        // `busy` starts a fresh bucket, which is what it would have had.
        let t1 = t0 + Duration::from_millis(1000);
        limiter.check("busy", t1).unwrap();
        limiter.check("new", t1).unwrap();
        let mut buckets = limiter.buckets.lock();
        assert!(buckets.len() <= 2, "{} buckets kept", buckets.len());
        // `busy` spent its fresh bucket's one token.
        assert!(buckets.get_mut("busy").unwrap().take(t1).is_err());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
    }
}
