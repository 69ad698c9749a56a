//! Scoring a whole pool in batches: the probability tables a [`Query`](crate::Query) chooses from.

use crate::matrix::Matrix;
use crate::model::{DEFAULT_BATCH, Model, ModelError};
use crate::strategy::{Pool, Strategy};

/// How to score a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScoreConfig {
    /// Rows per forward pass: large enough that matrix products dominate the cost.
    pub batch: usize,
    /// Monte Carlo dropout passes computed for strategies that need them (BALD).
    pub passes: usize,
    /// Seed of the dropout masks of those passes.
    pub seed: u64,
}

impl Default for ScoreConfig {
    fn default() -> Self {
        Self {
            batch: DEFAULT_BATCH,
            passes: 10,
            seed: 0,
        }
    }
}

/// A pool's probability tables under one model.
#[derive(Debug, Clone)]
pub struct ScoredPool {
    /// Class probabilities with dropout off, one row per sample.
    pub probs: Matrix,
    /// Monte Carlo dropout passes (empty unless the strategy needs them).
    pub passes: Vec<Matrix>,
}

impl ScoredPool {
    /// The view [`Query::select`](crate::Query::select) takes, with the pool's feature rows for
    /// the diversity step and the cold start.
    pub fn view<'a>(&'a self, features: Option<&'a Matrix>) -> Pool<'a> {
        Pool {
            probs: &self.probs,
            passes: &self.passes,
            features,
        }
    }
}

/// Scores every row of `features` with `model`, `config.batch` rows at a time, adding Monte Carlo
/// dropout passes when `strategy` needs them.
pub fn score(
    model: &Model,
    features: &Matrix,
    strategy: Strategy,
    config: &ScoreConfig,
) -> Result<ScoredPool, ModelError> {
    let probs = model.predict_proba(features, config.batch)?;
    let passes = if strategy.needs_passes() {
        model.predict_proba_mc(features, config.passes.max(1), config.batch, config.seed)?
    } else {
        Vec::new()
    };
    Ok(ScoredPool { probs, passes })
}
