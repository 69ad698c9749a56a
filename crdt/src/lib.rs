#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod annotation;
mod bytes;
pub mod chain;
pub mod layout;
pub mod policy;
pub mod registry;
mod replica;
pub mod samples;
mod shard;
pub mod slot;
#[cfg(test)]
mod testing;
pub mod validate;

pub use annotation::{
    Annotation, AnnotatorKey, DatasetId, SampleId, SignError, SignedAnnotation, Signer, Suggestion,
    Value,
};
pub use automerge::ChangeHash;
pub use layout::{ShardId, ShardLayout};
pub use replica::{MergeError, Missing, RecordError, Recorded, Replica, Tip};
pub use samples::Samples;
pub use shard::Annotations;
pub use shard::storage::{LoadError, LoadReport};
pub use validate::{Dataset, Rejection, Rejections};
