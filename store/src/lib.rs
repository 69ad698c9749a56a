#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod dataset;
pub mod fs;
pub mod home;
pub mod identity;
pub mod progress;
pub mod store;

pub use dataset::{Catalog, DatasetId};
pub use home::Home;
pub use identity::{Identity, PublicKey};
pub use store::{BlobId, BlobStore};
