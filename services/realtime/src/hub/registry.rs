//! Who is connected to this replica: each connection, and the connections of each user.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chat_protocol::{Encoding, ServerFrame};
use parking_lot::Mutex;

use crate::frame;
use crate::send_queue::{Closing, SendQueue};

/// One WebSocket connection, as the hub sees it.
pub struct Conn {
    pub id: String,
    pub user: String,
    pub encoding: Encoding,
    pub queue: Arc<SendQueue>,
    /// The channels it is a member of (its personal one included).
    pub(super) channels: Mutex<HashSet<String>>,
}

impl Conn {
    pub fn new(id: String, user: String, encoding: Encoding, queue: Arc<SendQueue>) -> Self {
        Self {
            id,
            user,
            encoding,
            queue,
            channels: Mutex::new(HashSet::new()),
        }
    }

    pub fn send(&self, frame: &ServerFrame) -> Result<(), Closing> {
        self.queue.push(frame::server(self.encoding, frame))
    }

    pub fn is_member(&self, channel: &str) -> bool {
        self.channels.lock().contains(channel)
    }

    pub fn channel_count(&self) -> usize {
        self.channels.lock().len()
    }
}

/// The connections that sent `connect`, by user.
#[derive(Default)]
pub(super) struct Registry {
    users: Mutex<HashMap<String, Vec<Arc<Conn>>>>,
}

impl Registry {
    pub fn add(&self, conn: &Arc<Conn>) {
        self.users
            .lock()
            .entry(conn.user.clone())
            .or_default()
            .push(conn.clone());
    }

    pub fn remove(&self, conn: &Conn) {
        let mut users = self.users.lock();
        if let Some(list) = users.get_mut(&conn.user) {
            list.retain(|c| c.id != conn.id);
            if list.is_empty() {
                users.remove(&conn.user);
            }
        }
    }

    pub fn of(&self, user: &str) -> Vec<Arc<Conn>> {
        self.users.lock().get(user).cloned().unwrap_or_default()
    }

    /// Distinct users with a connection, and the most connections one of them has.
    pub fn user_counts(&self) -> (usize, usize) {
        let users = self.users.lock();
        (users.len(), users.values().map(Vec::len).max().unwrap_or(0))
    }

    pub fn all(&self) -> Vec<Arc<Conn>> {
        self.users.lock().values().flatten().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(id: &str, user: &str) -> Arc<Conn> {
        let queue = Arc::new(SendQueue::new(1 << 16));
        Arc::new(Conn::new(id.into(), user.into(), Encoding::Json, queue))
    }

    #[test]
    fn a_users_connections_come_and_go_one_by_one() {
        let registry = Registry::default();
        let (a1, a2, b) = (conn("1", "ann"), conn("2", "ann"), conn("3", "bob"));
        for c in [&a1, &a2, &b] {
            registry.add(c);
        }
        assert_eq!(registry.of("ann").len(), 2);
        assert_eq!(registry.all().len(), 3);
        registry.remove(&a1);
        let left: Vec<String> = registry.of("ann").iter().map(|c| c.id.clone()).collect();
        assert_eq!(left, ["2"]);
        registry.remove(&a2);
        assert!(registry.of("ann").is_empty());
        assert_eq!(registry.all().len(), 1);
    }
}
