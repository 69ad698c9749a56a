//! Models shared over the network (issue 6): per dataset, the registry of each peer's latest
//! signed model update (`swarmlabel_crdt::registry`), the weights as content-addressed blobs, and
//! the merged model every node derives from them.
//!
//! ```text
//! HOME/models/<dataset id>/registry   the registry (see [`store`])
//! HOME/blobs/ab/cdef…                 weights files (safetensors), by BLAKE3, beside dataset blobs
//! ```
//!
//! The [`service`] owns it all on a running node. In short, for the learning loop:
//!
//! ```no_run
//! # async fn demo(home: swarmlabel_store::Home, node: swarmlabel_net::Node,
//! #     dataset: swarmlabel_store::DatasetId, bytes: Vec<u8>,
//! #     architecture: swarmlabel_crdt::registry::Architecture)
//! # -> Result<(), swarmlabel_node::models::ModelsError> {
//! use swarmlabel_crdt::registry::Validation;
//! use swarmlabel_node::models::{Config, Models, Publication};
//!
//! let models = Models::start(home, Some(node), Config::default()).await?;
//! models.open(dataset).await?;
//! let mut merged = models.watch(dataset).await?;
//! models
//!     .publish(Publication {
//!         dataset,
//!         weights: bytes, // a float32 safetensors file
//!         labels_trained: 120,
//!         architecture,
//!         validation: Validation::from_counts(90, 100),
//!     })
//!     .await?;
//! // Wakes whenever the merged model changes (own or peers' updates, weights fetched).
//! merged.changed().await.ok();
//! if let Some(model) = merged.borrow().clone() {
//!     println!("merged model {} of {} peers", model.hash, model.included.len());
//! }
//! # Ok(()) }
//! ```

pub mod merged;
mod replicated;
pub mod service;
pub mod store;
pub mod weights;
pub mod wire;

pub use merged::{Exclusion, MergedModel, Scorer, Screen};
pub use service::{
    Config, Counters, Current, MethodError, Models, ModelsError, Publication, parse_method,
};
