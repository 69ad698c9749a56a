//! `dht`: provider discovery in a network of real nodes on loopback.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use swarmlabel_formats::import::{self, Options};
use swarmlabel_net::swarm::{Config, Node};
use swarmlabel_store::progress::NoProgress;
use swarmlabel_store::{DatasetId, Home};

/// Flags of `swarmlabel-bench dht`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Nodes in the network (besides one bootstrap peer).
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Datasets, each provided by one random node.
    #[arg(long, default_value_t = 50)]
    datasets: usize,
    /// Lookups, each by a random node for a random dataset.
    #[arg(long, default_value_t = 500)]
    lookups: usize,
    /// Seed of the random choices.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Seconds between a node's gossip announcements of its datasets (default: the product's).
    #[arg(long, default_value_t = Config::default().announce_interval.as_secs())]
    announce_interval_s: u64,
}

pub(crate) fn run(args: Args) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(
        args.nodes >= 2 && args.datasets >= 1,
        "--nodes must be at least 2 and --datasets at least 1"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: Args) -> anyhow::Result<serde_json::Value> {
    let work = tempfile::tempdir().context("cannot create a working directory")?;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let bootstrap = start_bootstrap().await?;
    let config = node_config(&bootstrap, &args);
    let started = Instant::now();
    eprintln!("starting {} nodes", args.nodes);
    let nodes = start_nodes(work.path(), args.nodes, &config).await?;
    fill_routing_tables(&nodes, 5.min(args.nodes - 1)).await?;

    eprintln!(
        "{:.1} s: routing tables filled; providing {} datasets",
        started.elapsed().as_secs_f64(),
        args.datasets
    );
    let datasets = provide(work.path(), &nodes, args.datasets, &mut rng).await?;
    let warm = Instant::now();
    for &(id, provider) in &datasets {
        find_once(&nodes, &bootstrap, id, provider).await?;
    }
    eprintln!(
        "{:.1} s: every dataset found once (in {:.1} s)",
        started.elapsed().as_secs_f64(),
        warm.elapsed().as_secs_f64()
    );

    eprintln!(
        "{:.1} s: {} lookups",
        started.elapsed().as_secs_f64(),
        args.lookups
    );
    let lookups = Lookups::run(&nodes, &datasets, args.lookups, &mut rng).await?;
    eprintln!("{:.1} s: done", started.elapsed().as_secs_f64());
    for node in &nodes {
        node.shutdown().await;
    }
    bootstrap.shutdown().await;
    Ok(lookups.report(&args))
}

/// A bootstrap peer on loopback.
async fn start_bootstrap() -> anyhow::Result<swarmlabel_bootstrap::Bootstrap> {
    Ok(swarmlabel_bootstrap::Bootstrap::start(
        libp2p::identity::Keypair::generate_ed25519(),
        swarmlabel_bootstrap::Config {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse()?],
            listen_addrs_reachable: true,
            ..swarmlabel_bootstrap::Config::default()
        },
    )
    .await?)
}

/// The nodes' configuration: `bootstrap` as their bootstrap peer, loopback addresses and the
/// product's timers but for the announcement interval of `--announce-interval-s`.
fn node_config(bootstrap: &swarmlabel_bootstrap::Bootstrap, args: &Args) -> Config {
    // Loopback addresses, but the product's timers unless told otherwise: `Config::loopback()`
    // announces every dataset on gossip every 2 s to speed up tests, which with 100 nodes in one
    // process is thousands of signed messages a second, a load no real node carries.
    let loopback = Config::loopback();
    Config {
        bootstrap: bootstrap.listen_addrs().to_vec(),
        listen: loopback.listen,
        listen_addrs_reachable: loopback.listen_addrs_reachable,
        announce_interval: Duration::from_secs(args.announce_interval_s.max(1)),
        ..Config::default()
    }
}

/// Starts `count` nodes with homes under `work` and bootstraps their DHT.
async fn start_nodes(work: &Path, count: usize, config: &Config) -> anyhow::Result<Vec<Node>> {
    let mut nodes = Vec::new();
    for i in 0..count {
        let (home, _) = Home::init(&work.join(format!("n{i}")), false)?;
        nodes.push(Node::start(home, config.clone()).await?);
    }
    for node in &nodes {
        node.bootstrap_dht().await?;
    }
    Ok(nodes)
}

/// Lets routing tables fill: waits (at most 2 minutes) until every node knows more than `want`
/// peers besides the bootstrap.
async fn fill_routing_tables(nodes: &[Node], want: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut ready = 0;
        for node in nodes {
            ready += usize::from(node.status().await?.routing_table > want);
        }
        if ready == nodes.len() {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "routing tables did not fill ({ready} of {} nodes)",
            nodes.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Imports `count` one-sample datasets, each on a random node that then serves it; returns each
/// dataset with the index of its provider.
async fn provide(
    work: &Path,
    nodes: &[Node],
    count: usize,
    rng: &mut ChaCha8Rng,
) -> anyhow::Result<Vec<(DatasetId, usize)>> {
    let mut datasets: Vec<(DatasetId, usize)> = Vec::new();
    for d in 0..count {
        let provider = rng.random_range(0..nodes.len());
        let home = nodes[provider].home().clone();
        let csv = work.join(format!("d{d}.csv"));
        std::fs::write(&csv, format!("x,label\n{d},a\n"))?;
        let id = tokio::task::spawn_blocking(move || {
            let identity = home.identity()?;
            anyhow::Ok(
                import::import(
                    &home,
                    &identity,
                    &csv,
                    &Options::new(format!("d{d}"), vec!["a".into()]),
                    &NoProgress,
                )?
                .id,
            )
        })
        .await??;
        nodes[provider].serve(id).await?;
        datasets.push((id, provider));
    }
    Ok(datasets)
}

/// Publication is asynchronous: waits (at most 2 minutes) until the node after `provider` finds
/// it providing `id`, before anything is measured.
async fn find_once(
    nodes: &[Node],
    bootstrap: &swarmlabel_bootstrap::Bootstrap,
    id: DatasetId,
    provider: usize,
) -> anyhow::Result<()> {
    let asker = &nodes[(provider + 1) % nodes.len()];
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut tries = 0;
    while !asker
        .dht_providers(id)
        .await?
        .providers
        .contains(&nodes[provider].peer_id())
    {
        tries += 1;
        if Instant::now() >= deadline {
            print_closest(nodes, bootstrap, id, provider, asker);
            anyhow::bail!("dataset {id} was never found");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if tries > 0 {
        eprintln!("dataset {id} found after {tries} empty lookups");
    }
    Ok(())
}

/// Prints who should have found dataset `id`: its key, provider, asker, the bootstrap peer and
/// the 20 peers closest to the key.
fn print_closest(
    nodes: &[Node],
    bootstrap: &swarmlabel_bootstrap::Bootstrap,
    id: DatasetId,
    provider: usize,
    asker: &Node,
) {
    let key = libp2p::kad::KBucketKey::new(libp2p::kad::RecordKey::new(&id.0));
    let mut all: Vec<libp2p::PeerId> = nodes.iter().map(Node::peer_id).collect();
    all.push(bootstrap.peer_id());
    all.sort_by_key(|p| key.distance(&libp2p::kad::KBucketKey::from(*p)));
    eprintln!(
        "key {} provider {} asker {} bootstrap {}; the 20 closest peers: {}",
        hex::encode(id.0),
        nodes[provider].peer_id(),
        asker.peer_id(),
        bootstrap.peer_id(),
        all.iter()
            .take(20)
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
}

/// What the timed lookups measured.
struct Lookups {
    latencies: Vec<f64>,
    hops: Vec<u32>,
    requests: Vec<u32>,
    successes: usize,
}

impl Lookups {
    /// `count` lookups, each by a random node (not the provider) for a random dataset.
    async fn run(
        nodes: &[Node],
        datasets: &[(DatasetId, usize)],
        count: usize,
        rng: &mut ChaCha8Rng,
    ) -> anyhow::Result<Lookups> {
        let mut latencies = Vec::new();
        let mut hops = Vec::new();
        let mut requests = Vec::new();
        let mut successes = 0usize;
        for _ in 0..count {
            let (id, provider) = datasets[rng.random_range(0..datasets.len())];
            let mut asker = rng.random_range(0..nodes.len());
            if asker == provider {
                asker = (asker + 1) % nodes.len();
            }
            let start = Instant::now();
            let lookup = nodes[asker].dht_providers(id).await?;
            latencies.push(start.elapsed().as_secs_f64() * 1000.0);
            hops.push(lookup.answered_until_found.unwrap_or(lookup.successes));
            requests.push(lookup.requests);
            let found = lookup.providers.contains(&nodes[provider].peer_id());
            if !found {
                eprintln!(
                    "lookup of {id} from {} did not find {}",
                    nodes[asker].peer_id(),
                    nodes[provider].peer_id()
                );
            }
            successes += usize::from(found);
        }
        Ok(Lookups {
            latencies,
            hops,
            requests,
            successes,
        })
    }

    /// The JSON report of the run.
    fn report(mut self, args: &Args) -> serde_json::Value {
        self.latencies.sort_by(f64::total_cmp);
        self.hops.sort_unstable();
        self.requests.sort_unstable();
        let (latencies, hops, requests) = (&self.latencies, &self.hops, &self.requests);
        let round = |x: f64| (x * 1000.0).round() / 1000.0;
        serde_json::json!({
            "bench": "dht",
            "nodes": args.nodes,
            "datasets": args.datasets,
            "announce_interval_s": args.announce_interval_s,
            "lookups": args.lookups,
            "success_rate": round(self.successes as f64 / args.lookups as f64),
            "hops_p50": hops[hops.len() / 2],
            "hops_max": hops[hops.len() - 1],
            "requests_p50": requests[requests.len() / 2],
            "latency_ms_p50": round(crate::quantile::quantile(latencies, 0.5)),
            "latency_ms_p99": round(crate::quantile::quantile(latencies, 0.99)),
            "peak_rss_mb": round(crate::rss::peak_rss_mb()),
        })
    }
}
