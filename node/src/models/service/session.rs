//! Work the models actor runs beside itself: one registry sync session with one peer, and the
//! download of one weights file. Both work on snapshots and report back, so the registry stays
//! the actor's alone.

use libp2p::PeerId;
use swarmlabel_crdt::registry::{Registry, SignedUpdate, WeightsHash};

use super::super::store;
use crate::dataset::DatasetId;
use crate::net::{Node, RequestError, blob, models};
use crate::store::{BlobId, BlobStore};

/// Why a session ended early.
#[derive(Debug, thiserror::Error)]
pub(super) enum Error {
    #[error("the peer does not hold this dataset's models")]
    NotShared,
    #[error("the peer is busy")]
    Busy,
    #[error("the peer refused our records")]
    RefusedByPeer,
    #[error("the peer sent a record that does not verify: {0}")]
    Refused(String),
    #[error("the peer answered out of protocol")]
    Protocol,
    #[error(transparent)]
    Request(#[from] RequestError),
}

/// Parses and verifies records from a peer into a registry of `dataset`; the first bad record
/// refuses them all (an honest peer never sends one).
pub(super) fn registry_of(dataset: DatasetId, records: &[Vec<u8>]) -> Result<Registry, String> {
    let mut registry = Registry::new(super::crdt_id(&dataset));
    for (i, bytes) in records.iter().enumerate() {
        let update = SignedUpdate::from_bytes(bytes).map_err(|e| format!("record {i}: {e}"))?;
        registry
            .insert(update)
            .map_err(|e| format!("record {i}: {e}"))?;
    }
    Ok(registry)
}

/// Our records as the protocol carries them (at most [`models::MAX_RECORDS`]).
pub(super) fn wire_records(registry: &Registry) -> Vec<Vec<u8>> {
    store::records(registry)
        .iter()
        .take(models::MAX_RECORDS)
        .map(SignedUpdate::to_bytes)
        .collect()
}

/// Pulls `peer`'s registry when its digest differs from `ours`, and pushes ours when it lacks
/// something we hold. Returns what the peer holds (`None` when the digests were equal).
pub(super) async fn sync(
    node: Node,
    peer: PeerId,
    dataset: DatasetId,
    ours: Registry,
) -> Result<Option<Registry>, Error> {
    let pull = models::Request::Pull {
        dataset,
        digest: ours.digest(),
    };
    let records = match node.models_request(peer, pull).await? {
        models::Response::Same => return Ok(None),
        models::Response::Records(r) => r,
        models::Response::Unknown => return Err(Error::NotShared),
        models::Response::Busy => return Err(Error::Busy),
        _ => return Err(Error::Protocol),
    };
    let theirs = registry_of(dataset, &records).map_err(Error::Refused)?;
    let mut union = theirs.clone();
    // Same dataset by construction.
    let _ = union.merge(&ours);
    if union.digest() != theirs.digest() {
        let push = models::Request::Push {
            dataset,
            records: wire_records(&ours),
        };
        match node.models_request(peer, push).await? {
            models::Response::Same => {}
            models::Response::Refused => return Err(Error::RefusedByPeer),
            models::Response::Busy => return Err(Error::Busy),
            models::Response::Unknown => return Err(Error::NotShared),
            models::Response::Records(_) => return Err(Error::Protocol),
        }
    }
    Ok(Some(theirs))
}

/// How a download ended.
#[derive(Debug)]
pub(super) struct Fetched {
    /// Whether a verified copy is now in the blob store.
    pub(super) stored: bool,
    /// Responses refused (wrong size or hash).
    pub(super) rejected: u64,
}

/// Downloads the weights `hash` of `size` bytes from the first of `peers` that has them,
/// verifying size and BLAKE3 before storing them (durably) in `blobs`.
pub(super) async fn fetch(
    node: Node,
    blobs: BlobStore,
    hash: WeightsHash,
    size: u64,
    peers: Vec<PeerId>,
) -> Fetched {
    let id = BlobId(hash.0);
    let mut rejected = 0;
    for peer in peers {
        let Ok(blob::Response::Found(bytes)) = node.request(peer, blob::Request::Blob(id)).await
        else {
            continue;
        };
        if bytes.len() as u64 != size || BlobId::of(&bytes) != id {
            tracing::debug!(%peer, weights = %id, "refused model weights that do not match their hash");
            rejected += 1;
            continue;
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
