//! Join and leave commands from the gateway (`/chat/send`, the members routes), applied
//! to this replica's connections of the user.

use chat_engine::Control;
use chat_protocol::ServerFrame;

use super::Hub;

impl Hub {
    pub(super) fn control(&self, control: Control) {
        let (user, room, join) = match control {
            Control::Join { user, room } => (user, room, true),
            Control::Leave { user, room } => (user, room, false),
        };
        let conns = self.connections_of(&user);
        if conns.is_empty() {
            return;
        }
        // Joins await the engine: they run on their own task, never in the bus listener.
        let Some(hub) = self.me.upgrade() else { return };
        tokio::spawn(async move {
            for conn in conns {
                if join {
                    let result = hub
                        .join(&conn, &room, None, |j| ServerFrame::Joined {
                            room: room.clone(),
                            epoch: j.head.epoch.clone(),
                            seq: j.head.seq,
                            missed: 0,
                            recovered: None,
                        })
                        .await;
                    if let Err(e) = result {
                        let _ = conn.send(&ServerFrame::error(&e, None));
                    }
                } else {
                    hub.leave(&conn, &room).await;
                    let _ = conn.send(&ServerFrame::Left { room: room.clone() });
                }
            }
        });
    }
}
