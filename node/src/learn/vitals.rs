//! The learning loop's vital signs, per dataset, as Prometheus metrics (`swarmlabel_learn_*`).
//! A [`Vitals`] is cheap to clone: every learner of a daemon shares one, registered once in the
//! node's registry ([`Vitals::register`]); an unregistered one (the default) counts for nobody.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

fn seconds() -> Histogram {
    // 10 ms to ~82 s.
    Histogram::new(exponential_buckets(0.01, 2.0, 14))
}

fn answer_seconds() -> Histogram {
    // 0.25 s to ~8.5 min: a human's time on one sample.
    Histogram::new(exponential_buckets(0.25, 2.0, 12))
}

/// What the driver counts from one read of the labels.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Signs {
    /// Samples this labeler may still be offered (below the target, not answered by it).
    pub(super) queue_depth: i64,
    /// Answers of this labeler in the last hour.
    pub(super) local_per_hour: i64,
    /// Answers of everyone in the last hour.
    pub(super) network_per_hour: i64,
    /// Of the samples with two or more label votes, the share whose votes differ.
    pub(super) disagreement: f64,
    /// Samples with fewer label votes than the redundancy target.
    pub(super) below_target: i64,
}

/// The vital signs of every learning loop of a node.
#[derive(Debug, Clone)]
pub struct Vitals {
    accuracy: Family<Labels, Gauge<f64, AtomicU64>>,
    training: Family<Labels, Histogram, fn() -> Histogram>,
    rescoring: Family<Labels, Histogram, fn() -> Histogram>,
    refused: Family<Labels, Counter>,
    queue_depth: Family<Labels, Gauge>,
    per_hour: Family<Labels, Gauge>,
    disagreement: Family<Labels, Gauge<f64, AtomicU64>>,
    below_target: Family<Labels, Gauge>,
    flagged: Family<Labels, Gauge>,
    answers: Family<Labels, Histogram, fn() -> Histogram>,
}

impl Default for Vitals {
    fn default() -> Self {
        Self {
            accuracy: Family::default(),
            training: Family::new_with_constructor(seconds as fn() -> Histogram),
            rescoring: Family::new_with_constructor(seconds as fn() -> Histogram),
            refused: Family::default(),
            queue_depth: Family::default(),
            per_hour: Family::default(),
            disagreement: Family::default(),
            below_target: Family::default(),
            flagged: Family::default(),
            answers: Family::new_with_constructor(answer_seconds as fn() -> Histogram),
        }
    }
}

impl Vitals {
    /// Registers the metrics under `swarmlabel_learn_`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("swarmlabel_learn");
        r.register(
            "heldout_accuracy",
            "Accuracy of the model in force on the labels that arrived since it was trained \
             (prequential held-out figure), at the last training round",
            self.accuracy.clone(),
        );
        r.register(
            "training_seconds",
            "Time of a training round",
            self.training.clone(),
        );
        r.register(
            "rescoring_seconds",
            "Time of scoring the pool with a model",
            self.rescoring.clone(),
        );
        r.register(
            "merged_refused",
            "Merged models the rollout guard refused: worse than the model in use on this \
             node's labels beyond the tolerance",
            self.refused.clone(),
        );
        r.register(
            "queue_depth",
            "Samples the local human may still be offered: below the redundancy target and not \
             answered by them",
            self.queue_depth.clone(),
        );
        r.register(
            "answers_last_hour",
            "Answers given in the last hour, by this node's human (scope=local) and by everyone \
             (scope=network)",
            self.per_hour.clone(),
        );
        r.register(
            "disagreement_rate",
            "Of the samples with two or more label votes, the share whose votes differ",
            self.disagreement.clone(),
        );
        r.register(
            "samples_below_target",
            "Samples with fewer label votes than the owner's redundancy target",
            self.below_target.clone(),
        );
        r.register(
            "annotators_flagged",
            "Annotators the screening flags as random, fixed on one label or drifting \
             (swarmlabel dataset status says who and why)",
            self.flagged.clone(),
        );
        r.register(
            "answer_seconds",
            "Time the local human took on a sample, from showing it to the answer",
            self.answers.clone(),
        );
    }

    /// Creates every series of `dataset` at zero, so that a scrape sees them before the first
    /// event.
    pub(super) fn start(&self, dataset: &impl ToString) {
        let labels = Self::labels(dataset);
        drop(self.accuracy.get_or_create(&labels));
        drop(self.training.get_or_create(&labels));
        drop(self.rescoring.get_or_create(&labels));
        drop(self.refused.get_or_create(&labels));
        drop(self.queue_depth.get_or_create(&labels));
        drop(self.disagreement.get_or_create(&labels));
        drop(self.below_target.get_or_create(&labels));
        drop(self.flagged.get_or_create(&labels));
        drop(self.answers.get_or_create(&labels));
        for scope in ["local", "network"] {
            drop(self.per_hour.get_or_create(&Self::scoped(dataset, scope)));
        }
    }

    fn scoped(dataset: &impl ToString, scope: &str) -> Labels {
        let mut labels = Self::labels(dataset);
        labels.push(("scope".to_owned(), scope.to_owned()));
        labels
    }

    pub(super) fn signs(&self, dataset: &impl ToString, signs: &Signs) {
        let labels = Self::labels(dataset);
        self.queue_depth
            .get_or_create(&labels)
            .set(signs.queue_depth);
        self.disagreement
            .get_or_create(&labels)
            .set(signs.disagreement);
        self.below_target
            .get_or_create(&labels)
            .set(signs.below_target);
        self.per_hour
            .get_or_create(&Self::scoped(dataset, "local"))
            .set(signs.local_per_hour);
        self.per_hour
            .get_or_create(&Self::scoped(dataset, "network"))
            .set(signs.network_per_hour);
    }

    pub(super) fn flagged(&self, dataset: &impl ToString, count: i64) {
        self.flagged
            .get_or_create(&Self::labels(dataset))
            .set(count);
    }

    /// The local human answered a sample of `dataset` after `seconds`.
    pub fn answered(&self, dataset: &impl ToString, seconds: f64) {
        self.answers
            .get_or_create(&Self::labels(dataset))
            .observe(seconds);
    }

    fn labels(dataset: &impl ToString) -> Labels {
        vec![("dataset".to_owned(), dataset.to_string())]
    }

    pub(super) fn heldout_accuracy(&self, dataset: &impl ToString, accuracy: f64) {
        self.accuracy
            .get_or_create(&Self::labels(dataset))
            .set(accuracy);
    }

    pub(super) fn trained(&self, dataset: &impl ToString, seconds: f64) {
        self.training
            .get_or_create(&Self::labels(dataset))
            .observe(seconds);
    }

    pub(super) fn rescored(&self, dataset: &impl ToString, seconds: f64) {
        self.rescoring
            .get_or_create(&Self::labels(dataset))
            .observe(seconds);
    }

    pub(super) fn refused(&self, dataset: &impl ToString) {
        self.refused.get_or_create(&Self::labels(dataset)).inc();
    }
}
