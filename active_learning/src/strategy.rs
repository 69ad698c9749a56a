//! Query strategies: which unlabelled samples a human should label next, and why.
//!
//! Everything here is a plain function of probability tables (and, for the diversity step and
//! the cold start, feature rows): no model, no I/O. The caller scores the pool with a
//! [`Model`](crate::Model) (see [`crate::pool`]) and passes the tables in.

mod diversity;
mod kmeans;
mod uncertainty;

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use rand::Rng;

use crate::matrix::Matrix;

/// Why a selection could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectError {
    /// The strategy name is not known.
    #[error(
        "unknown strategy {0:?}; use random, least-confidence, margin, entropy or bald, \
         optionally followed by -diverse (e.g. margin-diverse)"
    )]
    UnknownStrategy(String),
    /// BALD was asked for without Monte Carlo dropout passes.
    #[error("the bald strategy needs Monte Carlo dropout passes of a model with dropout")]
    NeedsPasses,
    /// The diversity step or the cold start was asked for without feature rows.
    #[error("{0} needs the pool's feature rows")]
    NeedsFeatures(&'static str),
    /// The tables of the pool disagree in size.
    #[error("pool tables disagree: {0}")]
    Shape(String),
}

/// How informative each sample is. Every strategy but `Random` ranks samples by a score where
/// higher means "label this first".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Strategy {
    /// Uniformly at random: the baseline every other strategy must beat.
    Random,
    /// `1 - max p`: the model's doubt about its best guess.
    LeastConfidence,
    /// `1 - (p1 - p2)`: how close the two best classes are.
    Margin,
    /// Entropy of the predicted distribution.
    Entropy,
    /// Mutual information between label and weights from Monte Carlo dropout (disagreement).
    Bald,
}

impl Strategy {
    /// Every strategy, in the order of the documentation.
    pub const ALL: [Strategy; 5] = [
        Strategy::Random,
        Strategy::LeastConfidence,
        Strategy::Margin,
        Strategy::Entropy,
        Strategy::Bald,
    ];

    /// The name used on command lines and in benchmark output.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Random => "random",
            Strategy::LeastConfidence => "least-confidence",
            Strategy::Margin => "margin",
            Strategy::Entropy => "entropy",
            Strategy::Bald => "bald",
        }
    }

    /// Whether scoring needs Monte Carlo dropout passes.
    pub fn needs_passes(self) -> bool {
        self == Strategy::Bald
    }

    /// The score of every row of `probs` (higher = more informative); BALD reads `passes`
    /// instead, random gives 0 everywhere.
    pub fn scores(self, probs: &Matrix, passes: &[Matrix]) -> Result<Vec<f32>, SelectError> {
        let per_row = |f: fn(&[f32]) -> f32| probs.iter_rows().map(f).collect();
        Ok(match self {
            Strategy::Random => vec![0.0; probs.rows()],
            Strategy::LeastConfidence => per_row(uncertainty::least_confidence),
            Strategy::Margin => per_row(uncertainty::margin),
            Strategy::Entropy => per_row(uncertainty::entropy),
            Strategy::Bald => {
                if passes.is_empty() {
                    return Err(SelectError::NeedsPasses);
                }
                if let Some(bad) = passes
                    .iter()
                    .find(|p| p.rows() != probs.rows() || p.cols() != probs.cols())
                {
                    return Err(SelectError::Shape(format!(
                        "a dropout pass is {}x{}, the pool is {}x{}",
                        bad.rows(),
                        bad.cols(),
                        probs.rows(),
                        probs.cols()
                    )));
                }
                (0..probs.rows())
                    .map(|r| uncertainty::bald(passes, r))
                    .collect()
            }
        })
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Strategy {
    type Err = SelectError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Strategy::ALL
            .into_iter()
            .find(|st| st.name() == s)
            .ok_or_else(|| SelectError::UnknownStrategy(s.to_owned()))
    }
}

/// The batch-aware diversity step: instead of the `k` top-scoring samples, which are often near
/// duplicates of each other, cluster the `candidates_per_pick * k` top-scoring ones into `k`
/// groups (k-means weighted by score) and take the candidate nearest each group's centre.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Diversity {
    /// How many top-scoring candidates per pick enter the clustering (at least 1).
    pub candidates_per_pick: usize,
}

impl Default for Diversity {
    fn default() -> Self {
        Self {
            candidates_per_pick: 10,
        }
    }
}

/// When the model is not yet worth asking: while some class has fewer than `min_per_class`
/// labels, picks are representative and diverse (nearest to k-means centres of the unlabelled
/// pool) rather than uncertain. `min_per_class = 0` turns the rule off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ColdStart {
    /// Labels every class needs before uncertainty is trusted.
    pub min_per_class: usize,
}

impl ColdStart {
    /// Whether the rule applies given the labels so far per class (`labelled[c]` for class `c`).
    pub fn applies(&self, labelled_per_class: &[usize]) -> bool {
        self.min_per_class > 0 && labelled_per_class.iter().any(|&n| n < self.min_per_class)
    }
}

/// A strategy with its batch and cold-start behaviour: what a node asks to choose samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    /// How samples are scored.
    pub strategy: Strategy,
    /// The diversity step, if any (ignored by `Random`).
    pub diversity: Option<Diversity>,
    /// The cold start rule (ignored by `Random`).
    pub cold_start: ColdStart,
    /// How many of the most probable classes each pick reports.
    pub top_classes: usize,
    /// Percent of each batch drawn uniformly at random from the eligible samples instead of by
    /// score (0 = none, the default; ignored by `Random` and the cold start). A model trained on
    /// few labels doubts the wrong regions and uncertainty alone never looks at the parts of the
    /// pool it wrongly feels sure about; a random share keeps covering them.
    pub explore_percent: u8,
}

impl Query {
    /// `strategy` alone: no diversity step, no cold start, three top classes per pick.
    pub fn new(strategy: Strategy) -> Self {
        Self {
            strategy,
            diversity: None,
            cold_start: ColdStart::default(),
            top_classes: 3,
            explore_percent: 0,
        }
    }

    /// Parses `random`, `least-confidence`, `margin`, `entropy`, `bald`, each optionally with the
    /// suffix `-diverse` for the diversity step (`margin-diverse`).
    pub fn parse(name: &str) -> Result<Self, SelectError> {
        match name.strip_suffix("-diverse") {
            Some(base) => {
                let mut q = Self::new(base.parse()?);
                q.diversity = Some(Diversity::default());
                Ok(q)
            }
            None => Ok(Self::new(name.parse()?)),
        }
    }

    /// The name [`Query::parse`] reads back.
    pub fn name(&self) -> String {
        match self.diversity {
            Some(_) => format!("{}-diverse", self.strategy),
            None => self.strategy.name().to_owned(),
        }
    }

    /// Picks up to `k` distinct samples of `pool` that are not in `exclude` (already labelled
    /// enough, or taken by other labelers); uncertainty picks come best first, then the random
    /// share of [`Query::explore_percent`]. Fewer than `k`
    /// only when fewer samples are eligible. `labelled_per_class[c]` is the number of labels of class `c` so far (for the
    /// cold start rule); `rng` drives random picks and clustering, so a seeded generator gives the
    /// same picks for the same inputs.
    pub fn select<R: Rng + ?Sized>(
        &self,
        pool: &Pool<'_>,
        k: usize,
        exclude: &HashSet<usize>,
        labelled_per_class: &[usize],
        rng: &mut R,
    ) -> Result<Vec<Pick>, SelectError> {
        pool.check()?;
        let eligible: Vec<usize> = (0..pool.probs.rows())
            .filter(|i| !exclude.contains(i))
            .collect();
        let k = k.min(eligible.len());
        if k == 0 {
            return Ok(Vec::new());
        }
        let scores = self.strategy.scores(pool.probs, pool.passes)?;
        let (mut chosen, reason) = if self.strategy == Strategy::Random {
            (draw(&eligible, k, rng), Reason::Random)
        } else if self.cold_start.applies(labelled_per_class) {
            let features = pool
                .features
                .ok_or(SelectError::NeedsFeatures("the cold start"))?;
            (
                diversity::representative(features, &eligible, k, rng),
                Reason::ColdStart,
            )
        } else {
            let mut ranked = eligible.clone();
            // Stable sort: equal scores keep pool order, so results do not depend on the sort.
            ranked.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
            let k = k - self.explored(k);
            match self.diversity {
                Some(_) if k == 0 => (Vec::new(), Reason::Uncertain),
                None => (ranked[..k].to_vec(), Reason::Uncertain),
                Some(d) => {
                    let features = pool
                        .features
                        .ok_or(SelectError::NeedsFeatures("the diversity step"))?;
                    let n = (d.candidates_per_pick.max(1) * k).min(ranked.len());
                    (
                        diversity::diverse(features, &ranked[..n], &scores, k, rng),
                        Reason::Diverse,
                    )
                }
            }
        };
        let uncertain = chosen.len();
        if reason != Reason::Random && reason != Reason::ColdStart && uncertain < k {
            let taken: HashSet<usize> = chosen.iter().copied().collect();
            let rest: Vec<usize> = eligible
                .into_iter()
                .filter(|i| !taken.contains(i))
                .collect();
            chosen.extend(draw(&rest, k - uncertain, rng));
        }
        Ok(chosen
            .into_iter()
            .enumerate()
            .map(|(i, index)| Pick {
                index,
                score: scores[index],
                reason: if i < uncertain {
                    reason
                } else {
                    Reason::Random
                },
                top: top_classes(pool.probs.row(index), self.top_classes),
            })
            .collect())
    }

    /// How many of a batch of `k` picks are drawn at random ([`Query::explore_percent`]):
    /// `k * percent / 100` rounded down (a single pick is never random for a share below 100).
    pub fn explored(&self, k: usize) -> usize {
        k * usize::from(self.explore_percent.min(100)) / 100
    }
}

/// The scored pool a selection chooses from. Row `i` of every table is pool sample `i`.
#[derive(Debug, Clone, Copy)]
pub struct Pool<'a> {
    /// Class probabilities of the current model, one row per sample.
    pub probs: &'a Matrix,
    /// Monte Carlo dropout passes (needed by `Bald` only; may be empty otherwise).
    pub passes: &'a [Matrix],
    /// Feature rows (needed by the diversity step and the cold start).
    pub features: Option<&'a Matrix>,
}

impl Pool<'_> {
    fn check(&self) -> Result<(), SelectError> {
        if let Some(f) = self.features
            && f.rows() != self.probs.rows()
        {
            return Err(SelectError::Shape(format!(
                "{} feature rows for {} probability rows",
                f.rows(),
                self.probs.rows()
            )));
        }
        Ok(())
    }
}

/// Why a sample was picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// Drawn at random.
    Random,
    /// Among the highest scores of the strategy.
    Uncertain,
    /// High score, and unlike the other picks of the batch (diversity step).
    Diverse,
    /// Representative of a region of the pool while too few labels exist per class.
    ColdStart,
}

/// One chosen sample, with what the labeling page shows the human about why.
#[derive(Debug, Clone, PartialEq)]
pub struct Pick {
    /// Row of the pool.
    pub index: usize,
    /// The strategy's score of the sample (higher = more informative; 0 for `Random`).
    pub score: f32,
    /// Why it was picked.
    pub reason: Reason,
    /// The model's most probable classes with their probabilities, most probable first.
    pub top: Vec<(usize, f32)>,
}

/// Picks `k` samples of `pool` with `strategy` alone (no diversity step, no cold start), skipping
/// `exclude`; see [`Query::select`].
pub fn select<R: Rng + ?Sized>(
    strategy: Strategy,
    pool: &Pool<'_>,
    k: usize,
    exclude: &HashSet<usize>,
    rng: &mut R,
) -> Result<Vec<Pick>, SelectError> {
    Query::new(strategy).select(pool, k, exclude, &[], rng)
}

/// Up to `k` distinct entries of `from`, drawn uniformly.
fn draw<R: Rng + ?Sized>(from: &[usize], k: usize, rng: &mut R) -> Vec<usize> {
    rand::seq::index::sample(rng, from.len(), k.min(from.len()))
        .into_iter()
        .map(|i| from[i])
        .collect()
}

fn top_classes(row: &[f32], n: usize) -> Vec<(usize, f32)> {
    let mut classes: Vec<(usize, f32)> = row.iter().copied().enumerate().collect();
    classes.sort_by(|a, b| b.1.total_cmp(&a.1));
    classes.truncate(n);
    classes
}

#[cfg(test)]
mod tests;
