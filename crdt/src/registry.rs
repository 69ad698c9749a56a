//! The model registry of a dataset (issue 6): signed model-update announcements, the CRDT that
//! keeps each peer's latest one, and the deterministic merge of the announced weights.
//!
//! - [`update`]: a peer's announcement of a trained model (dataset, peer key, version, labels
//!   trained on, architecture, BLAKE3 of the safetensors weights, their size, validation figures),
//!   its canonical encoding and its signature under [`update::DOMAIN`].
//!
//! Like the rest of the crate it does no I/O: weights come in as tensors, scores as numbers.

#[cfg(test)]
mod testing;
pub mod update;

pub use update::{
    Architecture, ArchitectureError, ModelUpdate, SignedUpdate, Validation, VerifyError,
    WeightsHash,
};
