//! What every replicated kind's service counts, registered as `swarmlabel_<kind>_*`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// What every kind's service counts (`swarmlabel_<kind>_*`).
#[derive(Debug, Default)]
pub struct Stats {
    /// Gossip messages accepted (valid, new: stored, forwarded).
    pub gossip_accepted: Counter,
    /// Gossip messages rejected as invalid.
    pub gossip_rejected: Counter,
    /// Gossip messages ignored (nothing new, not held).
    pub gossip_ignored: Counter,
    /// Messages from peers refused (they do not decode or verify); nothing of them was kept.
    pub sync_refused: Counter,
    /// Sessions completed.
    pub sessions_completed: Counter,
    /// Sessions failed (timeout, refusal, unreachable or busy peer).
    pub sessions_failed: Counter,
}

impl Stats {
    pub(super) fn register(&self, registry: &mut Registry, kind: &str) {
        let r = registry.sub_registry_with_prefix(format!("swarmlabel_{kind}"));
        let series: [(&str, String, &Counter); 6] = [
            (
                "gossip_accepted",
                format!("{kind} gossip messages accepted"),
                &self.gossip_accepted,
            ),
            (
                "gossip_rejected",
                format!("{kind} gossip messages rejected as invalid"),
                &self.gossip_rejected,
            ),
            (
                "gossip_ignored",
                format!("{kind} gossip messages ignored (known, stale or not held)"),
                &self.gossip_ignored,
            ),
            (
                "sync_refused",
                format!("{kind} sync messages from peers refused (they do not decode or verify)"),
                &self.sync_refused,
            ),
            (
                "sessions_completed",
                format!("{kind} anti-entropy sessions completed"),
                &self.sessions_completed,
            ),
            (
                "sessions_failed",
                format!("{kind} anti-entropy sessions failed"),
                &self.sessions_failed,
            ),
        ];
        for (name, help, counter) in series {
            r.register(name, help, counter.clone());
        }
    }
}
