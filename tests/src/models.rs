//! A network of nodes that hold one dataset's models: real swarms on 127.0.0.1, each with its
//! models service, connected in a full mesh, with partitions and healing on demand, and waits on
//! each node's merged-model watch channel (events, not polling).

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use libp2p::Multiaddr;
use swarmlabel_net::swarm::Node;
use swarmlabel_node::models::{self, Counters, MergedModel, Models};
use swarmlabel_store::DatasetId;

use crate::network::{self, TestNode, full_mesh, wait_until, within};

/// The dataset every node of a [`ModelNet`] holds models of (no samples needed: models are
/// announced and merged by dataset id).
pub const DATASET: DatasetId = DatasetId([0x6d; 32]);

/// Models settings for tests: short anti-entropy rounds, a seed per node, and `drop` as the
/// probability of losing an inbound announcement.
pub fn config(seed: u64, drop: f64) -> models::Config {
    models::Config {
        anti_entropy: swarmlabel_node::replicate::core::Config {
            interval: Some(Duration::from_millis(500)),
            peers_per_round: 2,
            ..Default::default()
        },
        gossip_drop_probability: drop,
        seed: Some(seed),
        ..models::Config::default()
    }
}

/// A node with its models service.
#[derive(Debug)]
pub struct ModelNode {
    /// The node.
    pub node: TestNode,
    /// Its models service.
    pub models: Models,
    /// Its first listen address (with `/p2p/`).
    pub addr: Multiaddr,
}

/// Nodes holding [`DATASET`]'s models.
#[derive(Debug)]
pub struct ModelNet {
    /// The nodes.
    pub nodes: Vec<ModelNode>,
}

impl ModelNet {
    /// Starts `n` nodes with `make(i)` as node `i`'s models settings, connects them all, and
    /// waits until every node knows every other one holds the dataset's models.
    pub async fn start(n: usize, make: impl Fn(usize) -> models::Config) -> ModelNet {
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let node = TestNode::start(&[]).await;
            let models = Models::start(node.home.home.clone(), Some(node.node.clone()), make(i))
                .await
                .expect("the models service starts");
            models
                .open(DATASET)
                .await
                .expect("the dataset's models open");
            let addr = node.node.listen_addrs().await.expect("the node runs")[0].clone();
            nodes.push(ModelNode { node, models, addr });
        }
        let net = ModelNet { nodes };
        full_mesh(&net.handles(), &net.addrs()).await;
        wait_until(
            &format!("every node to see {} model peers", n - 1),
            || async {
                for node in &net.nodes {
                    let peers = node.models.peers(DATASET).await;
                    if peers.expect("the node runs").len() < n - 1 {
                        return false;
                    }
                }
                true
            },
        )
        .await;
        net
    }

    fn handles(&self) -> Vec<&Node> {
        self.nodes.iter().map(|n| &n.node.node).collect()
    }

    fn addrs(&self) -> Vec<Multiaddr> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    /// Cuts every connection between `a` and `b`, both ways, and waits until it is so.
    pub async fn partition(&self, a: &[usize], b: &[usize]) {
        network::partition(&self.handles(), a, b).await;
    }

    /// Lifts the bans between `a` and `b` and connects the two sides again.
    pub async fn heal(&self, a: &[usize], b: &[usize]) {
        network::heal(&self.handles(), &self.addrs(), a, b).await;
    }

    /// Waits until the merged model of each node in `which` is computed from a registry with
    /// digest `digest` and includes `included` peers; returns each one's merged model.
    pub async fn wait_for_merged(
        &self,
        which: &[usize],
        digest: [u8; 32],
        included: usize,
    ) -> Vec<Arc<MergedModel>> {
        let waits = which.iter().map(|&i| async move {
            let mut rx = self.nodes[i]
                .models
                .watch(DATASET)
                .await
                .expect("the dataset is open");
            let what = format!(
                "node {i}'s merged model of {included} peers from registry {}",
                hex(&digest)
            );
            let model = within(
                &what,
                rx.wait_for(|m| {
                    m.as_ref().is_some_and(|m| {
                        m.registry_digest == digest && m.included.len() == included
                    })
                }),
            )
            .await
            .expect("the models service runs");
            model.clone().expect("checked in the wait")
        });
        join_all(waits).await
    }

    /// The counters of every node, summed.
    pub fn counters(&self) -> Counters {
        let mut sum = Counters::default();
        for n in &self.nodes {
            let c = n.models.counters();
            sum.published += c.published;
            sum.gossip_accepted += c.gossip_accepted;
            sum.gossip_rejected += c.gossip_rejected;
            sum.gossip_ignored += c.gossip_ignored;
            sum.gossip_dropped += c.gossip_dropped;
            sum.weights_fetched += c.weights_fetched;
            sum.weights_rejected += c.weights_rejected;
            sum.sessions_completed += c.sessions_completed;
            sum.sessions_failed += c.sessions_failed;
            sum.sync_refused += c.sync_refused;
            sum.merges += c.merges;
        }
        sum
    }

    /// Stops every node.
    pub async fn stop(self) {
        for n in self.nodes {
            n.models.shutdown().await;
            n.node.stop().await;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes[..6].iter().map(|b| format!("{b:02x}")).collect()
}
