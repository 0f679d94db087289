//! `chat-loadtest`: a load generator for the chat servers that measures honestly.
//!
//! - [`config`]: the command line (scenario, sizes, targets, credentials, reports).
//! - [`plan`]: what a scenario means in connections, channels and scheduled messages,
//!   computed identically by the parent and every worker process.
//! - [`client`]: one fastwebsockets client connection: source-bound TCP, upgrade,
//!   `connect` + `join`, and a reader that times and checks every message.
//! - [`publish`]: HTTP publishing through the gateways.
//! - [`peer`]: the frames of the peer servers chat is compared with (`--dialect`).
//! - [`tls`]: rustls for `wss://` targets.
//! - [`worker`]: a slice of the connections and its part of the open-loop schedule.
//! - [`stamp`]: the run id, index and intended send time carried in each message text.
//! - [`stats`]: HDR histograms and per-channel delivery counts, mergeable across workers.
//! - [`procstat`]: server CPU time and RSS from `/proc`.
//! - [`floor`]: the same fan-out written by bare threads, no server: the machine's floor
//!   (the `chat-floor` binary).
//! - [`report`], [`html`], [`progress`]: the JSON document, the human summary, the HTML
//!   report, the progress bar.
//!
//! [`run`] drives a whole run: in this process, or, when one process cannot hold every
//! socket, in `--workers` child processes of the same binary that report to the parent as
//! JSON lines on stdout (`progress`, `ready`, then `done` with their tally) and wait for
//! `go <t0>` and `close` on stdin.

pub mod auth;
pub mod client;
pub mod config;
pub mod floor;
pub mod html;
pub mod peer;
pub mod plan;
pub mod procstat;
pub mod progress;
pub mod publish;
pub mod report;
pub mod stamp;
pub mod stats;
pub mod tls;
pub mod worker;

use std::io::Write;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_protocol::Encoding;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::client::{Ctx, Target};
use crate::config::{Scenario, Via};
use crate::plan::Plan;
use crate::progress::Bar;
use crate::report::{Inputs, Samples};
use crate::stats::{Progress, Shared, Tally};
use crate::worker::Worker;

pub use config::Config;
pub use report::Report;

/// Exit status of a run that finished but saw losses, duplicates or failures.
pub const EXIT_PROBLEMS: i32 = 3;
/// Exit status of a run that crossed a threshold (`--max-p99`, `--max-lost`, …), as
/// k6 exits when its thresholds fail.
pub const EXIT_THRESHOLDS: i32 = 99;

/// File descriptors kept for everything that is not a client socket.
const FD_RESERVE: u64 = 200;

#[derive(Debug)]
pub enum Error {
    /// `--help` or `--version`: print and exit 0.
    Help(String),
    /// A bad flag or value: exit 64 (EX_USAGE).
    Usage(String),
    /// A target or gateway did not answer: exit 69 (EX_UNAVAILABLE).
    Unreachable(String),
    /// The run could not be carried out: exit 1.
    Failed(String),
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Help(_) => 0,
            Error::Usage(_) => 64,
            Error::Unreachable(_) => 69,
            Error::Failed(_) => 1,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Help(s) | Error::Usage(s) | Error::Unreachable(s) | Error::Failed(s) => {
                f.write_str(s)
            }
        }
    }
}

impl std::error::Error for Error {}

/// What a worker process tells its parent, one JSON object per line on stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    Progress(Progress),
    Ready(Progress),
    Done(Box<Tally>),
    Failed(String),
}

/// Raises the open-files limit to the hard limit; returns the limit now in force.
pub fn raise_nofile() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024)
}

pub(crate) fn uses_http(cfg: &Config) -> bool {
    cfg.scenario.sends_messages()
        && (cfg.via() == Via::Http
            || (cfg.scenario == Scenario::Mixed
                && (cfg.api_key.is_some() || cfg.token_secret.is_some())))
}

/// Resolves and probes every target (and gateway, when HTTP publishing is used).
async fn reach(cfg: &Config) -> Result<(Vec<Target>, Vec<String>), Error> {
    let probe = |addr: std::net::SocketAddr, what: String| async move {
        match tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(addr))
            .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Error::Unreachable(format!("cannot reach {what}: {e}"))),
            Err(_) => Err(Error::Unreachable(format!(
                "cannot reach {what}: no answer within 3 s"
            ))),
        }
    };
    let mut targets = Vec::new();
    for url in &cfg.targets {
        let mut t = Target::parse(url).map_err(Error::Usage)?;
        let addr = t.resolve().await.map_err(Error::Unreachable)?;
        probe(addr, t.url.clone()).await?;
        targets.push(t);
    }
    let mut bases = Vec::new();
    if uses_http(cfg) {
        let given: Vec<String> = if cfg.http.is_empty() {
            if targets[0].tls {
                return Err(Error::Usage(
                    "HTTP publishing to a wss:// target needs --http http://host:port (https publishing is not supported)".into(),
                ));
            }
            vec![targets[0].http_base()]
        } else {
            cfg.http
                .iter()
                .map(|h| publish::parse_base(h))
                .collect::<Result<_, _>>()
                .map_err(Error::Usage)?
        };
        for base in given {
            let authority = base.trim_start_matches("http://");
            let (host, port) = client::split_host_port(authority, 80)
                .ok_or_else(|| Error::Usage(format!("bad --http {base}")))?;
            let addr = tokio::net::lookup_host((host.trim_matches(|c| c == '[' || c == ']'), port))
                .await
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| Error::Unreachable(format!("cannot resolve {base}")))?;
            probe(addr, base.clone()).await?;
            bases.push(base);
        }
    }
    Ok((targets, bases))
}

fn random_run_id() -> String {
    format!("{:06x}", rand::random::<u32>() & 0xff_ffff)
}

fn encoding(cfg: &Config) -> Encoding {
    if cfg.msgpack() {
        Encoding::MsgPack
    } else {
        Encoding::Json
    }
}

/// The TLS configuration, when some target is `wss://`.
fn tls(cfg: &Config) -> Result<Option<tokio_rustls::TlsConnector>, Error> {
    if !cfg.uses_tls() {
        return Ok(None);
    }
    tls::connector(cfg.ca_cert.as_deref(), cfg.insecure)
        .map(Some)
        .map_err(Error::Usage)
}

fn samples(pids: &[u32]) -> Result<Vec<procstat::Sample>, Error> {
    procstat::sample_all(pids).map_err(Error::Usage)
}

/// Runs the configured load and returns its report (the HTML file, if asked for, is
/// written too). Always ends by itself: setup, run and drain are each bounded.
pub async fn run(cfg: Config) -> Result<Report, Error> {
    let started = Instant::now();
    let nofile = raise_nofile();
    let run_id = cfg.run_id.clone().unwrap_or_else(random_run_id);
    let plan = Arc::new(Plan::new(&cfg, &run_id));
    let (targets, bases) = reach(&cfg).await?;
    let sources = cfg.source_addrs()?;

    let per_process = nofile.saturating_sub(FD_RESERVE).max(1) as usize;
    let mut workers = cfg.workers;
    let needed = plan.conns.len().div_ceil(per_process);
    if needed > workers {
        if !cfg.quiet {
            eprintln!(
                "chat-loadtest: {} connections need {needed} worker processes ({per_process} sockets each)",
                plan.conns.len()
            );
        }
        workers = needed;
    }
    let pids = cfg.server_pids.clone();
    let start_samples = samples(&pids)?;

    let bar = Bar::new(cfg.quiet);
    let bound = cfg.setup_timeout + cfg.settle + cfg.duration + cfg.drain + Duration::from_secs(30);
    let outcome = tokio::time::timeout(bound, async {
        if workers == 1 {
            in_process(&cfg, plan.clone(), targets, bases, sources, &bar, &pids).await
        } else {
            with_children(&cfg, &run_id, workers, &bar, &pids).await
        }
    })
    .await
    .map_err(|_| Error::Failed(format!("the run did not end within {} s", bound.as_secs())))?;
    bar.finish();
    let done = outcome?;

    let samples = (!pids.is_empty()).then(|| Samples {
        pids: pids.clone(),
        start: start_samples,
        loaded: done.loaded,
        end: done.end,
    });
    let report = Report::build(Inputs {
        cfg: &cfg,
        plan: &plan,
        tally: &done.tally,
        workers,
        samples,
        setup_s: done.setup_s,
        elapsed_s: started.elapsed().as_secs_f64(),
        t0_us: done.t0_us,
    });
    if let Some(path) = &cfg.html {
        std::fs::write(path, html::render(&report))
            .map_err(|e| Error::Failed(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(report)
}

struct Done {
    tally: Tally,
    setup_s: f64,
    t0_us: u64,
    loaded: Vec<procstat::Sample>,
    end: Vec<procstat::Sample>,
}

/// How far from now the run starts, so that every worker is waiting when it does.
const START_DELAY: Duration = Duration::from_millis(200);

async fn in_process(
    cfg: &Config,
    plan: Arc<Plan>,
    targets: Vec<Target>,
    bases: Vec<String>,
    sources: Vec<std::net::IpAddr>,
    bar: &Bar,
    pids: &[u32],
) -> Result<Done, Error> {
    let shared = Arc::new(Shared::default());
    let ctx = Arc::new(Ctx {
        plan,
        shared: shared.clone(),
        targets,
        sources,
        encoding: encoding(cfg),
        token_secret: cfg.token_secret.clone(),
        dialect: cfg.dialect,
        tls: tls(cfg)?,
    });
    let mut worker = Worker::new(cfg, ctx, bases, (0, 1)).map_err(Error::Failed)?;
    let setup_started = Instant::now();
    bar.connecting(worker.setup_size());
    {
        let ticker = async {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                bar.update_connecting(&shared.progress());
            }
        };
        tokio::select! {
            r = tokio::time::timeout(cfg.setup_timeout, worker.setup()) => r.map_err(|_| {
                Error::Failed(format!(
                    "setup did not finish within --setup-timeout {} s",
                    cfg.setup_timeout.as_secs()
                ))
            })?,
            _ = ticker => {}
        }
    }
    let p = shared.progress();
    bar.update_connecting(&p);
    if worker.setup_size() > 0 && p.connected == 0 {
        return Err(no_connection(&shared.tally()));
    }
    let setup_s = setup_started.elapsed().as_secs_f64();
    tokio::time::sleep(cfg.settle).await;
    let loaded = samples(pids)?;
    let t0_us = stamp::now_us() + START_DELAY.as_micros() as u64;
    bar.running(cfg.duration);
    let tally = {
        let ticker = async {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let elapsed = Duration::from_micros(stamp::now_us().saturating_sub(t0_us));
                if elapsed > cfg.duration {
                    bar.draining();
                }
                bar.update_running(&shared.progress(), elapsed);
            }
        };
        tokio::select! {
            t = worker.run(t0_us) => t,
            _ = ticker => unreachable!("the ticker never ends"),
        }
    };
    let end = samples(pids)?;
    drop(worker);
    Ok(Done {
        tally,
        setup_s,
        t0_us,
        loaded,
        end,
    })
}

fn no_connection(t: &Tally) -> Error {
    let why = t
        .errors
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(e, _)| e.as_str())
        .unwrap_or("unknown reason");
    Error::Failed(format!("no connection could be opened: {why}"))
}

/// The flags a worker needs: the same run, its slice of the ramp.
fn child_args(cfg: &Config, run_id: &str, (w, n): (usize, usize)) -> Vec<String> {
    let mut a = vec![
        cfg.scenario.name().to_owned(),
        "--worker".into(),
        format!("{w}/{n}"),
        "--run-id".into(),
        run_id.to_owned(),
        "--quiet".into(),
        "--target".into(),
        cfg.targets.join(","),
        "--encoding".into(),
        if cfg.msgpack() { "msgpack" } else { "json" }.into(),
        "--dialect".into(),
        cfg.dialect.name().into(),
        "--members".into(),
        cfg.members().to_string(),
        "--rooms".into(),
        cfg.rooms.to_string(),
        "--connections".into(),
        cfg.connections().to_string(),
        "--rate".into(),
        cfg.rate.to_string(),
        "--publish".into(),
        if cfg.via() == Via::Http { "http" } else { "ws" }.into(),
        "--publishers".into(),
        cfg.publishers().to_string(),
        "--duration".into(),
        format!("{}ms", cfg.duration.as_millis()),
        "--message-size".into(),
        cfg.message_size.to_string(),
        "--dm-ratio".into(),
        cfg.dm_ratio.to_string(),
        "--ramp-rate".into(),
        (cfg.ramp_rate / n as f64).to_string(),
        "--connect-concurrency".into(),
        (cfg.connect_concurrency / n).max(1).to_string(),
        "--drain".into(),
        format!("{}ms", cfg.drain.as_millis()),
        "--setup-timeout".into(),
        format!("{}ms", cfg.setup_timeout.as_millis()),
    ];
    if !cfg.http.is_empty() {
        a.push("--http".into());
        a.push(cfg.http.join(","));
    }
    if let Some(ca) = &cfg.ca_cert {
        a.push("--ca-cert".into());
        a.push(ca.display().to_string());
    }
    if cfg.insecure {
        a.push("--insecure".into());
    }
    if !cfg.source_addrs.is_empty() {
        a.push("--source-addrs".into());
        a.push(cfg.source_addrs.join(","));
    }
    a
}

enum FromChild {
    Event(usize, Event),
    Gone(usize),
}

async fn with_children(
    cfg: &Config,
    run_id: &str,
    n: usize,
    bar: &Bar,
    pids: &[u32],
) -> Result<Done, Error> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::Failed(format!("cannot find my own binary for --workers: {e}")))?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut children = Vec::new();
    let mut stdins = Vec::new();
    for w in 0..n {
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.args(child_args(cfg, run_id, (w, n)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        // Secrets travel in the environment, not on the command line.
        if let Some(k) = &cfg.api_key {
            cmd.env(config::ENV_API_KEY, k);
        }
        if let Some(s) = &cfg.token_secret {
            cmd.env(config::ENV_TOKEN_SECRET, s);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::Failed(format!("cannot start worker {w}: {e}")))?;
        stdins.push(child.stdin.take().expect("piped"));
        let stdout = child.stdout.take().expect("piped");
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<Event>(&line) {
                    Ok(ev) => {
                        let _ = tx.send(FromChild::Event(w, ev));
                    }
                    Err(_) => eprintln!("chat-loadtest worker {w}: {line}"),
                }
            }
            let _ = tx.send(FromChild::Gone(w));
        });
        children.push(child);
    }
    drop(tx);

    let plan = Plan::new(cfg, run_id);
    let setup_total = if plan.connects_in_setup() {
        plan.conns.len()
    } else {
        0
    };
    bar.connecting(setup_total);
    let setup_started = Instant::now();
    let mut progress = vec![Progress::default(); n];
    let mut ready = vec![false; n];
    let deadline = tokio::time::Instant::now() + cfg.setup_timeout + Duration::from_secs(5);
    while ready.iter().any(|r| !r) {
        let msg = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .map_err(|_| {
                Error::Failed("workers did not finish setup within --setup-timeout".into())
            })?;
        match msg {
            Some(FromChild::Event(w, Event::Progress(p))) => progress[w] = p,
            Some(FromChild::Event(w, Event::Ready(p))) => {
                progress[w] = p;
                ready[w] = true;
            }
            Some(FromChild::Event(w, Event::Failed(e))) => {
                return Err(Error::Failed(format!("worker {w}: {e}")));
            }
            Some(FromChild::Event(w, Event::Done(_))) | Some(FromChild::Gone(w)) => {
                return Err(Error::Failed(format!("worker {w} ended during setup")));
            }
            None => return Err(Error::Failed("every worker ended".into())),
        }
        bar.update_connecting(&sum(&progress));
    }
    let total = sum(&progress);
    if setup_total > 0 && total.connected == 0 {
        return Err(Error::Failed(
            "no connection could be opened (see the workers' errors)".into(),
        ));
    }
    let setup_s = setup_started.elapsed().as_secs_f64();
    tokio::time::sleep(cfg.settle).await;
    let loaded = samples(pids)?;
    let t0_us = stamp::now_us() + START_DELAY.as_micros() as u64;
    for (w, stdin) in stdins.iter_mut().enumerate() {
        stdin
            .write_all(format!("go {t0_us}\n").as_bytes())
            .await
            .map_err(|e| Error::Failed(format!("worker {w}: {e}")))?;
    }
    bar.running(cfg.duration);
    let mut tally = Tally::default();
    let mut done = vec![false; n];
    while done.iter().any(|d| !d) {
        let msg = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await;
        match msg {
            Err(_) => {}
            Ok(Some(FromChild::Event(w, Event::Progress(p)))) => progress[w] = p,
            Ok(Some(FromChild::Event(w, Event::Done(t)))) => {
                tally.merge(&t);
                done[w] = true;
            }
            Ok(Some(FromChild::Event(w, Event::Failed(e)))) => {
                return Err(Error::Failed(format!("worker {w}: {e}")));
            }
            Ok(Some(FromChild::Event(_, Event::Ready(_)))) => {}
            Ok(Some(FromChild::Gone(w))) => {
                if !done[w] {
                    return Err(Error::Failed(format!("worker {w} ended before reporting")));
                }
            }
            Ok(None) => return Err(Error::Failed("every worker ended".into())),
        }
        let elapsed = Duration::from_micros(stamp::now_us().saturating_sub(t0_us));
        if elapsed > cfg.duration {
            bar.draining();
        }
        bar.update_running(&sum(&progress), elapsed);
    }
    let end = samples(pids)?;
    for stdin in stdins.iter_mut() {
        let _ = stdin.write_all(b"close\n").await;
    }
    drop(stdins);
    for mut child in children {
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
    Ok(Done {
        tally,
        setup_s,
        t0_us,
        loaded,
        end,
    })
}

fn sum(ps: &[Progress]) -> Progress {
    let mut total = Progress::default();
    for p in ps {
        total.add(p);
    }
    total
}

fn emit(ev: &Event) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, ev);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// The worker side of `--workers`: set up, say `ready`, wait for `go <t0>`, run, report
/// `done`, hold the connections until `close` (the parent measures the servers first).
pub async fn run_worker(cfg: Config) -> Result<(), Error> {
    let slot = cfg
        .worker
        .ok_or_else(|| Error::Usage("--worker I/N is for worker processes".into()))?;
    raise_nofile();
    let run_id = cfg
        .run_id
        .clone()
        .ok_or_else(|| Error::Usage("--worker needs --run-id".into()))?;
    let plan = Arc::new(Plan::new(&cfg, &run_id));
    let (targets, bases) = match reach(&cfg).await {
        Ok(r) => r,
        Err(e) => {
            emit(&Event::Failed(e.to_string()));
            return Err(e);
        }
    };
    let shared = Arc::new(Shared::default());
    let ctx = Arc::new(Ctx {
        plan,
        shared: shared.clone(),
        targets,
        sources: cfg.source_addrs()?,
        encoding: encoding(&cfg),
        token_secret: cfg.token_secret.clone(),
        dialect: cfg.dialect,
        tls: tls(&cfg)?,
    });
    let mut worker = Worker::new(&cfg, ctx, bases, slot).map_err(Error::Failed)?;
    let ticker = {
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                emit(&Event::Progress(shared.progress()));
            }
        })
    };
    if tokio::time::timeout(cfg.setup_timeout, worker.setup())
        .await
        .is_err()
    {
        let e = "setup did not finish within --setup-timeout".to_owned();
        emit(&Event::Failed(e.clone()));
        return Err(Error::Failed(e));
    }
    emit(&Event::Ready(shared.progress()));
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let t0_us = loop {
        match stdin.next_line().await {
            Ok(Some(line)) => {
                if let Some(t) = line.strip_prefix("go ").and_then(|t| t.trim().parse().ok()) {
                    break t;
                }
            }
            _ => return Err(Error::Failed("the parent went away".into())),
        }
    };
    let tally = worker.run(t0_us).await;
    ticker.abort();
    emit(&Event::Done(Box::new(tally)));
    // Hold the connections until the parent has measured the servers.
    let _ = tokio::time::timeout(Duration::from_secs(60), stdin.next_line()).await;
    drop(worker);
    Ok(())
}
