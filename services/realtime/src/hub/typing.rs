//! Typing notices: a hint, so at most one per user per room per second is forwarded,
//! and members never see their own.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// At most one typing notice per user per room per this long is forwarded.
const TYPING_EVERY: Duration = Duration::from_secs(1);

/// Remembered (user, room) pairs before the stale ones are swept.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Default)]
pub(super) struct Typing {
    /// When each (user, room) last had a typing notice forwarded.
    last: Mutex<HashMap<(String, String), Instant>>,
}

impl Typing {
    /// Whether a typing notice of `user` in `room` may be forwarded at `now`.
    pub fn allowed(&self, user: &str, room: &str, now: Instant) -> bool {
        let mut last = self.last.lock();
        if last.len() > SWEEP_ABOVE {
            last.retain(|_, at| now.duration_since(*at) < TYPING_EVERY);
        }
        let key = (user.to_owned(), room.to_owned());
        match last.get(&key) {
            Some(at) if now.duration_since(*at) < TYPING_EVERY => false,
            _ => {
                last.insert(key, now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_notice_per_user_per_room_per_second() {
        let typing = Typing::default();
        let t0 = Instant::now();
        assert!(typing.allowed("ann", "r", t0));
        assert!(!typing.allowed("ann", "r", t0 + Duration::from_millis(500)));
        assert!(typing.allowed("ann", "other", t0), "another room");
        assert!(typing.allowed("bob", "r", t0), "another user");
        assert!(typing.allowed("ann", "r", t0 + TYPING_EVERY));
    }
}
