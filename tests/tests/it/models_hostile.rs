//! A hostile peer — a raw libp2p swarm — announces a forged model update (a bad signature, in
//! the name of an honest node) on the model topic. Every node rejects and counts it, and none
//! stores it; a valid announcement sent after it shows that the nodes had judged it. The hostile
//! peer then serves bytes that do not match that valid update's weights hash: every node refuses
//! them, and merges nothing of them.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::time::Duration;

use swarmlabel_crdt::AnnotatorKey;
use swarmlabel_crdt::registry::{Architecture, ModelUpdate, SignedUpdate, Validation, WeightsHash};
use swarmlabel_net::swarm::blob;
use swarmlabel_net::swarm::codec::Frame as _;
use swarmlabel_node::models::wire::KIND;
use swarmlabel_store::Identity;
use swarmlabel_tests::models::{DATASET, ModelNet, config};
use swarmlabel_tests::network::within;
use swarmlabel_tests::raw::RawPeer;

/// Drives the hostile peer for a moment, answering every blob request with bytes of the
/// announced size that are not the announced weights.
async fn step(hostile: &mut RawPeer) {
    hostile.step(Duration::from_millis(50)).await;
    for incoming in std::mem::take(&mut hostile.blob_requests) {
        let wrong = blob::Response::Found(vec![0x42; 2_000]).to_frame().unwrap();
        hostile.respond(incoming, wrong, true);
    }
}

fn update(peer: AnnotatorKey, version: u64) -> ModelUpdate {
    ModelUpdate {
        dataset: DATASET,
        peer,
        version,
        labels_trained: 1_000,
        architecture: Architecture::new([7; 32], "linear-64x10").unwrap(),
        weights_hash: WeightsHash([0xee; 32]),
        weights_bytes: 2_000,
        validation: Validation::from_counts(99, 100),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_announcement_is_rejected_by_every_node_and_stored_by_none() {
    let net = ModelNet::start(3, |i| config(500 + i as u64, 0.0)).await;
    let hostile_id = Identity::generate().unwrap();
    let mut hostile = RawPeer::with_identity(hostile_id.clone());
    let topic = KIND.topic(&DATASET);
    for n in &net.nodes {
        hostile.dial(n.addr.clone());
    }
    hostile.subscribe(&topic, 3).await;

    // Forged: an update in the victim's name, signed by the hostile key.
    let victim = net.nodes[0].node.home.identity.public_key();
    let own =
        SignedUpdate::sign(update(hostile_id.public_key(), 1), hostile_id.signing_key()).unwrap();
    let forged = SignedUpdate::from_parts(update(victim, 9), *own.signature());
    assert!(forged.verify(DATASET).is_err());
    // Then the hostile key's own valid update as a sentinel: messages from one peer arrive in
    // order, so once every node holds it, every node has judged the forgery.
    for record in [&forged, &own] {
        hostile.publish(&topic, record.to_bytes()).unwrap();
    }
    let hostile_key = own.update().peer;
    within("every node to take the sentinel", async {
        loop {
            let mut all = true;
            for n in &net.nodes {
                all &= n
                    .models
                    .registry(DATASET)
                    .await
                    .unwrap()
                    .get(&hostile_key)
                    .is_some();
            }
            if all {
                break;
            }
            step(&mut hostile).await;
        }
    })
    .await;
    for (i, n) in net.nodes.iter().enumerate() {
        let c = n.models.counters();
        assert_eq!(c.gossip_rejected, 1, "node {i} rejected the forgery: {c:?}");
        let registry = n.models.registry(DATASET).await.unwrap();
        assert!(
            registry.get(&victim).is_none(),
            "node {i} stored the forgery"
        );
        assert_eq!(registry.len(), 1, "node {i}: only the sentinel");
        let metrics = n.node.node.encode_metrics();
        assert!(
            metrics.contains("swarmlabel_models_gossip_rejected_total 1"),
            "node {i}'s /metrics show the rejection"
        );
    }

    // The sentinel's weights: each node asks the hostile peer (the update's own peer) and gets
    // bytes that do not hash to the announced weights.
    within("every node to refuse the hostile peer's weights", async {
        while net
            .nodes
            .iter()
            .any(|n| n.models.counters().weights_rejected == 0)
        {
            step(&mut hostile).await;
        }
    })
    .await;
    // The merge of the sentinel (computed beside the download) says why there is no model.
    within(
        "every node to say the sentinel's weights are not available",
        async {
            loop {
                let mut all = true;
                for n in &net.nodes {
                    let problem = n.models.merge_problem(DATASET).await.unwrap();
                    all &= problem.is_some_and(|p| p.contains("not available"));
                }
                if all {
                    break;
                }
                step(&mut hostile).await;
            }
        },
    )
    .await;
    for (i, n) in net.nodes.iter().enumerate() {
        assert_eq!(n.models.counters().weights_fetched, 0, "node {i}");
        assert!(
            n.models.merged(DATASET).await.unwrap().is_none(),
            "node {i}"
        );
        let wrong = swarmlabel_store::BlobId::of(&[0x42; 2_000]);
        assert!(
            !n.node.home.home.blobs().path(&wrong).exists(),
            "node {i} stored the wrong bytes"
        );
    }
    net.stop().await;
}
