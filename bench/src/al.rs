//! `al`: the active-learning learning curve of one strategy, exactly the protocol of
//! `../shared/BENCHMARKS.md` (section `al`), on a CSV file or an image folder.
//!
//! For each seed: a stratified test split, numeric features standardised with the pool's
//! statistics, `initial` random labels, then rounds of "train from scratch, record test accuracy
//! at the budgets, let the strategy pick `batch` more samples whose labels the oracle reveals".

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, bail, ensure};
use rand::SeedableRng as _;
use rand::seq::SliceRandom as _;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use swarmlabel_active_learning::{
    Architecture, Augment, ColdStart, Colour, Diversity, Extractor as _, Input, Matrix, Model,
    ModelSpec, Query, ScoreConfig, Tabular, TrainConfig,
};

mod data;

use data::read_images;
pub(crate) use data::{Dataset, read_csv};

/// Flags of `swarmlabel-bench al`.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("data").required(true).args(["csv", "images"]))]
pub(crate) struct Args {
    /// CSV file with a header row: numeric feature columns and a label column.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Image folder whose sub-folders are the classes (PNG or JPEG files inside).
    #[arg(long)]
    images: Option<PathBuf>,
    /// Name of the label column of the CSV file.
    #[arg(long, default_value = "label")]
    label_column: String,
    /// Query strategy: random, least-confidence, margin, entropy, bald, or one of these with
    /// `-diverse` (batch-aware diversity step), e.g. margin-diverse.
    #[arg(long, default_value = "margin")]
    strategy: String,
    /// Model: linear, mlp or cnn (cnn needs --images).
    #[arg(long, default_value = "linear")]
    model: String,
    /// Number of seeds, one learning curve each.
    #[arg(long, default_value_t = 5)]
    seeds: u64,
    /// First seed (seeds are first-seed..first-seed+seeds); tune settings on other seeds than
    /// the ones you report.
    #[arg(long, default_value_t = 0)]
    first_seed: u64,
    /// Random labels before the first query.
    #[arg(long, default_value_t = 10)]
    initial: usize,
    /// Samples picked per query.
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Label counts at which test accuracy is recorded; the largest ends a run.
    #[arg(long, value_delimiter = ',', default_value = "20,50,100,150,200,300")]
    budgets: Vec<usize>,
    /// Fraction of the samples held out as the test set (stratified).
    #[arg(long, default_value_t = 0.28)]
    test_fraction: f64,
    /// Cold start: while a class has fewer labels than this, pick representative samples
    /// instead of uncertain ones (0 = off). Ignored by `random`.
    #[arg(long, default_value_t = 0)]
    cold_start: usize,
    /// Percent of each batch drawn at random instead of by the strategy (0 to 100).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    explore: u8,
    /// Candidates per pick entering the diversity step of `-diverse` strategies.
    #[arg(long, default_value_t = Diversity::default().candidates_per_pick)]
    diversity_candidates: usize,
    /// Early stopping: fraction of the labelled set held out (0 = off, the linear default).
    #[arg(long)]
    validation_fraction: Option<f64>,
    /// Training epochs (default: the model's own).
    #[arg(long)]
    epochs: Option<usize>,
    /// Train at least this many optimiser steps (default: the model's own; cnn uses 600).
    #[arg(long)]
    min_steps: Option<usize>,
    /// L2 penalty as scikit-learn's 1/C (default: the model's own; linear uses 1).
    #[arg(long)]
    l2: Option<f64>,
    /// AdamW decoupled weight decay (default: the model's own).
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Peak learning rate (default: the model's own).
    #[arg(long)]
    learning_rate: Option<f64>,
    /// Dropout probability (linear: on the inputs). Default: 0 for linear, except 0.2 with
    /// `bald`, which needs Monte Carlo dropout; 0.25 for mlp and cnn.
    #[arg(long)]
    dropout: Option<f32>,
    /// Convolution channels of the cnn model, comma-separated (default: the model's own).
    #[arg(long, value_delimiter = ',')]
    channels: Option<Vec<usize>>,
    /// Dense layer width of the cnn model, 0 for none (default: the model's own).
    #[arg(long)]
    hidden: Option<usize>,
    /// Per-image standardisation of the cnn input on or off (default: the model's own, on).
    #[arg(long)]
    standardise: Option<bool>,
    /// Train on randomly flipped and turned images (cnn only; wrong where orientation tells
    /// classes apart, as with digits).
    #[arg(long)]
    augment: bool,
    /// What the diversity step and the cold start cluster: `input` (the feature rows, pixels for
    /// images) or `embedding` (what the model's output layer sees, recomputed every round).
    /// Default: `embedding` for cnn (pixel distances say little about what an image shows),
    /// `input` otherwise.
    #[arg(long, value_enum)]
    diversity_space: Option<DiversitySpace>,
    /// Cosine learning-rate decay on or off (default: the model's own).
    #[arg(long)]
    cosine_decay: Option<bool>,
    /// Monte Carlo dropout passes for `bald`.
    #[arg(long, default_value_t = 20)]
    passes: usize,
    /// Side in pixels images are resized to.
    #[arg(long, default_value_t = 32)]
    image_size: u32,
    /// Read images as grey instead of RGB (the same as `--colour grey`).
    #[arg(long, conflicts_with = "colour")]
    grey: bool,
    /// Channels read from images: `rgb` (default), `grey` (luminance) or `principal` (each
    /// pixel projected on the image's own principal colour axis: keeps shapes whose colour has
    /// the brightness of the background).
    #[arg(long, value_enum)]
    colour: Option<ColourArg>,
}

/// `--colour` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ColourArg {
    Rgb,
    Grey,
    Principal,
}

impl Args {
    /// The image channels as the JSON reports them (`null` for CSV files).
    fn input_colour(&self) -> Option<Colour> {
        self.images.as_ref().map(|_| self.colour())
    }

    fn colour(&self) -> Colour {
        match (self.grey, self.colour) {
            (true, _) | (false, Some(ColourArg::Grey)) => Colour::Grey,
            (false, Some(ColourArg::Principal)) => Colour::Principal,
            (false, Some(ColourArg::Rgb) | None) => Colour::Rgb,
        }
    }
}

/// The rows the diversity step and the cold start measure distances in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DiversitySpace {
    /// The feature rows themselves.
    Input,
    /// The model's embedding of each row ([`Model::embed`]).
    Embedding,
}

pub(crate) fn run(args: Args) -> anyhow::Result<serde_json::Value> {
    let query = Query::parse(&args.strategy)?;
    let data = match (&args.csv, &args.images) {
        (Some(csv), None) => read_csv(csv, &args.label_column)?,
        (None, Some(dir)) => read_images(dir, args.image_size, args.colour())?,
        _ => bail!("give exactly one of --csv FILE or --images DIR"),
    };
    let mut budgets = args.budgets.clone();
    budgets.sort_unstable();
    budgets.dedup();
    let largest = *budgets.last().context("--budgets is empty")?;
    ensure!(args.batch > 0, "--batch must be at least 1");
    ensure!(args.initial > 0, "--initial must be at least 1");
    ensure!(
        (0.0..1.0).contains(&args.test_fraction) && args.test_fraction > 0.0,
        "--test-fraction must be between 0 and 1"
    );
    let spec = model_spec(&args, &data, query)?;
    let train = train_config(&args);
    eprintln!(
        "al: {} ({} samples, {} classes), strategy {}, model {}, budgets {budgets:?}",
        data.name,
        data.rows.len(),
        data.classes.len(),
        query.name(),
        args.model
    );

    let start = Instant::now();
    let mut per_seed: Vec<Vec<f64>> = Vec::new();
    for seed in args.first_seed..args.first_seed + args.seeds {
        let curve = learning_curve(&data, &spec, &train, &args, query, &budgets, largest, seed)
            .with_context(|| format!("seed {seed}"))?;
        eprintln!(
            "seed {seed}: {curve:.3?} ({:.1} s)",
            start.elapsed().as_secs_f64()
        );
        per_seed.push(curve);
    }
    let wall_s = start.elapsed().as_secs_f64();
    let (mean, std) = mean_std(&per_seed, budgets.len());
    Ok(json!({
        "bench": "al",
        "data": data.name,
        "strategy": query.name(),
        "model": args.model,
        "seeds": args.seeds,
        "first_seed": args.first_seed,
        "budgets": budgets,
        "accuracy_mean": round(&mean),
        "accuracy_std": round(&std),
        "wall_s": (wall_s * 100.0).round() / 100.0,
        "accuracy_per_seed": per_seed.iter().map(|c| round(c)).collect::<Vec<_>>(),
        "samples": data.rows.len(),
        "classes": data.classes.len(),
        "initial": args.initial,
        "batch": args.batch,
        "test_fraction": args.test_fraction,
        "cold_start_min_per_class": args.cold_start,
        "explore_percent": args.explore,
        "diversity_candidates_per_pick": query.diversity.map(|_| args.diversity_candidates),
        "diversity_space": format!("{:?}", diversity_space(&args)).to_lowercase(),
        "model_spec": serde_json::to_value(&spec)?,
        "train": {
            "epochs": train.epochs,
            "min_steps": train.min_steps,
            "batch_size": train.batch_size,
            "learning_rate": train.learning_rate,
            "weight_decay": train.weight_decay,
            "l2": train.l2,
            "cosine_decay": train.cosine_decay,
            "validation_fraction": train.validation_fraction,
            "patience": train.patience,
            "augment": args.augment,
        },
        "colour": args.input_colour(),
        "matmul_threads": candle_core::utils::get_num_threads(),
    }))
}

/// One seed of the protocol: test accuracy at each budget.
#[allow(clippy::too_many_arguments)]
fn learning_curve(
    data: &Dataset,
    spec: &ModelSpec,
    train: &TrainConfig,
    args: &Args,
    query: Query,
    budgets: &[usize],
    largest: usize,
    seed: u64,
) -> anyhow::Result<Vec<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // 1. Stratified split.
    let (pool_idx, test_idx) = stratified_split(&data.labels, args.test_fraction, &mut rng);
    ensure!(
        pool_idx.len() >= largest,
        "the pool has {} samples, fewer than the largest budget {largest}",
        pool_idx.len()
    );
    // 2. Standardise with the pool's statistics.
    let (pool_x, test_x) = features(data, &pool_idx, &test_idx)?;
    let pool_y: Vec<usize> = pool_idx.iter().map(|&i| data.labels[i]).collect();
    let test_y: Vec<usize> = test_idx.iter().map(|&i| data.labels[i]).collect();
    // 3. Initial random labels.
    let mut order: Vec<usize> = (0..pool_idx.len()).collect();
    order.shuffle(&mut rng);
    let mut labelled: Vec<usize> = order[..args.initial.min(largest)].to_vec();
    let mut query = query;
    query.explore_percent = args.explore;
    query.cold_start = ColdStart {
        min_per_class: args.cold_start,
    };
    if let Some(d) = &mut query.diversity {
        d.candidates_per_pick = args.diversity_candidates;
    }
    let score_config = ScoreConfig {
        passes: args.passes,
        seed,
        ..ScoreConfig::default()
    };
    let train = TrainConfig {
        seed,
        ..train.clone()
    };
    // 4. Rounds.
    let mut curve = Vec::with_capacity(budgets.len());
    loop {
        let x = pool_x.select_rows(&labelled);
        let y: Vec<usize> = labelled.iter().map(|&i| pool_y[i]).collect();
        let mut model = Model::new(spec.clone(), seed)?;
        model.train(&x, &y, &train)?;
        if budgets.contains(&labelled.len()) {
            curve.push(model.accuracy(&test_x, &test_y)?);
        }
        if labelled.len() >= largest {
            break;
        }
        // Never step over a budget: the last batch before one is cut short.
        let next_budget = budgets
            .iter()
            .copied()
            .find(|&b| b > labelled.len())
            .unwrap_or(largest);
        let k = args.batch.min(next_budget - labelled.len());
        let scored =
            swarmlabel_active_learning::score(&model, &pool_x, query.strategy, &score_config)?;
        let embedded = match diversity_space(args) {
            DiversitySpace::Embedding if query.diversity.is_some() || args.cold_start > 0 => {
                Some(model.embed(&pool_x, swarmlabel_active_learning::model::DEFAULT_BATCH)?)
            }
            _ => None,
        };
        let exclude: HashSet<usize> = labelled.iter().copied().collect();
        let mut per_class = vec![0; data.classes.len()];
        for &label in &y {
            per_class[label] += 1;
        }
        let picks = query.select(
            &scored.view(Some(embedded.as_ref().unwrap_or(&pool_x))),
            k,
            &exclude,
            &per_class,
            &mut rng,
        )?;
        ensure!(
            !picks.is_empty(),
            "the strategy picked nothing with {} labels",
            labelled.len()
        );
        labelled.extend(picks.iter().map(|p| p.index));
    }
    ensure!(
        curve.len() == budgets.len(),
        "budgets {budgets:?} were not all reached"
    );
    Ok(curve)
}

/// Each class gives `round(fraction * count)` samples to the test set, drawn at random.
pub(crate) fn stratified_split(
    labels: &[usize],
    fraction: f64,
    rng: &mut ChaCha8Rng,
) -> (Vec<usize>, Vec<usize>) {
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut by_class = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l].push(i);
    }
    let (mut pool, mut test) = (Vec::new(), Vec::new());
    for mut members in by_class {
        members.shuffle(rng);
        let n = (fraction * members.len() as f64).round() as usize;
        test.extend_from_slice(&members[..n]);
        pool.extend_from_slice(&members[n..]);
    }
    pool.sort_unstable();
    test.sort_unstable();
    (pool, test)
}

fn features(data: &Dataset, pool: &[usize], test: &[usize]) -> anyhow::Result<(Matrix, Matrix)> {
    let width = data.input.width();
    if !data.standardise {
        let rows = |idx: &[usize]| {
            Matrix::from_rows(
                width,
                &idx.iter().map(|&i| &data.rows[i]).collect::<Vec<_>>(),
            )
        };
        return Ok((rows(pool)?, rows(test)?));
    }
    let as_f64 = |i: usize| {
        data.rows[i]
            .iter()
            .map(|&v| f64::from(v))
            .collect::<Vec<f64>>()
    };
    let ids: Vec<String> = (0..data.rows.len())
        .map(|i| format!("row {}", i + 2))
        .collect();
    let scaler = Tabular::fit(pool.iter().map(|&i| (ids[i].as_str(), as_f64(i))))?;
    let rows = |idx: &[usize]| -> anyhow::Result<Matrix> {
        let r = idx
            .iter()
            .map(|&i| scaler.standardise(&ids[i], &as_f64(i)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Matrix::from_rows(scaler.width(), &r)?)
    };
    Ok((rows(pool)?, rows(test)?))
}

fn model_spec(args: &Args, data: &Dataset, query: Query) -> anyhow::Result<ModelSpec> {
    let classes = data.classes.len();
    let width = data.input.width();
    let spec = match args.model.as_str() {
        "linear" => {
            let default = if query.strategy.needs_passes() {
                0.2
            } else {
                0.0
            };
            ModelSpec {
                architecture: Architecture::Linear {
                    dropout: args.dropout.unwrap_or(default),
                },
                ..ModelSpec::linear(width, classes)
            }
        }
        "mlp" => ModelSpec::mlp(width, vec![128], args.dropout.unwrap_or(0.25), classes),
        "cnn" => {
            let Input::Image {
                channels,
                height,
                width,
            } = data.input
            else {
                bail!("--model cnn needs --images");
            };
            let mut spec = ModelSpec::cnn(channels, height, width, classes);
            if let (Some(p), Architecture::Cnn { dropout, .. }) =
                (args.dropout, &mut spec.architecture)
            {
                *dropout = p;
            }
            if let Architecture::Cnn {
                channels,
                hidden,
                standardise,
                ..
            } = &mut spec.architecture
            {
                if let Some(c) = &args.channels {
                    channels.clone_from(c);
                }
                *hidden = args.hidden.unwrap_or(*hidden);
                *standardise = args.standardise.unwrap_or(*standardise);
            }
            spec.validate()?;
            spec
        }
        other => bail!("unknown model {other:?}; use linear, mlp or cnn"),
    };
    if args.augment && !matches!(spec.input, Input::Image { .. }) {
        bail!("--augment flips and turns images; it needs --images and --model cnn");
    }
    if query.strategy.needs_passes() && !spec.has_dropout() {
        bail!("bald needs a model with dropout; set --dropout above 0");
    }
    Ok(spec)
}

fn diversity_space(args: &Args) -> DiversitySpace {
    args.diversity_space.unwrap_or(if args.model == "cnn" {
        DiversitySpace::Embedding
    } else {
        DiversitySpace::Input
    })
}

fn train_config(args: &Args) -> TrainConfig {
    let mut c = match args.model.as_str() {
        "linear" => TrainConfig::linear(),
        "cnn" => TrainConfig::cnn(),
        _ => TrainConfig {
            epochs: 100,
            batch_size: 32,
            learning_rate: 3e-3,
            validation_fraction: 0.0,
            ..TrainConfig::default()
        },
    };
    c.epochs = args.epochs.unwrap_or(c.epochs);
    c.min_steps = args.min_steps.unwrap_or(c.min_steps);
    c.l2 = args.l2.unwrap_or(c.l2);
    c.weight_decay = args.weight_decay.unwrap_or(c.weight_decay);
    c.learning_rate = args.learning_rate.unwrap_or(c.learning_rate);
    c.validation_fraction = args.validation_fraction.unwrap_or(c.validation_fraction);
    c.cosine_decay = args.cosine_decay.unwrap_or(c.cosine_decay);
    if args.augment {
        c.augment = Augment::FlipsAndTurns;
    }
    if c.validation_fraction > 0.0 && c.patience == 0 {
        c.patience = 10;
    }
    c
}

/// Mean and population standard deviation over seeds, per budget.
fn mean_std(curves: &[Vec<f64>], budgets: usize) -> (Vec<f64>, Vec<f64>) {
    let n = curves.len().max(1) as f64;
    let mean: Vec<f64> = (0..budgets)
        .map(|b| curves.iter().map(|c| c[b]).sum::<f64>() / n)
        .collect();
    let std = (0..budgets)
        .map(|b| (curves.iter().map(|c| (c[b] - mean[b]).powi(2)).sum::<f64>() / n).sqrt())
        .collect();
    (mean, std)
}

fn round(values: &[f64]) -> Vec<f64> {
    values
        .iter()
        .map(|v| (v * 10_000.0).round() / 10_000.0)
        .collect()
}
