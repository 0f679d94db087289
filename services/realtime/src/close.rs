//! Why a connection closes: every close code the server sends (RFC 6455 §7.4, and the
//! contract's own 4408), and the `chat_ws_closes_total` reason it is counted under.

/// A close code the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The client closed first: its code is echoed (1000 for a close without one).
    Echo(u16),
    /// 1001: no answer to pings.
    GoingAway,
    /// 1002: the client broke RFC 6455's framing rules.
    ProtocolError,
    /// 1006: the connection was lost; never sent, only counted.
    Lost,
    /// 1007: a text message (or a close reason) that is not UTF-8.
    InvalidData,
    /// 1008: bad credentials, too many connections, or frames past the rate limit.
    Policy,
    /// 1009: a message over the frame limit.
    TooLarge,
    /// 1011: the server could not serve the connection.
    Internal,
    /// 1012: the replica is draining.
    Restart,
    /// 1013: a slow consumer (its send queue overflowed, or a write timed out).
    TryAgainLater,
    /// 4408: no `connect` in time.
    ConnectTimeout,
}

/// Every code but the echo, for the metric series that exist from the start.
const SENT: [Code; 10] = [
    Code::GoingAway,
    Code::ProtocolError,
    Code::Lost,
    Code::InvalidData,
    Code::Policy,
    Code::TooLarge,
    Code::Internal,
    Code::Restart,
    Code::TryAgainLater,
    Code::ConnectTimeout,
];

impl Code {
    /// The number in the close frame.
    pub fn number(self) -> u16 {
        match self {
            Code::Echo(n) => n,
            Code::GoingAway => 1001,
            Code::ProtocolError => 1002,
            Code::Lost => 1006,
            Code::InvalidData => 1007,
            Code::Policy => 1008,
            Code::TooLarge => 1009,
            Code::Internal => 1011,
            Code::Restart => 1012,
            Code::TryAgainLater => 1013,
            Code::ConnectTimeout => 4408,
        }
    }

    /// The `reason` label of `chat_ws_closes_total`.
    pub fn label(self) -> &'static str {
        match self {
            // Whatever code the client chose, it ended the connection itself.
            Code::Echo(_) => "normal",
            Code::GoingAway => "idle",
            Code::ProtocolError => "protocol_error",
            Code::Lost => "lost",
            Code::InvalidData => "invalid_data",
            Code::Policy => "policy",
            Code::TooLarge => "too_large",
            // Counted as `error` since before the codes had names.
            Code::Internal => "error",
            Code::Restart => "drain",
            Code::TryAgainLater => "slow_consumer",
            Code::ConnectTimeout => "connect_timeout",
        }
    }

    /// The `chat_limit_hits_total` limit a close counts against, if any.
    pub fn limit(self) -> Option<&'static str> {
        match self {
            Code::GoingAway => Some("idle"),
            Code::TooLarge => Some("frame_size"),
            Code::TryAgainLater => Some("slow_consumer"),
            Code::ConnectTimeout => Some("connect_timeout"),
            _ => None,
        }
    }
}

/// Why the writer must close the connection: the code and the reason text it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close {
    pub code: Code,
    pub reason: &'static str,
}

impl Close {
    pub const fn new(code: Code, reason: &'static str) -> Close {
        Close { code, reason }
    }
}

/// Every reason `chat_ws_closes_total` can carry.
pub fn labels() -> impl Iterator<Item = &'static str> {
    std::iter::once(Code::Echo(1000).label()).chain(SENT.iter().map(|c| c.label()))
}

/// Whether a client may close with `code` (RFC 6455 §7.4): the defined codes that may
/// be sent (not 1004, 1005, 1006 or 1015), the IANA registered ones, and 3000-4999.
pub fn client_may_send(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_keep_their_values_and_are_distinct() {
        let labels: Vec<_> = labels().collect();
        for kept in [
            "normal",
            "idle",
            "lost",
            "policy",
            "too_large",
            "drain",
            "slow_consumer",
            "connect_timeout",
            "error",
        ] {
            assert!(labels.contains(&kept), "{kept}");
        }
        let mut unique = labels.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), labels.len());
    }

    #[test]
    fn close_codes_a_client_may_send() {
        for ok in [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999] {
            assert!(client_may_send(ok), "{ok}");
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert!(!client_may_send(bad), "{bad}");
        }
    }
}
