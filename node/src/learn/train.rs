//! One training round, synchronous and CPU-bound (run it on a blocking thread): score the model
//! in force on the labels it has not been trained on (the validation figure), warm-start from it,
//! train on every usable label, and return the new weights.
//!
//! Validation is prequential: the labels that arrived since the last training were never seen by
//! the model in force, so its accuracy on them is an honest held-out figure that costs no label
//! (holding labels out of training would cost accuracy at small budgets).

use std::sync::Arc;

use swarmlabel_active_learning::{Architecture, Matrix, Model, ModelError, ModelSpec, TrainConfig};

use super::features::PoolFeatures;

/// What a round trains on.
#[derive(Debug)]
pub struct Job {
    /// The dataset's samples.
    pub pool: Arc<PoolFeatures>,
    /// The weights to start from (the merged model); `None` starts from the seeded initial
    /// weights every node of the dataset shares.
    pub start: Option<Arc<Vec<u8>>>,
    /// Seed of the initial weights (derived from the dataset id).
    pub seed: u64,
    /// `(pool row, class)` of every usable label.
    pub labels: Vec<(usize, usize)>,
    /// Rows among `labels` the start model was not trained on (held out for validation).
    pub fresh: Vec<usize>,
}

/// What a round produced.
#[derive(Debug)]
pub struct Outcome {
    /// The trained weights (safetensors).
    pub weights: Vec<u8>,
    /// Labels trained on.
    pub labels: u64,
    /// Right answers of the start model on the fresh labels, and their number.
    pub validation: (u32, u32),
}

/// The training settings of a model spec: [`TrainConfig::linear`] for softmax regression (it
/// converges to the same optimum from any start), the default otherwise.
pub fn config_for(spec: &ModelSpec) -> TrainConfig {
    match spec.architecture {
        Architecture::Linear { .. } => TrainConfig::linear(),
        _ => TrainConfig::default(),
    }
}

/// The start model of a round: the merged weights when they fit the dataset's spec, otherwise
/// the shared seeded initial weights.
pub fn start_model(spec: &ModelSpec, start: Option<&[u8]>, seed: u64) -> Result<Model, ModelError> {
    if let Some(bytes) = start {
        match Model::from_safetensors_bytes(bytes) {
            Ok(m) if m.spec() == spec => return Ok(m),
            Ok(_) => tracing::warn!("the merged model has another spec; starting afresh"),
            Err(e) => tracing::warn!("the merged model is unreadable ({e}); starting afresh"),
        }
    }
    Model::new(spec.clone(), seed)
}

/// Runs the round.
pub fn run(job: &Job) -> Result<Outcome, ModelError> {
    let mut model = start_model(
        &job.pool.spec,
        job.start.as_deref().map(Vec::as_slice),
        job.seed,
    )?;
    let validation = if job.fresh.is_empty() {
        (0, 0)
    } else {
        let fresh: Vec<(usize, usize)> = job
            .labels
            .iter()
            .copied()
            .filter(|(row, _)| job.fresh.contains(row))
            .collect();
        let x = job.pool.features.select_rows(&rows(&fresh));
        let y: Vec<usize> = fresh.iter().map(|(_, c)| *c).collect();
        let acc = model.accuracy(&x, &y)?;
        let count = y.len() as u32;
        ((acc * f64::from(count)).round() as u32, count)
    };
    let x: Matrix = job.pool.features.select_rows(&rows(&job.labels));
    let y: Vec<usize> = job.labels.iter().map(|(_, c)| *c).collect();
    let mut config = config_for(&job.pool.spec);
    config.seed = job.seed;
    model.train(&x, &y, &config)?;
    Ok(Outcome {
        weights: model.to_safetensors_bytes()?,
        labels: y.len() as u64,
        validation,
    })
}

fn rows(labels: &[(usize, usize)]) -> Vec<usize> {
    labels.iter().map(|(r, _)| *r).collect()
}
