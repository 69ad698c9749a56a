//! The simulated network: the owner, the volunteers with their labels services and learning
//! loops, the simulated labelers, and the checkpoint at each budget.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use futures::future::join_all;
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use swarmlabel_active_learning::{Matrix, Query};
use swarmlabel_crdt::registry::merge;
use swarmlabel_crdt::{AnnotatorKey, SampleId, SignedAnnotation, Value};
use swarmlabel_formats::import::{Options, import};
use swarmlabel_net::swarm::{Config, Node, fetch};
use swarmlabel_node::labels::{self, LabelStore, Labels};
use swarmlabel_node::learn::exchange::{LocalExchange, ModelExchange, ServiceExchange};
use swarmlabel_node::learn::features::PoolFeatures;
use swarmlabel_node::learn::{self, Learner};
use swarmlabel_node::models::{self, Models};
use swarmlabel_store::progress::NoProgress;
use swarmlabel_store::{DatasetId, Home};
use tokio::sync::watch;

use super::spam::Kind;

mod ban;

/// Longest wait for any one step before the run is called hung.
const HANG: Duration = Duration::from_secs(600);
/// Budget target that tells labelers to stop.
const STOP: usize = usize::MAX;

pub(super) struct Setup {
    pub(super) work: PathBuf,
    pub(super) pool_csv: PathBuf,
    pub(super) classes: Vec<String>,
    pub(super) nodes: usize,
    /// Connections each volunteer dials (see the `--degree` flag).
    pub(super) degree: usize,
    pub(super) redundancy: u32,
    pub(super) query: Query,
    pub(super) initial: u64,
    pub(super) noise: f64,
    pub(super) seed: u64,
    /// Models over libp2p (the node's models service) rather than the in-process exchange.
    pub(super) network_models: bool,
    /// How each volunteer's labeler answers.
    pub(super) kinds: Vec<Kind>,
}

pub(super) struct Checkpoint {
    /// Test accuracy of each volunteer's merged model.
    pub(super) accuracy: Vec<f64>,
    pub(super) duplicate_rate: f64,
    /// Distinct samples with at least one label.
    pub(super) samples_labelled: usize,
    /// Distinct merged models held by the volunteers.
    pub(super) distinct_models: usize,
    /// From the budget's last label until every node trained on all labels and rescored.
    pub(super) settle_s: f64,
    /// From the moment every node had trained on all labels (its last update) until every node
    /// held the same merged model.
    pub(super) converge_s: f64,
    /// Volunteers whose annotator the screening flags.
    pub(super) flagged: Vec<usize>,
}

pub(super) struct Outcome {
    pub(super) dataset: DatasetId,
    pub(super) pool: Arc<PoolFeatures>,
    pub(super) test_x: Matrix,
    pub(super) checkpoints: Vec<Checkpoint>,
    pub(super) bytes_per_node: u64,
    pub(super) fallback_picks: usize,
    /// The annotations at the last budget, as volunteer 0 holds them.
    pub(super) annotations: Vec<SignedAnnotation>,
    /// Each volunteer's annotator key.
    pub(super) members: Vec<AnnotatorKey>,
    /// With the annotators flagged at the last budget banned by the owner: test accuracy of
    /// each other volunteer's merged model once they settled (`None`: nobody flagged, or
    /// models exchanged in process, where no policy applies).
    pub(super) banned_accuracy: Option<Vec<f64>>,
    /// Merged models the volunteers' rollout guards refused, all volunteers together.
    pub(super) refused_merges: u64,
}

struct Volunteer {
    me: AnnotatorKey,
    node: Node,
    labels: Labels,
    learner: Learner,
    exchange: Arc<dyn ModelExchange>,
    models: Option<Models>,
}

/// A simulated answer: `truth`, or with probability `noise` another class at random.
pub(super) fn answer(truth: usize, classes: usize, noise: f64, rng: &mut ChaCha8Rng) -> usize {
    if classes > 1 && noise > 0.0 && rng.random_bool(noise) {
        let other = rng.random_range(0..classes - 1);
        if other >= truth { other + 1 } else { other }
    } else {
        truth
    }
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> anyhow::Result<T> {
    tokio::time::timeout(HANG, fut)
        .await
        .with_context(|| format!("sim: {what} did not happen within {HANG:?}"))
}

pub(super) async fn run(
    setup: &Setup,
    truth: &HashMap<SampleId, usize>,
    budgets: &[usize],
    test_features: impl Fn(&PoolFeatures) -> anyhow::Result<Matrix>,
    test_y: &[usize],
) -> anyhow::Result<Outcome> {
    // The owner: imports the pool without labels and serves it.
    let (owner_home, owner_key) = Home::init(&setup.work.join("owner"), false)?;
    let mut opts = Options::new("sim-pool", setup.classes.clone());
    opts.redundancy = setup.redundancy;
    let report = import(&owner_home, &owner_key, &setup.pool_csv, &opts, &NoProgress)?;
    let dataset = report.id;
    let root = report.root.root().clone();
    if root.gold_count != 0 {
        bail!("the owner's pool has gold labels; the simulation must not leak them");
    }
    let owner = Node::start(owner_home, Config::loopback()).await?;
    owner.serve(dataset).await?;
    let owner_addr = owner.listen_addrs().await?[0].clone();
    let config = Config {
        bootstrap: vec![owner_addr],
        ..Config::loopback()
    };

    // The volunteers: fetch, open the labels, start the learning loop.
    let exchange = LocalExchange::new(merge::Method::Median);
    let crdt = LabelStore::crdt_dataset(&dataset, root.labels.len(), root.sample_count);
    let mut volunteers = Vec::with_capacity(setup.nodes);
    for i in 0..setup.nodes {
        let (home, identity) = Home::init(&setup.work.join(format!("v{i}")), false)?;
        let node = Node::start(home.clone(), config.clone()).await?;
        within("a volunteer's fetch", async {
            while node.find_providers(dataset).await?.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            node.fetch(dataset, fetch::Options::default()).await?;
            anyhow::Ok(())
        })
        .await??;
        let labels_config = labels::Config {
            anti_entropy: anti_entropy(),
            seed: Some(setup.seed.wrapping_add(i as u64)),
            ..labels::Config::default()
        };
        let labels = Labels::start(home.clone(), Some(node.clone()), labels_config).await?;
        labels.open(crdt).await?;
        let me = identity.public_key();
        let (exchange, models): (Arc<dyn ModelExchange>, _) = if setup.network_models {
            let config = models::Config {
                anti_entropy: anti_entropy(),
                seed: Some(setup.seed.wrapping_add(i as u64)),
                ..models::Config::default()
            };
            let models = Models::start(home.clone(), Some(node.clone()), config).await?;
            let service = ServiceExchange::open(models.clone(), dataset).await?;
            (Arc::new(service), Some(models))
        } else {
            (Arc::new(exchange.peer(identity.clone())), None)
        };
        let learn_config = learn::Config {
            query: setup.query,
            redundancy: None,
            initial: setup.initial,
            ..learn::Config::default()
        };
        let learner = Learner::start(
            dataset,
            swarmlabel_store::Catalog::of(&home),
            labels.clone(),
            me,
            exchange.clone(),
            learn_config,
        )
        .await?;
        volunteers.push(Volunteer {
            me,
            node,
            labels,
            learner,
            exchange,
            models,
        });
        eprintln!("sim: volunteer {i} joined");
    }
    connect(&volunteers, crdt.id, setup.degree, setup.seed).await?;
    let bytes_before: Vec<u64> = volunteers.iter().map(|v| wire_bytes(&v.node)).collect();
    let pool = volunteers[0].learner.pool().clone();
    let test_x = test_features(&pool)?;

    // The labelers.
    let volunteers = Arc::new(volunteers);
    let truth = Arc::new(truth.clone());
    let total = Arc::new(AtomicUsize::new(0));
    let fallbacks = Arc::new(AtomicUsize::new(0));
    let (target_tx, target_rx) = watch::channel(0usize);
    let mut labelers = Vec::new();
    for i in 0..volunteers.len() {
        labelers.push(tokio::spawn(labeler(
            volunteers.clone(),
            i,
            truth.clone(),
            setup.classes.len(),
            setup.kinds.get(i).copied().unwrap_or(Kind::Honest),
            setup.noise,
            setup.seed.wrapping_mul(1_000).wrapping_add(i as u64),
            total.clone(),
            fallbacks.clone(),
            target_rx.clone(),
            crdt.id,
        )));
    }

    let members: Vec<AnnotatorKey> = volunteers.iter().map(|v| v.me).collect();
    let mut annotations = Vec::new();
    let mut checkpoints = Vec::new();
    for &budget in budgets {
        target_tx.send_replace(budget);
        within(&format!("{budget} labels"), async {
            while total.load(Ordering::SeqCst) < budget {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await?;
        let reached = Instant::now();
        within(
            &format!("every node training on the {budget} labels"),
            async {
                while !trained(&volunteers, budget as u64) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        )
        .await?;
        let last_update = Instant::now();
        within(
            &format!("every node holding one merged model at {budget} labels"),
            async {
                while !settled(&volunteers, budget as u64, crdt.id) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        )
        .await?;
        let converge_s = last_update.elapsed().as_secs_f64();
        let settle_s = reached.elapsed().as_secs_f64();
        let mut accuracy = Vec::new();
        let mut models = HashSet::new();
        for v in volunteers.iter() {
            let merged = v
                .exchange
                .merged(crdt.id)
                .context("a merged model exists")?;
            models.insert(merged.hash);
            accuracy.push(super::accuracy(&merged.weights, &test_x, test_y)?);
        }
        let read = volunteers[0].labels.read(crdt.id).await?;
        let mut votes: HashMap<SampleId, u32> = HashMap::new();
        for a in &read.annotations {
            *votes.entry(a.annotation().sample).or_default() += 1;
        }
        let duplicate_rate = super::duplicate_rate(&votes, setup.redundancy);
        let flagged = super::spam::flagged(&read.annotations, setup.classes.len(), &members);
        eprintln!(
            "sim: {budget} labels: accuracy {:.3} (min {:.3}), duplicates {duplicate_rate:.3}, settled in {settle_s:.2} s, converged in {converge_s:.2} s",
            accuracy.iter().sum::<f64>() / accuracy.len() as f64,
            accuracy.iter().copied().fold(f64::INFINITY, f64::min),
        );
        checkpoints.push(Checkpoint {
            accuracy,
            duplicate_rate,
            samples_labelled: votes.len(),
            distinct_models: models.len(),
            settle_s,
            converge_s,
            flagged,
        });
        annotations = read.annotations;
    }
    target_tx.send_replace(STOP);
    for l in join_all(labelers).await {
        l??;
    }
    let flagged = checkpoints
        .last()
        .map(|c| c.flagged.clone())
        .unwrap_or_default();
    let banned_accuracy = if setup.network_models && !flagged.is_empty() {
        eprintln!("sim: the owner bans volunteers {flagged:?}");
        Some(
            ban::ban_and_settle(
                &volunteers,
                &flagged,
                &owner_key,
                dataset,
                crdt.id,
                &test_x,
                test_y,
            )
            .await?,
        )
    } else {
        None
    };
    let refused_merges = volunteers
        .iter()
        .map(|v| v.learner.progress().refused_merges)
        .sum();
    let bytes: u64 = volunteers
        .iter()
        .zip(&bytes_before)
        .map(|(v, b)| wire_bytes(&v.node).saturating_sub(*b))
        .sum();
    for v in volunteers.iter() {
        if let Some(m) = &v.models {
            m.shutdown().await;
        }
        v.learner.shutdown().await;
        v.labels.shutdown().await;
        v.node.shutdown().await;
    }
    owner.shutdown().await;
    Ok(Outcome {
        dataset,
        pool,
        test_x,
        checkpoints,
        bytes_per_node: bytes / volunteers.len() as u64,
        fallback_picks: fallbacks.load(Ordering::SeqCst),
        annotations,
        members,
        banned_accuracy,
        refused_merges,
    })
}

/// Every volunteer holds `budget` annotations and has trained on them (published its update).
fn trained(volunteers: &[Volunteer], budget: u64) -> bool {
    volunteers.iter().all(|v| {
        let p = v.learner.progress();
        p.annotations == budget && p.trained_annotations == budget && !p.training
    })
}

/// Every volunteer has trained on the `budget` labels, all hold the same merged model, and each
/// rescored the pool with it in force.
fn settled(volunteers: &[Volunteer], budget: u64, crdt: swarmlabel_crdt::DatasetId) -> bool {
    let mut hashes = HashSet::new();
    let all = volunteers.iter().all(|v| {
        let p = v.learner.progress();
        let merged = v.exchange.merged(crdt).map(|m| hex::encode(m.hash.0));
        hashes.insert(merged.clone());
        p.annotations == budget
            && p.trained_annotations == budget
            && !p.training
            && merged.is_some()
            && p.merged == merged
    });
    all && hashes.len() == 1
}

/// Anti-entropy of the simulated nodes: a round every 2 s.
fn anti_entropy() -> swarmlabel_node::replicate::core::Config {
    swarmlabel_node::replicate::core::Config {
        interval: Some(Duration::from_secs(2)),
        ..Default::default()
    }
}

/// Connects the volunteers in a small world (see `--degree`): each dials the next `degree / 2`
/// in a ring and `degree / 2` others at random, or every other one when `degree` reaches
/// `nodes - 1`; then waits until each sees every volunteer it is connected to on the label topic.
async fn connect(
    volunteers: &[Volunteer],
    crdt: swarmlabel_crdt::DatasetId,
    degree: usize,
    seed: u64,
) -> anyhow::Result<()> {
    let dataset = crdt;
    let n = volunteers.len();
    let mut addrs = Vec::new();
    for v in volunteers {
        addrs.push(v.node.listen_addrs().await?[0].clone());
    }
    let links = links(n, degree, seed);
    for &(a, b) in &links {
        let _ = volunteers[a].node.dial(addrs[b].clone()).await;
    }
    let mut expected = vec![0usize; n];
    for &(a, b) in &links {
        expected[a] += 1;
        expected[b] += 1;
    }
    within(
        "every volunteer to see its neighbours on the label topic",
        async {
            loop {
                let mut ok = true;
                for (v, want) in volunteers.iter().zip(&expected) {
                    if v.labels.peers(dataset).await?.len() < *want {
                        ok = false;
                    }
                }
                if ok {
                    return anyhow::Ok(());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        },
    )
    .await?
}

/// The undirected links `(a, b)`, `a < b`, of the volunteers' small world.
fn links(n: usize, degree: usize, seed: u64) -> Vec<(usize, usize)> {
    let mut set = std::collections::BTreeSet::new();
    if degree + 1 >= n {
        for a in 0..n {
            for b in a + 1..n {
                set.insert((a, b));
            }
        }
        return set.into_iter().collect();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_1195);
    let half = (degree / 2).max(1);
    for a in 0..n {
        for k in 1..=half {
            let b = (a + k) % n;
            set.insert((a.min(b), a.max(b)));
        }
        for _ in 0..half {
            let b = rng.random_range(0..n);
            if b != a {
                set.insert((a.min(b), a.max(b)));
            }
        }
    }
    set.into_iter().collect()
}

/// Bytes the node sent and received on all its connections (libp2p's bandwidth counters).
fn wire_bytes(node: &Node) -> u64 {
    node.encode_metrics()
        .lines()
        .filter(|l| l.starts_with("libp2p_bandwidth_bytes_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// One simulated labeler: takes its loop's next pick, answers it as its kind does, waits for a
/// ranking that can reflect the answer, until the network reaches the budget.
#[allow(clippy::too_many_arguments)]
async fn labeler(
    volunteers: Arc<Vec<Volunteer>>,
    index: usize,
    truth: Arc<HashMap<SampleId, usize>>,
    classes: usize,
    kind: Kind,
    noise: f64,
    seed: u64,
    total: Arc<AtomicUsize>,
    fallbacks: Arc<AtomicUsize>,
    mut target: watch::Receiver<usize>,
    crdt: swarmlabel_crdt::DatasetId,
) -> anyhow::Result<()> {
    let v = &volunteers[index];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut answered: HashSet<SampleId> = HashSet::new();
    loop {
        let goal = *target.borrow_and_update();
        if goal == STOP {
            return Ok(());
        }
        if total.load(Ordering::SeqCst) >= goal {
            target.changed().await?;
            continue;
        }
        let rescores = v.learner.progress().rescores;
        let Some(pick) = v.learner.next(1, &answered).into_iter().next() else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        if total
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                (t < goal).then_some(t + 1)
            })
            .is_err()
        {
            continue;
        }
        let sample = pick.sample;
        let true_class = *truth
            .get(&sample)
            .context("a picked sample is in the pool")?;
        let label = kind.answer(true_class, classes, noise, &mut rng);
        if !pick.own_share {
            fallbacks.fetch_add(1, Ordering::Relaxed);
        }
        let answer = swarmlabel_node::labels::Own {
            sample,
            value: Value::Label(label as u16),
            suggestion: None,
            time_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        v.labels.record_own(crdt, answer).await?;
        answered.insert(sample);
        // A human looks at the next sample once the model has moved; give up waiting after a
        // while so that a quiet network cannot stall the run.
        let waited = Instant::now();
        while v.learner.progress().rescores <= rescores
            && total.load(Ordering::SeqCst) < goal
            && waited.elapsed() < Duration::from_secs(10)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
