//! Presence: each room join and leave recorded in the engine's presence, the user's
//! first join and last leave announced, this replica's entries kept alive, and users
//! whose replica died announced as gone. Best effort: a failure is logged, never fatal.

use chat_engine::{PresenceEntry, PresenceEvent};
use chat_protocol::ServerFrame;

use super::{Conn, Hub};

impl Hub {
    /// Records a room join or leave and announces the user's first join / last leave.
    pub(super) async fn presence_changed(&self, conn: &Conn, channel: &str, event: PresenceEvent) {
        if channel.starts_with('@') {
            return;
        }
        let entry = PresenceEntry {
            room: channel.to_owned(),
            user: conn.user.clone(),
            conn: conn.id.clone(),
        };
        let changed = match event {
            PresenceEvent::Join => self.engine.presence().join(&entry).await,
            PresenceEvent::Leave => self.engine.presence().leave(&entry).await,
        };
        let result = match changed {
            Ok(true) => {
                self.engine
                    .presence()
                    .publish(channel, &conn.user, event)
                    .await
            }
            Ok(false) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(channel, error = %e, "presence update failed");
        }
    }

    /// Every (room, user, connection) of this replica, for the presence refresh.
    pub fn presence_entries(&self) -> Vec<PresenceEntry> {
        let mut entries = Vec::new();
        for ch in self.rooms_with_members() {
            let ch = ch.lock();
            entries.extend(ch.conns().map(|conn| PresenceEntry {
                room: ch.name().to_owned(),
                user: conn.user.clone(),
                conn: conn.id.clone(),
            }));
        }
        entries
    }

    /// Rooms with local members.
    pub fn rooms(&self) -> Vec<String> {
        self.channels
            .read()
            .keys()
            .filter(|c| !c.starts_with('@'))
            .cloned()
            .collect()
    }

    /// Keeps this replica's presence alive, and announces users whose replica died.
    pub async fn refresh_presence(&self) {
        let presence = self.engine.presence();
        if let Err(e) = presence.refresh(&self.presence_entries()).await {
            tracing::warn!(error = %e, "presence refresh failed");
            return;
        }
        for room in self.rooms() {
            match presence.sweep(&room).await {
                Ok(gone) => {
                    for user in gone {
                        let _ = presence.publish(&room, &user, PresenceEvent::Leave).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "presence sweep failed"),
            }
        }
    }

    /// A presence event from the bus, to the room's members.
    pub(super) fn presence_event(&self, channel: &str, user: &str, event: PresenceEvent) {
        let frame = ServerFrame::Presence {
            room: channel.to_owned(),
            user: user.to_owned(),
            event,
        };
        if let Some(ch) = self.channel(channel) {
            ch.lock().broadcast(&frame, None);
        }
    }
}
