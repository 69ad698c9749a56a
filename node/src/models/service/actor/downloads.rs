//! The models actor's weight downloads: which weights to fetch, from whom, and what a finished
//! download changes.

use std::collections::HashSet;

use libp2p::PeerId;
use swarmlabel_crdt::AnnotatorKey;
use swarmlabel_crdt::registry::WeightsHash;

use super::super::session::{self, Fetched};
use super::{Done, ModelsActor, Owner};
use crate::dataset::DatasetId;

/// The libp2p peer id of a node whose annotator key is `key` (the same ed25519 key).
pub(super) fn peer_of(key: &AnnotatorKey) -> Option<PeerId> {
    let public = libp2p::identity::ed25519::PublicKey::try_from_bytes(&key.0).ok()?;
    Some(libp2p::identity::PublicKey::from(public).to_peer_id())
}

impl ModelsActor {
    /// Starts downloads of the weights of updates in force that the node lacks.
    pub(super) fn fetch_missing(&mut self, dataset: DatasetId) {
        let Some(node) = self.node.clone() else {
            return;
        };
        let Some(held) = self.held.get(&dataset) else {
            return;
        };
        let wanted: Vec<(WeightsHash, u64, AnnotatorKey)> = held
            .registry
            .latest()
            .filter(|u| !self.have.contains(&u.weights_hash))
            .filter(|u| !self.fetching.contains(&u.weights_hash))
            .filter(|u| !self.failed.contains(&u.weights_hash))
            .filter(|u| u.weights_bytes <= self.config.max_weights_bytes)
            .map(|u| (u.weights_hash, u.weights_bytes, u.peer))
            .collect();
        let local = node.peer_id();
        for (hash, size, owner) in wanted {
            if self.fetching.len() >= self.config.max_fetches.max(1) {
                break;
            }
            self.fetching.insert(hash);
            let mut peers: Vec<PeerId> = peer_of(&owner).into_iter().collect();
            peers.extend(self.hints.get(&hash).copied());
            let (node, blobs) = (node.clone(), self.home.blobs());
            let task = self.tasks.spawn(async move {
                // The update's own peer first, then whoever announced it, then any holder.
                peers.extend(node.model_peers(dataset).await.unwrap_or_default());
                let mut seen = HashSet::new();
                peers.retain(|p| *p != local && seen.insert(*p));
                let fetched = session::fetch(node, blobs, hash, size, peers).await;
                Done::Fetched {
                    dataset,
                    hash,
                    fetched,
                }
            });
            self.owners.insert(task.id(), Owner::Fetch(hash));
        }
    }

    pub(super) fn on_fetched(&mut self, dataset: DatasetId, hash: WeightsHash, fetched: Fetched) {
        self.fetching.remove(&hash);
        self.stats.weights_rejected.inc_by(fetched.rejected);
        if fetched.stored {
            self.stats.weights_fetched.inc();
            self.hints.remove(&hash);
            self.have.insert(hash);
            self.serve(vec![hash]);
            self.mark_dirty(dataset);
        } else {
            self.failed.insert(hash);
        }
        // Start the downloads that waited for a free slot.
        self.fetch_missing(dataset);
    }
}
