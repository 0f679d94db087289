//! What one WebSocket replica allows its connections: how many, from whom, how fast,
//! and how much may wait to be written to each. Each hit is counted in
//! `chat_limit_hits_total`. The text limit the WebSocket shares with the gateway is
//! [`chat_protocol::codec::TextLimit`]; the handshake timeout every listener shares is
//! [`chat_telemetry::serve::EdgeConfig`].

use crate::proxy::Proxies;

/// The WebSocket limits of one replica.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionLimits {
    /// Rooms one connection may be in at once.
    #[arg(long, env = "CHAT_MAX_ROOMS_PER_CONNECTION", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_rooms_per_connection: u32,

    /// Connections one user may hold on one replica.
    #[arg(long, env = "CHAT_MAX_CONNECTIONS_PER_USER", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_user: u32,

    /// Connections one IP address may hold on one replica (behind a proxy that is not
    /// in `CHAT_TRUSTED_PROXIES`, the proxy's).
    #[arg(long, env = "CHAT_MAX_CONNECTIONS_PER_IP", default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_ip: u32,

    /// Proxies (addresses or CIDR blocks, comma-separated) whose `X-Forwarded-For`
    /// names the client for the per-IP limit. Empty: the header is never read.
    #[arg(long, env = "CHAT_TRUSTED_PROXIES", default_value = "", value_parser = clap::value_parser!(Proxies))]
    pub trusted_proxies: Proxies,

    /// Frames per second one connection may send (token bucket refill rate).
    #[arg(long, env = "CHAT_RATE_LIMIT_PER_SEC", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_per_sec: u32,

    /// Frames one connection may send in a burst (token bucket size).
    #[arg(long, env = "CHAT_RATE_LIMIT_BURST", default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_burst: u32,

    /// Bytes queued to one connection before it counts as a slow consumer (closed
    /// with 1013; it reconnects and recovers).
    #[arg(long, env = "CHAT_SEND_QUEUE_BYTES", default_value_t = 1 << 20, value_parser = clap::value_parser!(u32).range(4096..))]
    pub send_queue_bytes: u32,

    /// Not a limit but the fan-out's trade: milliseconds a connection's writer waits
    /// after the first frame of a batch, so that frames arriving meanwhile share one
    /// write. 0 writes at once (lowest latency); a few ms cut the CPU per delivery in
    /// busy rooms.
    #[arg(long, env = "CHAT_WRITE_DELAY_MS", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub write_delay_ms: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        chat_protocol::settings::declared_defaults()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_declared_ones() {
        let limits = ConnectionLimits::default();
        assert_eq!(limits.max_connections_per_ip, 20_000);
        assert_eq!(limits.send_queue_bytes, 1 << 20);
        assert_eq!(limits.trusted_proxies, Proxies::default());
    }
}
