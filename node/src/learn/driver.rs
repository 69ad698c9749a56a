//! The task that drives one dataset's learning loop. It only moves data: label reads from the
//! labels service into the consensus and the [`Plan`], training jobs onto a blocking thread and
//! their models to the exchange, merged models into a rescore of the pool, rankings onto the
//! board that [`Learner::next`](super::Learner::next) reads.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rand::SeedableRng as _;
use rand::seq::SliceRandom as _;
use swarmlabel_active_learning::{ModelError, Strategy};
use swarmlabel_crdt::registry::Validation;
use swarmlabel_crdt::{Annotations, AnnotatorKey, SampleId, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::exchange::{self, ModelExchange};
use super::features::PoolFeatures;
use super::plan::{Action, Plan, Snapshot};
use super::{Board, Config, Round, seed_of, select, train};
use crate::labels::Labels;
use crate::models::MergedModel;
use swarmlabel_consensus as consensus;
use swarmlabel_store::dataset::DatasetId;

mod guarded;
mod rescore;
mod signs;

/// Ticks after which the labels are read even if they did not change: who counts as an active
/// labeler depends on the clock.
const READ_AT_LEAST_EVERY: u32 = 20;

type Training = JoinHandle<(
    Snapshot,
    u64,
    Vec<usize>,
    Result<train::Outcome, ModelError>,
)>;

pub(super) struct Driver {
    crdt: swarmlabel_crdt::DatasetId,
    me: AnnotatorKey,
    pool: Arc<PoolFeatures>,
    labels: Labels,
    exchange: Arc<dyn ModelExchange>,
    config: Config,
    board: Arc<Mutex<Board>>,
    stopped: mpsc::Receiver<()>,
    plan: Plan,
    seed: u64,
    started: Instant,
    /// Whether the labels changed since they were last read.
    dirty: bool,
    ticks_since_read: u32,
    version: u64,
    annotations: u64,
    /// `(row, class)` of every usable label, sorted by row.
    usable: Vec<(usize, usize)>,
    trained_rows: HashSet<usize>,
    annotations_at: HashMap<u64, u64>,
    /// This node's latest trained weights and the usable labels they were trained on.
    own: Option<(Arc<Vec<u8>>, usize)>,
    /// The weights the ranking comes from.
    in_use: Option<Arc<Vec<u8>>>,
    /// The merged model the guard refused last, and the usable labels it was judged on.
    refused: Option<([u8; 32], usize)>,
}

impl Driver {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        dataset: DatasetId,
        me: AnnotatorKey,
        pool: Arc<PoolFeatures>,
        labels: Labels,
        exchange: Arc<dyn ModelExchange>,
        config: Config,
        board: Arc<Mutex<Board>>,
        stopped: mpsc::Receiver<()>,
    ) -> Self {
        config.vitals.start(&dataset);
        Self {
            crdt: dataset,
            me,
            pool,
            labels,
            exchange,
            plan: Plan::new(config.plan),
            config,
            board,
            stopped,
            seed: seed_of(&dataset),
            started: Instant::now(),
            dirty: true,
            ticks_since_read: 0,
            version: 0,
            annotations: 0,
            usable: Vec::new(),
            trained_rows: HashSet::new(),
            annotations_at: HashMap::new(),
            own: None,
            in_use: None,
            refused: None,
        }
    }

    /// Puts the cold-start ranking on the board, so picks exist before the first rescore.
    pub(super) fn rank_initial(&self) {
        let ranked = self.random_order();
        let mut board = self.board();
        board.ranked = ranked;
        board.strategy = Strategy::Random;
        board.progress.active_labelers = 1;
    }

    pub(super) async fn run(mut self) {
        let mut merged = self.exchange.watch(self.crdt);
        let mut watching = true;
        // The labels service tells when the labels change, as the exchange does for models.
        let mut labels = match self.labels.watch(self.crdt).await {
            Ok(rx) => Some(rx),
            Err(e) => {
                tracing::warn!(dataset = %self.crdt, "cannot follow the labels, reading them at every tick: {e}");
                None
            }
        };
        let mut tick = tokio::time::interval(self.config.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut training: Option<Training> = None;
        self.rescore().await;
        loop {
            tokio::select! {
                biased;
                _ = self.stopped.recv() => break,
                joined = async { training.as_mut().expect("guarded by the select condition").await },
                    if training.is_some() => {
                    training = None;
                    match joined {
                        Ok((snapshot, annotations, rows, outcome)) => {
                            self.finish(snapshot, annotations, rows, outcome).await;
                        }
                        Err(e) => {
                            tracing::warn!(dataset = %self.crdt, "a training thread failed: {e}");
                            self.plan.failed();
                            self.board().progress.training = false;
                        }
                    }
                }
                changed = merged.changed(), if watching => {
                    if changed.is_err() {
                        watching = false;
                    } else {
                        self.rescore().await;
                    }
                }
                changed = async { labels.as_mut().expect("guarded by the select condition").changed().await },
                    if labels.is_some() => {
                    // Read at the next tick: a burst of changes costs one read.
                    self.dirty = true;
                    if changed.is_err() {
                        labels = None;
                    }
                }
                _ = tick.tick() => {
                    self.ticks_since_read += 1;
                    if self.dirty || labels.is_none() || self.ticks_since_read >= READ_AT_LEAST_EVERY {
                        self.read_labels().await;
                    }
                    if training.is_none()
                        && let Action::Train(snapshot) = self.plan.next(self.now_ms())
                    {
                        training = Some(self.spawn_training(snapshot));
                        self.board().progress.training = true;
                    }
                }
            }
        }
    }

    fn board(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn random_order(&self) -> Vec<(SampleId, f32)> {
        // An order of this labeler's own: before it knows the other labelers, their picks then
        // rarely collide; once it does, the rendezvous shares keep them apart whatever the order.
        let mut seed = [0u8; 32];
        seed.copy_from_slice(
            blake3::hash(&[self.seed.to_le_bytes().as_slice(), &self.me.0].concat()).as_bytes(),
        );
        let mut order: Vec<usize> = (0..self.pool.ids.len()).collect();
        order.shuffle(&mut rand_chacha::ChaCha8Rng::from_seed(seed));
        order.into_iter().map(|i| (self.pool.ids[i], 0.0)).collect()
    }

    async fn read_labels(&mut self) {
        self.dirty = false;
        self.ticks_since_read = 0;
        let read = match self.labels.read(self.crdt).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(dataset = %self.crdt, "cannot read the labels: {e}");
                return;
            }
        };
        let usable = self.usable_labels(&read);
        let annotations = read.annotations.len() as u64;
        let changed = annotations != self.annotations || usable != self.usable;
        self.annotations = annotations;
        self.usable = usable;
        let mut counts: HashMap<SampleId, u32> = HashMap::new();
        let mut mine = HashSet::new();
        for signed in &read.annotations {
            let a = signed.annotation();
            if matches!(a.value, Value::Label(_)) {
                *counts.entry(a.sample).or_default() += 1;
            }
            if a.annotator == self.me {
                mine.insert(a.sample);
            }
        }
        let window = self.config.active_window.as_millis() as u64;
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut active = select::active_labelers(&read.annotations, wall_ms.saturating_sub(window));
        if !active.contains(&self.me) {
            active.push(self.me);
        }
        if changed {
            self.version += 1;
            self.annotations_at.insert(self.version, annotations);
            let snapshot = Snapshot {
                version: self.version,
                labels: self.usable.len() as u64,
            };
            self.plan.labels_changed(snapshot, self.now_ms());
        }
        self.vital_signs(&read, &counts, &mine, wall_ms);
        let mut board = self.board();
        board.progress.active_labelers = active.len();
        board.counts = counts;
        board.mine = mine;
        board.active = active;
        board.progress.annotations = annotations;
        board.progress.labels = self.usable.len() as u64;
    }

    /// `(row, class)` of the consensus label of every sample that has one, gold labels first.
    fn usable_labels(&self, read: &Annotations) -> Vec<(usize, usize)> {
        let mut by_row: HashMap<usize, usize> = HashMap::new();
        match consensus::summarise(
            read,
            &self.pool.labels,
            &self.pool.gold,
            self.config.consensus,
        ) {
            Ok(summary) => {
                let flagged = summary.stats.annotators.iter().filter(|a| a.flag.is_some());
                self.config
                    .vitals
                    .flagged(&self.crdt, flagged.count() as i64);
                for s in summary.samples {
                    if let (Some(class), Some(&row)) = (s.class, self.pool.index.get(&s.sample)) {
                        by_row.insert(row, usize::from(class));
                    }
                }
            }
            Err(e) => tracing::warn!(dataset = %self.crdt, "no consensus: {e}"),
        }
        for (sample, &gold) in &self.pool.gold {
            if let Some(&row) = self.pool.index.get(sample)
                && usize::from(gold) < self.pool.labels.len()
            {
                by_row.insert(row, usize::from(gold));
            }
        }
        let mut usable: Vec<(usize, usize)> = by_row.into_iter().collect();
        usable.sort_unstable();
        usable
    }

    fn spawn_training(&self, snapshot: Snapshot) -> Training {
        let fresh: Vec<usize> = self
            .usable
            .iter()
            .map(|(r, _)| *r)
            .filter(|r| !self.trained_rows.contains(r))
            .collect();
        let rows: Vec<usize> = self.usable.iter().map(|(r, _)| *r).collect();
        let job = train::Job {
            pool: self.pool.clone(),
            start: self.exchange.merged(self.crdt).map(|m| m.weights.clone()),
            seed: self.seed,
            labels: self.usable.clone(),
            fresh,
            augment: self.config.augment_images,
        };
        let annotations = self
            .annotations_at
            .get(&snapshot.version)
            .copied()
            .unwrap_or(self.annotations);
        let vitals = self.config.vitals.clone();
        let dataset = self.crdt;
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let outcome = train::run(&job);
            vitals.trained(&dataset, started.elapsed().as_secs_f64());
            (snapshot, annotations, rows, outcome)
        })
    }

    async fn finish(
        &mut self,
        snapshot: Snapshot,
        annotations: u64,
        rows: Vec<usize>,
        outcome: Result<train::Outcome, ModelError>,
    ) {
        self.annotations_at.retain(|v, _| *v > snapshot.version);
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(dataset = %self.crdt, "training failed: {e}");
                self.plan.failed();
                self.board().progress.training = false;
                return;
            }
        };
        let publish = self.plan.trained(snapshot);
        self.trained_rows = rows.into_iter().collect();
        let (correct, held_out) = outcome.validation;
        if held_out > 0 {
            self.config
                .vitals
                .heldout_accuracy(&self.crdt, f64::from(correct) / f64::from(held_out));
        }
        let weights = Arc::new(outcome.weights);
        self.own = Some((weights.clone(), self.trained_rows.len()));
        let mut published = false;
        if publish {
            let result = self
                .exchange
                .publish(
                    self.crdt,
                    weights.as_ref().clone(),
                    outcome.labels,
                    exchange::architecture(&self.pool.spec),
                    Validation::from_counts(correct, held_out),
                )
                .await;
            match result {
                Ok(()) => published = true,
                Err(e) => tracing::warn!(dataset = %self.crdt, "cannot publish the model: {e}"),
            }
        }
        {
            let mut board = self.board();
            let progress = &mut board.progress;
            progress.training = false;
            progress.trained_annotations = annotations;
            progress.published += u64::from(published);
            progress.history.push(Round {
                labels: outcome.labels,
                accuracy: (held_out > 0).then(|| f64::from(correct) / f64::from(held_out)),
                held_out,
                time_ms: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
            });
        }
        // The own model may now be the freshest: rank with it at once.
        self.rescore().await;
    }
}

/// The weights to rank with: this node's own latest model when it was trained on at least
/// as many labels as any model in the merge (it then knows everything the merge knows, and
/// the merge is an average that includes peers' older rounds), else the merged model;
/// `None` (the initial weights) when there is neither. Ranking with the freshest model lets
/// the human's next pick reflect the latest labels without waiting for every peer's round.
fn freshest(
    own: Option<&(Arc<Vec<u8>>, usize)>,
    merged: Option<&MergedModel>,
) -> Option<Arc<Vec<u8>>> {
    match (own, merged) {
        (Some((own, labels)), Some(m)) if *labels as u64 >= m.labels_trained => Some(own.clone()),
        (_, Some(m)) => Some(m.weights.clone()),
        (Some((own, _)), None) => Some(own.clone()),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(bytes: &[u8], labels: u64) -> MergedModel {
        MergedModel {
            hash: swarmlabel_crdt::registry::WeightsHash(*blake3::hash(bytes).as_bytes()),
            weights: Arc::new(bytes.to_vec()),
            registry_digest: [0; 32],
            architecture: swarmlabel_crdt::registry::Architecture::new([1; 32], "linear").unwrap(),
            included: Vec::new(),
            labels_trained: labels,
            excluded: Vec::new(),
        }
    }

    #[test]
    fn ranks_with_the_own_model_only_while_it_has_seen_as_many_labels_as_the_merge() {
        let own = (Arc::new(b"own".to_vec()), 40);
        let pick = |own: Option<&(Arc<Vec<u8>>, usize)>, m: Option<&MergedModel>| {
            freshest(own, m).map(|b| b.as_slice().to_vec())
        };
        assert_eq!(
            pick(Some(&own), Some(&merged(b"m", 40))),
            Some(b"own".to_vec())
        );
        assert_eq!(
            pick(Some(&own), Some(&merged(b"m", 39))),
            Some(b"own".to_vec())
        );
        // A peer's model in the merge saw more labels: the merge knows something we do not.
        assert_eq!(
            pick(Some(&own), Some(&merged(b"m", 41))),
            Some(b"m".to_vec())
        );
        assert_eq!(pick(None, Some(&merged(b"m", 1))), Some(b"m".to_vec()));
        assert_eq!(pick(Some(&own), None), Some(b"own".to_vec()));
        assert_eq!(pick(None, None), None);
    }
}
