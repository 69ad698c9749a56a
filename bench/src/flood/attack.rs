//! The attacker of `flood` (the hidden `flood-attack` subcommand, run as a child process): real
//! libp2p peers (the hostile tests' raw peer) that flood one node with everything a peer may
//! send, as fast as the node takes it, and print what they sent as one JSON line when done. Half
//! the peers send only valid label records (what quotas must hold), half records of samples that
//! do not exist (what validation and peer scoring must stop).
//!
//! Modes: `gossip` (the peers stay; each message carries records by fresh annotator keys),
//! `fresh-keys` (as `gossip`, but every message goes out from a peer with a new libp2p key, so
//! gossipsub's `source` is fresh each time, then that peer is replaced), and `sync` (valid records
//! by fresh keys pushed through anti-entropy: every pull the node makes is answered with a full
//! page of them).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use libp2p::Multiaddr;
use rand::seq::IndexedRandom as _;
use rand::{Rng as _, SeedableRng as _};
use swarmlabel_crdt::registry::{Architecture, ModelUpdate, SignedUpdate, Validation, WeightsHash};
use swarmlabel_crdt::{Annotation, DatasetId, SampleId, SignedAnnotation, Value};
use swarmlabel_net::swarm::announce::{self, Announcement};
use swarmlabel_node::labels::{gossip, wire as labels_wire};
use swarmlabel_node::models::wire as models_wire;
use swarmlabel_node::replicate::{Reply, Wire as _};
use swarmlabel_store::Identity;
use swarmlabel_store::dataset::manifest::{PageRef, Root, SignedRoot, Task};
use swarmlabel_store::store::BlobId;
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
    /// `gossip`, `fresh-keys` or `sync`.
    #[arg(long, default_value = "gossip")]
    mode: String,
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
    let topics = [
        labels_topic.clone(),
        models_topic.clone(),
        announce::TOPIC.to_owned(),
    ];
    let mut peers: Vec<RawPeer> = Vec::new();
    for _ in 0..args.peers.max(1) {
        peers.push(joined(&args.addr, &topics).await);
    }
    println!("attacking");
    let mut flood = Flood {
        dataset,
        samples,
        layout: swarmlabel_crdt::ShardLayout::for_sample_count(0),
        keys,
        chains: std::collections::HashMap::new(),
        rng: rand_chacha::ChaCha8Rng::seed_from_u64(7),
        time_ms: 1_000_000,
        sent: Sent::default(),
    };
    flood.layout = swarmlabel_crdt::ShardLayout::for_sample_count(flood.samples.len() as u64);
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    match args.mode.as_str() {
        "gossip" | "fresh-keys" => {
            let fresh = args.mode == "fresh-keys";
            let architecture = Architecture::new([7; 32], "flood")?;
            let mut round = 0u64;
            while Instant::now() < deadline {
                round += 1;
                for (n, slot) in peers.iter_mut().enumerate() {
                    flood.gossip(slot, n % 2 == 0, &labels_topic);
                    if round.is_multiple_of(4) {
                        flood.others(slot, round, &architecture, &models_topic);
                    }
                    // Label sync requests: the summary, over the replication protocol.
                    let summary = labels_wire::Request::Summary { dataset }.encode()?;
                    let mut body = vec![labels_wire::KIND.tag];
                    body.extend_from_slice(&summary);
                    slot.send(node, false, body);
                    flood.sent.syncs += 1;
                    slot.step(Duration::from_millis(1)).await;
                    if fresh {
                        // The next message from a new key: this peer goes, another comes.
                        *slot = joined(&args.addr, &topics).await;
                        flood.sent.fresh_sources += 1;
                    }
                }
            }
        }
        "sync" => {
            while Instant::now() < deadline {
                for slot in &mut peers {
                    slot.step(Duration::from_millis(5)).await;
                    for incoming in std::mem::take(&mut slot.replication_requests) {
                        let reply = flood.answer(&incoming.bytes);
                        slot.respond(incoming, reply, false);
                    }
                }
            }
        }
        other => anyhow::bail!("--mode {other:?}: give gossip, fresh-keys or sync"),
    }
    let sent = flood.sent;
    Ok(serde_json::json!({
        "mode": args.mode,
        "label_records": sent.records,
        "model_updates": sent.updates,
        "announcements": sent.announcements,
        "sync_requests": sent.syncs,
        "sync_pages": sent.pages,
        "fresh_sources": sent.fresh_sources,
    }))
}

/// A raw peer connected to the node at `addr` and subscribed to `topics`.
async fn joined(addr: &Multiaddr, topics: &[String]) -> RawPeer {
    let mut p = RawPeer::new();
    p.dial(addr.clone());
    for topic in topics {
        p.subscribe(topic, 1).await;
    }
    p
}

#[derive(Debug, Default)]
struct Sent {
    records: u64,
    updates: u64,
    announcements: u64,
    syncs: u64,
    pages: u64,
    fresh_sources: u64,
}

/// What the attacker signs with and has sent.
struct Flood {
    dataset: DatasetId,
    samples: Vec<SampleId>,
    layout: swarmlabel_crdt::ShardLayout,
    keys: Vec<Identity>,
    /// Each key's chains, so that its records are taken in order (what quotas must hold back).
    chains: std::collections::HashMap<(usize, u16), u32>,
    rng: rand_chacha::ChaCha8Rng,
    time_ms: u64,
    sent: Sent,
}

impl Flood {
    /// The next record of a random key: of a sample of the manifest (`valid`), or of one that
    /// does not exist.
    fn record(&mut self, valid: bool, shard: Option<u16>) -> Option<SignedAnnotation> {
        let k = self.rng.random_range(0..self.keys.len());
        let sample = if valid {
            match shard {
                Some(shard) => *self
                    .samples
                    .iter()
                    .filter(|s| self.layout.shard_of(s).0 == shard)
                    .nth(self.rng.random_range(0..16))?,
                None => *self.samples.choose(&mut self.rng)?,
            }
        } else {
            SampleId(self.rng.random())
        };
        self.time_ms += 1;
        let seq = self
            .chains
            .entry((k, self.layout.shard_of(&sample).0))
            .or_insert(0);
        *seq += 1;
        let key = &self.keys[k];
        let annotation = Annotation {
            dataset: self.dataset,
            sample,
            annotator: key.public_key(),
            seq: *seq,
            time_ms: self.time_ms,
            value: Value::Label(self.rng.random_range(0..10)),
            suggestion: None,
        };
        SignedAnnotation::sign(annotation, key.signing_key()).ok()
    }

    /// One gossip message of as many records as the protocol carries.
    fn gossip(&mut self, p: &mut RawPeer, valid: bool, topic: &str) {
        let batch: Vec<SignedAnnotation> = (0..gossip::MAX_RECORDS)
            .filter_map(|_| self.record(valid, None))
            .collect();
        if let Some(data) = gossip::encode(&batch)
            && p.publish(topic, data).is_ok()
        {
            self.sent.records += batch.len() as u64;
        }
    }

    /// A model update with fresh weights (a hash nobody can serve) and a fresh dataset announced.
    fn others(&mut self, p: &mut RawPeer, round: u64, architecture: &Architecture, topic: &str) {
        let Some(key) = self.keys.choose(&mut self.rng) else {
            return;
        };
        let update = ModelUpdate {
            dataset: self.dataset,
            peer: key.public_key(),
            version: round,
            labels_trained: 1_000,
            architecture: architecture.clone(),
            weights_hash: WeightsHash(self.rng.random()),
            weights_bytes: 1 << 20,
            validation: Validation::from_counts(90, 100),
        };
        if let Ok(signed) = SignedUpdate::sign(update, key.signing_key())
            && p.publish(topic, signed.to_bytes()).is_ok()
        {
            self.sent.updates += 1;
        }
        let root = fresh_root(key, &mut self.rng);
        if p.publish(announce::TOPIC, Announcement::now(&root).encode())
            .is_ok()
        {
            self.sent.announcements += 1;
        }
    }

    /// The answer to a labels request of the node's: every shard differs, and every pull gets a
    /// full page of valid records by fresh keys, with more to come.
    fn answer(&mut self, request: &[u8]) -> Vec<u8> {
        let reply = match request
            .split_first()
            .and_then(|(_, body)| labels_wire::Request::decode(body).ok())
        {
            Some(labels_wire::Request::Summary { .. }) => {
                Reply::Ok(labels_wire::Response::Summary(vec![
                    [0xee; 32];
                    usize::from(
                        self.layout.shard_count()
                    )
                ]))
            }
            Some(labels_wire::Request::Pull { shard, .. }) => {
                let records: Vec<SignedAnnotation> = (0..labels_wire::MAX_RECORDS)
                    .filter_map(|_| self.record(true, Some(shard)))
                    .collect();
                self.sent.records += records.len() as u64;
                self.sent.pages += 1;
                Reply::Ok(labels_wire::Response::Records {
                    records,
                    more: true,
                })
            }
            None => Reply::<labels_wire::Response>::Refused,
        };
        reply.encode().unwrap_or_default()
    }
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
