//! The Redis engine's probe: it pings Redis every second and keeps the engine's
//! readiness (what `/readyz` and the `chat_engine_ready` gauge show), and an operator
//! hears at once that Redis cannot be reached (and again every [`REPEAT`] while it
//! lasts), and when it is back — a process that answers 503 with nothing in its log
//! helps nobody.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{PushInfo, PushKind};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::redis::RedisEngine;

const EVERY: Duration = Duration::from_secs(1);
/// A ping slower than this counts as Redis gone: with [`EVERY`], readiness turns false
/// within about two seconds even when Redis hangs rather than refuses.
const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// While Redis stays unreachable, the warning is repeated this often, not every ping.
pub const REPEAT: Duration = Duration::from_secs(30);

/// Whether Redis answered the last ping, and since when it has not.
#[derive(Debug, Default)]
pub struct Outage {
    since: Option<Instant>,
    told: Option<Instant>,
}

/// What a ping's result makes worth a log line.
#[derive(Debug, PartialEq, Eq)]
pub enum Report {
    Down,
    StillDown(Duration),
    Back(Duration),
}

impl Outage {
    /// The result of one ping at `now`; `Some` when it deserves a log line.
    pub fn ping(&mut self, ok: bool, now: Instant) -> Option<Report> {
        match (ok, self.since) {
            (true, None) => None,
            (true, Some(since)) => {
                *self = Outage::default();
                Some(Report::Back(now - since))
            }
            (false, None) => {
                self.since = Some(now);
                self.told = Some(now);
                Some(Report::Down)
            }
            (false, Some(since)) => {
                let told = self.told.unwrap_or(since);
                (now - told >= REPEAT).then(|| {
                    self.told = Some(now);
                    Report::StillDown(now - since)
                })
            }
        }
    }
}

/// `url` with its password (if any) replaced by `***`, for logs.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let hidden = if userinfo.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{hidden}@{host}{}", &rest[authority_end..])
        }
        None => url.to_owned(),
    }
}

/// Pings every [`EVERY`], and at once when the command connection or the bus saw a
/// disconnection (which also means not ready at once), until `cancel` is cancelled. Each answer (with the bus's state) becomes the engine's readiness:
/// this is the one place that asks Redis whether it is there, for `/readyz`, the
/// `chat_engine_ready` gauge and the log alike. Pinging also makes redis-rs reconnect
/// the command connection before a client needs it.
pub async fn run(
    engine: Arc<RedisEngine>,
    url: String,
    ready: watch::Sender<bool>,
    cancel: CancellationToken,
) {
    cancel.run_until_cancelled(ping(&engine, url, ready)).await;
}

async fn ping(engine: &RedisEngine, url: String, ready: watch::Sender<bool>) {
    let mut outage = Outage::default();
    let mut drops = engine.take_cmd_drops();
    loop {
        let answer = engine.ping(PING_TIMEOUT).await;
        let now = answer.is_ok() && engine.bus_ok();
        ready.send_if_modified(|r| std::mem::replace(r, now) != now);
        match (outage.ping(answer.is_ok(), Instant::now()), answer) {
            (Some(Report::Down), Err(err)) => tracing::warn!(
                redis = url,
                error = %err,
                "Redis is unreachable: /readyz answers 503 and publishes 503 unavailable until it answers; check CHAT_REDIS_URL and that Redis runs"
            ),
            (Some(Report::StillDown(for_)), Err(err)) => tracing::warn!(
                redis = url,
                error = %err,
                down_secs = for_.as_secs(),
                "Redis is still unreachable"
            ),
            (Some(Report::Back(after)), _) => tracing::info!(
                redis = url,
                down_ms = after.as_millis() as u64,
                "Redis is reachable again"
            ),
            _ => {}
        }
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            () = engine.probe_requested() => {}
            push = next(&mut drops) => match push {
                // Redis went away (or restarted) under us: not ready until a ping on
                // the new connection answers, even when Redis is back before it.
                Some(p) if p.kind == PushKind::Disconnection => {
                    ready.send_if_modified(|r| std::mem::replace(r, false));
                }
                Some(_) => {}
                None => drops = None,
            },
        }
    }
}

/// The next push, or never when there is no receiver.
async fn next(drops: &mut Option<UnboundedReceiver<PushInfo>>) -> Option<PushInfo> {
    match drops {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_told_at_once_then_every_repeat_then_its_end() {
        let t0 = Instant::now();
        let mut o = Outage::default();
        assert_eq!(o.ping(true, t0), None);
        assert_eq!(o.ping(false, t0), Some(Report::Down));
        assert_eq!(o.ping(false, t0 + Duration::from_secs(1)), None);
        assert_eq!(o.ping(false, t0 + REPEAT - Duration::from_secs(1)), None);
        assert_eq!(o.ping(false, t0 + REPEAT), Some(Report::StillDown(REPEAT)));
        assert_eq!(o.ping(false, t0 + REPEAT + Duration::from_secs(1)), None);
        assert_eq!(
            o.ping(true, t0 + REPEAT + Duration::from_secs(2)),
            Some(Report::Back(REPEAT + Duration::from_secs(2)))
        );
        assert_eq!(o.ping(true, t0 + REPEAT * 2), None);
        assert_eq!(o.ping(false, t0 + REPEAT * 3), Some(Report::Down));
    }

    #[test]
    fn passwords_never_reach_the_log() {
        for (url, shown) in [
            ("redis://127.0.0.1:6379/", "redis://127.0.0.1:6379/"),
            ("redis://:s3cret@h:1/0", "redis://:***@h:1/0"),
            ("rediss://chat:s3cret@h:6380", "rediss://chat:***@h:6380"),
            ("redis://user@h:1/", "redis://user@h:1/"),
            ("redis://u:p@ss@h/", "redis://u:***@h/"),
        ] {
            assert_eq!(redacted(url), shown);
        }
    }
}
