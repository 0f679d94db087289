//! A connection's frame budget: a token bucket refilled at `rate` per second, holding at
//! most `burst`. A client that keeps sending into an empty bucket is cut off.

use std::time::Instant;

use chat_protocol::rate::TokenBucket;

pub struct FrameBudget {
    bucket: TokenBucket,
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

impl FrameBudget {
    pub fn new(rate: u32, burst: u32) -> Self {
        Self {
            bucket: TokenBucket::new(rate, burst, Instant::now()),
            refused_in_a_row: 0,
        }
    }

    pub fn check(&mut self, now: Instant) -> Verdict {
        if self.bucket.take(now).is_ok() {
            self.refused_in_a_row = 0;
            return Verdict::Allow;
        }
        self.refused_in_a_row += 1;
        // As many refusals as a full burst: the client is not listening.
        if f64::from(self.refused_in_a_row) > self.bucket.burst() {
            Verdict::Disconnect
        } else {
            Verdict::Refuse
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
        let mut b = FrameBudget::new(10, 5);
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
        let mut b = FrameBudget::new(1, 3);
        for _ in 0..3 {
            b.check(t0);
        }
        for _ in 0..3 {
            assert_eq!(b.check(t0), Verdict::Refuse);
        }
        assert_eq!(b.check(t0), Verdict::Disconnect);
    }
}
