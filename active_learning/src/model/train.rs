//! Mini-batch training with AdamW, L2 penalty, cosine learning-rate decay and early stopping.

use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer as _, ParamsAdamW};
use rand::SeedableRng as _;
use rand::seq::SliceRandom as _;
use rand_chacha::ChaCha8Rng;

use super::ModelError;
use super::augment::{Augment, Transforms};
use super::net::Net;
use crate::matrix::Matrix;

/// How to train. Every field has a meaning on its own; [`TrainConfig::default`] suits the
/// `mlp` and `cnn` models, [`TrainConfig::linear`] the `linear` one.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Passes over the training rows (an upper bound when early stopping is on).
    pub epochs: usize,
    /// At least this many optimiser steps: a small labelled set gets more epochs than `epochs`
    /// (with 40 labels and batches of 32 an epoch is two steps). 0 = exactly `epochs`.
    pub min_steps: usize,
    /// Rows per optimiser step; a training set no larger than this is one full batch.
    pub batch_size: usize,
    /// Peak AdamW learning rate.
    pub learning_rate: f64,
    /// AdamW's decoupled weight decay (applied to every parameter).
    pub weight_decay: f64,
    /// L2 penalty `l2 / (2 n) * ||W||^2` on the weight matrices (not biases), added to the mean
    /// loss over the `n` training rows: the optimum of scikit-learn's `LogisticRegression(C = 1 /
    /// l2)`. 0 turns it off.
    pub l2: f64,
    /// Whether the learning rate decays along a half cosine to 0 over `epochs` (helps reaching
    /// the optimum of a convex model); otherwise it stays constant.
    pub cosine_decay: bool,
    /// Fraction of the labelled rows held out (stratified by class) to stop training when their
    /// loss has not improved for `patience` epochs; the best weights are kept. 0 turns early
    /// stopping off and trains on every row.
    pub validation_fraction: f64,
    /// Epochs without improvement of the held-out loss before stopping.
    pub patience: usize,
    /// Random flips and turns of image inputs in each batch ([`Augment`]); off by default
    /// because it is wrong wherever orientation tells classes apart.
    pub augment: Augment,
    /// Seed of the shuffling, the held-out split, the dropout masks and the augmentation.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 60,
            min_steps: 0,
            batch_size: 64,
            learning_rate: 1e-3,
            weight_decay: 1e-2,
            l2: 0.0,
            cosine_decay: false,
            validation_fraction: 0.2,
            patience: 8,
            augment: Augment::Off,
            seed: 0,
        }
    }
}

impl TrainConfig {
    /// Mini-batches of 32 for at least 600 steps at a learning rate of 3e-3, without early
    /// stopping: what the `cnn` model needs from tens to hundreds of labels (measured on the
    /// shapes dataset: see the crate README). Augmentation stays off; turn it on
    /// ([`Augment::FlipsAndTurns`]) where orientation does not decide the class: flipped and turned
    /// copies teach more from each label, and need the longer training to be learnt.
    pub fn cnn() -> Self {
        Self {
            epochs: 40,
            min_steps: 600,
            batch_size: 32,
            learning_rate: 3e-3,
            weight_decay: 1e-4,
            validation_fraction: 0.0,
            ..Self::default()
        }
    }

    /// Full-batch training of softmax regression to convergence, regularised like scikit-learn's
    /// default `LogisticRegression` (L2 with C = 1), without early stopping: with tens of labels
    /// a held-out split costs more accuracy than it saves (see the crate README). On up to 300
    /// standardised digits the objective reaches scikit-learn's lbfgs optimum to a relative 1e-8.
    pub fn linear() -> Self {
        Self {
            epochs: 800,
            min_steps: 0,
            batch_size: 1024,
            learning_rate: 0.05,
            weight_decay: 0.0,
            l2: 1.0,
            cosine_decay: true,
            validation_fraction: 0.0,
            patience: 0,
            augment: Augment::Off,
            seed: 0,
        }
    }
}

/// What happened during training.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TrainReport {
    /// Epochs run.
    pub epochs: usize,
    /// Rows trained on (labelled rows minus the held-out ones).
    pub train_rows: usize,
    /// Mean cross-entropy of the training rows after the last epoch (without the L2 term).
    pub train_loss: f64,
    /// Best held-out loss and the epoch (1-based) that reached it, when early stopping was on.
    pub best_validation: Option<(f64, usize)>,
    /// Whether training stopped before `epochs` because the held-out loss stopped improving.
    pub stopped_early: bool,
}

pub(super) fn train(
    net: &Net,
    x: &Matrix,
    labels: &[usize],
    config: &TrainConfig,
) -> Result<TrainReport, ModelError> {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let transforms = Transforms::new(config.augment, net.input())?;
    let (train_idx, val_idx) = split(labels, config.validation_fraction, &mut rng);
    let to_tensors = |idx: &[usize]| -> candle_core::Result<(Tensor, Tensor)> {
        let rows = x.select_rows(idx);
        let xs = Tensor::from_vec(rows.into_vec(), (idx.len(), x.cols()), &Device::Cpu)?;
        let ys: Vec<u32> = idx.iter().map(|&i| labels[i] as u32).collect();
        Ok((xs, Tensor::from_vec(ys, idx.len(), &Device::Cpu)?))
    };
    let (xs, ys) = to_tensors(&train_idx)?;
    let batches = Batches {
        // With augmentation, each batch is gathered from the raw rows through random
        // transformations.
        raw: transforms.as_ref().map(|_| x.select_rows(&train_idx)),
        transforms,
        xs,
        ys,
    };
    let validation = if val_idx.is_empty() {
        None
    } else {
        Some(to_tensors(&val_idx)?)
    };

    let n = train_idx.len();
    let params = ParamsAdamW {
        lr: config.learning_rate,
        weight_decay: config.weight_decay,
        ..ParamsAdamW::default()
    };
    let mut opt = AdamW::new(net.vars(), params)?;
    let batch = config.batch_size.max(1);
    let epochs = config
        .epochs
        .max(config.min_steps.div_ceil(n.div_ceil(batch)));
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut best: Option<Best> = None;
    let mut report = TrainReport {
        epochs: 0,
        train_rows: n,
        train_loss: f64::NAN,
        best_validation: None,
        stopped_early: false,
    };
    for epoch in 0..epochs {
        if config.cosine_decay {
            let progress = epoch as f64 / epochs as f64;
            opt.set_learning_rate(
                config.learning_rate * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
            );
        }
        let loss_sum = batches.epoch(net, &mut opt, &mut order, batch, config.l2, &mut rng)?;
        report.epochs = epoch + 1;
        report.train_loss = loss_sum / n as f64;
        if let Some((xv, yv)) = &validation {
            let loss = f64::from(
                candle_nn::loss::cross_entropy(&net.forward(xv, None)?, yv)?.to_scalar::<f32>()?,
            );
            if best.as_ref().is_none_or(|b| loss < b.loss) {
                best = Some(Best::snapshot(net, loss, epoch + 1)?);
            } else if best
                .as_ref()
                .is_some_and(|b| epoch + 1 - b.epoch >= config.patience.max(1))
            {
                report.stopped_early = true;
                break;
            }
        }
    }
    if let Some(best) = best {
        for (var, t) in net.vars().iter().zip(&best.weights) {
            var.set(t)?;
        }
        report.best_validation = Some((best.loss, best.epoch));
    }
    Ok(report)
}

/// The training rows as tensors, and how a batch of them is made.
struct Batches {
    xs: Tensor,
    ys: Tensor,
    transforms: Option<Transforms>,
    /// The raw training rows, when batches are transformed.
    raw: Option<Matrix>,
}

impl Batches {
    /// The inputs of the rows `chunk` (positions among the training rows).
    fn inputs(&self, chunk: &[u32], rng: &mut ChaCha8Rng) -> candle_core::Result<Tensor> {
        match (&self.transforms, &self.raw) {
            (Some(t), Some(rows)) => Tensor::from_vec(
                t.batch(rows.as_slice(), rows.cols(), chunk, rng),
                (chunk.len(), rows.cols()),
                &Device::Cpu,
            ),
            _ => self
                .xs
                .index_select(&Tensor::from_slice(chunk, chunk.len(), &Device::Cpu)?, 0),
        }
    }

    /// One pass over the training rows: one full batch when they fit in `batch`, otherwise
    /// shuffled mini-batches. Returns the sum of the rows' cross-entropy.
    fn epoch(
        &self,
        net: &Net,
        opt: &mut AdamW,
        order: &mut [u32],
        batch: usize,
        l2: f64,
        rng: &mut ChaCha8Rng,
    ) -> Result<f64, ModelError> {
        let n = order.len();
        if n <= batch {
            let xb = if self.transforms.is_some() {
                self.inputs(order, rng)?
            } else {
                self.xs.clone()
            };
            let ce = candle_nn::loss::cross_entropy(&net.forward(&xb, Some(&mut *rng))?, &self.ys)?;
            opt.backward_step(&with_l2(net, &ce, l2, n)?)?;
            return Ok(f64::from(ce.to_scalar::<f32>()?) * n as f64);
        }
        let mut loss_sum = 0.0;
        order.shuffle(rng);
        for chunk in order.chunks(batch) {
            let idx = Tensor::from_slice(chunk, chunk.len(), &Device::Cpu)?;
            let (xb, yb) = (self.inputs(chunk, rng)?, self.ys.index_select(&idx, 0)?);
            let ce = candle_nn::loss::cross_entropy(&net.forward(&xb, Some(&mut *rng))?, &yb)?;
            opt.backward_step(&with_l2(net, &ce, l2, n)?)?;
            loss_sum += f64::from(ce.to_scalar::<f32>()?) * chunk.len() as f64;
        }
        Ok(loss_sum)
    }
}

/// The best held-out loss so far, the epoch (1-based) that reached it and the weights then.
struct Best {
    loss: f64,
    epoch: usize,
    weights: Vec<Tensor>,
}

impl Best {
    /// A copy of `net`'s weights now.
    fn snapshot(net: &Net, loss: f64, epoch: usize) -> candle_core::Result<Best> {
        let weights = net
            .vars()
            .iter()
            .map(|v| v.as_tensor().copy())
            .collect::<Result<_, _>>()?;
        Ok(Best {
            loss,
            epoch,
            weights,
        })
    }
}

/// `ce + l2 / (2 n) * sum ||W||^2` over the weight matrices.
fn with_l2(net: &Net, ce: &Tensor, l2: f64, n: usize) -> candle_core::Result<Tensor> {
    if l2 <= 0.0 {
        return Ok(ce.clone());
    }
    let mut total = ce.clone();
    for w in net.weights() {
        total = (total
            + w.as_tensor()
                .sqr()?
                .sum_all()?
                .affine(l2 / (2.0 * n as f64), 0.0)?)?;
    }
    Ok(total)
}

/// Splits row indices into training and held-out rows, stratified by label: each class gives
/// `round(fraction * count)` rows to the held-out set but always keeps at least one for training.
fn split(labels: &[usize], fraction: f64, rng: &mut ChaCha8Rng) -> (Vec<usize>, Vec<usize>) {
    let mut all: Vec<usize> = (0..labels.len()).collect();
    if fraction <= 0.0 {
        return (all, Vec::new());
    }
    all.shuffle(rng);
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut per_class = vec![Vec::new(); classes];
    for i in all {
        per_class[labels[i]].push(i);
    }
    let (mut train, mut held) = (Vec::new(), Vec::new());
    for rows in per_class {
        let take =
            ((fraction * rows.len() as f64).round() as usize).min(rows.len().saturating_sub(1));
        held.extend_from_slice(&rows[..take]);
        train.extend_from_slice(&rows[take..]);
    }
    train.sort_unstable();
    held.sort_unstable();
    (train, held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_stratified_and_keeps_a_training_row_per_class() {
        let labels = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2];
        let (train, held) = split(&labels, 0.4, &mut ChaCha8Rng::seed_from_u64(3));
        assert_eq!(held.len(), 4);
        assert_eq!(held.iter().filter(|&&i| labels[i] == 0).count(), 2);
        assert!(train.iter().any(|&i| labels[i] == 2));
        let mut all: Vec<usize> = train.iter().chain(&held).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..labels.len()).collect::<Vec<_>>());
        assert_eq!(
            split(&labels, 0.0, &mut ChaCha8Rng::seed_from_u64(3)).1,
            Vec::<usize>::new()
        );
    }
}
