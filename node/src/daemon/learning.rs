//! The learning loops of a daemon's datasets, and the human's queue they feed.
//!
//! Each dataset the node holds (listed at start, or joined once its fetch is done) gets a
//! [`Learner`] that trains on the network's consensus labels, publishes its model through the
//! node's models service ([`ServiceExchange`]) and ranks the pool. [`Learners`] is the queue
//! [`Source`] of the labeling page: a dataset's picks come from its learner, with the strategy's
//! score and the model's guesses; a dataset whose learner is not running yet (its features are
//! being computed, or the loop could not start) falls back to [`Fallback`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use swarmlabel_crdt::{AnnotatorKey, SampleId, Value};

use super::queue::{AccuracyPoint, Fallback, Guess, Pick, Source, SourceFuture, View};
use crate::labels::Labels;
use crate::learn::exchange::ServiceExchange;
use crate::learn::{self, Learner, Suggestion};
use crate::models::Models;
use swarmlabel_active_learning::Strategy;
use swarmlabel_store::dataset::{Catalog, DatasetId};
use swarmlabel_store::store::BlobId;

/// The learning loops of one daemon, by dataset.
#[derive(Debug, Clone)]
pub struct Learners {
    running: Arc<Mutex<HashMap<DatasetId, Learner>>>,
    models: Models,
    labels: Labels,
    catalog: Catalog,
    me: AnnotatorKey,
    config: learn::Config,
    fallback: Fallback,
}

impl Learners {
    /// Loops that will learn for `me` from the labels in `labels`, publishing through `models`.
    pub(crate) fn new(
        models: Models,
        labels: Labels,
        catalog: Catalog,
        me: AnnotatorKey,
        config: learn::Config,
    ) -> Self {
        Self {
            running: Arc::default(),
            models,
            labels,
            catalog,
            me,
            config,
            fallback: Fallback::default(),
        }
    }

    /// Starts the loop of `dataset` in the background (its models are opened first, its
    /// features computed on a blocking thread); a failure is logged and the queue of the
    /// dataset stays on the fallback.
    pub(crate) fn start(&self, dataset: DatasetId) {
        let this = self.clone();
        tokio::spawn(async move {
            if this.get(dataset).is_some() {
                return;
            }
            let exchange = match ServiceExchange::open(this.models.clone(), dataset).await {
                Ok(exchange) => exchange,
                Err(error) => {
                    tracing::warn!(%dataset, %error, "cannot open the dataset's models; no learning loop");
                    return;
                }
            };
            match Learner::start(
                dataset,
                this.catalog.clone(),
                this.labels.clone(),
                this.me,
                Arc::new(exchange),
                this.config.clone(),
            )
            .await
            {
                Ok(learner) => {
                    let mut running = this.running.lock().unwrap_or_else(PoisonError::into_inner);
                    running.entry(dataset).or_insert(learner);
                }
                Err(error) => {
                    tracing::warn!(%dataset, %error, "the learning loop could not start");
                }
            }
        });
    }

    /// Where the loops count their vital signs.
    pub(crate) fn vitals(&self) -> &learn::vitals::Vitals {
        &self.config.vitals
    }

    /// The running loop of `dataset`.
    pub fn get(&self, dataset: DatasetId) -> Option<Learner> {
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        running.get(&dataset).cloned()
    }

    /// Stops every loop.
    pub(crate) async fn shutdown(&self) {
        let learners: Vec<Learner> = {
            let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
            running.drain().map(|(_, l)| l).collect()
        };
        for learner in learners {
            learner.shutdown().await;
        }
    }
}

/// What the page says of a sample the human skipped (or undid), offered again.
const SKIPPED: &str = "you skipped this sample earlier: it comes back after all the others";

/// The sentence the page shows for a pick (`labels`: the dataset's label set).
fn why(s: &Suggestion, labels: &[String]) -> String {
    let name = |c: u16| labels.get(usize::from(c)).map_or("?", String::as_str);
    let strategy = s.strategy.name();
    let reason = match (s.strategy, s.top.as_slice()) {
        (Strategy::Random, _) => {
            "too few labels yet to trust the model: a random sample".to_owned()
        }
        (_, [(a, pa), (b, pb), ..]) => format!(
            "{strategy}: the model is torn between {} ({:.0} %) and {} ({:.0} %)",
            name(*a),
            pa * 100.0,
            name(*b),
            pb * 100.0
        ),
        (_, _) => format!("{strategy}: the model is unsure of this sample"),
    };
    if s.own_share {
        reason
    } else {
        format!("{reason}; another labeler's share, taken because yours is done")
    }
}

fn pick(s: Suggestion, labels: &[String]) -> Pick {
    let guesses = s
        .top
        .iter()
        .filter(|(label, _)| usize::from(*label) < labels.len())
        .map(|&(label, p)| Guess {
            label,
            probability: f64::from(p).clamp(0.0, 1.0),
        })
        .collect();
    Pick {
        sample: s.sample,
        why: why(&s, labels),
        strategy: s.strategy.name().to_owned(),
        score: Some(f64::from(s.score)),
        guesses,
    }
}

impl Source for Learners {
    fn next<'a>(
        &'a self,
        view: View<'a>,
        n: usize,
        exclude: &'a HashSet<BlobId>,
    ) -> SourceFuture<'a, Vec<Pick>> {
        Box::pin(async move {
            let Some(learner) = self.get(view.dataset) else {
                return self.fallback.picks(view, n, exclude);
            };
            // The human's answers as the node holds them now (the loop's own view may lag by a
            // poll): answered samples never come back; skipped ones come after all others.
            let mut skipped = Vec::new();
            let mut leave_out: HashSet<SampleId> = exclude.iter().copied().collect();
            for signed in &view.annotations.annotations {
                let a = signed.annotation();
                if a.annotator != view.me {
                    continue;
                }
                if a.value == Value::Skip {
                    skipped.push(a.sample);
                } else {
                    skipped.retain(|s| *s != a.sample);
                }
                leave_out.insert(a.sample);
            }
            let labels = learner.pool().labels.clone();
            let mut picks: Vec<Pick> = learner
                .next(n, &leave_out)
                .into_iter()
                .map(|s| pick(s, &labels))
                .collect();
            let later = skipped
                .into_iter()
                .filter(|b| !exclude.contains(b) && !picks.iter().any(|p| p.sample == *b))
                .collect::<Vec<_>>();
            for sample in later {
                if picks.len() >= n {
                    break;
                }
                picks.push(Pick {
                    sample,
                    strategy: "skipped".into(),
                    score: None,
                    why: SKIPPED.into(),
                    guesses: Vec::new(),
                });
            }
            picks
        })
    }

    fn accuracy(&self, dataset: DatasetId) -> SourceFuture<'_, Vec<AccuracyPoint>> {
        Box::pin(async move {
            let Some(learner) = self.get(dataset) else {
                return Vec::new();
            };
            learner
                .progress()
                .history
                .iter()
                .filter_map(|round| {
                    Some(AccuracyPoint {
                        time_ms: round.time_ms,
                        labels: round.labels,
                        accuracy: round.accuracy?,
                    })
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suggestion(strategy: Strategy, own_share: bool) -> Suggestion {
        Suggestion {
            sample: SampleId([0xab; 32]),
            strategy,
            score: 0.25,
            own_share,
            top: vec![(1, 0.41), (2, 0.38)],
        }
    }

    #[test]
    fn a_suggestion_becomes_a_pick_with_label_indexes_and_a_reason() {
        let labels: Vec<String> = ["circle", "square", "triangle"].map(String::from).into();
        let p = pick(suggestion(Strategy::Margin, true), &labels);
        assert_eq!(p.sample, BlobId([0xab; 32]));
        assert_eq!(p.strategy, "margin");
        assert_eq!(p.score, Some(0.25));
        assert_eq!(p.guesses.len(), 2);
        assert_eq!((p.guesses[0].label, p.guesses[1].label), (1, 2));
        assert!((p.guesses[0].probability - 0.41).abs() < 1e-6);
        assert_eq!(
            p.why,
            "margin: the model is torn between square (41 %) and triangle (38 %)"
        );
        let p = pick(suggestion(Strategy::Random, false), &labels);
        assert!(p.why.starts_with("too few labels yet"), "{}", p.why);
        assert!(p.why.ends_with("because yours is done"), "{}", p.why);
    }

    #[test]
    fn a_guess_of_a_class_outside_the_label_set_is_trimmed() {
        let labels: Vec<String> = ["circle", "square"].map(String::from).into();
        let p = pick(suggestion(Strategy::Margin, true), &labels);
        assert_eq!(
            p.guesses.len(),
            1,
            "triangle is not a label: no guess for it"
        );
    }
}
