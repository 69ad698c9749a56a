//! The human's queue: which samples the labeling page shows next, and why.
//!
//! The daemon asks a [`Source`] per dataset. Until a learning loop plugs its own in (a model's
//! query strategy, with its top guesses), the [`Fallback`] source serves samples in a seeded order
//! of this node's own, without a model. A source sees the dataset's sample ids, the annotations
//! the node holds and who the human is, so it can leave out what is already labelled enough.

pub mod fallback;

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;

use serde::Serialize;
use swarmlabel_crdt::{Annotations, AnnotatorKey};

use swarmlabel_store::dataset::DatasetId;
use swarmlabel_store::store::BlobId;

pub use fallback::Fallback;

/// A future returned by a [`Source`].
pub type SourceFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a source sees of a dataset when asked for picks.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// The dataset.
    pub dataset: DatasetId,
    /// Its samples, in manifest order.
    pub samples: &'a [BlobId],
    /// The annotations the node holds (every signature verified).
    pub annotations: &'a Annotations,
    /// The human's key: the node's identity, which signs their labels.
    pub me: AnnotatorKey,
}

/// A model's guess of a sample's label.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Guess {
    /// The label, as an index into the label set.
    pub label: u16,
    /// The model's probability of it, in `[0, 1]`.
    pub probability: f64,
}

/// One sample to show the human, and why it was chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct Pick {
    /// The sample.
    pub sample: BlobId,
    /// The query strategy that chose it (`"fallback"` without a model).
    pub strategy: String,
    /// The strategy's score of the sample, when it has one (higher: more useful to label).
    pub score: Option<f64>,
    /// One sentence for the human on why this sample was chosen.
    pub why: String,
    /// The model's top guesses, most probable first; empty without a model.
    pub guesses: Vec<Guess>,
}

/// The model's accuracy after some labels, for the progress curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AccuracyPoint {
    /// When it was measured, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Labels the model had been trained on.
    pub labels: u64,
    /// Its accuracy on held-out gold labels, in `[0, 1]`.
    pub accuracy: f64,
}

/// Where the queue's picks come from. Implemented by [`Fallback`] and, later, by the learning
/// loop's per-dataset learner.
pub trait Source: Send + Sync + std::fmt::Debug {
    /// Up to `n` samples to show next, best first, none of them in `exclude` (what the page
    /// already holds).
    fn next<'a>(
        &'a self,
        view: View<'a>,
        n: usize,
        exclude: &'a HashSet<BlobId>,
    ) -> SourceFuture<'a, Vec<Pick>>;

    /// The model's accuracy over time for `dataset`, oldest first; empty without a model.
    fn accuracy(&self, dataset: DatasetId) -> SourceFuture<'_, Vec<AccuracyPoint>>;
}
