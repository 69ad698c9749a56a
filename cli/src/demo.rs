//! `swarmlabel demo`: a whole network in one process, on loopback, with nothing to download.
//!
//! It draws the shapes dataset (with no gold labels: the answers stay with the simulated
//! labelers), and starts a bootstrap peer, a data owner's node serving the dataset, a few
//! volunteer nodes whose simulated humans label through their node's API at a human-like pace,
//! and the user's own node with its labeling page. Every node runs the real stack: libp2p,
//! label CRDTs synced between nodes, a learning loop per node, models gossiped and merged.
//! Progress is the test accuracy of the user's merged model on held-out images that are not in
//! the dataset. `--headless` lets the user's node answer too, stops after `--labels` labels and
//! prints the learning progress.

use crate::output::out;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use libp2p::Multiaddr;
use swarmlabel_active_learning::Model;
use swarmlabel_crdt::SampleId;
use swarmlabel_formats::import::{self, Format};
use swarmlabel_formats::shapes;
use swarmlabel_net::swarm as net;
use swarmlabel_node::daemon::{Daemon, Options};
use swarmlabel_node::learn::{self, features};
use swarmlabel_store::dataset::manifest::{MediaType, Task};
use swarmlabel_store::{DatasetId, Home};

use crate::args::DemoArgs;
use crate::client::Client;
use crate::progress::Bar;
use crate::run::StopSignals;

/// Images of the held-out test set, drawn apart from the dataset's.
const TEST_IMAGES: usize = 400;
/// Where the test images' indices start (the dataset's are `0..samples`).
const TEST_OFFSET: u64 = 1 << 40;

pub(crate) fn run(args: DemoArgs) -> anyhow::Result<()> {
    if args.samples < 8 {
        bail!("--samples must be at least 8 (two images per shape)");
    }
    let temp;
    let dir = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            if std::fs::read_dir(dir)?.next().is_some() {
                bail!(
                    "{} is not empty; give --dir a new folder (the demo never overwrites files)",
                    dir.display()
                );
            }
            dir.clone()
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("swarmlabel-demo-")
                .tempdir()
                .context("cannot create a temporary folder for the demo")?;
            temp.path().to_owned()
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(demo(args, dir))
}

/// The answer key: each sample's true label, by sample id (BLAKE3 of the image's bytes).
type Answers = Arc<HashMap<SampleId, &'static str>>;

async fn demo(args: DemoArgs, dir: PathBuf) -> anyhow::Result<()> {
    out!("demo folder: {}", dir.display());
    let images = dir.join("shapes");
    let answers = Arc::new(draw_dataset(&images, args.samples, args.seed)?);
    let owner_home = init_home(&dir.join("owner"))?;
    let labels: Vec<String> = shapes::CLASSES.iter().map(|c| (*c).to_owned()).collect();
    let id = import_shapes(&owner_home, &images, &labels)?;
    out!(
        "dataset {id}: {} shapes to label as {}",
        args.samples,
        labels.join(", ")
    );
    let network = Network::start(&args, &dir, owner_home, id).await?;

    let test = test_set(id, &labels, args.seed)?;
    // Listen for Ctrl-C and SIGTERM before the address is out: a stop that comes at any moment
    // after it (even while the demo evaluates a model) must clean up, not be missed or kill.
    let mut signals = StopSignals::install();
    let labelers = Labelers::spawn(&args, &network, id, &answers);
    if !args.headless {
        out!();
        out!("label here: {}", network.user.api_info().page);
        out!("(keys 1-4 label, Backspace undoes; Ctrl-C stops the demo)");
        out!();
    }

    let started = Instant::now();
    let mut nodes = vec![&network.user];
    nodes.extend(network.volunteers.iter());
    let outcome = if args.headless {
        let (labelled, budget) = (&labelers.labelled, &labelers.budget);
        checkpoints(&args, &nodes, id, &test, labelled, budget, &mut signals).await
    } else {
        report_progress(&network.user, id, &test, &labelers.labelled, &mut signals).await
    };
    let labelled = labelers.stop().await;
    match outcome {
        Ok(Some((accuracy, peers))) => out!(
            "final: {} labels in {:.0} s; test accuracy of the merged model ({} peers): {} on {TEST_IMAGES} held-out images (chance {:.2})",
            labelled,
            started.elapsed().as_secs_f64(),
            peers,
            accuracy.map_or("none".to_owned(), |a| format!("{a:.3}")),
            1.0 / labels.len() as f64,
        ),
        Ok(None) => {}
        Err(e) => {
            network.shutdown().await;
            return Err(e);
        }
    }
    network.shutdown().await;
    out!("demo stopped");
    Ok(())
}

/// Imports the images drawn into `images` as the owner's dataset, to be labelled as `labels`.
fn import_shapes(owner_home: &Home, images: &Path, labels: &[String]) -> anyhow::Result<DatasetId> {
    let identity = owner_home.identity()?;
    let mut options = import::Options::new("shapes (demo)", labels.to_vec());
    options.format = Format::Images;
    let report = import::import(owner_home, &identity, images, &options, &Bar::new(true))
        .context("cannot import the demo's images")?;
    Ok(report.id)
}

/// The demo's nodes: the bootstrap peer, the data owner's, the volunteers' and the user's.
struct Network {
    bootstrap: swarmlabel_bootstrap::Bootstrap,
    owner: Daemon,
    volunteers: Vec<Daemon>,
    user: Daemon,
    user_home: Home,
}

impl Network {
    /// Starts the bootstrap peer, the owner's node serving dataset `id`, the volunteers' nodes
    /// and the user's (with `--api`), the last two joining `id` and learning, homes under `dir`.
    async fn start(
        args: &DemoArgs,
        dir: &Path,
        owner_home: Home,
        id: DatasetId,
    ) -> anyhow::Result<Network> {
        let quiet = args.headless;
        let (bootstrap, net_config) = start_bootstrap(quiet).await?;
        let mut owner_options = Options::new(net_config.clone());
        owner_options.serve = vec![id];
        owner_options.learn = None;
        let owner = Daemon::start(owner_home, owner_options).await?;
        say(
            quiet,
            &format!("data owner's node: {}", owner.node().peer_id()),
        );

        let mut volunteers = Vec::new();
        for k in 0..args.volunteers {
            let home = init_home(&dir.join(format!("volunteer-{}", k + 1)))?;
            let mut options = Options::new(net_config.clone());
            options.join = vec![id];
            options.learn = Some(learn_config());
            volunteers.push(Daemon::start(home, options).await?);
        }
        let user_home = init_home(&dir.join("you"))?;
        let mut options = Options::new(net_config.clone());
        options.join = vec![id];
        options.api = args.api;
        options.learn = Some(learn_config());
        let user = Daemon::start(user_home.clone(), options).await?;
        say(
            quiet,
            &format!(
                "{} simulated volunteers label at one sample every {} ms",
                args.volunteers, args.pace_ms
            ),
        );
        Ok(Network {
            bootstrap,
            owner,
            volunteers,
            user,
            user_home,
        })
    }

    /// Shuts the user's node down, then the volunteers', the owner's and the bootstrap peer.
    async fn shutdown(self) {
        self.user.shutdown().await;
        for v in self.volunteers {
            v.shutdown().await;
        }
        self.owner.shutdown().await;
        self.bootstrap.shutdown().await;
    }
}

/// Starts the bootstrap peer on loopback; returns it with the nodes' network configuration.
async fn start_bootstrap(
    quiet: bool,
) -> anyhow::Result<(swarmlabel_bootstrap::Bootstrap, net::Config)> {
    let bootstrap = swarmlabel_bootstrap::Bootstrap::start(
        libp2p::identity::Keypair::generate_ed25519(),
        swarmlabel_bootstrap::Config {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse()?],
            listen_addrs_reachable: true,
            ..swarmlabel_bootstrap::Config::default()
        },
    )
    .await?;
    // Its listen addresses may already end in `/p2p/<id>`: `with_p2p` adds it only if missing.
    let bootstrap_addr: Multiaddr = bootstrap
        .listen_addrs()
        .first()
        .context("the bootstrap peer has no address")?
        .clone()
        .with_p2p(bootstrap.peer_id())
        .map_err(|a| anyhow::anyhow!("the bootstrap address {a} names another peer"))?;
    say(quiet, &format!("bootstrap peer: {bootstrap_addr}"));
    let net_config = net::Config {
        bootstrap: vec![bootstrap_addr],
        ..net::Config::loopback()
    };
    Ok((bootstrap, net_config))
}

/// The simulated humans and what they share: the stop flag, the labels given so far and the
/// budget they stop at.
struct Labelers {
    stop: Arc<AtomicBool>,
    labelled: Arc<AtomicU64>,
    budget: Arc<AtomicU64>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Labelers {
    /// One simulated human per volunteer at `--pace-ms`, and with `--headless` one on the user's
    /// node too (at most 50 ms a label).
    fn spawn(args: &DemoArgs, network: &Network, id: DatasetId, answers: &Answers) -> Labelers {
        let stop = Arc::new(AtomicBool::new(false));
        let labelled = Arc::new(AtomicU64::new(0));
        // Labelers stop at the budget; headless runs raise it checkpoint by checkpoint.
        let budget = Arc::new(AtomicU64::new(if args.headless { 0 } else { u64::MAX }));
        let mut handles = Vec::new();
        let pace = Duration::from_millis(args.pace_ms);
        let mut homes: Vec<(Home, Duration)> = network
            .volunteers
            .iter()
            .map(|v| (v.node().home().clone(), pace))
            .collect();
        if args.headless {
            let pace = Duration::from_millis(args.pace_ms.min(50));
            homes.push((network.user_home.clone(), pace));
        }
        for (home, pace) in homes {
            handles.push(spawn_labeler(
                home,
                id,
                answers.clone(),
                pace,
                stop.clone(),
                labelled.clone(),
                budget.clone(),
            ));
        }
        Labelers {
            stop,
            labelled,
            budget,
            handles,
        }
    }

    /// Stops the labelers and waits for them; returns the labels they gave.
    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        for l in self.handles {
            let _ = l.await;
        }
        self.labelled.load(Ordering::SeqCst)
    }
}

/// The learning loop of the demo's nodes: the shapes are the same shape flipped or turned, so
/// the demo (which knows its data) trains with flips and turns; half the picks are random,
/// which made margin sampling beat random picks at every budget on shapes (`swarmlabel-bench
/// al`, docs/benchmarks.md); and several nodes share two cores here, so each retrains after 20
/// new labels or 2 s without one, not after every label.
fn learn_config() -> learn::Config {
    let mut query =
        swarmlabel_active_learning::Query::new(swarmlabel_active_learning::Strategy::Margin);
    query.explore_percent = 50;
    learn::Config {
        query,
        augment_images: swarmlabel_active_learning::Augment::FlipsAndTurns,
        plan: learn::plan::Config {
            debounce_ms: 2_000,
            max_pending: 20,
            min_labels: 1,
        },
        ..learn::Config::default()
    }
}

fn say(quiet: bool, line: &str) {
    if !quiet {
        out!("{line}");
    }
}

fn init_home(path: &Path) -> anyhow::Result<Home> {
    let (home, _) = Home::init(path, false)?;
    Ok(home)
}

/// Draws `count` shapes into `out` (one flat folder: no gold labels) and returns the answers.
fn draw_dataset(
    out: &Path,
    count: usize,
    seed: u64,
) -> anyhow::Result<HashMap<SampleId, &'static str>> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut answers = HashMap::with_capacity(count);
    for i in 0..count {
        let class = i % shapes::CLASSES.len();
        let png = shapes::encode_png(&shapes::draw(seed, i as u64, class));
        answers.insert(
            SampleId(*blake3::hash(&png).as_bytes()),
            shapes::CLASSES[class],
        );
        let path = out.join(format!("{i:06}.png"));
        std::fs::write(&path, png).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(answers)
}

/// Held-out images (not in the dataset) and their classes, as the nodes' models see them.
struct TestSet {
    pool: features::PoolFeatures,
    labels: Vec<usize>,
}

fn test_set(id: DatasetId, labels: &[String], seed: u64) -> anyhow::Result<TestSet> {
    let mut samples = Vec::with_capacity(TEST_IMAGES);
    let mut classes = Vec::with_capacity(TEST_IMAGES);
    for i in 0..TEST_IMAGES {
        let class = i % shapes::CLASSES.len();
        let png = shapes::encode_png(&shapes::draw(seed, TEST_OFFSET + i as u64, class));
        samples.push((
            SampleId(*blake3::hash(&png).as_bytes()),
            MediaType::Png,
            png,
        ));
        classes.push(class);
    }
    let pool = features::from_samples(id, &Task::ImageClassification, labels, &samples)?;
    let labels = pool
        .ids
        .iter()
        .map(|s| {
            let i = samples
                .iter()
                .position(|(t, _, _)| t == s)
                .expect("invariant: every pool row is one of the samples");
            classes[i]
        })
        .collect();
    Ok(TestSet { pool, labels })
}

/// A simulated human: asks its node for the next sample, answers from the key, waits `pace`.
fn spawn_labeler(
    home: Home,
    id: DatasetId,
    answers: Answers,
    pace: Duration,
    stop: Arc<AtomicBool>,
    labelled: Arc<AtomicU64>,
    budget: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        let client = match Client::connect(&home) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("a simulated labeler cannot reach its node: {e:#}");
                return;
            }
        };
        // What this labeler answered: never answered twice (the node's queue may offer a sample
        // again before its ranking has caught up with the label), the latest sent as `exclude`.
        let mut answered: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        while !stop.load(Ordering::SeqCst) {
            let exclude = answered
                .iter()
                .rev()
                .take(64)
                .cloned()
                .collect::<Vec<_>>()
                .join(",");
            let queue: anyhow::Result<Vec<serde_json::Value>> = client.get(&format!(
                "/api/v1/datasets/{id}/queue?n=4&exclude={exclude}"
            ));
            let sample = match queue {
                Ok(picks) => picks
                    .iter()
                    .filter_map(|p| p["sample"].as_str())
                    .find(|s| !seen.contains(*s))
                    .map(str::to_owned),
                // The join is still fetching the dataset: try again shortly.
                Err(_) => None,
            };
            let Some(sample) = sample else {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            };
            let Some(answer) = sample
                .parse::<swarmlabel_store::store::BlobId>()
                .ok()
                .and_then(|b| answers.get(&b))
            else {
                eprintln!("a simulated labeler got a sample it has no answer for: {sample}");
                return;
            };
            // Take a ticket before labelling, so the network stops at the budget exactly.
            if labelled.fetch_add(1, Ordering::SeqCst) >= budget.load(Ordering::SeqCst) {
                labelled.fetch_sub(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            let body = serde_json::json!({ "sample": sample, "label": answer });
            match client.post::<serde_json::Value>(&format!("/api/v1/datasets/{id}/labels"), body) {
                Ok(_) => {
                    seen.insert(sample.clone());
                    answered.push(sample);
                }
                Err(e) => {
                    labelled.fetch_sub(1, Ordering::SeqCst);
                    eprintln!("a simulated labeler's label was refused: {e:#}");
                }
            }
            std::thread::sleep(pace);
        }
    })
}

/// With a human: prints progress every few seconds while labels come in, until Ctrl-C.
async fn report_progress(
    user: &Daemon,
    id: DatasetId,
    test: &TestSet,
    labelled: &AtomicU64,
    signals: &mut StopSignals,
) -> anyhow::Result<Option<(Option<f64>, usize)>> {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    let mut shown = None;
    loop {
        tokio::select! {
            () = signals.recv() => {
                out!("stopping");
                return Ok(None);
            }
            _ = tick.tick() => {}
        }
        let (accuracy, peers) = evaluate(user, id, test).await;
        let you = user.learner(id).map(|l| l.progress()).unwrap_or_default();
        let line = format!(
            "network labels {} (the volunteers' {}); {} training rounds on your node; merged model of {peers} peers: test accuracy {}",
            you.annotations,
            labelled.load(Ordering::SeqCst),
            you.history.len(),
            accuracy.map_or("-".to_owned(), |a| format!("{a:.3}")),
        );
        if shown.as_ref() != Some(&line) {
            out!("{line}");
            shown = Some(line);
        }
    }
}

/// Without a human: the network labels up to each checkpoint (a quarter, half and all of
/// `--labels`), then waits until every node has trained on those labels and holds the same
/// merged model, and prints its test accuracy: the learning curve of the network.
async fn checkpoints(
    args: &DemoArgs,
    nodes: &[&Daemon],
    id: DatasetId,
    test: &TestSet,
    labelled: &AtomicU64,
    budget: &AtomicU64,
    signals: &mut StopSignals,
) -> anyhow::Result<Option<(Option<f64>, usize)>> {
    let mut marks: Vec<u64> = vec![args.labels / 4, args.labels / 2, args.labels];
    marks.retain(|m| *m > 0);
    marks.dedup();
    let mut last = None;
    for mark in marks {
        budget.store(mark, Ordering::SeqCst);
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        while labelled.load(Ordering::SeqCst) < mark {
            tokio::select! {
                () = signals.recv() => {
                    out!("stopping");
                    return Ok(None);
                }
                _ = tick.tick() => {}
            }
        }
        settle(nodes, id, mark).await;
        let (accuracy, peers) = evaluate(nodes[0], id, test).await;
        out!(
            "labels {mark:>4}: every node trained on them; test accuracy of the merged model ({peers} peers): {}",
            accuracy.map_or("-".to_owned(), |a| format!("{a:.3}")),
        );
        last = Some((accuracy, peers));
    }
    Ok(last)
}

/// Waits until every node holds `labels` annotations, trained on all of them, and every node
/// holds the same merged model (at most 5 minutes: then it says what is missing and goes on).
async fn settle(nodes: &[&Daemon], id: DatasetId, labels: u64) {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let mut hashes = Vec::new();
        let mut trained = true;
        for node in nodes {
            match node.learner(id).map(|l| l.progress()) {
                Some(p) => {
                    trained &= p.annotations >= labels
                        && p.trained_annotations >= p.annotations
                        && !p.training;
                }
                None => trained = false,
            }
            let merged = node.models().merged(id).await.ok().flatten();
            hashes.push(merged.map(|m| m.hash));
        }
        let agreed = hashes.windows(2).all(|w| w[0] == w[1]) && hashes[0].is_some();
        if trained && agreed {
            return;
        }
        if Instant::now() > deadline {
            eprintln!(
                "the nodes did not settle within 5 minutes (trained on every label: {trained}, one merged model: {agreed}); reporting what the user's node holds"
            );
            for (i, node) in nodes.iter().enumerate() {
                if let Some(p) = node.learner(id).map(|l| l.progress()) {
                    eprintln!(
                        "  node {i}: {} annotations, trained on {}, training {}, {} published, model {:?}",
                        p.annotations, p.trained_annotations, p.training, p.published, p.model
                    );
                }
            }
            return;
        }
    }
}

/// The test accuracy of the user's merged model, and how many peers it merges.
async fn evaluate(user: &Daemon, id: DatasetId, test: &TestSet) -> (Option<f64>, usize) {
    let Ok(Some(merged)) = user.models().merged(id).await else {
        return (None, 0);
    };
    let peers = merged.included.len();
    let weights = merged.weights.clone();
    let x = test.pool.features.clone();
    let y = test.labels.clone();
    let accuracy = tokio::task::spawn_blocking(move || {
        Model::from_safetensors_bytes(&weights)
            .and_then(|m| m.accuracy(&x, &y))
            .ok()
    })
    .await
    .ok()
    .flatten();
    (accuracy, peers)
}
