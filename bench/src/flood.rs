//! `flood`: honest labelling while hostile peers flood (protocol: `../shared/BENCHMARKS.md`).
//!
//! One honest node (a whole [`Daemon`] in this process, learning off so that only the paths under
//! attack use the CPU) serves a dataset imported from `--csv`; an honest labeler records labels
//! through the node's HTTP API at `--rate` a second, first for `--seconds` without an attacker,
//! then for `--seconds` while an attacker floods. The attacker is a child process (this binary's
//! hidden `flood-attack` subcommand, [`attack`]) so that the peak memory measured is the node's:
//! `--peers` real libp2p peers on loopback, using `--keys` fresh annotator keys, publish label
//! records (valid signatures, half for samples of the manifest and half for samples that do not
//! exist), model updates with fresh weights, dataset announcements of fresh datasets, and label
//! sync requests, as fast as the node takes them. `--mode fresh-keys` sends every gossip message
//! from a new libp2p key (a fresh gossip source); `--mode sync` pushes valid records by fresh keys
//! through anti-entropy instead (every pull the node makes gets a full page of them). The JSON
//! gives the bound on what the node may store from all peers in the flood's time
//! (`docs/protocol.md`, *Quotas*) beside what it stored.

pub(crate) mod attack;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use libp2p::Multiaddr;
use swarmlabel_crdt::AnnotatorKey;
use swarmlabel_formats::import::{self, Format, Options as ImportOptions};
use swarmlabel_net::swarm;
use swarmlabel_node::daemon::{Daemon, Options};
use swarmlabel_store::dataset::DatasetId;
use swarmlabel_store::home::Home;
use swarmlabel_store::progress::NoProgress;

/// Arguments of `flood`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// A numeric CSV with a label column to import as the dataset (testdata/digits.csv).
    #[arg(long)]
    csv: PathBuf,
    /// Fresh annotator keys the attacker signs with.
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    /// Seconds of each phase (without, then with the flood).
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Honest labels a second.
    #[arg(long, default_value_t = 10)]
    rate: u32,
    /// Attacking libp2p peers.
    #[arg(long, default_value_t = 8)]
    peers: usize,
    /// `gossip`, `fresh-keys` (a new libp2p key for every gossip message) or `sync` (records
    /// pushed through anti-entropy).
    #[arg(long, default_value = "gossip")]
    mode: String,
}

pub(crate) fn run(args: Args) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(
        args.rate >= 1 && args.seconds >= 1,
        "--rate and --seconds must be positive"
    );
    let work = tempfile::tempdir().context("cannot create a working directory")?;
    let (home, identity) = Home::init(&work.path().join("node"), false)?;
    let labels: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    let mut opts = ImportOptions::new("flood", labels);
    opts.format = Format::Csv;
    let id = import::import(&home, &identity, &args.csv, &opts, &NoProgress)?.id;
    let samples_file = work.path().join("samples.txt");
    let samples = sample_ids(&home, id, &samples_file)?;
    // The honest labeler's samples, phase after phase; past the dataset's end it labels the
    // first ones again (a new record on its chain, as a labeler changing its mind makes).
    let needed = 3 * (args.rate as u64 * args.seconds) as usize;
    let samples: Vec<String> = samples.iter().cycle().take(needed).cloned().collect();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (daemon, addr) = start_node(&runtime, &home, id)?;
    let labeler = Labeler::of(&daemon, id);
    let per_phase = (args.rate as u64 * args.seconds) as usize;
    let pace = Duration::from_secs_f64(1.0 / f64::from(args.rate));

    eprintln!("phase 1: {per_phase} honest labels, no flood");
    let quiet = labeler.run(&samples[..per_phase], 0, pace)?;
    let busy = busy_phase(
        &labeler,
        &samples[per_phase..2 * per_phase],
        per_phase,
        pace,
        &args,
    )?;

    let disk_before = du(home.root());
    reset_peak_rss();
    let target = Target {
        addr: &addr,
        id,
        samples_file: &samples_file,
    };
    let attack = flood_phase(
        &args,
        &target,
        &labeler,
        &samples[2 * per_phase..3 * per_phase],
        2 * per_phase,
        pace,
    )?;
    let peak_rss_mb = crate::rss::peak_rss_mb();
    let disk_growth_bytes = du(home.root()).saturating_sub(disk_before);
    runtime.block_on(daemon.shutdown());

    let honest = identity.public_key();
    let stored = attacker_records(&home, id, honest)?;
    Ok(report(
        &args,
        &Measured {
            quiet,
            busy,
            attack,
            peak_rss_mb,
            disk_growth_bytes,
            stored,
        },
    ))
}

/// The dataset's sample ids (hex), page after page, also written one a line to `file` for the
/// attacker.
fn sample_ids(home: &Home, id: DatasetId, file: &Path) -> anyhow::Result<Vec<String>> {
    let catalog = swarmlabel_store::Catalog::of(home);
    let listed = catalog.get(&id)?;
    let samples: Vec<String> = (0..listed.root.root().pages.len())
        .map(|i| catalog.page(&listed, i))
        .collect::<Result<Vec<_>, _>>()?
        .iter()
        .flat_map(|p| p.samples.iter().map(|s| s.id.to_hex()))
        .collect();
    anyhow::ensure!(!samples.is_empty(), "the dataset has no samples");
    std::fs::write(file, samples.join("\n"))?;
    Ok(samples)
}

/// Starts the honest node serving dataset `id`, learning off; returns it with the address the
/// attacker dials.
fn start_node(
    runtime: &tokio::runtime::Runtime,
    home: &Home,
    id: DatasetId,
) -> anyhow::Result<(Daemon, Multiaddr)> {
    let mut options = Options::new(swarm::Config::loopback());
    options.serve = vec![id];
    options.learn = None;
    let daemon = runtime.block_on(Daemon::start(home.clone(), options))?;
    // The node holds the dataset's model registry as a learning node would (learning itself is
    // off: it would use the CPU the paths under attack need).
    runtime.block_on(daemon.models().open(id))?;
    let addr = runtime
        .block_on(daemon.node().listen_addrs())?
        .into_iter()
        .next()
        .context("the node listens nowhere")?
        .with(libp2p::multiaddr::Protocol::P2p(daemon.node().peer_id()));
    Ok((daemon, addr))
}

/// Phase 2: the honest labels of `samples` (request ids from `first`) while a child process
/// keeps one core busy.
fn busy_phase(
    labeler: &Labeler,
    samples: &[String],
    first: usize,
    pace: Duration,
    args: &Args,
) -> anyhow::Result<Vec<f64>> {
    // The attacker is a process on this machine and keeps one of its cores busy, which a remote
    // attacker would not: the same labels while a process only spins on one core measure what
    // that alone costs, so that the flood's own cost can be told apart.
    eprintln!(
        "phase 2: {} honest labels while one core is kept busy",
        samples.len()
    );
    let mut burner = Command::new(std::env::current_exe()?)
        .args(["flood-burn", &(args.seconds + 5).to_string()])
        .spawn()?;
    let busy = labeler.run(samples, first, pace);
    let _ = burner.kill();
    let _ = burner.wait();
    busy
}

/// What the attacker is told to flood.
struct Target<'a> {
    /// The honest node's address, ending in its peer id.
    addr: &'a Multiaddr,
    id: DatasetId,
    /// The dataset's sample ids, one a line.
    samples_file: &'a Path,
}

/// Phase 3's measures.
struct Attack {
    /// The honest labels' acknowledgement times (ms) during the flood.
    flooded: Vec<f64>,
    /// What the attacker says it sent.
    sent: serde_json::Value,
    /// From the attacker's first message until it exited.
    flood_s: f64,
}

/// Phase 3: the honest labels of `samples` (request ids from `first`) while the attacker floods
/// `target`.
fn flood_phase(
    args: &Args,
    target: &Target<'_>,
    labeler: &Labeler,
    samples: &[String],
    first: usize,
    pace: Duration,
) -> anyhow::Result<Attack> {
    eprintln!(
        "phase 3: {} honest labels while {} peers flood with {} keys",
        samples.len(),
        args.peers,
        args.keys
    );
    let mut attacker = Command::new(std::env::current_exe()?)
        .args([
            "flood-attack",
            "--addr",
            &target.addr.to_string(),
            "--dataset",
            &target.id.to_string(),
        ])
        .arg("--samples")
        .arg(target.samples_file)
        .args(["--keys", &args.keys.to_string()])
        .args(["--seconds", &(args.seconds + 5).to_string()])
        .args(["--peers", &args.peers.to_string()])
        .args(["--mode", &args.mode])
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = attacker.stdout.take().context("no attacker stdout")?;
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    // The attacker says when its peers are connected and subscribed.
    let ready = lines
        .next()
        .context("the attacker stopped before it started")??;
    anyhow::ensure!(ready == "attacking", "the attacker said {ready:?}");
    let flood_started = Instant::now();
    let flooded = labeler.run(samples, first, pace)?;
    let sent: serde_json::Value = match lines.next() {
        Some(line) => serde_json::from_str(&line?)?,
        None => serde_json::Value::Null,
    };
    let _ = attacker.wait();
    let flood_s = flood_started.elapsed().as_secs_f64();
    Ok(Attack {
        flooded,
        sent,
        flood_s,
    })
}

/// What the three phases measured.
struct Measured {
    /// Acknowledgement times (ms) without a flood.
    quiet: Vec<f64>,
    /// Acknowledgement times (ms) while one core was kept busy.
    busy: Vec<f64>,
    attack: Attack,
    peak_rss_mb: f64,
    disk_growth_bytes: u64,
    stored: Stored,
}

/// The JSON report of the run.
fn report(args: &Args, m: &Measured) -> serde_json::Value {
    let (p50, p99) = (
        crate::quantile::quantile(&m.quiet, 0.5),
        crate::quantile::quantile(&m.quiet, 0.99),
    );
    let (bp50, bp99) = (
        crate::quantile::quantile(&m.busy, 0.5),
        crate::quantile::quantile(&m.busy, 0.99),
    );
    let (fp50, fp99) = (
        crate::quantile::quantile(&m.attack.flooded, 0.5),
        crate::quantile::quantile(&m.attack.flooded, 0.99),
    );
    // What the node may take from all peers together in the flood's time, whatever their number.
    let limits = swarmlabel_node::labels::intake::Limits::default();
    let bound_records = limits.all.1 + limits.all.0 * m.attack.flood_s;
    serde_json::json!({
        "bench": "flood",
        "mode": args.mode,
        "keys": args.keys,
        "peers": args.peers,
        "seconds": args.seconds,
        "rate": args.rate,
        "ack_ms_p50": p50,
        "ack_ms_p99": p99,
        "flood_ack_ms_p50": fp50,
        "flood_ack_ms_p99": fp99,
        "ratio_p99": fp99 / p99,
        "busy_ack_ms_p50": bp50,
        "busy_ack_ms_p99": bp99,
        "ratio_p99_busy": fp99 / bp99,
        "peak_rss_mb": m.peak_rss_mb,
        "disk_growth_bytes": m.disk_growth_bytes,
        "attacker_records_stored": m.stored.labels,
        "flood_s": m.attack.flood_s,
        "bound_records": bound_records,
        "within_bound": (m.stored.labels as f64) <= bound_records,
        "attacker_model_updates_stored": m.stored.updates,
        "attacker_sent": m.attack.sent,
    })
}

/// The honest labeler: one label a `pace`, each on a new sample, acknowledgement times in ms.
struct Labeler {
    url: String,
    token: String,
    agent: ureq::Agent,
}

impl Labeler {
    /// The labeler of dataset `id` through `daemon`'s HTTP API.
    fn of(daemon: &Daemon, id: DatasetId) -> Labeler {
        let info = daemon.api_info();
        Labeler {
            url: format!("{}/api/v1/datasets/{id}/labels", info.url),
            token: info.token.clone(),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into(),
        }
    }

    /// Labels `samples`; request ids are numbered from `first` (each is accepted once a run).
    fn run(&self, samples: &[String], first: usize, pace: Duration) -> anyhow::Result<Vec<f64>> {
        let start = Instant::now();
        let mut acks = Vec::with_capacity(samples.len());
        for (i, sample) in samples.iter().enumerate() {
            // A steady pace: the i-th label is due at i x pace, however long the last one took.
            let due = start + pace * i as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let label = (i % 10).to_string();
            let sent = Instant::now();
            let mut response = self
                .agent
                .post(&self.url)
                .header("Authorization", format!("Bearer {}", self.token))
                .header(
                    "X-Request-Id",
                    format!("flood-{}-{}", std::process::id(), first + i),
                )
                .send_json(serde_json::json!({ "sample": sample, "label": label }))?;
            let took = sent.elapsed().as_secs_f64() * 1e3;
            anyhow::ensure!(
                response.status().is_success(),
                "the node refused an honest label: {}",
                response.body_mut().read_to_string().unwrap_or_default()
            );
            acks.push(took);
        }
        Ok(acks)
    }
}

/// Bytes of the files under `dir`.
fn du(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => du(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// Resets this process's peak RSS (`VmHWM`) to its current RSS, where Linux allows it.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

struct Stored {
    labels: usize,
    updates: usize,
}

/// What of the attacker's the node kept: labels by any other key than the honest one (read as
/// the node reads them: valid, of samples of the manifest), and model updates of other peers.
fn attacker_records(home: &Home, id: DatasetId, honest: AnnotatorKey) -> anyhow::Result<Stored> {
    let catalog = swarmlabel_store::Catalog::of(home);
    let listed = catalog.get(&id)?;
    let root = listed.root.root();
    let dataset = swarmlabel_node::labels::LabelStore::crdt_dataset(
        &id,
        root.labels.len(),
        root.sample_count,
    );
    let samples = swarmlabel_node::labels::samples_of(&catalog, &listed)?;
    let (mut store, _) = swarmlabel_node::labels::LabelStore::open_with(
        home,
        dataset,
        Some(std::sync::Arc::new(samples)),
    )?;
    let labels = store
        .read()
        .annotations
        .iter()
        .filter(|a| a.annotation().annotator != honest)
        .count();
    let (registry, _) = swarmlabel_node::models::store::load(home, id)?;
    let updates = registry
        .records()
        .iter()
        .filter(|r| r.update().peer != honest)
        .count();
    Ok(Stored { labels, updates })
}

/// Spins one thread for `seconds` (the `flood-burn` child).
pub(crate) fn burn(seconds: u64) -> serde_json::Value {
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut x = 0u64;
    while Instant::now() < until {
        for _ in 0..100_000 {
            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        }
    }
    serde_json::json!({ "burned_s": seconds, "x": x % 2 })
}
