//! Model sharing between real nodes: announcements on gossip (some dropped on purpose), weights
//! over the blob exchange, registry anti-entropy across a partition, and the merged model every
//! node derives; the same merged model everywhere once updates stop, and a poisoned peer that
//! the robust merge keeps from wrecking the honest nodes' accuracy.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::collections::HashMap;
use std::sync::Arc;

use rand::{Rng as _, SeedableRng as _, seq::SliceRandom as _};
use rand_chacha::ChaCha8Rng;
use swarmlabel_active_learning::matrix::Matrix;
use swarmlabel_active_learning::model::{Model, ModelSpec, TrainConfig};
use swarmlabel_crdt::registry::merge::Method;
use swarmlabel_crdt::registry::{Architecture, Registry, SignedUpdate, Validation, WeightsHash};
use swarmlabel_node::models::{self, Publication, merged, weights};
use swarmlabel_tests::models::{DATASET, ModelNet, config};
use swarmlabel_tests::test_data;

/// The crdt architecture of a model spec: BLAKE3 of its JSON, and a short name.
fn architecture(spec: &ModelSpec, name: &str) -> Architecture {
    let json = serde_json::to_vec(spec).unwrap();
    Architecture::new(*blake3::hash(&json).as_bytes(), name).unwrap()
}

fn linear() -> ModelSpec {
    ModelSpec::linear(64, 10)
}

/// Publishes `weights` from node `i`; returns the signed update.
async fn publish(net: &ModelNet, i: usize, weights: Vec<u8>, labels: u64) -> SignedUpdate {
    net.nodes[i]
        .models
        .publish(Publication {
            dataset: DATASET,
            weights,
            labels_trained: labels,
            architecture: architecture(&linear(), "linear-64x10"),
            validation: Validation::from_counts(0, 0),
        })
        .await
        .expect("a valid model publishes")
}

/// What every node must end with: the registry of every published update, and the merged model
/// computed from it here, by the same pure function, with the weights in force.
fn expected(
    published: &[(SignedUpdate, Vec<u8>)],
    method: Method,
) -> (Registry, merged::MergedModel) {
    let mut registry = Registry::new(DATASET);
    let mut held = HashMap::new();
    for (update, bytes) in published {
        registry.insert(update.clone()).unwrap();
        held.insert(update.update().weights_hash, Arc::new(bytes.clone()));
    }
    let merged = merged::compute(&registry, &held, method, None, None, None).unwrap();
    (registry, merged)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_nodes_converge_on_one_registry_and_one_merged_model_across_drops_and_a_partition() {
    const NODES: usize = 10;
    // A third of inbound announcements is lost: only anti-entropy can make up for them.
    let net = ModelNet::start(NODES, |i| config(40 + i as u64, 0.3)).await;
    let mut published = Vec::new();
    let mut seed = 0;
    let mut phase =
        async |net: &ModelNet, nodes: &[usize], published: &mut Vec<(SignedUpdate, Vec<u8>)>| {
            for &i in nodes {
                seed += 1;
                // Real candle models of one architecture, each with its own seeded weights.
                let bytes = Model::new(linear(), seed)
                    .unwrap()
                    .to_safetensors_bytes()
                    .unwrap();
                let update = publish(net, i, bytes.clone(), 10 + seed).await;
                published.push((update, bytes));
            }
        };
    let all: Vec<usize> = (0..NODES).collect();
    let (left, right) = all.split_at(NODES - 1);

    // Two updates each, connected.
    phase(&net, &all, &mut published).await;
    phase(&net, &all, &mut published).await;
    // Node 9 cut off; everyone publishes again on their side.
    net.partition(left, right).await;
    phase(&net, &all, &mut published).await;
    // Healed; one more round of updates, then they stop.
    net.heal(left, right).await;
    phase(&net, &all, &mut published).await;

    let (registry, want) = expected(&published, models::Config::default().method);
    assert_eq!(registry.len(), NODES);
    let merged = net.wait_for_merged(&all, registry.digest(), NODES).await;
    for (i, m) in merged.iter().enumerate() {
        assert_eq!(m.hash, want.hash, "node {i}'s merged model differs");
        assert_eq!(m.registry_digest, registry.digest(), "node {i}");
        assert!(m.excluded.is_empty(), "node {i}: {:?}", m.excluded);
        let held = net.nodes[i].models.registry(DATASET).await.unwrap();
        assert_eq!(held, registry, "node {i} holds every peer's last update");
        assert_eq!(
            *blake3::hash(&m.weights).as_bytes(),
            m.hash.0,
            "node {i}: the hash is of the weights"
        );
    }
    // The merged weights are a model the learning side loads.
    Model::from_safetensors_bytes(&merged[0].weights).unwrap();
    let c = net.counters();
    eprintln!("counters over the 10 nodes: {c:?}");
    assert!(
        c.gossip_dropped > 0,
        "the fault injection dropped nothing: {c:?}"
    );
    assert!(c.gossip_accepted > 0, "{c:?}");
    assert!(c.sessions_completed > 0, "anti-entropy never ran: {c:?}");
    assert_eq!(
        c.gossip_rejected + c.sync_refused + c.weights_rejected,
        0,
        "{c:?}"
    );
    assert_eq!(c.published, published.len() as u64);
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anti_entropy_alone_converges_when_every_announcement_is_lost() {
    const NODES: usize = 4;
    let net = ModelNet::start(NODES, |i| config(100 + i as u64, 1.0)).await;
    let mut published = Vec::new();
    for i in 0..NODES {
        for v in 0..2u64 {
            let bytes = Model::new(linear(), 1_000 + 10 * i as u64 + v)
                .unwrap()
                .to_safetensors_bytes()
                .unwrap();
            published.push((publish(&net, i, bytes.clone(), 20).await, bytes));
        }
    }
    let (registry, want) = expected(&published, models::Config::default().method);
    let all: Vec<usize> = (0..NODES).collect();
    let merged = net.wait_for_merged(&all, registry.digest(), NODES).await;
    assert!(merged.iter().all(|m| m.hash == want.hash));
    let c = net.counters();
    assert_eq!(
        c.gossip_accepted, 0,
        "every announcement was dropped: {c:?}"
    );
    assert!(c.gossip_dropped > 0 && c.sessions_completed > 0, "{c:?}");
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_travel_through_a_peer_that_holds_them_when_their_author_is_out_of_reach() {
    // 0 and 2 never connect; 1 is connected to both.
    let net = ModelNet::start(3, |i| config(200 + i as u64, 0.0)).await;
    net.partition(&[0], &[2]).await;
    let bytes = Model::new(linear(), 9)
        .unwrap()
        .to_safetensors_bytes()
        .unwrap();
    let update = publish(&net, 0, bytes.clone(), 50).await;
    let (registry, want) = expected(&[(update, bytes)], models::Config::default().method);
    let merged = net.wait_for_merged(&[1, 2], registry.digest(), 1).await;
    assert!(merged.iter().all(|m| m.hash == want.hash));
    // Node 2 could only get the weights from node 1, which served them from its blob store.
    assert!(
        net.nodes[1]
            .node
            .node
            .encode_metrics()
            .contains("swarmlabel_blobs_served_total 1"),
        "node 1 served the weights it had fetched"
    );
    assert_eq!(net.nodes[2].models.counters().weights_fetched, 1);
    net.stop().await;
}

/// The digits, features scaled to [0, 1]: (rows, labels).
fn digits() -> (Vec<Vec<f32>>, Vec<usize>) {
    let mut reader = csv::Reader::from_path(test_data("digits.csv")).unwrap();
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for record in reader.records() {
        let record = record.unwrap();
        let values: Vec<f32> = record.iter().map(|v| v.parse().unwrap()).collect();
        let (label, features) = values.split_last().unwrap();
        rows.push(features.iter().map(|v| v / 16.0).collect());
        labels.push(*label as usize);
    }
    (rows, labels)
}

fn matrix(rows: &[Vec<f32>]) -> Matrix {
    Matrix::from_rows(64, rows).unwrap()
}

fn accuracy(weights: &[u8], test: &(Matrix, Vec<usize>)) -> f64 {
    let model = Model::from_safetensors_bytes(weights).unwrap();
    model.accuracy(&test.0, &test.1).unwrap()
}

/// Runs `weights` through a network (node `i` publishes `weights[i]`) and returns the merged
/// model every node agrees on.
async fn merged_by_network(weights: &[(Vec<u8>, u64)]) -> Arc<merged::MergedModel> {
    let n = weights.len();
    let net = ModelNet::start(n, |i| config(300 + i as u64, 0.0)).await;
    let mut published = Vec::new();
    for (i, (bytes, labels)) in weights.iter().enumerate() {
        published.push((
            publish(&net, i, bytes.clone(), *labels).await,
            bytes.clone(),
        ));
    }
    let (registry, _) = expected(&published, models::Config::default().method);
    let all: Vec<usize> = (0..n).collect();
    let merged = net.wait_for_merged(&all, registry.digest(), n).await;
    assert!(merged.iter().all(|m| m.hash == merged[0].hash));
    net.stop().await;
    merged[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoning_peer_moves_the_robust_merged_accuracy_by_at_most_two_points() {
    const HONEST: usize = 5;
    let (rows, labels) = digits();
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(6));
    let (test_idx, train_idx) = order.split_at(rows.len() * 3 / 10);
    let pick = |idx: &[usize]| {
        let r: Vec<Vec<f32>> = idx.iter().map(|&i| rows[i].clone()).collect();
        (
            matrix(&r),
            idx.iter().map(|&i| labels[i]).collect::<Vec<_>>(),
        )
    };
    let test = pick(test_idx);

    // Honest nodes: the same seeded initial weights, trained on disjoint parts of the data.
    let mut honest = Vec::new();
    for part in train_idx.chunks(train_idx.len().div_ceil(HONEST)) {
        let (x, y) = pick(part);
        let mut model = Model::new(linear(), 7).unwrap();
        model.train(&x, &y, &TrainConfig::linear()).unwrap();
        eprintln!(
            "honest model on {} labels: test accuracy {:.4}",
            y.len(),
            model.accuracy(&test.0, &test.1).unwrap()
        );
        honest.push((model.to_safetensors_bytes().unwrap(), y.len() as u64));
    }
    // The poisoner: the same form, huge random values, claiming many labels.
    let form = weights::decode(&honest[0].0).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(66);
    let poisoned: Vec<(String, Vec<f32>)> = form
        .tensors
        .iter()
        .map(|(name, values)| {
            let huge = values
                .iter()
                .map(|_| rng.random_range(-1e6f32..1e6))
                .collect();
            (name.clone(), huge)
        })
        .collect();
    let poison = (weights::encode(&poisoned, &form.form).unwrap(), 100_000);

    let without = merged_by_network(&honest).await;
    let mut all = honest.clone();
    all.push(poison);
    let with = merged_by_network(&all).await;
    let clean = accuracy(&without.weights, &test);
    let attacked = accuracy(&with.weights, &test);
    // The same updates merged by a plain weighted mean: what the attack does without robustness.
    let naive = {
        let mut registry = Registry::new(DATASET);
        let mut held = HashMap::new();
        for (i, (bytes, labels)) in all.iter().enumerate() {
            let id = swarmlabel_store::Identity::generate().unwrap();
            let update = swarmlabel_crdt::registry::ModelUpdate {
                dataset: registry.dataset(),
                peer: id.public_key(),
                version: 1 + i as u64,
                labels_trained: *labels,
                architecture: architecture(&linear(), "linear-64x10"),
                weights_hash: WeightsHash(*blake3::hash(bytes).as_bytes()),
                weights_bytes: bytes.len() as u64,
                validation: Validation::from_counts(0, 0),
            };
            held.insert(update.weights_hash, Arc::new(bytes.clone()));
            registry
                .insert(SignedUpdate::sign(update, id.signing_key()).unwrap())
                .unwrap();
        }
        let m = merged::compute(&registry, &held, Method::WeightedMean, None, None, None).unwrap();
        accuracy(&m.weights, &test)
    };
    eprintln!(
        "merged test accuracy (trimmed mean): without the poisoner {clean:.4}, with it \
         {attacked:.4}; a weighted mean with it: {naive:.4}"
    );
    assert_eq!(
        with.included.len(),
        HONEST + 1,
        "trimming, not exclusion, bounds it"
    );
    assert!(
        (clean - attacked).abs() <= 0.02,
        "the poisoner moved accuracy from {clean:.4} to {attacked:.4}"
    );
    assert!(clean > 0.85, "the honest merged model is poor: {clean:.4}");
    assert!(
        naive < clean - 0.2,
        "the attack is too weak to show anything: a weighted mean still scores {naive:.4}"
    );
}
