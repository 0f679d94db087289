//! The per-IP connection limit, counted from accept: every socket holds a slot of its
//! peer's (or, behind a trusted proxy, of the client the proxy names) until it ends,
//! whether it finishes its handshake or not.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::Realtime;

impl Realtime {
    /// Takes a connection slot of `ip`; `None` when the IP holds its maximum. A
    /// connection that was counted when it was accepted (from `ip` itself, no proxy)
    /// keeps that slot: one socket counts once, half-open or upgraded.
    pub(crate) fn claim_ip(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<IpSlot> {
        if let Some(slot) = chat_telemetry::serve::take_admission(|s: &IpSlot| s.ip == ip) {
            return Some(slot);
        }
        let mut per_ip = self.per_ip.lock();
        let n = per_ip.entry(ip).or_default();
        if *n >= self.limits.max_connections_per_ip {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            rt: self.clone(),
            ip,
        })
    }
}

/// Counts every accepted socket against its peer's per-IP limit, from accept on: a
/// client that opens sockets and never finishes a handshake holds its own slots, not
/// everyone's files. A trusted proxy's sockets are not counted here: the client it
/// names is, at the upgrade.
pub fn edge(rt: &Arc<Realtime>) -> chat_telemetry::serve::Edge {
    let admit = {
        let rt = rt.clone();
        move |peer: SocketAddr| -> Option<chat_telemetry::serve::Admission> {
            // Canonical, as `client_ip` hands it to the upgrade's claim.
            let ip = peer.ip().to_canonical();
            if rt.limits.trusted_proxies.contains(ip) {
                return Some(Box::new(()));
            }
            match rt.claim_ip(ip) {
                Some(slot) => Some(Box::new(slot)),
                None => {
                    rt.limit_hit("connections_per_ip");
                    None
                }
            }
        }
    };
    rt.edge.edge().admit(Arc::new(admit))
}

/// A connection's share of its IP's limit, given back when the connection ends.
pub struct IpSlot {
    rt: Arc<Realtime>,
    ip: std::net::IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut per_ip = self.rt.per_ip.lock();
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}
