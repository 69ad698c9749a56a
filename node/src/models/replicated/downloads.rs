//! The weights downloads of the models kind: which weights to fetch, from whom, the download
//! itself (size and BLAKE3 checked before anything is stored, then the shape: only model weights
//! of the architecture the update declares are kept and served), and what a finished one changes.

use std::collections::HashSet;

use libp2p::PeerId;
use swarmlabel_crdt::AnnotatorKey;
use swarmlabel_crdt::registry::{Architecture, WeightsHash};
use swarmlabel_ids::DatasetId;
use swarmlabel_net::swarm::{Node, blob};
use swarmlabel_store::store::{BlobId, BlobStore};

use super::{Event, Registries};
use crate::replicate::Context;

/// How a download ended.
#[derive(Debug)]
pub(crate) struct Fetched {
    /// Whether a verified copy is now in the blob store.
    pub(crate) stored: bool,
    /// Responses refused (wrong size or hash).
    pub(crate) rejected: u64,
}

/// The libp2p peer id of a node whose annotator key is `key` (the same ed25519 key).
pub(crate) fn peer_of(key: &AnnotatorKey) -> Option<PeerId> {
    let public = libp2p::identity::ed25519::PublicKey::try_from_bytes(&key.0).ok()?;
    Some(libp2p::identity::PublicKey::from(public).to_peer_id())
}

/// Whether `bytes` are weights of `architecture`: a safetensors file whose model spec (in its
/// header) hashes to the architecture's spec hash, with exactly the spec's tensors. Anything else
/// (arbitrary bytes an update points at) is neither kept nor served (audit 2026-12-04, N14): what
/// a key can make every holder store and serve is a model of a bounded spec, not a file of its
/// choosing.
pub(crate) fn weights_fit(bytes: &[u8], architecture: &Architecture) -> bool {
    use swarmlabel_active_learning::model::{Model, SPEC_METADATA_KEY};
    let Ok((_, header)) = safetensors::SafeTensors::read_metadata(bytes) else {
        return false;
    };
    let spec_hash = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(SPEC_METADATA_KEY))
        .map(|spec| *blake3::hash(spec.as_bytes()).as_bytes());
    spec_hash.as_ref() == Some(architecture.spec_hash())
        && Model::from_safetensors_bytes(bytes).is_ok()
}

/// Downloads the weights `hash` of `size` bytes of `architecture` from the first of `peers` that
/// has them, verifying size, BLAKE3 and shape before storing them (durably) in `blobs`.
async fn fetch(
    node: Node,
    blobs: BlobStore,
    hash: WeightsHash,
    size: u64,
    architecture: Architecture,
    peers: Vec<PeerId>,
) -> Fetched {
    let id = hash;
    let mut rejected = 0;
    for peer in peers {
        let Ok(blob::Response::Found(bytes)) =
            node.request(peer, blob::Request::SizedBlob(id, size)).await
        else {
            continue;
        };
        if bytes.len() as u64 != size || BlobId::of(&bytes) != id {
            tracing::debug!(%peer, weights = %id, "refused model weights that do not match their hash");
            rejected += 1;
            continue;
        }
        // The bytes are the ones the update names: if they are not weights of its architecture,
        // no peer has better ones. Checked beside the runtime (it builds the model).
        let (check, arch) = (bytes.clone(), architecture.clone());
        let fits = tokio::task::spawn_blocking(move || weights_fit(&check, &arch))
            .await
            .unwrap_or(false);
        if !fits {
            tracing::debug!(%peer, weights = %id, "refused bytes that are not weights of the update's architecture");
            rejected += 1;
            break;
        }
        let blobs = blobs.clone();
        let stored =
            tokio::task::spawn_blocking(move || blobs.put_durable(id, &bytes).map(|_| ())).await;
        match stored {
            Ok(Ok(())) => {
                return Fetched {
                    stored: true,
                    rejected,
                };
            }
            Ok(Err(e)) => tracing::warn!(weights = %id, error = %e, "cannot store model weights"),
            Err(e) => tracing::warn!(weights = %id, error = %e, "storing model weights failed"),
        }
        break;
    }
    Fetched {
        stored: false,
        rejected,
    }
}

impl Registries {
    /// Starts downloads of the weights of updates in force that the node lacks.
    pub(super) fn fetch_missing(&mut self, dataset: DatasetId, cx: &mut Context<Self>) {
        let Some(node) = self.node.clone() else {
            return;
        };
        let Some(held) = self.held.get(&dataset) else {
            return;
        };
        // Weights held or on their way count against the dataset's budget.
        let mut budget = self.config.max_dataset_weights_bytes.saturating_sub(
            held.registry
                .latest()
                .filter(|u| {
                    self.have.contains(&u.weights_hash) || self.fetching.contains(&u.weights_hash)
                })
                .map(|u| u.weights_bytes)
                .sum(),
        );
        let wanted: Vec<(WeightsHash, u64, AnnotatorKey, Architecture)> = held
            .registry
            .latest()
            .filter(|u| !self.have.contains(&u.weights_hash))
            .filter(|u| !self.fetching.contains(&u.weights_hash))
            .filter(|u| !self.failed.contains(&u.weights_hash))
            .filter(|u| u.weights_bytes <= self.config.max_weights_bytes)
            .filter(|u| {
                let fits = u.weights_bytes <= budget;
                budget -= if fits { u.weights_bytes } else { 0 };
                fits
            })
            .map(|u| {
                (
                    u.weights_hash,
                    u.weights_bytes,
                    u.peer,
                    u.architecture.clone(),
                )
            })
            .collect();
        let local = node.peer_id();
        for (hash, size, owner, architecture) in wanted {
            if self.fetching.len() >= self.config.max_fetches.max(1) {
                break;
            }
            self.fetching.insert(hash);
            let mut peers: Vec<PeerId> = peer_of(&owner).into_iter().collect();
            peers.extend(self.hints.get(&hash).copied());
            let (node, blobs) = (node.clone(), self.home.blobs());
            let work = async move {
                // The update's own peer first, then whoever announced it, then any holder.
                peers.extend(
                    node.topic_peers(super::wire::KIND, dataset)
                        .await
                        .unwrap_or_default(),
                );
                let mut seen = HashSet::new();
                peers.retain(|p| *p != local && seen.insert(*p));
                let fetched = fetch(node, blobs, hash, size, architecture, peers).await;
                Event::Fetched {
                    dataset,
                    hash,
                    fetched,
                }
            };
            let lost = Event::Fetched {
                dataset,
                hash,
                fetched: Fetched {
                    stored: false,
                    rejected: 0,
                },
            };
            cx.spawn(work, lost);
        }
    }

    pub(super) fn on_fetched(
        &mut self,
        dataset: DatasetId,
        hash: WeightsHash,
        fetched: Fetched,
        cx: &mut Context<Self>,
    ) {
        self.fetching.remove(&hash);
        self.stats.weights_rejected.inc_by(fetched.rejected);
        if fetched.stored {
            self.stats.weights_fetched.inc();
            self.hints.remove(&hash);
            self.have.insert(hash);
            self.serve(vec![hash], cx);
            self.mark_dirty(dataset, cx);
        } else {
            self.failed.insert(hash);
        }
        // Start the downloads that waited for a free slot.
        self.fetch_missing(dataset, cx);
    }
}
