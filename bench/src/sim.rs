//! `sim`: the whole network learning together (BENCHMARKS.md, `sim`), and a budget-planning
//! tool for data owners: how accurate will the shared model be after N labels, with this many
//! volunteers, this noise and this redundancy?
//!
//! Real nodes in one process: an owner imports the pool part of the CSV *without* its label
//! column (so no gold label leaks into the consensus) and serves it; `--nodes` volunteers fetch it
//! over libp2p on loopback, hold its labels (gossip and anti-entropy), and each runs the node's
//! learning loop (`swarmlabel_node::learn::Learner`) with a simulated labeler that answers the
//! loop's picks from the label column, wrong with probability `--noise`. Total labels across the
//! network are the budget; at each budget every node's merged model is scored on the held-out
//! test part, beside a centralised learner (same strategy, model and initial weights, same run).
//!
//! The models travel through each node's models service over libp2p (`--exchange network`, the
//! default) or one in-process `learn::exchange::LocalExchange` (`--exchange local`: no model
//! traffic, so `converge_s` is `null`). `converge_s` is the longest, over budgets, time from the
//! moment every node had trained on all labels (its last update) until all held one merged model.

mod central;
mod network;
mod spam;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, ensure};
use clap::Args as ClapArgs;
use rand::SeedableRng as _;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use swarmlabel_active_learning::{Extractor as _, Matrix, Model, Query};
use swarmlabel_crdt::SampleId;
use swarmlabel_node::learn::seed_of;
use swarmlabel_store::dataset::manifest::encode_row;

use crate::al::{Dataset, read_csv, stratified_split};

/// Flags of `swarmlabel-bench sim`.
#[derive(Debug, ClapArgs)]
pub(crate) struct Args {
    /// CSV file with numeric columns and a label column.
    #[arg(long)]
    csv: PathBuf,
    /// The label column.
    #[arg(long, default_value = "label")]
    label_column: String,
    /// Volunteer nodes (each with one simulated labeler).
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// Total labels across the network at which accuracy is measured.
    #[arg(long, value_delimiter = ',', default_value = "50,100,200,300")]
    budgets: Vec<usize>,
    /// Probability that a simulated labeler answers a wrong label (uniform over the others).
    #[arg(long, default_value_t = 0.0)]
    noise: f64,
    /// Labels wanted per sample (the owner's redundancy target).
    #[arg(long, default_value_t = 1)]
    redundancy: u32,
    /// Seed of the split, the labelers' noise and the centralised learner.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Query strategy of the nodes and of the centralised learner.
    #[arg(long, default_value = "margin")]
    strategy: String,
    /// Fraction of each class held out as the test set.
    #[arg(long, default_value_t = 0.28)]
    test_fraction: f64,
    /// Random labels before the strategy is trusted (network: usable labels; centralised:
    /// the initial draw).
    #[arg(long, default_value_t = 10)]
    initial: usize,
    /// Picks per round of the centralised learner.
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Connections each volunteer dials: to the next `degree / 2` volunteers in a ring and to
    /// `degree / 2` others at random (a small world: every volunteer reaches every other in a few
    /// hops, as gossip needs). At least `nodes - 1` makes a full mesh, as all runs up to 30 nodes
    /// were before; 100 nodes in a full mesh spend both cores on connection upkeep.
    #[arg(long, default_value_t = 8)]
    degree: usize,
    /// How models travel: `network` (the node's models service over libp2p) or `local` (one
    /// in-process exchange; no model traffic, converge_s meaningless).
    #[arg(long, default_value = "network")]
    exchange: String,
    /// Volunteers whose labeler answers a label drawn at random, whatever the sample.
    #[arg(long, default_value_t = 0)]
    spammers: usize,
    /// Volunteers whose labeler always answers one label.
    #[arg(long, default_value_t = 0)]
    fixed: usize,
}

pub(crate) fn run(args: Args) -> anyhow::Result<serde_json::Value> {
    let query = Query::parse(&args.strategy)?;
    let budgets = checked_budgets(&args)?;
    let data = read_csv(&args.csv, &args.label_column)?;
    let classes: Vec<String> = data.classes.names().to_vec();
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let (pool_idx, test_idx) = stratified_split(&data.labels, args.test_fraction, &mut rng);
    let truth = truth_of(&data, &pool_idx)?;
    let work = tempfile::tempdir()?;
    let pool_csv = work.path().join("pool.csv");
    write_pool(&data, &pool_idx, &pool_csv)?;
    eprintln!(
        "sim: {} pool rows ({} distinct samples), {} test rows, {} nodes, noise {}, redundancy {}",
        pool_idx.len(),
        truth.len(),
        test_idx.len(),
        args.nodes,
        args.noise,
        args.redundancy
    );

    let start = Instant::now();
    let setup = network::Setup {
        work: work.path().to_owned(),
        pool_csv,
        classes: classes.clone(),
        nodes: args.nodes,
        degree: args.degree,
        redundancy: args.redundancy,
        query,
        initial: args.initial as u64,
        noise: args.noise,
        seed: args.seed,
        network_models: args.exchange == "network",
        kinds: spam::Kind::assign(args.nodes, args.spammers, args.fixed, classes.len()),
    };
    let test_y: Vec<usize> = test_idx.iter().map(|&i| data.labels[i]).collect();
    let outcome = run_network(&setup, &truth, &budgets, &data, &test_idx, &test_y)?;
    let network_s = start.elapsed().as_secs_f64();

    let centralized = centralised(
        &args,
        query,
        &outcome,
        &truth,
        classes.len(),
        &test_y,
        &budgets,
    )?;
    let accuracy_mean: Vec<f64> = outcome
        .checkpoints
        .iter()
        .map(|c| c.accuracy.iter().sum::<f64>() / c.accuracy.len() as f64)
        .collect();
    eprintln!("sim: network {accuracy_mean:.3?}, centralised {centralized:.3?}");
    let screening = screening_report(&budgets, &setup.kinds, &outcome, &test_y)?;
    report(
        &args,
        &Measured {
            budgets: &budgets,
            query,
            outcome: &outcome,
            accuracy_mean: &accuracy_mean,
            centralized: &centralized,
            screening,
            test_samples: test_idx.len(),
            network_s,
            start,
        },
    )
}

/// The budgets sorted without repeats, once every flag is checked.
fn checked_budgets(args: &Args) -> anyhow::Result<Vec<usize>> {
    let mut budgets = args.budgets.clone();
    budgets.sort_unstable();
    budgets.dedup();
    ensure!(
        !budgets.is_empty() && budgets[0] > 0,
        "--budgets needs positive numbers"
    );
    ensure!(args.nodes >= 1, "--nodes must be at least 1");
    ensure!(args.degree >= 2, "--degree must be at least 2");
    ensure!(
        (0.0..1.0).contains(&args.noise),
        "--noise must be in [0, 1)"
    );
    ensure!(args.redundancy >= 1, "--redundancy must be at least 1");
    ensure!(
        args.spammers + args.fixed < args.nodes,
        "--spammers and --fixed together must leave at least one honest volunteer"
    );
    ensure!(
        args.exchange == "network" || args.exchange == "local",
        "--exchange is network or local"
    );
    Ok(budgets)
}

/// Row `i` as the owner's CSV writes it.
fn text(data: &Dataset, i: usize) -> Vec<String> {
    data.rows[i].iter().map(|v| v.to_string()).collect()
}

/// Row `i` as the owner's import reads it back from the CSV.
fn values(data: &Dataset, i: usize) -> anyhow::Result<Vec<f64>> {
    text(data, i)
        .iter()
        .map(|t| t.parse::<f64>().context("a written value reads back"))
        .collect()
}

/// The true class of each pool row, by the sample id the row becomes.
fn truth_of(data: &Dataset, pool_idx: &[usize]) -> anyhow::Result<HashMap<SampleId, usize>> {
    let mut truth: HashMap<SampleId, usize> = HashMap::new();
    for &i in pool_idx {
        let id = SampleId(*blake3::hash(&encode_row(&values(data, i)?)).as_bytes());
        truth.entry(id).or_insert(data.labels[i]);
    }
    Ok(truth)
}

/// Writes the pool rows to `path` without their label column.
fn write_pool(data: &Dataset, pool_idx: &[usize], path: &Path) -> anyhow::Result<()> {
    let width = data.rows[0].len();
    let mut w = csv::Writer::from_path(path)?;
    w.write_record((0..width).map(|c| format!("f{c}")))?;
    for &i in pool_idx {
        w.write_record(text(data, i))?;
    }
    w.flush()?;
    Ok(())
}

/// Runs the simulated network on a runtime of its own, its merged models scored on the test rows
/// standardised as its pool is.
fn run_network(
    setup: &network::Setup,
    truth: &HashMap<SampleId, usize>,
    budgets: &[usize],
    data: &Dataset,
    test_idx: &[usize],
    test_y: &[usize],
) -> anyhow::Result<network::Outcome> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(network::run(
        setup,
        truth,
        budgets,
        |pool| {
            let scaler = pool
                .scaler
                .as_ref()
                .context("a CSV pool has a standardisation")?;
            let mut rows = Vec::with_capacity(test_idx.len());
            for &i in test_idx {
                rows.push(scaler.standardise(format_args!("test row {i}"), &values(data, i)?)?);
            }
            Ok(Matrix::from_rows(scaler.width(), &rows)?)
        },
        test_y,
    ))
}

/// The centralised learner's test accuracy at each budget, on the same pool rows, model and
/// initial weights as the network, its oracle as noisy as the labelers.
fn centralised(
    args: &Args,
    query: Query,
    outcome: &network::Outcome,
    truth: &HashMap<SampleId, usize>,
    classes: usize,
    test_y: &[usize],
    budgets: &[usize],
) -> anyhow::Result<Vec<f64>> {
    let pool = &outcome.pool;
    let mut oracle = ChaCha8Rng::seed_from_u64(args.seed ^ 0xce47);
    let answers: Vec<usize> = pool
        .ids
        .iter()
        .map(|id| network::answer(truth[id], classes, args.noise, &mut oracle))
        .collect();
    let central = central::Central {
        pool: &pool.features,
        answers: &answers,
        test_x: &outcome.test_x,
        test_y,
        spec: &pool.spec,
        seed: seed_of(&outcome.dataset),
        query,
        initial: args.initial,
        batch: args.batch,
    };
    central.curve(budgets, &mut ChaCha8Rng::seed_from_u64(args.seed))
}

/// What the run measured, as the report needs it.
struct Measured<'a> {
    budgets: &'a [usize],
    query: Query,
    outcome: &'a network::Outcome,
    /// Mean test accuracy of the volunteers' merged models at each budget.
    accuracy_mean: &'a [f64],
    centralized: &'a [f64],
    screening: serde_json::Value,
    test_samples: usize,
    network_s: f64,
    /// When the network started.
    start: Instant,
}

/// The JSON report of the run.
fn report(args: &Args, m: &Measured<'_>) -> anyhow::Result<serde_json::Value> {
    let outcome = m.outcome;
    let last = outcome.checkpoints.last().context("no checkpoint")?;
    let gap: Vec<f64> = m
        .accuracy_mean
        .iter()
        .zip(m.centralized)
        .map(|(n, c)| round(n - c))
        .collect();
    Ok(json!({
        "bench": "sim",
        "data": args.csv.file_name().map(|n| n.to_string_lossy().into_owned()),
        "nodes": args.nodes,
        "degree": args.degree.min(args.nodes.saturating_sub(1)),
        "budgets": m.budgets,
        "accuracy_mean": m.accuracy_mean.iter().map(|&a| round(a)).collect::<Vec<_>>(),
        "centralized_accuracy": m.centralized.iter().map(|&a| round(a)).collect::<Vec<_>>(),
        "network_minus_centralized": gap,
        "accuracy_min": outcome.checkpoints.iter()
            .map(|c| round(c.accuracy.iter().copied().fold(f64::INFINITY, f64::min)))
            .collect::<Vec<_>>(),
        "duplicate_rate": round(last.duplicate_rate),
        "duplicate_rate_per_budget": outcome.checkpoints.iter()
            .map(|c| round(c.duplicate_rate)).collect::<Vec<_>>(),
        "samples_labelled": outcome.checkpoints.iter()
            .map(|c| c.samples_labelled).collect::<Vec<_>>(),
        "fallback_picks": outcome.fallback_picks,
        "distinct_merged_models": outcome.checkpoints.iter()
            .map(|c| c.distinct_models).collect::<Vec<_>>(),
        "converge_s": if args.exchange == "network" {
            json!(round(outcome.checkpoints.iter().map(|c| c.converge_s).fold(0.0, f64::max)))
        } else {
            serde_json::Value::Null
        },
        "converge_s_per_budget": outcome.checkpoints.iter()
            .map(|c| round(c.converge_s)).collect::<Vec<_>>(),
        "model_exchange": args.exchange,
        "refused_merges": outcome.refused_merges,
        "bytes_per_node": outcome.bytes_per_node,
        "settle_s": outcome.checkpoints.iter().map(|c| round(c.settle_s)).collect::<Vec<_>>(),
        "noise": args.noise,
        "redundancy": args.redundancy,
        "strategy": m.query.name(),
        "model": "linear",
        "seed": args.seed,
        "test_samples": m.test_samples,
        "pool_samples": outcome.pool.ids.len(),
        "network_s": round(m.network_s),
        "wall_s": round(m.start.elapsed().as_secs_f64()),
        "screening": m.screening,
    }))
}

/// Whom the screening flagged at each budget, against who the spammers were; and a model trained
/// on the network's final consensus with and without the annotators flagged at the last budget.
fn screening_report(
    budgets: &[usize],
    kinds: &[spam::Kind],
    outcome: &network::Outcome,
    test_y: &[usize],
) -> anyhow::Result<serde_json::Value> {
    let spammers: Vec<usize> = (0..kinds.len())
        .filter(|&i| kinds[i] != spam::Kind::Honest)
        .collect();
    let flagged_at: Vec<serde_json::Value> = spammers
        .iter()
        .map(|i| {
            outcome
                .checkpoints
                .iter()
                .zip(budgets)
                .find(|(c, _)| c.flagged.contains(i))
                .map_or(serde_json::Value::Null, |(_, b)| json!(b))
        })
        .collect();
    let last = outcome.checkpoints.last().context("no checkpoint")?;
    let true_flags = last.flagged.iter().filter(|i| spammers.contains(i)).count();
    let banned: std::collections::HashSet<_> =
        last.flagged.iter().map(|&i| outcome.members[i]).collect();
    // The same volunteers' merged models before the ban, for a like-for-like comparison.
    let kept: Vec<f64> = last
        .accuracy
        .iter()
        .enumerate()
        .filter(|(i, _)| !last.flagged.contains(i))
        .map(|(_, a)| *a)
        .collect();
    let not_banned = kept.iter().sum::<f64>() / kept.len().max(1) as f64;
    let seed = seed_of(&outcome.dataset);
    let all = spam::consensus_accuracy(
        &outcome.annotations,
        &Default::default(),
        &outcome.pool,
        seed,
        &outcome.test_x,
        test_y,
    )?;
    let without = spam::consensus_accuracy(
        &outcome.annotations,
        &banned,
        &outcome.pool,
        seed,
        &outcome.test_x,
        test_y,
    )?;
    eprintln!(
        "sim: screening flagged {:?} of spammers {spammers:?}; consensus model {all:.3}, without the flagged {without:.3}",
        last.flagged
    );
    Ok(json!({
        "spammers": spammers,
        "kinds": kinds.iter().map(|k| format!("{k:?}")).collect::<Vec<_>>(),
        "flagged_per_budget": outcome.checkpoints.iter().map(|c| &c.flagged).collect::<Vec<_>>(),
        "spammer_first_flagged_at_budget": flagged_at,
        "honest_flagged_per_budget": outcome.checkpoints.iter()
            .map(|c| c.flagged.iter().filter(|i| !spammers.contains(i)).count())
            .collect::<Vec<_>>(),
        "precision": if last.flagged.is_empty() { json!(null) }
            else { json!(round(true_flags as f64 / last.flagged.len() as f64)) },
        "recall": if spammers.is_empty() { json!(null) }
            else { json!(round(true_flags as f64 / spammers.len() as f64)) },
        "consensus_model_accuracy_all": round(all),
        "consensus_model_accuracy_flagged_banned": round(without),
        "network_accuracy_not_banned": round(not_banned),
        "network_accuracy_flagged_banned": outcome.banned_accuracy.as_ref()
            .map(|a| round(a.iter().sum::<f64>() / a.len().max(1) as f64)),
    }))
}

fn round(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// Test accuracy of a safetensors model.
fn accuracy(bytes: &[u8], x: &Matrix, y: &[usize]) -> anyhow::Result<f64> {
    Ok(Model::from_safetensors_bytes(bytes)?.accuracy(x, y)?)
}

/// Labels beyond the redundancy target over all labels.
fn duplicate_rate(votes: &HashMap<SampleId, u32>, redundancy: u32) -> f64 {
    let total: u32 = votes.values().sum();
    let extra: u32 = votes.values().map(|&v| v.saturating_sub(redundancy)).sum();
    if total == 0 {
        0.0
    } else {
        f64::from(extra) / f64::from(total)
    }
}
