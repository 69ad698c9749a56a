//! `score`: pool scoring throughput (class probabilities plus the strategy's score of every
//! sample, in batches) against the same model's matrix products alone, timed in the same run.
//!
//! The bound multiplies the same batches by the same weight matrices and does nothing else: no
//! copy of the features into tensors, no bias, activation or softmax, no copy back, no strategy
//! score. `ratio` is how close scoring gets to it.

use std::time::Instant;

use anyhow::{bail, ensure};
use candle_core::{Device, Tensor};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use swarmlabel_active_learning::{Matrix, Model, ModelSpec, ScoreConfig, Strategy};

/// Flags of `swarmlabel-bench score`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Samples in the pool.
    #[arg(long, default_value_t = 100_000)]
    samples: usize,
    /// Features per sample.
    #[arg(long, default_value_t = 784)]
    dims: usize,
    /// Classes.
    #[arg(long, default_value_t = 10)]
    classes: usize,
    /// Model: linear or mlp.
    #[arg(long, default_value = "mlp")]
    model: String,
    /// Hidden layer widths of the mlp.
    #[arg(long, value_delimiter = ',', default_value = "256")]
    hidden: Vec<usize>,
    /// Rows per forward pass.
    #[arg(long, default_value_t = 4096)]
    batch: usize,
    /// Strategy whose score is computed for every sample (not bald: it multiplies the work by
    /// the number of dropout passes, which the bound would not).
    #[arg(long, default_value = "margin")]
    strategy: String,
    /// Timed repetitions of each measurement; the fastest counts.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
}

pub(crate) fn run(args: Args) -> anyhow::Result<serde_json::Value> {
    let strategy: Strategy = args.strategy.parse()?;
    ensure!(
        !strategy.needs_passes(),
        "score measures single-pass strategies; bald is not one"
    );
    ensure!(
        args.samples > 0 && args.dims > 0 && args.batch > 0,
        "sizes must be at least 1"
    );
    let spec = model_spec(&args)?;
    let model = Model::new(spec.clone(), 0)?;
    eprintln!(
        "score: {} samples x {} features, {:?}",
        args.samples, args.dims, spec.architecture
    );
    let pool = random_pool(args.samples, args.dims)?;
    let config = ScoreConfig {
        batch: args.batch,
        ..ScoreConfig::default()
    };

    let repeats = args.repeats.max(1);
    let mut score_s = f64::INFINITY;
    let mut checksum = 0.0f64;
    for _ in 0..repeats {
        let start = Instant::now();
        let scored = swarmlabel_active_learning::score(&model, &pool, strategy, &config)?;
        let scores = strategy.scores(&scored.probs, &scored.passes)?;
        score_s = score_s.min(start.elapsed().as_secs_f64());
        checksum = scores.iter().map(|&s| f64::from(s)).sum();
    }
    let (matmul_s, flops) = matmul_bound(&model, &pool, args.batch, repeats)?;
    let samples_per_s = args.samples as f64 / score_s;
    let bound = args.samples as f64 / matmul_s;
    Ok(json!({
        "bench": "score",
        "samples": args.samples,
        "dims": args.dims,
        "classes": args.classes,
        "model": args.model,
        "model_spec": serde_json::to_value(&spec)?,
        "strategy": strategy.name(),
        "batch": args.batch,
        "samples_per_s": samples_per_s.round(),
        "matmul_bound_samples_per_s": bound.round(),
        "ratio": (samples_per_s / bound * 1000.0).round() / 1000.0,
        "score_s": (score_s * 1000.0).round() / 1000.0,
        "matmul_s": (matmul_s * 1000.0).round() / 1000.0,
        "matmul_gflop_s": (flops as f64 / matmul_s / 1e9 * 10.0).round() / 10.0,
        "repeats": repeats,
        "matmul_threads": candle_core::utils::get_num_threads(),
        "score_checksum": checksum,
    }))
}

/// The model `--model` names, sized by the flags.
fn model_spec(args: &Args) -> anyhow::Result<ModelSpec> {
    Ok(match args.model.as_str() {
        "linear" => ModelSpec::linear(args.dims, args.classes),
        "mlp" => ModelSpec::mlp(args.dims, args.hidden.clone(), 0.25, args.classes),
        other => bail!("unknown model {other:?} for score; use linear or mlp"),
    })
}

/// A pool of `samples` rows of `dims` features drawn uniformly in [0, 1) (seeded).
fn random_pool(samples: usize, dims: usize) -> anyhow::Result<Matrix> {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let data: Vec<f32> = (0..samples * dims)
        .map(|_| rng.random_range(0.0..1.0))
        .collect();
    Ok(Matrix::new(samples, dims, data)?)
}

/// The bound: the same products on the same batches of `pool`, inputs already in tensors, timed
/// `repeats` times; returns the fastest time in seconds and the floating-point operations of one
/// pass over the pool.
fn matmul_bound(
    model: &Model,
    pool: &Matrix,
    batch: usize,
    repeats: usize,
) -> anyhow::Result<(f64, usize)> {
    let (samples, dims) = (pool.rows(), pool.cols());
    let weights: Vec<Tensor> = model
        .tensors()?
        .into_iter()
        .filter_map(|(name, t)| name.ends_with(".weight").then_some(t))
        .collect();
    let batches: Vec<Tensor> = (0..samples)
        .step_by(batch)
        .map(|start| {
            let n = batch.min(samples - start);
            Tensor::from_slice(
                &pool.as_slice()[start * dims..(start + n) * dims],
                (n, dims),
                &Device::Cpu,
            )
        })
        .collect::<Result<_, _>>()?;
    let hidden_inputs = hidden_inputs(&weights, &batches)?;
    let mut matmul_s = f64::INFINITY;
    for _ in 0..repeats {
        let start = Instant::now();
        for (i, b) in batches.iter().enumerate() {
            std::hint::black_box(b.matmul(&weights[0].t()?)?);
            for (layer, w) in weights[1..].iter().enumerate() {
                std::hint::black_box(hidden_inputs[layer][i].matmul(&w.t()?)?);
            }
        }
        matmul_s = matmul_s.min(start.elapsed().as_secs_f64());
    }
    let flops: usize = weights.iter().map(|w| 2 * w.elem_count()).sum::<usize>() * samples;
    Ok((matmul_s, flops))
}

/// Inputs of the later layers, per layer and batch: the shapes of the hidden activations, values
/// do not matter.
fn hidden_inputs(weights: &[Tensor], batches: &[Tensor]) -> anyhow::Result<Vec<Vec<Tensor>>> {
    Ok(weights[1..]
        .iter()
        .map(|w| {
            batches
                .iter()
                .map(|b| {
                    Tensor::ones(
                        (b.dim(0)?, w.dim(1)?),
                        candle_core::DType::F32,
                        &Device::Cpu,
                    )
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<_, _>>()?)
}
