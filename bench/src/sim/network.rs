//! The simulated network: the owner, the volunteers with their labels services and learning
//! loops, the simulated labelers, and the checkpoint at each budget.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use swarmlabel_active_learning::{Matrix, Query};
use swarmlabel_crdt::registry::merge;
use swarmlabel_crdt::{AnnotatorKey, SampleId, SignedAnnotation};
use swarmlabel_formats::import::{Options, import};
use swarmlabel_net::swarm::{Config, Node, fetch};
use swarmlabel_node::labels::{self, LabelStore, Labels};
use swarmlabel_node::learn::exchange::{LocalExchange, ModelExchange, ServiceExchange};
use swarmlabel_node::learn::features::PoolFeatures;
use swarmlabel_node::learn::{self, Learner};
use swarmlabel_node::models::{self, Models};
use swarmlabel_store::progress::NoProgress;
use swarmlabel_store::{DatasetId, Home, Identity};

use super::spam::Kind;

mod ban;
mod checkpoint;
mod labeler;

use checkpoint::Observer;
use labeler::Labelers;

/// Longest wait for any one step before the run is called hung.
const HANG: Duration = Duration::from_secs(600);

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
    /// The owner's policy this volunteer's labels and models follow (the simulated owner
    /// changes it here, as the policy kind would on a node).
    policy: tokio::sync::watch::Sender<swarmlabel_node::policy::InForce>,
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
    let owner = Owner::start(setup).await?;
    let volunteers = start_volunteers(setup, &owner).await?;
    connect(&volunteers, owner.crdt.id, setup.degree, setup.seed).await?;
    let bytes_before: Vec<u64> = volunteers.iter().map(|v| wire_bytes(&v.node)).collect();
    let pool = volunteers[0].learner.pool().clone();
    let test_x = test_features(&pool)?;

    let volunteers = Arc::new(volunteers);
    let labelers = Labelers::spawn(setup, &volunteers, truth, owner.crdt.id);
    let members: Vec<AnnotatorKey> = volunteers.iter().map(|v| v.me).collect();
    let observer = Observer {
        setup,
        volunteers: &volunteers,
        members: &members,
        crdt: owner.crdt.id,
        test_x: &test_x,
        test_y,
    };
    let mut annotations = Vec::new();
    let mut checkpoints = Vec::new();
    for &budget in budgets {
        labelers.raise(budget);
        let (checkpoint, read) = observer.checkpoint(budget, &labelers.total).await?;
        checkpoints.push(checkpoint);
        annotations = read;
    }
    let fallback_picks = labelers.stop().await?;
    let banned_accuracy = observer.after_ban(&checkpoints, &owner).await?;
    let refused_merges = volunteers
        .iter()
        .map(|v| v.learner.progress().refused_merges)
        .sum();
    let bytes_per_node = bytes_per_node(&volunteers, &bytes_before);
    let dataset = owner.dataset;
    shutdown(&volunteers, owner).await;
    Ok(Outcome {
        dataset,
        pool,
        test_x,
        checkpoints,
        bytes_per_node,
        fallback_picks,
        annotations,
        members,
        banned_accuracy,
        refused_merges,
    })
}

/// The owner: its node serving the pool, its key, and the pool as the volunteers hold it.
struct Owner {
    node: Node,
    key: Identity,
    dataset: DatasetId,
    /// The labels' view of the pool.
    crdt: swarmlabel_crdt::Dataset,
    /// The volunteers' network configuration: the owner is their bootstrap peer.
    config: Config,
}

impl Owner {
    /// Imports the pool without labels and serves it.
    async fn start(setup: &Setup) -> anyhow::Result<Owner> {
        let (owner_home, owner_key) = Home::init(&setup.work.join("owner"), false)?;
        let mut opts = Options::new("sim-pool", setup.classes.clone());
        opts.redundancy = setup.redundancy;
        let report = import(&owner_home, &owner_key, &setup.pool_csv, &opts, &NoProgress)?;
        let dataset = report.id;
        let root = report.root.root().clone();
        if root.gold_count != 0 {
            bail!("the owner's pool has gold labels; the simulation must not leak them");
        }
        let node = Node::start(owner_home, Config::loopback()).await?;
        node.serve(dataset).await?;
        let owner_addr = node.listen_addrs().await?[0].clone();
        let config = Config {
            bootstrap: vec![owner_addr],
            ..Config::loopback()
        };
        let crdt = LabelStore::crdt_dataset(&dataset, root.labels.len(), root.sample_count);
        Ok(Owner {
            node,
            key: owner_key,
            dataset,
            crdt,
            config,
        })
    }
}

/// The volunteers, one after the other: each fetches the pool, opens its labels and starts its
/// learning loop.
async fn start_volunteers(setup: &Setup, owner: &Owner) -> anyhow::Result<Vec<Volunteer>> {
    let exchange = LocalExchange::new(merge::Method::Median);
    let mut volunteers = Vec::with_capacity(setup.nodes);
    for i in 0..setup.nodes {
        volunteers.push(Volunteer::join(setup, owner, i, &exchange).await?);
        eprintln!("sim: volunteer {i} joined");
    }
    Ok(volunteers)
}

impl Volunteer {
    /// Volunteer `i`: fetches the pool from the owner, opens its labels, picks its model exchange
    /// (`local` unless models travel over libp2p) and starts its learning loop.
    async fn join(
        setup: &Setup,
        owner: &Owner,
        i: usize,
        local: &LocalExchange,
    ) -> anyhow::Result<Volunteer> {
        let dataset = owner.dataset;
        let (home, identity) = Home::init(&setup.work.join(format!("v{i}")), false)?;
        let node = Node::start(home.clone(), owner.config.clone()).await?;
        fetch_pool(&node, dataset).await?;
        let labels_config = labels::Config {
            anti_entropy: anti_entropy(),
            seed: Some(setup.seed.wrapping_add(i as u64)),
            ..labels::Config::default()
        };
        let labels = Labels::start(home.clone(), Some(node.clone()), labels_config).await?;
        labels.open(owner.crdt).await?;
        let me = identity.public_key();
        let (exchange, models) =
            model_exchange(setup, i, &home, &node, &identity, dataset, local).await?;
        let (policy, follows) = tokio::sync::watch::channel(None);
        labels.follow_policy(dataset, follows.clone()).await?;
        if let Some(models) = &models {
            models.follow_policy(dataset, follows).await?;
        }
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
        Ok(Volunteer {
            me,
            node,
            labels,
            learner,
            exchange,
            models,
            policy,
        })
    }
}

/// Waits until `node` finds a provider of `dataset`, then fetches it.
async fn fetch_pool(node: &Node, dataset: DatasetId) -> anyhow::Result<()> {
    within("a volunteer's fetch", async {
        while node.find_providers(dataset).await?.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        node.fetch(dataset, fetch::Options::default()).await?;
        anyhow::Ok(())
    })
    .await?
}

/// How volunteer `i` exchanges models: through its node's models service over libp2p (the
/// service returned too), or as a peer of the in-process exchange `local`.
async fn model_exchange(
    setup: &Setup,
    i: usize,
    home: &Home,
    node: &Node,
    identity: &Identity,
    dataset: DatasetId,
    local: &LocalExchange,
) -> anyhow::Result<(Arc<dyn ModelExchange>, Option<Models>)> {
    if setup.network_models {
        let config = models::Config {
            anti_entropy: anti_entropy(),
            seed: Some(setup.seed.wrapping_add(i as u64)),
            ..models::Config::default()
        };
        let models = Models::start(home.clone(), Some(node.clone()), config).await?;
        let service = ServiceExchange::open(models.clone(), dataset).await?;
        Ok((Arc::new(service), Some(models)))
    } else {
        Ok((Arc::new(local.peer(identity.clone())), None))
    }
}

/// Bytes each volunteer's node moved on the wire since `before` (its counts then), on average.
fn bytes_per_node(volunteers: &[Volunteer], before: &[u64]) -> u64 {
    let bytes: u64 = volunteers
        .iter()
        .zip(before)
        .map(|(v, b)| wire_bytes(&v.node).saturating_sub(*b))
        .sum();
    bytes / volunteers.len() as u64
}

/// Shuts every volunteer's services and node down, then the owner's node.
async fn shutdown(volunteers: &[Volunteer], owner: Owner) {
    for v in volunteers {
        if let Some(m) = &v.models {
            m.shutdown().await;
        }
        v.learner.shutdown().await;
        v.labels.shutdown().await;
        v.node.shutdown().await;
    }
    owner.node.shutdown().await;
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
