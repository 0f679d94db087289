//! Epochs: a channel's epoch changes only when its history is lost (a Redis without
//! persistence restarted, history expired), so `(epoch, seq)` names a message for good.

use rand::Rng;

/// A fresh epoch: 12 random alphanumerics, never containing a space (the bus framing
/// relies on that).
pub fn new_epoch() -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(12)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn epochs_differ_and_have_no_spaces() {
        let a = super::new_epoch();
        let b = super::new_epoch();
        assert_ne!(a, b);
        assert_eq!(a.len(), 12);
        assert!(!a.contains(' '));
    }
}
