//! Helpers shared by the registry's unit and property tests.

use super::{Architecture, ModelUpdate, SignedUpdate, Validation, WeightsHash};
use crate::annotation::DatasetId;
use crate::testing::{annotator, key};

pub(crate) const DATASET: DatasetId = DatasetId([0xda; 32]);

pub(crate) fn mlp() -> Architecture {
    Architecture::new([0xa1; 32], "mlp").expect("a valid name")
}

/// Peer `seed`'s update `version`, trained on `labels` labels, with weights named by
/// (seed, version).
pub(crate) fn update(seed: u8, version: u64, labels: u64) -> ModelUpdate {
    let mut id = [0u8; 9];
    id[0] = seed;
    id[1..].copy_from_slice(&version.to_le_bytes());
    ModelUpdate {
        dataset: DATASET,
        peer: annotator(seed),
        version,
        labels_trained: labels,
        architecture: mlp(),
        weights_hash: WeightsHash(*blake3::hash(&id).as_bytes()),
        weights_bytes: 1_000,
        validation: Validation::from_counts(80, 100),
    }
}

/// [`update`] signed by the key of `seed`.
pub(crate) fn signed(seed: u8, version: u64, labels: u64) -> SignedUpdate {
    signed_as(seed, update(seed, version, labels))
}

/// `update` signed by the key of `seed` (which `update` must name).
pub(crate) fn signed_as(seed: u8, update: ModelUpdate) -> SignedUpdate {
    SignedUpdate::sign(update, &key(seed)).expect("the update names the signing key")
}
