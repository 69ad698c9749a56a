//! What a node keeps of a dataset's model registry, and of the weights it names: only the peers
//! the owner's policy admits, at most [`Config::max_entries`] of them (the peers it held first
//! stay; of the new ones, those of lowest key), and the weights of the updates in force. When an
//! update is replaced, or its peer dropped, the weights it named are deleted from the blob store,
//! unless something else there still names them (another registry, a dataset).
//!
//! The cap is a bound on memory and disk, not a defence against Sybils: fresh keys cost nothing,
//! so a flood of them can take the free places. What keeps them out is the owner's allowlist
//! (`swarmlabel dataset admit`), which this bound applies before counting.
//!
//! [`Config::max_entries`]: crate::models::service::Config::max_entries

use std::collections::HashSet;

use swarmlabel_crdt::AnnotatorKey;
use swarmlabel_crdt::policy::Policy;
use swarmlabel_crdt::registry::{Registry, WeightsHash};
use swarmlabel_ids::DatasetId;
use swarmlabel_store::Catalog;
use swarmlabel_store::home::Home;
use swarmlabel_store::store::BlobId;

use super::{Event, Registries};
use crate::models::store;
use crate::replicate::Context;

/// A registry as it was before a change: its peers and the weights in force.
pub(super) struct Before {
    keys: HashSet<AnnotatorKey>,
    weights: HashSet<WeightsHash>,
    digest: [u8; 32],
}

impl Before {
    pub(super) fn of(registry: &Registry) -> Self {
        Self {
            keys: registry.entries().map(|(k, _)| *k).collect(),
            weights: registry.latest().map(|u| u.weights_hash).collect(),
            digest: registry.digest(),
        }
    }
}

/// Removes from `registry` the peers `policy` does not admit, then, while it holds more than
/// `max_entries`, the peers that were not in `before` (highest key first). Returns how many it
/// removed. Deterministic: every node with the same registry, policy and history keeps the same.
pub(super) fn bound(
    registry: &mut Registry,
    before: &HashSet<AnnotatorKey>,
    policy: Option<&Policy>,
    max_entries: usize,
) -> usize {
    let mut drop: Vec<AnnotatorKey> = registry
        .entries()
        .map(|(k, _)| *k)
        .filter(|k| policy.is_some_and(|p| !p.admits(k)))
        .collect();
    let kept = registry.len() - drop.len();
    if kept > max_entries {
        let mut new: Vec<AnnotatorKey> = registry
            .entries()
            .map(|(k, _)| *k)
            .filter(|k| !before.contains(k) && !drop.contains(k))
            .collect();
        new.sort_unstable();
        let excess = (kept - max_entries).min(new.len());
        drop.extend(new.split_off(new.len() - excess));
    }
    for key in &drop {
        registry.remove(key);
    }
    drop.len()
}

impl Registries {
    /// After a change of `dataset`'s registry (`before` it): bounds it, and if it still changed,
    /// saves it, fetches the new weights, recomputes the merged model and deletes the weights no
    /// longer in force. Returns whether the registry changed.
    pub(super) fn settle(
        &mut self,
        dataset: DatasetId,
        before: Before,
        cx: &mut Context<Self>,
    ) -> bool {
        let max_entries = self.config.max_entries;
        let Some(held) = self.held.get_mut(&dataset) else {
            return false;
        };
        let removed = bound(
            &mut held.registry,
            &before.keys,
            held.policy.as_deref(),
            max_entries,
        );
        self.stats.entries_refused.inc_by(removed as u64);
        if held.registry.digest() == before.digest {
            return false;
        }
        self.registry_changed(dataset, cx);
        self.collect_weights(before.weights, cx);
        true
    }

    /// Deletes, beside the service, those of `candidates` that no registry of the node has in
    /// force any more (weights of replaced or dropped updates).
    pub(super) fn collect_weights(
        &mut self,
        candidates: HashSet<WeightsHash>,
        cx: &mut Context<Self>,
    ) {
        let in_force: HashSet<WeightsHash> = self
            .held
            .values()
            .flat_map(|h| h.registry.latest().map(|u| u.weights_hash))
            .collect();
        let gone = candidates
            .into_iter()
            .filter(|h| !in_force.contains(h) && !self.fetching.contains(h))
            .inspect(|h| {
                self.have.remove(h);
            });
        self.collect.waiting.extend(gone);
        self.start_collection(cx);
    }

    /// Starts a removal of the weights waiting, unless one runs (its end starts the next).
    pub(super) fn start_collection(&mut self, cx: &mut Context<Self>) {
        if self.collect.running || self.collect.waiting.is_empty() {
            return;
        }
        // Weights put back in force (or being fetched again) since they were queued stay.
        let in_force: HashSet<WeightsHash> = self
            .held
            .values()
            .flat_map(|h| h.registry.latest().map(|u| u.weights_hash))
            .collect();
        let gone: Vec<BlobId> = std::mem::take(&mut self.collect.waiting)
            .into_iter()
            .filter(|b| {
                let hash = b;
                !in_force.contains(hash) && !self.fetching.contains(hash)
            })
            .collect();
        if gone.is_empty() {
            return;
        }
        self.collect.running = true;
        let home = self.home.clone();
        let work = async move {
            let removed = tokio::task::spawn_blocking(move || remove_unreferenced(&home, &gone))
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
            Event::Collected { removed }
        };
        cx.spawn(
            work,
            Event::Collected {
                removed: Err("the removal did not finish".into()),
            },
        );
    }
}

/// Superseded weights waiting for removal, and whether a removal runs.
#[derive(Debug, Default)]
pub(crate) struct Collect {
    pub(super) waiting: HashSet<BlobId>,
    pub(super) running: bool,
}

/// Removes those of `candidates` that no saved registry of `home` has in force and no listed
/// dataset names; returns the bytes freed. Blocking.
pub(super) fn remove_unreferenced(home: &Home, candidates: &[BlobId]) -> Result<u64, String> {
    let keep = store::referenced_weights(home).map_err(|e| e.to_string())?;
    let candidates: Vec<BlobId> = candidates
        .iter()
        .filter(|id| !keep.contains(id))
        .copied()
        .collect();
    Catalog::of(home)
        .remove_unlisted(&candidates)
        .map_err(|e| e.to_string())
}
