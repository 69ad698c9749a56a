//! The labels' own counters, exported on `/metrics` as `swarmlabel_labels_*`.

use prometheus_client::metrics::counter::Counter;

/// Counts particular to labels (`swarmlabel_labels_recorded`, `_sync_applied`, ...).
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) recorded: Counter,
    pub(crate) sync_applied: Counter,
    pub(crate) over_quota: Counter,
    pub(crate) dropped_not_admitted: Counter,
}

impl Stats {
    pub(crate) fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        let r = registry.sub_registry_with_prefix("swarmlabel_labels");
        r.register(
            "recorded",
            "Labels recorded on this node (durable)",
            self.recorded.clone(),
        );
        r.register(
            "sync_applied",
            "Pages of records pulled from peers that held new records",
            self.sync_applied.clone(),
        );
        r.register(
            "over_quota",
            "Records from peers left for later because a quota (per peer, per annotator, all) was spent",
            self.over_quota.clone(),
        );
        r.register(
            "dropped_not_admitted",
            "Records removed from disk because the owner's policy no longer admits their annotator",
            self.dropped_not_admitted.clone(),
        );
    }
}
