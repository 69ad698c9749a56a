//! The counts particular to the models kind, as Prometheus series.

use prometheus_client::metrics::counter::Counter;

/// Counts particular to models (`swarmlabel_models_*`).
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) published: Counter,
    pub(crate) gossip_dropped: Counter,
    pub(crate) weights_fetched: Counter,
    pub(crate) weights_rejected: Counter,
    pub(crate) merges: Counter,
    pub(crate) entries_refused: Counter,
    pub(crate) weights_removed_bytes: Counter,
}

impl Stats {
    pub(crate) fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        let r = registry.sub_registry_with_prefix("swarmlabel_models");
        let series: [(&str, &str, &Counter); 7] = [
            (
                "published",
                "Model updates published by this node",
                &self.published,
            ),
            (
                "gossip_dropped",
                "Model announcements dropped by fault injection",
                &self.gossip_dropped,
            ),
            (
                "weights_fetched",
                "Model weights fetched and verified",
                &self.weights_fetched,
            ),
            (
                "weights_rejected",
                "Model weights from peers refused (wrong hash or size)",
                &self.weights_rejected,
            ),
            ("merges", "Merged models computed", &self.merges),
            (
                "entries_refused",
                "Registry entries dropped: peers the policy does not admit, or over the cap",
                &self.entries_refused,
            ),
            (
                "weights_removed_bytes",
                "Bytes of model weights deleted once no update in force named them",
                &self.weights_removed_bytes,
            ),
        ];
        for (name, help, counter) in series {
            r.register(name, help, counter.clone());
        }
    }
}
