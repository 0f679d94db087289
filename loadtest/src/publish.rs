//! Publishing over HTTP: `POST /v1/rooms/{room}/messages` and
//! `POST /v1/users/{user}/messages` on the gateways, round-robin, as a trusted backend
//! (`--api-key`, naming `from`), with minted user tokens (`--token-secret`), or with dev
//! tokens fetched once per user (dev mode). The peer servers (`--dialect bun|socketio`)
//! take `POST /publish {"room","from","text"}` without credentials and answer 2xx
//! without a seq.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chat_protocol::http::{
    DevTokenRequest, DevTokenResponse, ErrorBody, PublishRequest, PublishResponse,
};

use crate::config::Dialect;
use crate::plan::{Dest, Msg, Plan};
use crate::stamp;
use crate::stats::Shared;

/// Requests in flight at once; past it the schedule waits (and the wait shows in the
/// latency, measured from the intended send time).
pub const IN_FLIGHT: usize = 512;

/// `http://host:port`, without a trailing slash.
pub fn parse_base(s: &str) -> Result<String, String> {
    let rest = s.strip_prefix("http://").ok_or_else(|| {
        format!("--http {s:?}: expected http://host:port (https is not supported)")
    })?;
    let authority = rest.trim_end_matches('/');
    if authority.contains('/') {
        return Err(format!(
            "--http {s:?}: give the base URL only (http://host:port)"
        ));
    }
    crate::client::split_host_port(authority, 80)
        .ok_or_else(|| format!("--http {s:?}: bad host or port"))?;
    Ok(format!("http://{authority}"))
}

enum Credentials {
    ApiKey(String),
    Secret(String),
    /// Dev mode: `POST /v1/auth/dev-token`, once per user.
    Dev(tokio::sync::Mutex<HashMap<String, String>>),
}

pub struct HttpPublisher {
    client: reqwest::Client,
    bases: Vec<String>,
    credentials: Credentials,
    pub slots: Arc<tokio::sync::Semaphore>,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    dialect: Dialect,
}

/// What a publish's confirmation says: the channel, and its seq when the server numbers
/// messages.
struct Stored {
    room: String,
    seq: Option<u64>,
}

impl HttpPublisher {
    pub fn new(
        bases: Vec<String>,
        api_key: Option<String>,
        token_secret: Option<String>,
        plan: Arc<Plan>,
        shared: Arc<Shared>,
        dialect: Dialect,
    ) -> Result<HttpPublisher, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(IN_FLIGHT)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| e.to_string())?;
        let credentials = match (api_key, token_secret) {
            (Some(key), _) => Credentials::ApiKey(key),
            (None, Some(secret)) => Credentials::Secret(secret),
            (None, None) => Credentials::Dev(Default::default()),
        };
        Ok(HttpPublisher {
            client,
            bases,
            credentials,
            slots: Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT)),
            plan,
            shared,
            dialect,
        })
    }

    async fn bearer(&self, base: &str, user: &str) -> Result<String, String> {
        match &self.credentials {
            Credentials::ApiKey(k) => Ok(k.clone()),
            Credentials::Secret(s) => crate::auth::mint(s, user),
            Credentials::Dev(cache) => {
                if let Some(t) = cache.lock().await.get(user) {
                    return Ok(t.clone());
                }
                let r = self
                    .client
                    .post(format!("{base}/v1/auth/dev-token"))
                    .json(&DevTokenRequest { user: user.into() })
                    .send()
                    .await
                    .map_err(|e| format!("dev token: {e}"))?;
                if !r.status().is_success() {
                    return Err(format!(
                        "dev token: {} (dev mode off? give --api-key or --token-secret)",
                        r.status()
                    ));
                }
                let t: DevTokenResponse = r.json().await.map_err(|e| format!("dev token: {e}"))?;
                cache.lock().await.insert(user.into(), t.token.clone());
                Ok(t.token)
            }
        }
    }

    /// Publishes message `m` as `from` and records the outcome. `slot` bounds the
    /// requests in flight.
    pub async fn publish(
        self: Arc<Self>,
        m: Msg,
        from: String,
        text: String,
        intended_us: u64,
        slot: tokio::sync::OwnedSemaphorePermit,
    ) {
        let base = &self.bases[(m.k % self.bases.len() as u64) as usize];
        let shard = m.sender.unwrap_or(m.k as usize);
        let result = self.post(base, &m, &from, text).await;
        drop(slot);
        let now = stamp::now_us();
        let mut t = self.shared.shard(shard);
        match result {
            Ok(r) => {
                if let Some(&id) = self.plan.channel_ids.get(&r.room) {
                    let c = t.chan(id);
                    c.acked += 1;
                    if let Some(seq) = r.seq {
                        c.max_acked = c.max_acked.max(seq);
                    }
                }
                if let Dest::User(_) = m.dest
                    && let Some(&id) = self.plan.channel_ids.get(&format!("@{from}"))
                {
                    t.chan(id).acked += 1;
                }
                t.published += 1;
                t.publish.record(now.saturating_sub(intended_us));
            }
            Err(e) => {
                t.publish_errors += 1;
                t.error(&e);
            }
        }
    }

    async fn post(&self, base: &str, m: &Msg, from: &str, text: String) -> Result<Stored, String> {
        if self.dialect.is_peer() {
            return self.post_peer(base, m, from, text).await;
        }
        let url = match m.dest {
            Dest::Room(id) => format!(
                "{base}/v1/rooms/{}/messages",
                self.plan.channels[id as usize]
            ),
            Dest::User(to) => format!("{base}/v1/users/{}/messages", self.plan.conns[to].user),
            Dest::Typing(_) => return Err("typing is not published over HTTP".into()),
        };
        let api_key = matches!(self.credentials, Credentials::ApiKey(_));
        let body = PublishRequest {
            text,
            cid: Some(m.k.to_string()),
            from: api_key.then(|| from.to_owned()),
        };
        let token = self.bearer(base, from).await?;
        let r = self
            .client
            .post(url)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .map_err(|e| send_error(base, e))?;
        let status = r.status();
        if status.as_u16() != 201 {
            let code = r
                .json::<ErrorBody>()
                .await
                .map(|b| format!("{}: {}", b.error.code, b.error.message))
                .unwrap_or_default();
            return Err(format!("http publish: {} {code}", status.as_u16()));
        }
        r.json::<PublishResponse>()
            .await
            .map(|r| Stored {
                room: r.room,
                seq: Some(r.seq),
            })
            .map_err(|e| format!("http publish: bad answer: {e}"))
    }

    /// A peer's `POST /publish`: any 2xx stores the message.
    async fn post_peer(
        &self,
        base: &str,
        m: &Msg,
        from: &str,
        text: String,
    ) -> Result<Stored, String> {
        let Dest::Room(id) = m.dest else {
            return Err("the peers have no direct messages".into());
        };
        let room = self.plan.channels[id as usize].clone();
        let body = serde_json::json!({"room": room, "from": from, "text": text});
        let r = self
            .client
            .post(format!("{base}/publish"))
            .json(&body)
            .send()
            .await
            .map_err(|e| send_error(base, e))?;
        let status = r.status();
        // Read the body so the connection goes back to the pool.
        let _ = r.bytes().await;
        if !status.is_success() {
            return Err(format!("http publish: {}", status.as_u16()));
        }
        Ok(Stored { room, seq: None })
    }
}

/// Why an HTTP publish got no answer, in words.
fn send_error(base: &str, e: reqwest::Error) -> String {
    if e.is_timeout() {
        "http publish: timed out after 10 s".to_owned()
    } else if e.is_connect() {
        format!("http publish: cannot connect to {base}")
    } else {
        format!("http publish: {e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases_are_normalized() {
        assert_eq!(
            parse_base("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(parse_base("https://x").is_err());
        assert!(parse_base("http://x/v1").is_err());
        assert!(parse_base("http://x:y").is_err());
    }
}
