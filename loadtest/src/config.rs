//! The command line: one scenario and its sizes, where the servers are, how to sign in,
//! and what to report. Every flag states its default; a bad one is one line and exit
//! status 64.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::Error;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "chat-loadtest",
    version,
    about = "Load generator and report for the chat servers (protocol v1)",
    after_help = "Examples:\n  \
        chat-loadtest fanout --members 1000 --rate 200 --api-key KEY \\\n    \
        --target ws://127.0.0.1:8081/ws,ws://127.0.0.1:8082/ws --http http://127.0.0.1:8080\n  \
        chat-loadtest idle --connections 19000 --source-addrs 127.0.0.2-127.0.0.5 --server-pid 1234"
)]
pub struct Config {
    /// What load to generate: `fanout` (one room, N members, one publisher at --rate),
    /// `rooms` (--rooms rooms of --members members, everyone sends), `direct` (direct
    /// messages between --connections users), `connect-storm` (--rate connects per
    /// second, each with connect + join), `idle` (--connections held open), `mixed`
    /// (rooms traffic with direct messages and typing notices).
    #[arg(value_enum)]
    pub scenario: Scenario,

    /// WebSocket URLs of the realtime servers, comma-separated or repeated; clients are
    /// spread over them round-robin. Default: ws://127.0.0.1:8080/ws (the all-in-one `chat`).
    #[arg(
        long = "target",
        short = 't',
        value_delimiter = ',',
        default_value = "ws://127.0.0.1:8080/ws"
    )]
    pub targets: Vec<String>,

    /// HTTP base URLs of the gateways used for HTTP publishing, comma-separated or
    /// repeated. Default: the first target's host and port over http.
    #[arg(long = "http", value_delimiter = ',')]
    pub http: Vec<String>,

    /// Which server the load is for: `chat` (protocol v1), or a peer server of the
    /// comparison in loadtest/peers/: `bun` (bun-server.js) or `socketio`
    /// (socketio-server.js, Engine.IO v4 on the WebSocket transport; give the target as
    /// ws://host:port/socket.io/). Peers speak JSON, have no seqs (losses are counted from
    /// the stamps' message indices) and run fanout, rooms, idle and connect-storm.
    /// Default: chat.
    #[arg(long, value_enum, default_value = "chat")]
    pub dialect: Dialect,

    /// Encoding of the server's frames: `msgpack` (subprotocol chat.v1.msgpack) or `json`.
    /// Default: msgpack.
    #[arg(long, value_enum, default_value = "msgpack")]
    pub encoding: Enc,

    /// Members per room. Default: 1000 for fanout, 10 otherwise.
    #[arg(long)]
    pub members: Option<usize>,

    /// Rooms (rooms, mixed). Default: 10.
    #[arg(long, default_value_t = 10)]
    pub rooms: usize,

    /// Connections (direct, connect-storm, idle). Default: 1000.
    #[arg(long)]
    pub connections: Option<usize>,

    /// Messages per second over all senders; for connect-storm, connections per second.
    /// Default: 100.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,

    /// How messages are published: `http` (POST /v1/rooms/{room}/messages) or `ws`
    /// (a `send` frame). Default: http for fanout, ws otherwise.
    #[arg(long, value_enum)]
    pub publish: Option<Via>,

    /// Fan-out over WebSocket: connections the messages are sent from, in turn (the
    /// servers limit the frames one connection may send per second: 20 by default).
    /// Default: one per 10 messages per second.
    #[arg(long)]
    pub publishers: Option<usize>,

    /// How long the load runs (publishing, holding idle connections, or the storm):
    /// `10s`, `500ms`, `1m`, or seconds. Default: 10s.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Size of each message's text in bytes (at least 40: the stamp). Default: 100.
    #[arg(long, default_value_t = 100)]
    pub message_size: usize,

    /// Fraction of mixed messages that are direct messages. Default: 0.1.
    #[arg(long, default_value_t = 0.1)]
    pub dm_ratio: f64,

    /// Server API key: HTTP publishing as any user (`Authorization: Bearer KEY`), outside
    /// the gateways' per-user budget (CHAT_HTTP_RATE_LIMIT_PER_SEC), which HTTP
    /// publishing with user tokens meets.
    #[arg(long, env = ENV_API_KEY, hide_env_values = true)]
    pub api_key: Option<String>,

    /// HS256 secret (the servers' CHAT_JWT_SECRET): connect and publish with minted user
    /// tokens instead of dev mode's bare user names.
    #[arg(long, env = ENV_TOKEN_SECRET, hide_env_values = true)]
    pub token_secret: Option<String>,

    /// Local source addresses for client sockets, comma-separated; `A-B` is a range
    /// (127.0.0.2-127.0.0.9). Each address gives the kernel's ephemeral port range (about 28k ports by default) per target. Default: the
    /// kernel's choice.
    #[arg(long, value_delimiter = ',')]
    pub source_addrs: Vec<String>,

    /// New connections per second while the load is set up. Default: 1000.
    #[arg(long, default_value_t = 1000.0)]
    pub ramp_rate: f64,

    /// Handshakes in flight at once while ramping (keep it below the server's listen
    /// backlog: Linux's default somaxconn is 4096). Default: 256.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,

    /// Worker processes, each holding a slice of the connections (one process holds no
    /// more sockets than its open-file limit, `ulimit -n`). Default: 1, raised
    /// automatically when one process cannot hold them all.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,

    /// A server process to measure (CPU time and RSS from /proc); repeat for several.
    #[arg(long = "server-pid")]
    pub server_pids: Vec<u32>,

    /// Wait after the load was set up before it starts, so join traffic settles.
    /// Default: 500ms.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub settle: Duration,

    /// Longest wait for the last deliveries after publishing stopped. Default: 10s.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub drain: Duration,

    /// Longest time to open every connection before the run is abandoned. Default: 120s.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub setup_timeout: Duration,

    /// wss:// targets: trust only the CA certificates in this PEM file (instead of the
    /// system's roots).
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,

    /// wss:// targets: accept any server certificate (self-signed test setups).
    #[arg(long)]
    pub insecure: bool,

    /// Threshold: exit with status 99 when the delivery latency's p50 is above this
    /// (`50ms`, `1.5s`).
    #[arg(long, value_parser = parse_duration)]
    pub max_p50: Option<Duration>,

    /// Threshold: exit with status 99 when the delivery latency's p99 is above this.
    #[arg(long, value_parser = parse_duration)]
    pub max_p99: Option<Duration>,

    /// Threshold: exit with status 99 when the delivery latency's p99.9 is above this.
    #[arg(long, value_parser = parse_duration)]
    pub max_p999: Option<Duration>,

    /// Threshold: exit with status 99 when more deliveries than this were lost; losses
    /// up to it no longer make the exit status 3.
    #[arg(long)]
    pub max_lost: Option<u64>,

    /// Print one JSON document on stdout (the human summary goes to stderr).
    #[arg(long)]
    pub json: bool,

    /// Write a self-contained HTML report (latency over time and distribution) to this
    /// file.
    #[arg(long)]
    pub html: Option<PathBuf>,

    /// No progress bar and no summary on stderr.
    #[arg(long, short = 'q')]
    pub quiet: bool,

    /// Names rooms and users of this run (default: random); workers share the parent's.
    #[arg(long, hide = true)]
    pub run_id: Option<String>,

    /// Internal: this process is worker `I/N` of a parent.
    #[arg(long, hide = true, value_parser = parse_slot)]
    pub worker: Option<(usize, usize)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    Fanout,
    Rooms,
    Direct,
    ConnectStorm,
    Idle,
    Mixed,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Fanout => "fanout",
            Scenario::Rooms => "rooms",
            Scenario::Direct => "direct",
            Scenario::ConnectStorm => "connect-storm",
            Scenario::Idle => "idle",
            Scenario::Mixed => "mixed",
        }
    }

    /// Scenarios whose load is messages (the others measure connections).
    pub fn sends_messages(self) -> bool {
        !matches!(self, Scenario::ConnectStorm | Scenario::Idle)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    Chat,
    Bun,
    Socketio,
}

impl Dialect {
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Chat => "chat",
            Dialect::Bun => "bun",
            Dialect::Socketio => "socketio",
        }
    }

    /// A peer server of the comparison, not chat.
    pub fn is_peer(self) -> bool {
        self != Dialect::Chat
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Enc {
    Msgpack,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    Http,
    Ws,
}

/// `--api-key` from the environment (how the parent hands it to worker processes).
pub const ENV_API_KEY: &str = "CHAT_LOADTEST_API_KEY";
/// `--token-secret` from the environment.
pub const ENV_TOKEN_SECRET: &str = "CHAT_LOADTEST_TOKEN_SECRET";

/// The smallest text that holds the stamp of a run (see [`crate::stamp`]).
pub const MIN_MESSAGE_SIZE: usize = 40;

impl Config {
    /// Parses the process's arguments; a bad flag is one line and exit status 64.
    pub fn from_args() -> Result<Config, Error> {
        Self::parse_from_iter(std::env::args_os())
    }

    pub fn parse_from_iter<I, T>(args: I) -> Result<Config, Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
        let scenario = args
            .iter()
            .skip(1)
            .find_map(|a| Scenario::from_str(a.to_str()?, false).ok());
        let args_scenario = |_: &clap::Error| scenario;
        match Config::try_parse_from(&args) {
            Ok(c) => {
                c.validate()?;
                Ok(c)
            }
            Err(e) => match e.kind() {
                clap::error::ErrorKind::DisplayHelp => {
                    Err(Error::Help(help_for(args_scenario(&e))))
                }
                clap::error::ErrorKind::DisplayVersion
                | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    Err(Error::Help(e.to_string()))
                }
                _ => {
                    let text = e.to_string();
                    let first = text.lines().next().unwrap_or("bad arguments");
                    let first = first.strip_prefix("error: ").unwrap_or(first);
                    Err(Error::Usage(format!("{first} (see --help)")))
                }
            },
        }
    }

    /// Rooms the scenario uses: one for fanout, `--rooms` for rooms and mixed, none
    /// for the others.
    pub fn rooms_used(&self) -> usize {
        match self.scenario {
            Scenario::Fanout => 1,
            Scenario::Rooms | Scenario::Mixed => self.rooms,
            Scenario::Direct | Scenario::ConnectStorm | Scenario::Idle => 0,
        }
    }

    pub fn members(&self) -> usize {
        self.members.unwrap_or(match self.scenario {
            Scenario::Fanout => 1000,
            _ => 10,
        })
    }

    pub fn publishers(&self) -> usize {
        self.publishers
            .unwrap_or_else(|| (self.rate / 10.0).ceil().max(1.0) as usize)
    }

    pub fn connections(&self) -> usize {
        self.connections.unwrap_or(1000)
    }

    pub fn via(&self) -> Via {
        self.publish.unwrap_or(match self.scenario {
            Scenario::Fanout => Via::Http,
            _ => Via::Ws,
        })
    }

    /// MessagePack frames: chat with `--encoding msgpack` (peers speak JSON).
    pub fn msgpack(&self) -> bool {
        self.encoding == Enc::Msgpack && self.dialect == Dialect::Chat
    }

    /// Some target is `wss://`.
    pub fn uses_tls(&self) -> bool {
        self.targets.iter().any(|t| t.trim().starts_with("wss://"))
    }

    /// The expanded `--source-addrs`.
    pub fn source_addrs(&self) -> Result<Vec<IpAddr>, Error> {
        let mut out = Vec::new();
        for item in &self.source_addrs {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            out.extend(parse_addr_range(item).map_err(Error::Usage)?);
        }
        Ok(out)
    }

    fn validate(&self) -> Result<(), Error> {
        let usage = |m: String| Err(Error::Usage(m));
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return usage(format!("--rate must be above 0, got {}", self.rate));
        }
        if !(self.ramp_rate.is_finite() && self.ramp_rate > 0.0) {
            return usage(format!(
                "--ramp-rate must be above 0, got {}",
                self.ramp_rate
            ));
        }
        if self.members() == 0 {
            return usage("--members must be at least 1".into());
        }
        if self.rooms == 0 {
            return usage("--rooms must be at least 1".into());
        }
        if self.publishers == Some(0) {
            return usage("--publishers must be at least 1".into());
        }
        if self.connections() == 0 {
            return usage("--connections must be at least 1".into());
        }
        if self.scenario == Scenario::Direct && self.connections() < 2 {
            return usage("direct needs --connections 2 or more".into());
        }
        if self.message_size < MIN_MESSAGE_SIZE || self.message_size > 1 << 20 {
            return usage(format!(
                "--message-size must be {MIN_MESSAGE_SIZE} to 1048576 bytes, got {}",
                self.message_size
            ));
        }
        if !(0.0..=1.0).contains(&self.dm_ratio) {
            return usage(format!("--dm-ratio must be 0 to 1, got {}", self.dm_ratio));
        }
        if self.workers == 0 || self.workers > 64 {
            return usage(format!("--workers must be 1 to 64, got {}", self.workers));
        }
        if self.connect_concurrency == 0 {
            return usage("--connect-concurrency must be at least 1".into());
        }
        if self.duration.is_zero() {
            return usage("--duration must be above 0".into());
        }
        if self.dialect.is_peer() && matches!(self.scenario, Scenario::Direct | Scenario::Mixed) {
            return usage(format!(
                "--dialect {} runs fanout, rooms, idle and connect-storm (the peers have no direct messages)",
                self.dialect.name()
            ));
        }
        if self.insecure && self.ca_cert.is_some() {
            return usage("--insecure and --ca-cert exclude each other".into());
        }
        if self.targets.is_empty() {
            return usage("--target needs at least one URL".into());
        }
        for t in &self.targets {
            crate::client::Target::parse(t).map_err(Error::Usage)?;
        }
        for h in &self.http {
            crate::publish::parse_base(h).map_err(Error::Usage)?;
        }
        if let Some(secret) = &self.token_secret
            && secret.len() < 16
        {
            return usage("--token-secret must be at least 16 bytes, like CHAT_JWT_SECRET".into());
        }
        if let Some(run) = &self.run_id
            && (run.is_empty() || run.len() > 16 || !run.bytes().all(|c| c.is_ascii_alphanumeric()))
        {
            return usage("--run-id must be 1 to 16 letters or digits".into());
        }
        self.source_addrs()?;
        Ok(())
    }
}

/// `10s`, `250ms`, `2m`, `1.5` (seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (10s, 500ms, 2m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m)")),
    };
    if !(secs.is_finite() && (0.0..=86_400.0).contains(&secs)) {
        return Err(format!("{s:?} is out of range (0 to 24h)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_slot(s: &str) -> Result<(usize, usize), String> {
    let (i, n) = s.split_once('/').ok_or("expected I/N")?;
    let i: usize = i.parse().map_err(|_| "expected I/N")?;
    let n: usize = n.parse().map_err(|_| "expected I/N")?;
    if n == 0 || i >= n {
        return Err("expected I/N with I < N".into());
    }
    Ok((i, n))
}

/// One address, or an IPv4 range `A-B` (at most 256 addresses).
pub fn parse_addr_range(s: &str) -> Result<Vec<IpAddr>, String> {
    let bad = || format!("--source-addrs: {s:?} is not an address or a range A-B");
    match s.split_once('-') {
        None => Ok(vec![s.parse().map_err(|_| bad())?]),
        Some((a, b)) => {
            let a: std::net::Ipv4Addr = a.trim().parse().map_err(|_| bad())?;
            let b: std::net::Ipv4Addr = b.trim().parse().map_err(|_| bad())?;
            let (a, b) = (u32::from(a), u32::from(b));
            if b < a || b - a >= 256 {
                return Err(bad());
            }
            Ok((a..=b)
                .map(|x| IpAddr::V4(std::net::Ipv4Addr::from(x)))
                .collect())
        }
    }
}

/// `--help`, or `SCENARIO --help`: then only the flags that scenario uses, under a
/// line that says what it does.
fn help_for(scenario: Option<Scenario>) -> String {
    use clap::CommandFactory;
    let mut cmd = Config::command();
    let Some(scenario) = scenario else {
        return cmd.render_help().to_string();
    };
    let used = scenario.flags();
    let hidden: Vec<String> = cmd
        .get_arguments()
        .filter(|a| a.get_long().is_some() && !used.contains(&a.get_id().as_str()))
        .map(|a| a.get_id().to_string())
        .collect();
    for id in hidden {
        cmd = cmd.mut_arg(id, |a| a.hide(true));
    }
    cmd = cmd
        .mut_arg("scenario", |a| {
            a.help(format!(
                "`{}` (see `chat-loadtest --help` for the others)",
                scenario.name()
            ))
            .hide_possible_values(true)
        })
        .about(format!(
            "chat-loadtest {}: {}",
            scenario.name(),
            scenario.what()
        ))
        .override_usage(format!("chat-loadtest {} [OPTIONS]", scenario.name()))
        .after_help(format!("Example:\n  {}", scenario.example()));
    cmd.render_help().to_string()
}

impl Scenario {
    /// One line for its `--help`.
    fn what(self) -> &'static str {
        match self {
            Scenario::Fanout => {
                "one room of --members members; one publisher sends --rate messages per second"
            }
            Scenario::Rooms => {
                "--rooms rooms of --members members; every member sends, --rate in all"
            }
            Scenario::Direct => "direct messages between --connections users at --rate",
            Scenario::ConnectStorm => {
                "--rate new connections per second, each with connect and join"
            }
            Scenario::Idle => "--connections connections held open; measures memory per connection",
            Scenario::Mixed => "rooms traffic with direct messages (--dm-ratio) and typing notices",
        }
    }

    fn example(self) -> &'static str {
        match self {
            Scenario::Fanout => {
                "chat-loadtest fanout --members 1000 --rate 200 --api-key KEY --http http://127.0.0.1:8080"
            }
            Scenario::Rooms => "chat-loadtest rooms --rooms 200 --members 10 --rate 1000",
            Scenario::Direct => "chat-loadtest direct --connections 1000 --rate 500",
            Scenario::ConnectStorm => "chat-loadtest connect-storm --rate 2000 --duration 5s",
            Scenario::Idle => {
                "chat-loadtest idle --connections 19000 --source-addrs 127.0.0.2-127.0.0.5 --server-pid 1234"
            }
            Scenario::Mixed => {
                "chat-loadtest mixed --rooms 20 --members 10 --rate 500 --dm-ratio 0.2"
            }
        }
    }

    /// The flags (argument ids) this scenario reads.
    fn flags(self) -> Vec<&'static str> {
        let mut f = vec![
            "targets",
            "encoding",
            "api_key",
            "token_secret",
            "source_addrs",
            "ramp_rate",
            "connect_concurrency",
            "workers",
            "server_pids",
            "settle",
            "setup_timeout",
            "json",
            "html",
            "quiet",
            "duration",
            "dialect",
            "ca_cert",
            "insecure",
            "max_p50",
            "max_p99",
            "max_p999",
            "help",
            "version",
        ];
        let messages = [
            "rate",
            "message_size",
            "publish",
            "http",
            "drain",
            "max_lost",
        ];
        f.extend(match self {
            Scenario::Fanout => [&messages[..], &["members", "publishers"]].concat(),
            Scenario::Rooms => [&messages[..], &["members", "rooms"]].concat(),
            Scenario::Mixed => [&messages[..], &["members", "rooms", "dm_ratio"]].concat(),
            Scenario::Direct => [&messages[..], &["connections"]].concat(),
            Scenario::ConnectStorm => vec!["rate"],
            Scenario::Idle => vec!["connections"],
        });
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, Error> {
        Config::parse_from_iter(std::iter::once("chat-loadtest").chain(args.iter().copied()))
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5h").is_err());
    }

    #[test]
    fn source_ranges_expand() {
        let v = parse_addr_range("127.0.0.2-127.0.0.4").unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[2].to_string(), "127.0.0.4");
        assert!(parse_addr_range("127.0.0.4-127.0.0.2").is_err());
        assert!(parse_addr_range("nope").is_err());
    }

    fn help(args: &[&str]) -> String {
        match parse(args) {
            Err(Error::Help(h)) => h,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn a_scenarios_help_lists_only_the_flags_it_uses() {
        let idle = help(&["idle", "--help"]);
        assert!(idle.starts_with("chat-loadtest idle: "), "{idle}");
        assert!(idle.contains("--connections") && idle.contains("--target"));
        for unused in ["--rooms", "--rate", "--publishers", "--dm-ratio", "--http "] {
            assert!(!idle.contains(unused), "idle --help shows {unused}");
        }
        let fanout = help(&["fanout", "--help"]);
        assert!(fanout.contains("--publishers") && fanout.contains("--http "));
        assert!(!fanout.contains("--dm-ratio") && !fanout.contains("--rooms"));
        assert!(help(&["mixed", "--help"]).contains("--dm-ratio"));
        // Without a scenario, everything.
        let all = help(&["--help"]);
        assert!(all.contains("--dm-ratio") && all.contains("--connections"));
        for h in [idle, fanout, all] {
            assert!(!h.contains(" here"), "help speaks of one machine: {h}");
        }
    }

    #[test]
    fn bad_flags_are_one_line_usage_errors() {
        for args in [
            &["fanout", "--bogus"][..],
            &["nosuch"],
            &["fanout", "--rate", "0"],
            &["fanout", "--target", "http//x"],
            &["rooms", "--message-size", "3"],
            &["idle", "--source-addrs", "1.2.3"],
        ] {
            match parse(args) {
                Err(Error::Usage(m)) => assert!(!m.contains('\n'), "{m}"),
                other => panic!("{args:?}: {other:?}"),
            }
        }
        assert!(parse(&["fanout"]).is_ok());
        assert!(matches!(parse(&["--help"]), Err(Error::Help(_))));
    }

    #[test]
    fn peer_dialects_run_room_scenarios_in_json() {
        let c = parse(&["fanout", "--dialect", "socketio"]).unwrap();
        assert!(c.dialect.is_peer() && !c.msgpack(), "peers speak JSON");
        assert!(parse(&["rooms", "--dialect", "bun"]).is_ok());
        assert!(parse(&["idle", "--dialect", "bun"]).is_ok());
        for args in [
            &["direct", "--dialect", "bun"][..],
            &["mixed", "--dialect", "socketio"],
            &["fanout", "--dialect", "nats"],
        ] {
            assert!(matches!(parse(args), Err(Error::Usage(_))), "{args:?}");
        }
        assert_eq!(parse(&["fanout"]).unwrap().dialect, Dialect::Chat);
    }

    #[test]
    fn thresholds_and_tls_flags_parse() {
        let c = parse(&[
            "fanout",
            "--max-p99",
            "50ms",
            "--max-lost",
            "0",
            "--target",
            "wss://h/ws",
            "--insecure",
        ])
        .unwrap();
        assert_eq!(c.max_p99, Some(Duration::from_millis(50)));
        assert_eq!((c.max_lost, c.max_p50), (Some(0), None));
        assert!(c.uses_tls() && c.insecure);
        assert!(matches!(
            parse(&["fanout", "--insecure", "--ca-cert", "x.pem"]),
            Err(Error::Usage(_))
        ));
        assert!(matches!(
            parse(&["fanout", "--max-p99", "fast"]),
            Err(Error::Usage(_))
        ));
    }

    #[test]
    fn defaults_depend_on_the_scenario() {
        let c = parse(&["fanout"]).unwrap();
        assert_eq!((c.members(), c.via()), (1000, Via::Http));
        let c = parse(&["rooms"]).unwrap();
        assert_eq!((c.members(), c.via()), (10, Via::Ws));
    }
}
