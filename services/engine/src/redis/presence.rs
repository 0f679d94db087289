//! Presence: a sorted set of users per room and one of connections per user, scored by
//! when each entry expires (see [`super::Keys`]). Each replica refreshes its own
//! connections; the entries of a replica that died expire by themselves.

use redis::Script;

use super::{RedisEngine, retried, timed};
use crate::{PresenceEntry, PresenceEvent, Result};

pub(super) struct Scripts {
    join: Script,
    leave: Script,
    refresh: Script,
    sweep: Script,
    list: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            join: Script::new(include_str!("lua/presence_join.lua")),
            leave: Script::new(include_str!("lua/presence_leave.lua")),
            refresh: Script::new(include_str!("lua/presence_refresh.lua")),
            sweep: Script::new(include_str!("lua/presence_sweep.lua")),
            list: Script::new(include_str!("lua/presence_list.lua")),
        }
    }
}

impl RedisEngine {
    fn presence_ttl_ms(&self) -> u64 {
        self.presence_ttl.as_millis() as u64
    }

    pub async fn presence_join(&self, e: &PresenceEntry) -> Result<bool> {
        let first: i64 = retried(|| {
            let mut con = self.cmd.clone();
            let mut invocation = self.presence_scripts.join.prepare_invoke();
            invocation
                .key(self.keys.presence(&e.room))
                .key(self.keys.presence_user(&e.room, &e.user))
                .arg(&e.user)
                .arg(&e.conn)
                .arg(self.presence_ttl_ms());
            async move { invocation.invoke_async(&mut con).await }
        })
        .await?;
        Ok(first == 1)
    }

    pub async fn presence_leave(&self, e: &PresenceEntry) -> Result<bool> {
        let last: i64 = retried(|| {
            let mut con = self.cmd.clone();
            let mut invocation = self.presence_scripts.leave.prepare_invoke();
            invocation
                .key(self.keys.presence(&e.room))
                .key(self.keys.presence_user(&e.room, &e.user))
                .arg(&e.user)
                .arg(&e.conn);
            async move { invocation.invoke_async(&mut con).await }
        })
        .await?;
        Ok(last == 1)
    }

    pub async fn presence_refresh(&self, entries: &[PresenceEntry]) -> Result<()> {
        let refresh = &self.presence_scripts.refresh;
        for chunk in entries.chunks(500) {
            let mut pipe = redis::pipe();
            // EVALSHA needs the script loaded; after a Redis restart it is not.
            pipe.load_script(refresh).ignore();
            for e in chunk {
                pipe.invoke_script(
                    refresh
                        .key(self.keys.presence(&e.room))
                        .key(self.keys.presence_user(&e.room, &e.user))
                        .arg(&e.user)
                        .arg(&e.conn)
                        .arg(self.presence_ttl_ms()),
                )
                .ignore();
            }
            let mut con = self.cmd.clone();
            timed(pipe.query_async::<()>(&mut con)).await?;
        }
        Ok(())
    }

    pub async fn presence_sweep(&self, room: &str) -> Result<Vec<String>> {
        let mut con = self.cmd.clone();
        timed(
            self.presence_scripts
                .sweep
                .key(self.keys.presence(room))
                .arg(self.keys.presence_user_prefix(room))
                .invoke_async(&mut con),
        )
        .await
    }

    pub async fn presence_list(&self, room: &str) -> Result<Vec<String>> {
        let mut con = self.cmd.clone();
        let mut users: Vec<String> = timed(
            self.presence_scripts
                .list
                .key(self.keys.presence(room))
                .invoke_async(&mut con),
        )
        .await?;
        users.sort();
        Ok(users)
    }

    pub async fn publish_presence(
        &self,
        room: &str,
        user: &str,
        event: PresenceEvent,
    ) -> Result<()> {
        self.publish_raw(
            self.keys.bus(room),
            crate::bus::encode_presence(user, event),
        )
        .await
    }
}
