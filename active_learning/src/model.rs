//! Classifiers on candle: `linear` (softmax regression), `mlp` and `cnn`, trained with AdamW,
//! initialised from a seeded RNG, saved and loaded as safetensors.
//!
//! Training and prediction are CPU-bound and synchronous: a caller inside an async runtime runs
//! them on a blocking thread (`tokio::task::spawn_blocking`), never on an async worker. A
//! [`Model`] is `Send + 'static` so it can be moved there and back.

mod augment;
mod net;
mod spec;
mod train;

pub use self::augment::Augment;
pub use self::spec::{
    Architecture, Input, MAX_ACTIVATIONS, MAX_INPUT_VALUES, MAX_LAYERS, MAX_PARAMETERS, MAX_WIDTH,
    ModelSpec,
};
pub use self::train::{TrainConfig, TrainReport};

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use rand::SeedableRng as _;
use rand_chacha::ChaCha8Rng;

use self::net::Net;
use crate::matrix::Matrix;

/// Metadata key of the safetensors header that holds the [`ModelSpec`] as JSON.
pub const SPEC_METADATA_KEY: &str = "swarmlabel.model_spec";

/// Default number of rows per forward pass when scoring a pool.
pub const DEFAULT_BATCH: usize = 4096;

/// Why a model operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The model description is not usable.
    #[error("invalid model: {0}")]
    Spec(String),
    /// Feature rows have the wrong width for this model.
    #[error("the model takes {expected} features per sample, got {got}")]
    Width {
        /// Width the model was built for.
        expected: usize,
        /// Width given.
        got: usize,
    },
    /// Labels and feature rows differ in number.
    #[error("{labels} labels for {rows} feature rows; give one label per row")]
    LabelCount {
        /// Feature rows.
        rows: usize,
        /// Labels.
        labels: usize,
    },
    /// A label is not one of the model's classes.
    #[error("label {label} is not a class of this model (it has {classes} classes, 0..{classes})")]
    UnknownClass {
        /// The label.
        label: usize,
        /// Number of classes of the model.
        classes: usize,
    },
    /// There is nothing to train on.
    #[error("the training set is empty")]
    Empty,
    /// Stored weights do not fit the model they claim to be.
    #[error("invalid model weights: {0}")]
    Weights(String),
    /// Reading or writing a weights file failed.
    #[error("cannot access model file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A tensor operation failed.
    #[error("model computation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

/// A trained or freshly initialised classifier.
///
/// Guarantees: the same spec and seed give bit-identical initial weights, and training with the
/// same data and [`TrainConfig`] gives bit-identical trained weights; safetensors round trips are
/// exact. Clones share nothing: [`Model::try_clone`] copies the weights.
#[derive(Debug)]
pub struct Model {
    net: Net,
    spec: ModelSpec,
}

impl Model {
    /// A new model with weights drawn from a ChaCha8 generator seeded with `seed`.
    pub fn new(spec: ModelSpec, seed: u64) -> Result<Self, ModelError> {
        spec.validate()?;
        let net = Net::init(&spec, &mut ChaCha8Rng::seed_from_u64(seed))?;
        Ok(Self { net, spec })
    }

    /// A copy with its own weights (training the copy leaves `self` unchanged).
    pub fn try_clone(&self) -> Result<Self, ModelError> {
        Ok(Self {
            net: self.net.deep_copy()?,
            spec: self.spec.clone(),
        })
    }

    /// The model's description.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.spec.classes
    }

    /// Trains on feature rows `x` with class indices `labels`, starting from the current weights
    /// (so a model loaded from safetensors is a warm start; [`Model::new`] a cold one).
    pub fn train(
        &mut self,
        x: &Matrix,
        labels: &[usize],
        config: &TrainConfig,
    ) -> Result<TrainReport, ModelError> {
        self.check_width(x)?;
        if labels.len() != x.rows() {
            return Err(ModelError::LabelCount {
                rows: x.rows(),
                labels: labels.len(),
            });
        }
        if let Some(&label) = labels.iter().find(|&&l| l >= self.spec.classes) {
            return Err(ModelError::UnknownClass {
                label,
                classes: self.spec.classes,
            });
        }
        if x.rows() == 0 {
            return Err(ModelError::Empty);
        }
        train::train(&self.net, x, labels, config)
    }

    /// Class probabilities of each row of `x` (one row per sample, columns are classes), computed
    /// `batch` rows at a time with dropout off. The same batch size gives bit-identical results;
    /// another may differ in the last bits (matrix-product kernels depend on the shape).
    pub fn predict_proba(&self, x: &Matrix, batch: usize) -> Result<Matrix, ModelError> {
        self.check_width(x)?;
        self.forward_batched(x, batch, None)
    }

    /// `passes` Monte Carlo dropout forward passes over `x`: one probability table per pass, with
    /// dropout masks drawn from a generator seeded with `seed`. Without dropout in the model the
    /// passes are all equal.
    pub fn predict_proba_mc(
        &self,
        x: &Matrix,
        passes: usize,
        batch: usize,
        seed: u64,
    ) -> Result<Vec<Matrix>, ModelError> {
        self.check_width(x)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..passes)
            .map(|_| self.forward_batched(x, batch, Some(&mut rng)))
            .collect()
    }

    /// What the output layer sees for each row of `x` (one row per sample), computed `batch`
    /// rows at a time with dropout off: the inputs themselves for `linear`, the last hidden layer
    /// for `mlp`, the dense layer (or the pooled channels without one) for `cnn`. Distances here
    /// follow what the model has learnt, so a diversity step over these rows spreads picks over
    /// what images show rather than over their pixels.
    pub fn embed(&self, x: &Matrix, batch: usize) -> Result<Matrix, ModelError> {
        self.check_width(x)?;
        let batch = batch.max(1);
        let cols = x.cols();
        let mut out = Vec::new();
        let mut width = 0;
        for start in (0..x.rows()).step_by(batch) {
            let n = batch.min(x.rows() - start);
            let rows = &x.as_slice()[start * cols..(start + n) * cols];
            let input = Tensor::from_slice(rows, (n, cols), &Device::Cpu)?;
            let features = self.net.embed(&input, None)?;
            width = features.dim(1)?;
            out.extend(features.flatten_all()?.to_vec1::<f32>()?);
        }
        Matrix::new(x.rows(), width, out)
            .map_err(|e| ModelError::Spec(format!("embedding of an unexpected shape: {e}")))
    }

    /// Fraction of rows of `x` whose most probable class is the label.
    pub fn accuracy(&self, x: &Matrix, labels: &[usize]) -> Result<f64, ModelError> {
        if labels.len() != x.rows() {
            return Err(ModelError::LabelCount {
                rows: x.rows(),
                labels: labels.len(),
            });
        }
        if labels.is_empty() {
            return Ok(0.0);
        }
        let predicted = self.predict_proba(x, DEFAULT_BATCH)?.argmax_rows();
        let right = predicted.iter().zip(labels).filter(|(p, l)| p == l).count();
        Ok(right as f64 / labels.len() as f64)
    }

    /// The weights as a safetensors buffer; the spec is in the header metadata under
    /// [`SPEC_METADATA_KEY`], so [`Model::from_safetensors_bytes`] needs nothing else.
    pub fn to_safetensors_bytes(&self) -> Result<Vec<u8>, ModelError> {
        let spec = serde_json::to_string(&self.spec)
            .map_err(|e| ModelError::Spec(format!("cannot encode the spec: {e}")))?;
        let metadata = HashMap::from([(SPEC_METADATA_KEY.to_owned(), spec)]);
        let tensors = self
            .net
            .params()
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_tensor()));
        safetensors::serialize(tensors, Some(metadata))
            .map_err(|e| ModelError::Weights(format!("cannot encode safetensors: {e}")))
    }

    /// A model from a safetensors buffer written by [`Model::to_safetensors_bytes`] (for example
    /// received from a peer). Every tensor must be present with its exact shape.
    pub fn from_safetensors_bytes(bytes: &[u8]) -> Result<Self, ModelError> {
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| ModelError::Weights(format!("not a safetensors buffer: {e}")))?;
        let spec = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(SPEC_METADATA_KEY))
            .ok_or_else(|| ModelError::Weights(format!("no {SPEC_METADATA_KEY} in the header")))?;
        let spec: ModelSpec = serde_json::from_str(spec)
            .map_err(|e| ModelError::Weights(format!("unreadable model spec: {e}")))?;
        // The spec is bounded, and the tensors are those of the spec, before anything is built.
        let expected = spec.parameter_count()?;
        let declared = header.tensors().iter().try_fold(0u64, |sum, (_, info)| {
            info.shape
                .iter()
                .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
                .and_then(|n| sum.checked_add(n))
        });
        if declared != Some(expected) {
            return Err(ModelError::Weights(format!(
                "the tensors hold {} values where the model spec has {expected} parameters",
                declared.map_or_else(|| "too many".to_owned(), |n| n.to_string())
            )));
        }
        let tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)?;
        Self::with_weights(spec, &tensors)
    }

    /// A model of `spec` with the given named tensors as weights (names as in the safetensors
    /// files: `linear.weight`, `hidden0.bias`, `conv1.weight`, ...).
    pub fn with_weights(
        spec: ModelSpec,
        tensors: &HashMap<String, Tensor>,
    ) -> Result<Self, ModelError> {
        spec.validate()?;
        // Zero seed: every value is overwritten below.
        let model = Self::new(spec, 0)?;
        if tensors.len() != model.net.params().len() {
            return Err(ModelError::Weights(format!(
                "{} tensors for a model with {} parameters",
                tensors.len(),
                model.net.params().len()
            )));
        }
        for (name, var) in model.net.params() {
            let t = tensors
                .get(name)
                .ok_or_else(|| ModelError::Weights(format!("tensor {name} is missing")))?;
            if t.dims() != var.dims() {
                return Err(ModelError::Weights(format!(
                    "tensor {name} has shape {:?}, the model needs {:?}",
                    t.dims(),
                    var.dims()
                )));
            }
            var.set(&t.to_dtype(candle_core::DType::F32)?)?;
        }
        Ok(model)
    }

    /// Writes [`Model::to_safetensors_bytes`] to `path`.
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let bytes = self.to_safetensors_bytes()?;
        std::fs::write(path, bytes).map_err(|source| ModelError::Io {
            path: path.to_owned(),
            source,
        })
    }

    /// Reads a model written by [`Model::save`].
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_safetensors_bytes(&bytes)
    }

    /// Named copies of the weights, in layer order.
    pub fn weights(&self) -> Result<Vec<(String, Vec<f32>)>, ModelError> {
        self.net
            .params()
            .iter()
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().flatten_all()?.to_vec1::<f32>()?)))
            .collect()
    }

    /// Named copies of the weight tensors, in layer order (the inverse of [`Model::with_weights`]).
    pub fn tensors(&self) -> Result<Vec<(String, Tensor)>, ModelError> {
        self.net
            .params()
            .iter()
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?)))
            .collect()
    }

    fn check_width(&self, x: &Matrix) -> Result<(), ModelError> {
        let expected = self.spec.input.width();
        if x.cols() != expected {
            return Err(ModelError::Width {
                expected,
                got: x.cols(),
            });
        }
        Ok(())
    }

    fn forward_batched(
        &self,
        x: &Matrix,
        batch: usize,
        mut rng: Option<&mut ChaCha8Rng>,
    ) -> Result<Matrix, ModelError> {
        let batch = batch.max(1);
        let cols = x.cols();
        let mut out = Vec::with_capacity(x.rows() * self.spec.classes);
        for start in (0..x.rows()).step_by(batch) {
            let n = batch.min(x.rows() - start);
            let rows = &x.as_slice()[start * cols..(start + n) * cols];
            let input = Tensor::from_slice(rows, (n, cols), &Device::Cpu)?;
            let logits = self.net.forward(&input, rng.as_deref_mut())?;
            let probs = candle_nn::ops::softmax_last_dim(&logits)?;
            out.extend(probs.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(Matrix::new(x.rows(), self.spec.classes, out)
            .expect("invariant: each batch yields n x classes probabilities"))
    }
}

#[cfg(test)]
mod tests;
