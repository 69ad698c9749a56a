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
//! - [`merge`]: the merged model every node derives bit for bit from the same registry and weights
//!   (weighted mean by labels trained on, trimmed mean, median), with typed exclusions of
//!   incompatible or non-finite updates.
//! - [`screen`]: excludes updates that score badly on the node's own held-out labels.
//! - [`committee`]: who publishes and is merged in an epoch, drawn by signed work (issue 26's
//!   bounded fan-in; the rule only, not yet used by the models service).
//!
//! Like the rest of the crate it does no I/O: weights come in as tensors, scores as numbers.

pub mod committee;
mod latest;
#[cfg(test)]
mod laws;
pub mod merge;
pub mod screen;
#[cfg(test)]
mod testing;
pub mod update;

pub use latest::{Entry, Inserted, MergeError, Registry};
pub use update::{
    Architecture, ArchitectureError, ModelUpdate, SignedUpdate, Validation, VerifyError,
    WeightsHash,
};
