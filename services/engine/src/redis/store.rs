//! Publish, head and history: a channel's meta hash (`epoch`, `seq`) and its Stream.

use chat_protocol::{Message, now_ms};
use redis::Script;

use super::{RedisEngine, retried, timed};
use crate::bus::Stored;
use crate::{EngineError, Head, History, Publication, Range, Result};

pub(super) struct Scripts {
    publish: Script,
    read: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            publish: Script::new(include_str!("lua/publish.lua")),
            read: Script::new(include_str!("lua/read.lua")),
        }
    }
}

/// An XRANGE entry: its id (`seq-0`) and its fields (`["m", body]`).
type StreamEntry = (String, Vec<Vec<u8>>);

impl RedisEngine {
    pub async fn publish(&self, p: Publication) -> Result<Message> {
        let stored = Stored {
            from: p.from,
            text: p.text,
            ts: now_ms(),
            to: p.to,
            cid: p.cid,
            tc: p.trace,
            us: Some(crate::now_us()),
        };
        let mut con = self.cmd.clone();
        // Not retried: a publish whose answer was lost may be stored, and a second try
        // would store it twice.
        let (seq, epoch): (u64, String) = timed(
            self.store_scripts
                .publish
                .key(self.keys.meta(&p.channel))
                .key(self.keys.hist(&p.channel))
                .arg(crate::epoch::new_epoch())
                .arg(self.history_size)
                .arg(self.ttl)
                .arg(self.keys.bus(&p.channel))
                .arg(stored.encode())
                .invoke_async(&mut con),
        )
        .await?;
        Ok(stored.into_message(&p.channel, seq, &epoch))
    }

    /// `mode`: "after" (from `seq` on), "before" (up to `seq`, "+" the newest) or
    /// "head".
    async fn read(&self, channel: &str, mode: &str, seq: String, count: usize) -> Result<History> {
        let (seq, epoch, entries): (u64, String, Vec<StreamEntry>) = retried(|| {
            let mut con = self.cmd.clone();
            let mut invocation = self.store_scripts.read.prepare_invoke();
            invocation
                .key(self.keys.meta(channel))
                .key(self.keys.hist(channel))
                .arg(crate::epoch::new_epoch())
                .arg(self.ttl)
                .arg(mode)
                .arg(&seq)
                .arg(count)
                .arg(self.history_size);
            async move { invocation.invoke_async(&mut con).await }
        })
        .await?;
        let mut messages = Vec::with_capacity(entries.len());
        for (id, fields) in entries {
            let seq: u64 = id
                .split('-')
                .next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| EngineError::Internal(format!("bad stream id {id}")))?;
            // fields = ["m", body]
            let stored = fields
                .get(1)
                .and_then(|body| Stored::decode(body))
                .ok_or_else(|| EngineError::Internal(format!("bad stream entry {id}")))?;
            messages.push(stored.into_message(channel, seq, &epoch));
        }
        Ok(History {
            head: Head { epoch, seq },
            messages,
        })
    }

    pub async fn head(&self, channel: &str) -> Result<Head> {
        Ok(self.read(channel, "head", String::new(), 0).await?.head)
    }

    pub async fn history(&self, channel: &str, range: Range) -> Result<History> {
        match range {
            Range::After { seq, limit } => {
                let from = seq.saturating_add(1).to_string();
                self.read(channel, "after", from, limit).await
            }
            Range::Before { seq, limit } => {
                let to = match seq {
                    Some(0) => return self.read(channel, "head", String::new(), 0).await,
                    Some(s) => (s - 1).to_string(),
                    None => "+".into(),
                };
                self.read(channel, "before", to, limit).await
            }
        }
    }
}
