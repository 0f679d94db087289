//! A connection's frame budget: a token bucket refilled at `rate` per second, holding at
//! most `burst`. A client that keeps sending into an empty bucket is cut off.

use std::time::Instant;

pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    /// Refusals since the last frame that was let through.
    refused_in_a_row: u32,
}

/// What to do with a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Answer `rate_limited` and drop the frame.
    Refuse,
    /// The client ignores refusals: close the connection (1008).
    Disconnect,
}

impl TokenBucket {
    pub fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: Instant::now(),
            refused_in_a_row: 0,
        }
    }

    pub fn check(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.refused_in_a_row = 0;
            Verdict::Allow
        } else {
            self.refused_in_a_row += 1;
            // As many refusals as a full burst: the client is not listening.
            if f64::from(self.refused_in_a_row) > self.burst {
                Verdict::Disconnect
            } else {
                Verdict::Refuse
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 5);
        for _ in 0..5 {
            assert_eq!(b.check(t0), Verdict::Allow);
        }
        assert_eq!(b.check(t0), Verdict::Refuse);
        // 100 ms at 10/s refills one token.
        assert_eq!(b.check(t0 + Duration::from_millis(100)), Verdict::Allow);
        assert_eq!(b.check(t0 + Duration::from_millis(100)), Verdict::Refuse);
    }

    #[test]
    fn a_client_that_ignores_refusals_is_disconnected() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1, 3);
        for _ in 0..3 {
            b.check(t0);
        }
        for _ in 0..3 {
            assert_eq!(b.check(t0), Verdict::Refuse);
        }
        assert_eq!(b.check(t0), Verdict::Disconnect);
    }
}
