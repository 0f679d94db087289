//! The engine's settings. Each binary flattens these into its own configuration.

/// Where messages are stored and how many are kept.
#[derive(Debug, Clone, clap::Args)]
pub struct EngineConfig {
    /// `redis://…` or `rediss://…`. Unset on `chat`: the in-memory engine.
    #[arg(long, env = "CHAT_REDIS_URL")]
    pub redis_url: Option<String>,

    /// Redis password (`AUTH`), taking the place of one in `CHAT_REDIS_URL`: so it can
    /// come from a Secret of its own and needs no URL escaping. Unset: the URL's.
    #[arg(long, env = "CHAT_REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,

    /// PEM file of the CA that signed the Redis server's certificate, for `rediss://`
    /// to a private CA. Unset: the system's trusted roots.
    #[arg(long, env = "CHAT_REDIS_CA_FILE", value_parser = parse_pem_file)]
    pub redis_ca_file: Option<PemFile>,

    /// Prefix of every Redis key and channel, so deployments can share one Redis.
    #[arg(long, env = "CHAT_REDIS_PREFIX", default_value = "chat", value_parser = parse_prefix)]
    pub redis_prefix: String,

    /// Messages kept per channel.
    #[arg(long, env = "CHAT_HISTORY_SIZE", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub history_size: u64,

    /// Seconds history is kept after a channel's last message.
    #[arg(long, env = "CHAT_HISTORY_TTL_SECS", default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..))]
    pub history_ttl_secs: u64,

    /// Seconds a presence entry lives without a refresh: a replica that dies stops
    /// counting its users after this long. Replicas refresh at a third of it.
    #[arg(long, env = "CHAT_PRESENCE_TTL_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(3..=3600))]
    pub presence_ttl_secs: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        chat_protocol::settings::declared_defaults()
    }
}

fn parse_prefix(s: &str) -> Result<String, String> {
    if !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"_-.:".contains(&c))
    {
        Ok(s.to_owned())
    } else {
        Err("use 1 or more of A-Z a-z 0-9 _ - . :".into())
    }
}

/// A PEM file read at start, so a missing or wrong file stops the process there.
#[derive(Clone)]
pub struct PemFile(pub Vec<u8>);

impl std::fmt::Debug for PemFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PemFile({} bytes)", self.0.len())
    }
}

fn parse_pem_file(path: &str) -> Result<PemFile, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    if !pem
        .windows(b"-----BEGIN CERTIFICATE-----".len())
        .any(|w| w == b"-----BEGIN CERTIFICATE-----")
    {
        return Err(format!("{path} holds no PEM certificate"));
    }
    Ok(PemFile(pem))
}
