#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

#[cfg(feature = "labels")]
pub mod consensus;
pub mod daemon;
pub mod dataset;
pub mod home;
pub mod identity;
#[cfg(feature = "labels")]
pub mod labels;
#[cfg(feature = "labels")]
pub mod learn;
#[cfg(feature = "labels")]
pub mod models;
pub mod net;
pub mod progress;
pub mod store;

pub use dataset::{Catalog, DatasetId};
pub use home::Home;
pub use identity::{Identity, PublicKey};
pub use store::{BlobId, BlobStore};
