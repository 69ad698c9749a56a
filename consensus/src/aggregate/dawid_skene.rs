//! Dawid–Skene (1979): the true label of each item is latent; each annotator `j` has a confusion
//! matrix `π_j[k][l]` = P(j answers `l` | truth is `k`); classes have priors `p_k`. EM alternates
//! the posterior over each item's truth (E) with the priors and matrices that maximise the
//! expected likelihood (M), starting from majority vote.
//!
//! Gold labels are held fixed at certainty throughout, and when there are any, the first
//! estimate of each annotator's skill is made on the gold items alone before EM runs on
//! everything. This anchors skill to known truth, and in particular resolves the label-swap
//! ambiguity that lets EM settle on a consistently wrong majority (see the tests).
//! Counts are smoothed with a small pseudo-count so an annotator with few votes does not get
//! probabilities of exactly 0 or 1.
//!
//! Memory is bounded whatever the number of annotators and classes (audit 2026-12-04, N5: a
//! full matrix per annotator was `raters × K²`, 16 GiB for 2,000 one-vote keys and 1,024
//! classes): annotators with fewer than [`Config::min_votes`] votes share one matrix (there is
//! not enough evidence to fit one each), and when the matrices would hold more than
//! [`Config::max_cells`] cells, every annotator gets the "one-coin" model instead (one accuracy:
//! the right label with probability `a`, each wrong one with `(1 - a) / (K - 1)`).

use super::Votes;

/// EM settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Config {
    /// At most this many EM iterations.
    pub max_iterations: usize,
    /// Stop when no posterior moves by more than this.
    pub tolerance: f64,
    /// Pseudo-count added to every confusion-matrix cell and prior (Dirichlet smoothing).
    pub smoothing: f64,
    /// Votes an annotator needs for a matrix of its own (fewer: one shared matrix).
    pub min_votes: u32,
    /// Matrix cells at most (`matrices × K²`); past it, one accuracy per annotator.
    pub max_cells: usize,
}

impl Default for Config {
    /// 200 iterations, tolerance 1e-6, smoothing 0.01, a matrix of its own from 2 votes (the
    /// one-vote keys of a flood share one; `max_cells` bounds the rest), at most 4 million
    /// cells (32 MiB).
    fn default() -> Self {
        Self {
            max_iterations: 200,
            tolerance: 1e-6,
            smoothing: 0.01,
            min_votes: 2,
            max_cells: 4 << 20,
        }
    }
}

/// A fitted model.
#[derive(Clone, Debug, PartialEq)]
pub struct Fit {
    classes: usize,
    /// Posterior over the true label, `items × classes`, row-major.
    posteriors: Vec<f64>,
    has_evidence: Vec<bool>,
    /// Class priors.
    pub priors: Vec<f64>,
    /// How each rater answers.
    raters: Raters,
    /// EM iterations run.
    pub iterations: usize,
    /// Whether the posteriors settled within the tolerance.
    pub converged: bool,
    /// Log-likelihood of the votes of the non-gold items under the fitted model.
    pub log_likelihood: f64,
}

impl Fit {
    /// The posterior distribution over item `item`'s true label.
    pub fn posterior(&self, item: u32) -> &[f64] {
        let k = self.classes;
        &self.posteriors[item as usize * k..(item as usize + 1) * k]
    }

    /// The consensus label of `item` and its posterior probability, or `None` for an item with
    /// neither votes nor a gold label. Equal posteriors go to the lowest label index.
    pub fn consensus(&self, item: u32) -> Option<(u16, f64)> {
        if !self
            .has_evidence
            .get(item as usize)
            .copied()
            .unwrap_or(false)
        {
            return None;
        }
        let post = self.posterior(item);
        let (best, p) =
            post.iter()
                .copied()
                .enumerate()
                .fold(
                    (0, f64::NEG_INFINITY),
                    |acc, (l, p)| if p > acc.1 { (l, p) } else { acc },
                );
        // `best` < classes, which is a u16.
        Some((best as u16, p))
    }

    /// The probability that rater `rater` answers `answer` when the truth is `truth`.
    pub fn confusion(&self, rater: u32, truth: u16, answer: u16) -> f64 {
        self.raters
            .p(rater as usize, usize::from(truth), usize::from(answer))
    }

    /// The reliability of rater `rater`: the probability that its answer is the true label,
    /// `Σ_k p_k π[k][k]` under the fitted priors.
    pub fn reliability(&self, rater: u32) -> f64 {
        (0..self.classes)
            .map(|c| self.priors[c] * self.raters.p(rater as usize, c, c))
            .sum()
    }

    /// Whether the raters were fitted with the one-coin model (too many matrix cells).
    pub fn one_coin(&self) -> bool {
        matches!(self.raters.form, Form::OneCoin { .. })
    }

    /// How many numbers the raters' models hold (bounded by [`Config::max_cells`] plus two per
    /// rater).
    pub fn rater_cells(&self) -> usize {
        self.raters.cells()
    }
}

/// The raters' answer models.
#[derive(Clone, Debug, PartialEq)]
struct Raters {
    k: usize,
    form: Form,
}

#[derive(Clone, Debug, PartialEq)]
enum Form {
    /// Matrices `[table][truth][answer]`; `table_of[rater]` (table 0 is shared by the raters
    /// with too few votes for one of their own).
    Tables {
        table_of: Vec<usize>,
        cells: Vec<f64>,
    },
    /// One accuracy per rater.
    OneCoin { accuracy: Vec<f64> },
}

impl Raters {
    /// The forms for `votes`: own tables for raters with `min_votes`, within `max_cells`.
    fn for_votes(votes: &Votes, k: usize, config: &Config) -> Self {
        let mut count = vec![0u32; votes.raters() as usize];
        for v in votes.votes() {
            count[v.rater as usize] = count[v.rater as usize].saturating_add(1);
        }
        let mut tables = 1;
        let table_of: Vec<usize> = count
            .iter()
            .map(|&n| {
                if n >= config.min_votes {
                    tables += 1;
                    tables - 1
                } else {
                    0
                }
            })
            .collect();
        let form = if tables.saturating_mul(k * k) <= config.max_cells {
            Form::Tables {
                table_of,
                cells: vec![0.0; tables * k * k],
            }
        } else {
            Form::OneCoin {
                accuracy: vec![0.0; count.len()],
            }
        };
        Self { k, form }
    }

    /// Numbers held for the raters' models.
    fn cells(&self) -> usize {
        match &self.form {
            Form::Tables { table_of, cells } => table_of.len() + cells.len(),
            Form::OneCoin { accuracy } => accuracy.len(),
        }
    }

    fn p(&self, rater: usize, truth: usize, answer: usize) -> f64 {
        let k = self.k;
        match &self.form {
            Form::Tables { table_of, cells } => table_of
                .get(rater)
                .map_or(0.0, |t| cells[t * k * k + truth * k + answer]),
            Form::OneCoin { accuracy } => {
                let a = accuracy.get(rater).copied().unwrap_or(0.0);
                if truth == answer || k < 2 {
                    a
                } else {
                    (1.0 - a) / (k - 1) as f64
                }
            }
        }
    }
}

/// Fits Dawid–Skene to `votes`, holding `gold` items (item, label) fixed. Gold labels outside the
/// label set or the item range are ignored.
pub fn dawid_skene(votes: &Votes, gold: &[(u32, u16)], config: Config) -> Fit {
    let k = usize::from(votes.classes());
    let n = votes.items() as usize;
    let (offsets, by_item) = votes.by_item();

    let mut is_gold = vec![None; n];
    for &(item, label) in gold {
        if (item as usize) < n && usize::from(label) < k {
            is_gold[item as usize] = Some(usize::from(label));
        }
    }
    let has_evidence: Vec<bool> = (0..n)
        .map(|i| is_gold[i].is_some() || offsets[i + 1] > offsets[i])
        .collect();

    // Start from majority vote (soft: the vote shares), gold at certainty.
    let mut post = vec![0.0; n * k];
    for i in 0..n {
        let row = &mut post[i * k..(i + 1) * k];
        if let Some(g) = is_gold[i] {
            row[g] = 1.0;
            continue;
        }
        let item_votes = &by_item[offsets[i]..offsets[i + 1]];
        if item_votes.is_empty() {
            row.fill(1.0 / k as f64);
            continue;
        }
        for v in item_votes {
            row[usize::from(v.label)] += 1.0;
        }
        let total = item_votes.len() as f64;
        row.iter_mut().for_each(|p| *p /= total);
    }

    let mut model = Model {
        k,
        smoothing: config.smoothing,
        priors: vec![1.0 / k as f64; k],
        raters: Raters::for_votes(votes, k, &config),
    };
    let items = Items {
        offsets: &offsets,
        votes: &by_item,
        is_gold: &is_gold,
        has_evidence: &has_evidence,
    };
    if is_gold.iter().any(Option::is_some) {
        // Estimate skill on the gold items alone first, so EM starts in the basin of the truth
        // rather than in that of the majority (which may be consistently wrong).
        model.m_step(&items, &post, true);
        model.e_step(&items, &mut post);
    }
    let mut iterations = 0;
    let mut converged = false;
    let mut log_likelihood = 0.0;
    while iterations < config.max_iterations {
        iterations += 1;
        model.m_step(&items, &post, false);
        let (max_delta, ll) = model.e_step(&items, &mut post);
        log_likelihood = ll;
        if max_delta < config.tolerance {
            converged = true;
            break;
        }
    }
    let Model { priors, raters, .. } = model;
    Fit {
        classes: k,
        posteriors: post,
        has_evidence,
        priors,
        raters,
        iterations,
        converged,
        log_likelihood,
    }
}

struct Items<'a> {
    offsets: &'a [usize],
    votes: &'a [super::Vote],
    is_gold: &'a [Option<usize>],
    has_evidence: &'a [bool],
}

struct Model {
    k: usize,
    smoothing: f64,
    priors: Vec<f64>,
    raters: Raters,
}

impl Model {
    /// Priors and confusion matrices from the posteriors (of the gold items only if asked).
    fn m_step(&mut self, items: &Items<'_>, post: &[f64], gold_only: bool) {
        let k = self.k;
        let counts = |i: usize| items.has_evidence[i] && (!gold_only || items.is_gold[i].is_some());
        self.priors.fill(self.smoothing);
        for i in (0..items.has_evidence.len()).filter(|&i| counts(i)) {
            for c in 0..k {
                self.priors[c] += post[i * k + c];
            }
        }
        let total: f64 = self.priors.iter().sum();
        self.priors.iter_mut().for_each(|p| *p /= total);
        let smoothing = self.smoothing;
        match &mut self.raters.form {
            Form::Tables { table_of, cells } => {
                cells.fill(smoothing);
                for v in items.votes.iter().filter(|v| counts(v.item as usize)) {
                    let base = table_of[v.rater as usize] * k * k + usize::from(v.label);
                    for c in 0..k {
                        cells[base + c * k] += post[v.item as usize * k + c];
                    }
                }
                for row in cells.chunks_mut(k) {
                    let total: f64 = row.iter().sum();
                    row.iter_mut().for_each(|p| *p /= total);
                }
            }
            Form::OneCoin { accuracy } => {
                // Expected right answers over answers; right or wrong is one binary outcome, so
                // the pseudo-count goes to each of the two.
                let mut right = vec![smoothing; accuracy.len()];
                let mut all = vec![2.0 * smoothing; accuracy.len()];
                for v in items.votes.iter().filter(|v| counts(v.item as usize)) {
                    let r = v.rater as usize;
                    right[r] += post[v.item as usize * k + usize::from(v.label)];
                    all[r] += 1.0;
                }
                for (a, (right, all)) in accuracy.iter_mut().zip(right.iter().zip(&all)) {
                    *a = right / all;
                }
            }
        }
    }

    /// Posteriors of the non-gold items; returns the largest change and the log-likelihood of
    /// their votes.
    fn e_step(&self, items: &Items<'_>, post: &mut [f64]) -> (f64, f64) {
        let k = self.k;
        let log_priors: Vec<f64> = self.priors.iter().map(|p| p.ln()).collect();
        let mut log_row = vec![0.0; k];
        let mut max_delta: f64 = 0.0;
        let mut log_likelihood = 0.0;
        for i in 0..items.is_gold.len() {
            if items.is_gold[i].is_some() {
                continue;
            }
            log_row.copy_from_slice(&log_priors);
            let votes = &items.votes[items.offsets[i]..items.offsets[i + 1]];
            for v in votes {
                let (rater, answer) = (v.rater as usize, usize::from(v.label));
                for (c, lr) in log_row.iter_mut().enumerate() {
                    *lr += self.raters.p(rater, c, answer).ln();
                }
            }
            let max = log_row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = log_row.iter().map(|l| (l - max).exp()).sum();
            if !votes.is_empty() {
                log_likelihood += max + sum.ln();
            }
            for c in 0..k {
                let p = (log_row[c] - max).exp() / sum;
                max_delta = max_delta.max((p - post[i * k + c]).abs());
                post[i * k + c] = p;
            }
        }
        (max_delta, log_likelihood)
    }
}

#[cfg(test)]
mod tests;
