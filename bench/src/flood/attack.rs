//! The attacker of `flood` (the hidden `flood-attack` subcommand, run as a child process): real
//! libp2p peers (the hostile tests' raw peer) that flood one node with everything a peer may
//! send, as fast as the node takes it, and print what they sent as one JSON line when done. Half
//! the peers send only valid label records (what quotas must hold), half records of samples that
//! do not exist (what validation and peer scoring must stop).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use libp2p::Multiaddr;
use rand::seq::IndexedRandom as _;
use rand::{Rng as _, SeedableRng as _};
use swarmlabel_crdt::registry::{Architecture, ModelUpdate, SignedUpdate, Validation, WeightsHash};
use swarmlabel_crdt::{Annotation, AnnotatorKey, DatasetId, SampleId, SignedAnnotation, Value};
use swarmlabel_net::Identity;
use swarmlabel_net::dataset::manifest::{PageRef, Root, SignedRoot, Task};
use swarmlabel_net::store::BlobId;
use swarmlabel_net::swarm::announce::{self, Announcement};
use swarmlabel_node::labels::{gossip, wire as labels_wire};
use swarmlabel_node::models::wire as models_wire;
use swarmlabel_node::replicate::Wire as _;
use swarmlabel_tests::raw::RawPeer;

/// Arguments of `flood-attack`.
#[derive(Debug, clap::Args)]
pub(crate) struct AttackArgs {
    /// The node to attack (a multiaddress ending in /p2p/<peer id>).
    #[arg(long)]
    addr: Multiaddr,
    /// The dataset id.
    #[arg(long)]
    dataset: String,
    /// A file of the manifest's sample ids (hex), one a line.
    #[arg(long)]
    samples: PathBuf,
    /// Fresh annotator keys to sign with.
    #[arg(long)]
    keys: usize,
    /// Seconds to flood.
    #[arg(long)]
    seconds: u64,
    /// Attacking peers.
    #[arg(long)]
    peers: usize,
}

pub(crate) fn run(args: AttackArgs) -> anyhow::Result<serde_json::Value> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(flood(args))
}

async fn flood(args: AttackArgs) -> anyhow::Result<serde_json::Value> {
    let dataset: DatasetId = DatasetId(
        hex::decode(&args.dataset)?
            .try_into()
            .map_err(|_| anyhow::anyhow!("a dataset id is 32 bytes"))?,
    );
    let samples: Vec<SampleId> = std::fs::read_to_string(&args.samples)?
        .lines()
        .filter_map(|l| hex::decode(l).ok()?.try_into().ok().map(SampleId))
        .collect();
    let node = args
        .addr
        .iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::P2p(id) => Some(id),
            _ => None,
        })
        .context("the address has no /p2p/ part")?;
    let keys: Vec<Identity> = (0..args.keys.max(1))
        .map(|_| Identity::generate())
        .collect::<Result<_, _>>()?;
    let labels_topic = labels_wire::KIND.topic(&dataset);
    let models_topic = models_wire::KIND.topic(&dataset);
    let mut peers: Vec<RawPeer> = (0..args.peers.max(1)).map(|_| RawPeer::new()).collect();
    for p in &mut peers {
        p.dial(args.addr.clone());
        p.subscribe(&labels_topic, 1).await;
        p.subscribe(&models_topic, 1).await;
        p.subscribe(announce::TOPIC, 1).await;
    }
    println!("attacking");

    // Each key's chains, so that its records are taken in order (what quotas must hold back).
    let layout = swarmlabel_crdt::ShardLayout::for_sample_count(samples.len() as u64);
    let mut chains: std::collections::HashMap<(usize, u16), u32> = std::collections::HashMap::new();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let architecture = Architecture::new([7; 32], "flood")?;
    let (mut records, mut updates, mut announcements, mut syncs) = (0u64, 0u64, 0u64, 0u64);
    let mut time_ms = 1_000_000u64;
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut round = 0u64;
    while Instant::now() < deadline {
        round += 1;
        for (n, p) in peers.iter_mut().enumerate() {
            // As many label records a message as the protocol carries (`gossip::MAX_RECORDS`),
            // signed by random fresh keys. Even peers stay valid
            // (samples of the manifest: only the quota holds them back); odd peers name samples
            // that do not exist (invalid: scored down, then banned).
            let valid = n % 2 == 0;
            let batch: Vec<SignedAnnotation> = (0..gossip::MAX_RECORDS)
                .filter_map(|_| {
                    let k = rng.random_range(0..keys.len());
                    let key = &keys[k];
                    let sample = if valid {
                        *samples.choose(&mut rng)?
                    } else {
                        SampleId(rng.random())
                    };
                    time_ms += 1;
                    let seq = chains.entry((k, layout.shard_of(&sample).0)).or_insert(0);
                    *seq += 1;
                    let annotation = Annotation {
                        dataset,
                        sample,
                        annotator: AnnotatorKey(key.public_key().0),
                        seq: *seq,
                        time_ms,
                        value: Value::Label(rng.random_range(0..10)),
                        suggestion: None,
                    };
                    SignedAnnotation::sign(annotation, key.signing_key()).ok()
                })
                .collect();
            if let Some(data) = gossip::encode(&batch)
                && p.publish(&labels_topic, data).is_ok()
            {
                records += batch.len() as u64;
            }
            if round.is_multiple_of(4)
                && let Some(key) = keys.choose(&mut rng)
            {
                // A model update with fresh weights (a hash nobody can serve).
                let update = ModelUpdate {
                    dataset,
                    peer: AnnotatorKey(key.public_key().0),
                    version: round,
                    labels_trained: 1_000,
                    architecture: architecture.clone(),
                    weights_hash: WeightsHash(rng.random()),
                    weights_bytes: 1 << 20,
                    validation: Validation::from_counts(90, 100),
                };
                if let Ok(signed) = SignedUpdate::sign(update, key.signing_key())
                    && p.publish(&models_topic, signed.to_bytes()).is_ok()
                {
                    updates += 1;
                }
                // A fresh dataset announced.
                let root = fresh_root(key, &mut rng);
                if p.publish(announce::TOPIC, Announcement::now(&root).encode())
                    .is_ok()
                {
                    announcements += 1;
                }
            }
            // Label sync requests: the summary, over the replication protocol.
            let summary = labels_wire::Request::Summary { dataset }.encode()?;
            let mut body = vec![labels_wire::KIND.tag];
            body.extend_from_slice(&summary);
            p.send(node, false, body);
            syncs += 1;
            p.step(Duration::from_millis(1)).await;
        }
    }
    Ok(serde_json::json!({
        "label_records": records,
        "model_updates": updates,
        "announcements": announcements,
        "sync_requests": syncs,
    }))
}

fn fresh_root(owner: &Identity, rng: &mut impl rand::Rng) -> SignedRoot {
    let root = Root {
        name: format!("spam {}", rng.random::<u32>()),
        description: "x".repeat(4096),
        instructions: String::new(),
        task: Task::TabularClassification {
            features: vec!["x".into()],
        },
        labels: vec!["a".into(), "b".into()],
        redundancy: 3,
        owner: owner.public_key(),
        created_at_ms: rng.random_range(0..1 << 40),
        sample_count: 1,
        gold_count: 0,
        total_bytes: 1,
        pages: vec![PageRef {
            id: BlobId(rng.random()),
            samples: 1,
        }],
    };
    SignedRoot::sign(root, owner)
}
