//! The model registry of a dataset (issue 6): signed model-update announcements, the CRDT that
//! keeps each peer's latest one, and the deterministic merge of the announced weights.
//!
//! - [`update`]: a peer's announcement of a trained model (dataset, peer key, version, labels
//!   trained on, architecture, BLAKE3 of the safetensors weights, their size, validation figures),
//!   its canonical encoding and its signature under [`update::DOMAIN`].
//! - [`Registry`]: per dataset, the latest verified update of each peer; merge keeps the highest
//!   version per peer, resolves an equivocation (two contents for one version) by the larger
//!   encoding and keeps the smaller as evidence. Merge is commutative, associative and idempotent,
//!   and [`Registry::digest`] lets two nodes compare registries with 32 bytes.
//!
//! Like the rest of the crate it does no I/O: weights come in as tensors, scores as numbers.

mod latest;
#[cfg(test)]
mod laws;
#[cfg(test)]
mod testing;
pub mod update;

pub use latest::{Entry, Inserted, MergeError, Registry};
pub use update::{
    Architecture, ArchitectureError, ModelUpdate, SignedUpdate, Validation, VerifyError,
    WeightsHash,
};
