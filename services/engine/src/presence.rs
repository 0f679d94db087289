//! Presence: who is online in which room, kept per connection so that a user with two
//! tabs stays online until the last one leaves, and so that the users of a replica
//! that died stop counting by themselves.
//!
//! [`Presence`] is the engine's presence part, from [`Engine::presence`]: a replica
//! `join`s and `leave`s connections, announces with `publish` a user's first join and
//! last leave, `refresh`es its own entries and `sweep`s those of replicas that died.

use std::time::Duration;

use crate::{Engine, PresenceEvent, Result};

/// One live connection in one room: what a replica keeps alive in presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceEntry {
    pub room: String,
    pub user: String,
    pub conn: String,
}

/// The presence part of an [`Engine`]; cheap to make, borrow it where it is used.
#[derive(Clone, Copy)]
pub struct Presence<'a>(pub(crate) &'a Engine);

impl Presence<'_> {
    /// Records a connection in a room's presence; true when it is the user's first
    /// live connection there (so a `presence` join is due).
    pub async fn join(&self, entry: &PresenceEntry) -> Result<bool> {
        dispatch!(self.0, e => e.presence_join(entry).await)
    }

    /// Removes a connection from a room's presence; true when it was the user's last.
    pub async fn leave(&self, entry: &PresenceEntry) -> Result<bool> {
        dispatch!(self.0, e => e.presence_leave(entry).await)
    }

    /// Keeps this replica's entries alive; an entry not refreshed within
    /// `CHAT_PRESENCE_TTL_SECS` stops counting.
    pub async fn refresh(&self, entries: &[PresenceEntry]) -> Result<()> {
        dispatch!(self.0, e => e.presence_refresh(entries).await)
    }

    /// How often a replica should [`refresh`](Self::refresh) its entries.
    pub fn refresh_every(&self) -> Duration {
        dispatch!(self.0, e => e.presence_ttl / 3)
    }

    /// Removes users whose entries all expired (their replica died); returns them so
    /// their `presence` leave can be announced.
    pub async fn sweep(&self, room: &str) -> Result<Vec<String>> {
        dispatch!(self.0, e => e.presence_sweep(room).await)
    }

    /// The users online in a room, sorted.
    pub async fn list(&self, room: &str) -> Result<Vec<String>> {
        dispatch!(self.0, e => e.presence_list(room).await)
    }

    /// Broadcasts a presence change to the room's subscribers; never stored.
    pub async fn publish(&self, room: &str, user: &str, event: PresenceEvent) -> Result<()> {
        dispatch!(self.0, e => e.publish_presence(room, user, event).await)
    }
}
