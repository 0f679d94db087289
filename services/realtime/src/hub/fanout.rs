//! From the bus to the members: each message fanned out by its channel, a hole in the
//! bus repaired from history, and every channel checked when the bus comes back.

use std::time::Duration;

use chat_engine::Range;
use chat_protocol::Message;

use super::Hub;
use crate::recovery::Repair;

/// History reads a repair tries before it tells members what is lost.
const REPAIR_ATTEMPTS: u32 = 6;

impl Hub {
    /// Fans a bus message out, or holds it while a hole before it is repaired.
    /// `published_us`: its publish time, 0 when unknown.
    pub(super) fn fan_out(&self, msg: Message, published_us: u64) {
        let Some(ch) = self.channel(&msg.room) else {
            return;
        };
        let mut ch = ch.lock();
        let (delivered, repair) = ch.live(msg, published_us);
        self.metrics.deliveries.inc_by(delivered);
        // The channel's name is copied only for a repair: never per live message.
        if let Some(from) = repair {
            let channel = ch.name().to_owned();
            drop(ch);
            self.repair(channel, from);
        }
    }

    /// Reads history from `from` on, and delivers what the bus skipped, then what
    /// arrived meanwhile, in seq order; again while the channel says so.
    fn repair(&self, channel: String, mut from: Repair) {
        let Some(hub) = self.me.upgrade() else { return };
        tracing::info!(
            channel,
            epoch = from.epoch,
            after = from.seq,
            "hole in the bus: repairing from history"
        );
        tokio::spawn(async move {
            loop {
                let range = Range::After {
                    seq: from.seq,
                    limit: hub.history_limit,
                };
                let mut read = None;
                for attempt in 0..REPAIR_ATTEMPTS {
                    match hub.engine.history(&channel, range).await {
                        Ok(h) => {
                            read = Some(h);
                            break;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(100 << attempt)).await,
                    }
                }
                let Some(ch) = hub.channel(&channel) else {
                    return;
                };
                let (delivered, again) = ch.lock().repaired(&from, read);
                hub.metrics.deliveries.inc_by(delivered);
                match again {
                    Some(next) => from = next,
                    None => return,
                }
            }
        });
    }

    /// Messages published while the bus was down never reached us: compare each
    /// channel's head with what we delivered and repair the difference, also across a
    /// new epoch (a store that came back empty).
    pub(super) fn bus_restored(&self) {
        self.metrics.redis_reconnects.inc();
        let Some(hub) = self.me.upgrade() else { return };
        let known: Vec<String> = self
            .channels
            .read()
            .iter()
            .filter(|(_, ch)| ch.lock().has_delivered())
            .map(|(c, _)| c.clone())
            .collect();
        tokio::spawn(async move {
            for channel in known {
                let Ok(head) = hub.engine.head(&channel).await else {
                    continue;
                };
                let Some(ch) = hub.channel(&channel) else {
                    continue;
                };
                let repair = ch.lock().restored(&head);
                if let Some(from) = repair {
                    hub.repair(channel, from);
                }
            }
        });
    }
}
