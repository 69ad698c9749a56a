#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod aggregate;
pub mod annotation;
mod bytes;
pub mod layout;
pub mod policy;
pub mod registry;
mod replica;
pub mod samples;
mod shard;
pub mod slot;
pub mod sync;
#[cfg(test)]
mod testing;
pub mod validate;

pub use annotation::{
    Annotation, AnnotatorKey, DatasetId, SampleId, SignError, SignedAnnotation, Signer, Suggestion,
    Value,
};
pub use automerge::ChangeHash;
pub use layout::{ShardId, ShardLayout};
pub use replica::{MAX_ACTOR_LEN, MergeError, RecordError, Replica, ReplicaError};
pub use samples::Samples;
pub use shard::Annotations;
pub use shard::storage::{LoadError, LoadReport};
pub use validate::{Dataset, Rejection, Rejections};
