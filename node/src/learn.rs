//! The node's learning loop: per joined dataset, train on the consensus labels (local and from
//! peers), publish the model, take the merged model of the network, rescore the pool with the
//! freshest model (this node's own latest when it has seen at least the labels of every model
//! in the merge, else the merged one) and give the human the next samples to label, spread over
//! the active labelers so that volunteers rarely label the same sample beyond the redundancy
//! target (samples with some labels but fewer than the target first).
//!
//! - [`features`]: the dataset's samples in the store as feature rows, and the model that fits.
//! - [`select`] (I/O-free): coordinated selection by rendezvous hashing over active labelers.
//! - [`plan`] (I/O-free): when to train (debounced, one at a time, coalescing) and publish.
//! - [`train`]: one synchronous training round (warm start, prequential validation).
//! - [`exchange`]: the [`ModelExchange`](exchange::ModelExchange) the loop publishes to and
//!   takes the merged model from.
//! - [`Learner`]: the handle of one dataset's loop; the driver (`driver`) only moves data
//!   between the labels service, the plan, the blocking training thread and the exchange.
//!
//! Every node of a dataset starts from the same initial weights, drawn from a seed derived from
//! the dataset id, so that averaging their models is meaningful.

pub mod exchange;
pub mod features;
pub mod guard;
pub mod plan;
pub mod select;
pub mod train;
pub mod vitals;

mod driver;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use swarmlabel_active_learning::{Augment, Matrix, Query, Strategy};
use swarmlabel_crdt::{AnnotatorKey, SampleId};
use tokio::sync::mpsc;

use crate::labels::Labels;
use exchange::ModelExchange;
use features::{FeaturesError, PoolFeatures};
use swarmlabel_consensus::Method;
use swarmlabel_store::dataset::{Catalog, DatasetId};

/// Settings of a dataset's learning loop.
#[derive(Debug, Clone)]
pub struct Config {
    /// How candidates are ranked (the diversity step of `-diverse` strategies is not used: the
    /// spread over labelers replaces it; an explore share interleaves this labeler's random
    /// order with the ranking, see [`select::interleave`]).
    pub query: Query,
    /// Labels wanted per sample; `None` (the default) takes the data owner's target from the
    /// manifest (`swarmlabel dataset create --redundancy`).
    pub redundancy: Option<u32>,
    /// Consensus labels below which picks are random (the model is not worth asking yet).
    pub initial: u64,
    /// When to train.
    pub plan: plan::Config,
    /// Labelers who answered within this window count as active.
    pub active_window: Duration,
    /// How labels are aggregated into the training labels. Majority by default: with most
    /// samples labelled once (redundancy 1), Dawid–Skene has too little overlap between
    /// annotators to estimate their skills and its consensus drifts (measured in the `sim`
    /// benchmark: test accuracy near chance), while majority vote of one vote is that vote.
    pub consensus: Method,
    /// The loop's tick: labels changed since the last tick are read then (a burst of changes
    /// costs one read), and training is started when the plan says so.
    pub poll: Duration,
    /// Flips and quarter turns of images while training. Off by default: right only where
    /// orientation does not decide the class (shapes, cells, textures, aerial views), wrong for
    /// digits or letters. `swarmlabel demo` turns it on for its shapes.
    pub augment_images: Augment,
    /// The rollout guard of merged models (see [`guard`]).
    pub guard: guard::GuardConfig,
    /// Where the loop's vital signs are counted (see [`vitals`]).
    pub vitals: vitals::Vitals,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            query: Query::new(Strategy::Margin),
            redundancy: None,
            initial: 10,
            plan: plan::Config::default(),
            active_window: Duration::from_secs(600),
            consensus: Method::Majority,
            poll: Duration::from_millis(50),
            augment_images: Augment::Off,
            guard: guard::GuardConfig::default(),
            vitals: vitals::Vitals::default(),
        }
    }
}

/// Errors of the learning loop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LearnError {
    /// The dataset's features could not be computed.
    #[error(transparent)]
    Features(#[from] FeaturesError),
    /// The loop has stopped.
    #[error("the learning loop of dataset {0} has stopped")]
    Stopped(DatasetId),
    /// A blocking task failed.
    #[error("the learning loop's worker failed: {0}")]
    Worker(String),
}

/// A sample for the human, with why it was chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct Suggestion {
    /// The sample.
    pub sample: SampleId,
    /// The strategy that ranked it (`Random` during the cold start).
    pub strategy: Strategy,
    /// The strategy's score (higher = more informative).
    pub score: f32,
    /// Whether it is in this labeler's share (`false`: another's, taken as a fallback).
    pub own_share: bool,
    /// The model's most probable classes (indices into the dataset's label set) with their
    /// probabilities, most probable first.
    pub top: Vec<(u16, f32)>,
}

/// One training round in the accuracy history.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Round {
    /// Usable labels trained on.
    pub labels: u64,
    /// Accuracy of the model in force on the labels that arrived since the last round
    /// (prequential held-out figure); `None` when none arrived.
    pub accuracy: Option<f64>,
    /// How many labels that accuracy was measured on.
    pub held_out: u32,
    /// When the round finished, milliseconds since the Unix epoch.
    pub time_ms: u64,
}

/// Where the loop stands.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Progress {
    /// Valid annotations of the dataset this node holds.
    pub annotations: u64,
    /// Samples with a usable (consensus or gold) label.
    pub labels: u64,
    /// Annotations held when the last finished training started.
    pub trained_annotations: u64,
    /// Whether a training is under way.
    pub training: bool,
    /// Models published by this node.
    pub published: u64,
    /// Hash (hex) of the model the current ranking comes from: this node's own latest model
    /// when it was trained on at least as many labels as any model in the merge (fresher than
    /// the merged model, which averages peers' models of earlier rounds), else the merged
    /// model (`None`: the initial weights).
    pub model: Option<String>,
    /// Hash (hex) of the merged model in force at the last rescore.
    pub merged: Option<String>,
    /// Rescores of the pool so far.
    pub rescores: u64,
    /// Active labelers, this one included.
    pub active_labelers: usize,
    /// Every training round, oldest first.
    pub history: Vec<Round>,
    /// The merged model the rollout guard keeps out now, and why (`None`: the latest merged
    /// model was taken, or there is none).
    pub guard: Option<guard::Refusal>,
    /// Merged models the guard refused so far.
    pub refused_merges: u64,
}

/// The ranking and label counts `next` chooses from, replaced by the driver.
#[derive(Debug)]
struct Board {
    /// Samples best first, with the strategy's score.
    ranked: Vec<(SampleId, f32)>,
    strategy: Strategy,
    probs: Option<Arc<Matrix>>,
    counts: std::collections::HashMap<SampleId, u32>,
    mine: HashSet<SampleId>,
    active: Vec<AnnotatorKey>,
    progress: Progress,
}

impl Board {
    /// Empty: the cold-start ranking comes in `rank_initial`.
    fn new() -> Self {
        Self {
            ranked: Vec::new(),
            strategy: Strategy::Random,
            probs: None,
            counts: std::collections::HashMap::new(),
            mine: HashSet::new(),
            active: Vec::new(),
            progress: Progress::default(),
        }
    }
}

/// The handle of one dataset's learning loop. Cheap to clone; the loop stops on
/// [`Learner::shutdown`] or when every handle is dropped.
#[derive(Debug, Clone)]
pub struct Learner {
    dataset: DatasetId,
    me: AnnotatorKey,
    redundancy: u32,
    pool: Arc<PoolFeatures>,
    board: Arc<Mutex<Board>>,
    stop: mpsc::Sender<()>,
}

impl Learner {
    /// Starts the loop of `dataset` (listed in `catalog`, its labels open in `labels`) for the
    /// labeler `me`, publishing to and merging from `exchange`. Computes the pool's features
    /// first (on a blocking thread).
    pub async fn start(
        dataset: DatasetId,
        catalog: Catalog,
        labels: Labels,
        me: AnnotatorKey,
        exchange: Arc<dyn ModelExchange>,
        config: Config,
    ) -> Result<Learner, LearnError> {
        let pool = tokio::task::spawn_blocking(move || features::load(&catalog, &dataset))
            .await
            .map_err(|e| LearnError::Worker(e.to_string()))??;
        let pool = Arc::new(pool);
        let board = Arc::new(Mutex::new(Board::new()));
        let (stop, stopped) = mpsc::channel(1);
        let learner = Learner {
            dataset,
            me,
            redundancy: config.redundancy.unwrap_or(pool.redundancy).max(1),
            pool: pool.clone(),
            board: board.clone(),
            stop,
        };
        let driver =
            driver::Driver::new(dataset, me, pool, labels, exchange, config, board, stopped);
        driver.rank_initial();
        tokio::spawn(driver.run());
        Ok(learner)
    }

    /// The dataset.
    pub fn dataset(&self) -> DatasetId {
        self.dataset
    }

    /// The pool's samples as feature rows (what the models see).
    pub fn pool(&self) -> &Arc<PoolFeatures> {
        &self.pool
    }

    /// The next `n` samples for this labeler, best first, skipping `exclude` (samples already
    /// shown), samples it answered and samples labelled enough.
    pub fn next(&self, n: usize, exclude: &HashSet<SampleId>) -> Vec<Suggestion> {
        let board = self.board.lock().unwrap_or_else(PoisonError::into_inner);
        let ranked: Vec<SampleId> = board.ranked.iter().map(|(s, _)| *s).collect();
        let choices = select::select(
            &select::Input {
                ranked: &ranked,
                counts: &board.counts,
                mine: &board.mine,
                exclude,
                redundancy: self.redundancy,
                active: &board.active,
                me: self.me,
            },
            n,
        );
        choices
            .into_iter()
            .map(|c| {
                let row = self.pool.index[&c.sample];
                let top = board
                    .probs
                    .as_ref()
                    .map(|p| top_classes(p.row(row), 3))
                    .unwrap_or_default();
                Suggestion {
                    sample: c.sample,
                    strategy: board.strategy,
                    score: board.ranked[c.rank].1,
                    own_share: c.share == select::Share::Mine,
                    top,
                }
            })
            .collect()
    }

    /// Where the loop stands, with the accuracy history.
    pub fn progress(&self) -> Progress {
        let board = self.board.lock().unwrap_or_else(PoisonError::into_inner);
        board.progress.clone()
    }

    /// Stops the loop (a training under way finishes on its thread, unpublished).
    pub async fn shutdown(&self) {
        let _ = self.stop.send(()).await;
    }
}

fn top_classes(row: &[f32], n: usize) -> Vec<(u16, f32)> {
    let mut classes: Vec<(u16, f32)> = row
        .iter()
        .copied()
        .enumerate()
        .filter_map(|(c, p)| Some((u16::try_from(c).ok()?, p)))
        .collect();
    classes.sort_by(|a, b| b.1.total_cmp(&a.1));
    classes.truncate(n);
    classes
}

/// The seed of a dataset's initial weights: its id's first 8 bytes, so every node derives it.
pub fn seed_of(dataset: &DatasetId) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&dataset.0[..8]);
    u64::from_le_bytes(first)
}
