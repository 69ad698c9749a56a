//! A network of nodes that hold one dataset's labels: real swarms on 127.0.0.1, each with its
//! labels service, connected in a full mesh, with partitions and healing on demand.

use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use swarmlabel_crdt::{AnnotatorKey, Dataset, DatasetId, SampleId, ShardLayout, Value};
use swarmlabel_node::labels::{self, Counters, Labels};

use swarmlabel_net::swarm::Node;

use crate::network::{self, TestNode, full_mesh, wait_until};

/// One label as a user would check it: (sample, annotator, value).
pub type Triple = (SampleId, AnnotatorKey, Value);

/// The dataset every node of a [`LabelNet`] holds: 4 labels, 8 shards.
pub fn dataset() -> Dataset {
    Dataset {
        id: DatasetId([0x5a; 32]),
        label_count: 4,
        layout: ShardLayout::new(3).expect("3 bits is a valid layout"),
    }
}

/// Anti-entropy settings for tests: a short period, a seed per node.
pub fn config(seed: u64, anti_entropy: bool, gossip_push: bool) -> labels::Config {
    labels::Config {
        anti_entropy: swarmlabel_node::replicate::core::Config {
            interval: anti_entropy.then_some(Duration::from_millis(250)),
            peers_per_round: 2,
            session_timeout: Duration::from_secs(30),
            ..Default::default()
        },
        gossip_push,
        seed: Some(seed),
        ..labels::Config::default()
    }
}

/// A node with its labels service.
#[derive(Debug)]
pub struct LabelNode {
    /// The node.
    pub node: TestNode,
    /// Its labels service.
    pub labels: Labels,
    /// Its first listen address (with `/p2p/`).
    pub addr: Multiaddr,
}

impl LabelNode {
    /// Records `value` for `sample` at `time_ms`, signed by this node's key; returns once the
    /// label is durable (acknowledged).
    pub async fn label(&self, sample: SampleId, time_ms: u64, value: Value) -> Triple {
        let answer = labels::Own {
            sample,
            value,
            suggestion: None,
            time_ms,
        };
        let signed = self
            .labels
            .record_own(dataset().id, answer)
            .await
            .expect("a valid label is acknowledged");
        (sample, signed.annotation().annotator, value)
    }

    /// The labels this node holds, as triples, in (sample, annotator) order; the number of
    /// stored values it ignored as invalid.
    pub async fn holdings(&self) -> (Vec<Triple>, u64) {
        let read = self
            .labels
            .read(dataset().id)
            .await
            .expect("the dataset is open");
        let triples = read
            .annotations
            .iter()
            .map(|s| {
                let a = s.annotation();
                (a.sample, a.annotator, a.value)
            })
            .collect();
        (triples, read.rejected.total())
    }

    /// The node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.node.node.peer_id()
    }
}

/// Nodes holding [`dataset`]'s labels.
#[derive(Debug)]
pub struct LabelNet {
    /// The nodes.
    pub nodes: Vec<LabelNode>,
}

impl LabelNet {
    /// Starts `n` nodes with `make(i)` as node `i`'s labels settings, connects them all, and
    /// waits until every node knows every other one holds the dataset (label topic subscribed).
    pub async fn start(n: usize, make: impl Fn(usize) -> labels::Config) -> LabelNet {
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let node = TestNode::start(&[]).await;
            let labels = Labels::start(node.home.home.clone(), Some(node.node.clone()), make(i))
                .await
                .expect("the labels service starts");
            labels.open(dataset()).await.expect("the dataset opens");
            let addr = node.node.listen_addrs().await.expect("the node runs")[0].clone();
            nodes.push(LabelNode { node, labels, addr });
        }
        let net = LabelNet { nodes };
        full_mesh(&net.handles(), &net.addrs()).await;
        net.wait_for_label_peers().await;
        net
    }

    fn handles(&self) -> Vec<&Node> {
        self.nodes.iter().map(|n| &n.node.node).collect()
    }

    fn addrs(&self) -> Vec<Multiaddr> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    /// Waits until each node sees every other as holding the dataset.
    pub async fn wait_for_label_peers(&self) {
        let n = self.nodes.len();
        let id = dataset().id;
        wait_until(
            &format!("every node to see {} label peers of {id}", n - 1),
            || async {
                for node in &self.nodes {
                    if node.labels.peers(id).await.expect("the node runs").len() < n - 1 {
                        return false;
                    }
                }
                true
            },
        )
        .await;
    }

    /// Cuts every connection between `a` and `b`, both ways (bans, which also refuse redials),
    /// and waits until no node of one side is connected to the other.
    pub async fn partition(&self, a: &[usize], b: &[usize]) {
        network::partition(&self.handles(), a, b).await;
    }

    /// Lifts the bans between `a` and `b` and connects the two sides again.
    pub async fn heal(&self, a: &[usize], b: &[usize]) {
        network::heal(&self.handles(), &self.addrs(), a, b).await;
    }

    /// Waits until every node holds exactly `expected` (sorted by sample, annotator).
    pub async fn wait_for(&self, what: &str, expected: &[Triple]) {
        wait_until(what, || async {
            for node in &self.nodes {
                if node.holdings().await.0 != expected {
                    return false;
                }
            }
            true
        })
        .await;
    }

    /// The counters of every node, summed.
    pub fn counters(&self) -> Counters {
        let mut sum = Counters::default();
        for n in &self.nodes {
            let c = n.labels.counters();
            sum.recorded += c.recorded;
            sum.gossip_accepted += c.gossip_accepted;
            sum.gossip_rejected += c.gossip_rejected;
            sum.gossip_ignored += c.gossip_ignored;
            sum.sync_refused += c.sync_refused;
            sum.sync_applied += c.sync_applied;
            sum.sessions_completed += c.sessions_completed;
            sum.sessions_failed += c.sessions_failed;
        }
        sum
    }

    /// Stops every node.
    pub async fn stop(self) {
        for n in self.nodes {
            n.labels.shutdown().await;
            n.node.stop().await;
        }
    }
}
