//! The centralised learner the network is compared with: one active learner on the same pool,
//! the same strategy, model, initial weights and noisy oracle, at the same budgets (the `al`
//! protocol: `initial` random labels, then batches of `batch` picks, retrained from scratch).

use std::collections::HashSet;

use anyhow::ensure;
use rand::seq::SliceRandom as _;
use rand_chacha::ChaCha8Rng;
use swarmlabel_active_learning::{Matrix, Model, ModelSpec, Query, ScoreConfig};
use swarmlabel_node::learn::train::config_for;

/// What the centralised learner works with.
pub(super) struct Central<'a> {
    pub(super) pool: &'a Matrix,
    /// The oracle's (possibly noisy) answer for each pool row, drawn once.
    pub(super) answers: &'a [usize],
    pub(super) test_x: &'a Matrix,
    pub(super) test_y: &'a [usize],
    pub(super) spec: &'a ModelSpec,
    pub(super) seed: u64,
    pub(super) query: Query,
    pub(super) initial: usize,
    pub(super) batch: usize,
}

impl Central<'_> {
    /// Test accuracy at each budget (sorted, ascending).
    pub(super) fn curve(
        &self,
        budgets: &[usize],
        rng: &mut ChaCha8Rng,
    ) -> anyhow::Result<Vec<f64>> {
        let largest = budgets.last().copied().unwrap_or(0);
        ensure!(
            self.pool.rows() >= largest,
            "the pool is smaller than the largest budget"
        );
        let mut order: Vec<usize> = (0..self.pool.rows()).collect();
        order.shuffle(rng);
        let mut labelled: Vec<usize> = order[..self.initial.min(largest)].to_vec();
        let mut train = config_for(self.spec);
        train.seed = self.seed;
        let mut curve = Vec::new();
        loop {
            let x = self.pool.select_rows(&labelled);
            let y: Vec<usize> = labelled.iter().map(|&i| self.answers[i]).collect();
            let mut model = Model::new(self.spec.clone(), self.seed)?;
            model.train(&x, &y, &train)?;
            if budgets.contains(&labelled.len()) {
                curve.push(model.accuracy(self.test_x, self.test_y)?);
            }
            if labelled.len() >= largest {
                break;
            }
            let next_budget = budgets
                .iter()
                .copied()
                .find(|&b| b > labelled.len())
                .unwrap_or(largest);
            let k = self.batch.min(next_budget - labelled.len());
            let scored = swarmlabel_active_learning::score(
                &model,
                self.pool,
                self.query.strategy,
                &ScoreConfig::default(),
            )?;
            let exclude: HashSet<usize> = labelled.iter().copied().collect();
            let picks = self
                .query
                .select(&scored.view(Some(self.pool)), k, &exclude, &[], rng)?;
            ensure!(!picks.is_empty(), "the strategy picked nothing");
            labelled.extend(picks.iter().map(|p| p.index));
        }
        Ok(curve)
    }
}
