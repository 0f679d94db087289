//! The token bucket behind every `rate_limited`: refilled at `rate` per second, holding
//! at most `burst`. A connection's frames (WebSocket) and a user's publishes (HTTP)
//! each spend one of their own.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(rate: u32, burst: u32, now: Instant) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: now,
        }
    }

    /// Takes one token, or says how long until one is there.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.tokens = self.refilled(now);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }

    /// Whether it has refilled to `burst` by `now`: then it is no different from a new
    /// one.
    pub fn is_full(&self, now: Instant) -> bool {
        self.refilled(now) >= self.burst
    }

    /// The tokens it holds, as a whole burst.
    pub fn burst(&self) -> f64 {
        self.burst
    }

    fn refilled(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        (self.tokens + elapsed * self.rate).min(self.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_and_the_wait_for_the_next() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 2, t0);
        assert_eq!(b.take(t0), Ok(()));
        assert_eq!(b.take(t0), Ok(()));
        assert_eq!(b.take(t0), Err(Duration::from_millis(100)));
        assert!(!b.is_full(t0 + Duration::from_millis(100)));
        assert_eq!(b.take(t0 + Duration::from_millis(100)), Ok(()));
        assert!(b.is_full(t0 + Duration::from_millis(300)));
    }
}
