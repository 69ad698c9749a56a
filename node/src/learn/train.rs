//! One training round, synchronous and CPU-bound (run it on a blocking thread): score the model
//! in force on the labels it has not been trained on (the validation figure), warm-start from it,
//! train on every usable label, and return the new weights.
//!
//! Validation is prequential: the labels that arrived since the last training were never seen by
//! the model in force, so its accuracy on them is an honest held-out figure that costs no label
//! (holding labels out of training would cost accuracy at small budgets).

use std::sync::Arc;

use swarmlabel_active_learning::{
    Architecture, Augment, Matrix, Model, ModelError, ModelSpec, TrainConfig,
};

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
    /// Flips and turns of images while training (`cnn` only; see [`super::Config::augment_images`]).
    pub augment: Augment,
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
/// converges to the same optimum from any start), [`TrainConfig::cnn`] for images (at least 600
/// steps: the `al` benchmark's shapes runs show the cnn far from trained at 300), the default
/// otherwise. Augmentation stays off: flips and turns are wrong where orientation matters.
pub fn config_for(spec: &ModelSpec) -> TrainConfig {
    match spec.architecture {
        Architecture::Linear { .. } => TrainConfig::linear(),
        Architecture::Cnn { .. } => TrainConfig::cnn(),
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
    if matches!(job.pool.spec.architecture, Architecture::Cnn { .. }) {
        config.augment = job.augment;
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use swarmlabel_formats::import;
    use swarmlabel_store::Home;
    use swarmlabel_store::progress::NoProgress;

    #[test]
    fn a_round_on_digits_labels_learns_the_classes_and_reports_prequential_validation() {
        let dir = tempfile::tempdir().unwrap();
        let (home, me) = Home::init(&dir.path().join("home"), false).unwrap();
        let csv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/digits.csv");
        let labels = (0..10).map(|d| d.to_string()).collect();
        let report = import::import(
            &home,
            &me,
            &csv,
            &import::Options::new("digits", labels),
            &NoProgress,
        )
        .unwrap();
        let pool = Arc::new(
            super::super::features::load(&swarmlabel_store::Catalog::of(&home), &report.id)
                .unwrap(),
        );
        let truth: Vec<(usize, usize)> = pool
            .ids
            .iter()
            .enumerate()
            .map(|(row, id)| (row, usize::from(pool.gold[id])))
            .collect();
        let first = Job {
            pool: pool.clone(),
            start: None,
            seed: 7,
            labels: truth[..100].to_vec(),
            fresh: Vec::new(),
            augment: Augment::Off,
        };
        let out = run(&first).unwrap();
        assert_eq!(out.labels, 100);
        let model = Model::from_safetensors_bytes(&out.weights).unwrap();
        let rest: Vec<usize> = (100..truth.len()).collect();
        let y: Vec<usize> = rest.iter().map(|&r| truth[r].1).collect();
        let acc = model
            .accuracy(&pool.features.select_rows(&rest), &y)
            .unwrap();
        assert!(acc > 0.7, "accuracy {acc} on the unlabelled rows");
        // A warm start from that model, with 50 new labels held out for validation first.
        let second = Job {
            start: Some(Arc::new(out.weights)),
            labels: truth[..150].to_vec(),
            fresh: (100..150).collect(),
            ..first
        };
        let out = run(&second).unwrap();
        let (right, count) = out.validation;
        assert_eq!(count, 50);
        assert!(f64::from(right) / 50.0 > 0.7, "{right} of 50");
        let warm = Model::from_safetensors_bytes(&out.weights).unwrap();
        let rest: Vec<usize> = (150..truth.len()).collect();
        let y: Vec<usize> = rest.iter().map(|&r| truth[r].1).collect();
        let acc = warm
            .accuracy(&pool.features.select_rows(&rest), &y)
            .unwrap();
        assert!(acc > 0.75, "accuracy {acc} after the warm start");
    }
}
