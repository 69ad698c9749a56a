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

/// The vital signs of every learning loop of a node.
#[derive(Debug, Clone)]
pub struct Vitals {
    accuracy: Family<Labels, Gauge<f64, AtomicU64>>,
    training: Family<Labels, Histogram, fn() -> Histogram>,
    rescoring: Family<Labels, Histogram, fn() -> Histogram>,
    refused: Family<Labels, Counter>,
}

impl Default for Vitals {
    fn default() -> Self {
        Self {
            accuracy: Family::default(),
            training: Family::new_with_constructor(seconds as fn() -> Histogram),
            rescoring: Family::new_with_constructor(seconds as fn() -> Histogram),
            refused: Family::default(),
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
