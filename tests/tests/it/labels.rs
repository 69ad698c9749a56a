//! Label sync between real nodes: ten swarms on 127.0.0.1 label concurrently, are cut into two
//! halves that keep labelling, are healed, and must all end with exactly the labels that were
//! acknowledged (the latest of each annotator for each sample), through gossip push, anti-entropy,
//! or each alone.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::collections::BTreeMap;

use futures::future::join_all;
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use swarmlabel_crdt::{AnnotatorKey, SampleId, Value};
use swarmlabel_tests::labels::{LabelNet, LabelNode, Triple, config};

const NODES: usize = 10;
const LABELS_PER_PHASE: usize = 4;

/// What each node labels in one phase: (sample, time, value), drawn from a seeded RNG over a pool
/// of 40 samples (so that annotators overlap and every shard is used). Times grow with the phase,
/// so a node labelling a sample again supersedes its earlier label.
fn plan(rng: &mut ChaCha8Rng, phase: u64) -> Vec<Vec<(SampleId, u64, Value)>> {
    (0..NODES)
        .map(|node| {
            (0..LABELS_PER_PHASE)
                .map(|k| {
                    let sample =
                        SampleId(swarmlabel_store::BlobId::of(&[rng.random_range(0..40u8)]).0);
                    let value = match rng.random_range(0..6u16) {
                        4 => Value::Skip,
                        5 => Value::Unsure,
                        l => Value::Label(l),
                    };
                    let time = 1_000_000 * phase + (node * 100 + k) as u64;
                    (sample, time, value)
                })
                .collect()
        })
        .collect()
}

/// Every node of `nodes` records its part of `plan` concurrently; returns the acknowledged labels.
async fn label(
    net: &LabelNet,
    nodes: &[usize],
    plan: &[Vec<(SampleId, u64, Value)>],
) -> Vec<Triple> {
    let work = nodes.iter().map(|&i| {
        let node: &LabelNode = &net.nodes[i];
        let mine = plan[i].clone();
        async move {
            let mut acked = Vec::new();
            for (sample, time, value) in mine {
                acked.push(node.label(sample, time, value).await);
            }
            acked
        }
    });
    join_all(work).await.into_iter().flatten().collect()
}

/// The labels every node must end with: the last acknowledged value of each (sample,
/// annotator), in (sample, annotator) order.
fn expected(acked: &[Triple]) -> Vec<Triple> {
    let mut latest: BTreeMap<(SampleId, AnnotatorKey), Value> = BTreeMap::new();
    for (s, a, v) in acked {
        latest.insert((*s, *a), *v);
    }
    latest.into_iter().map(|((s, a), v)| (s, a, v)).collect()
}

/// Labels in three phases (connected, partitioned into halves, healed) and checks that every
/// node ends with exactly the acknowledged labels.
async fn partition_scenario(seed: u64, anti_entropy: bool, gossip_push: bool) -> LabelNet {
    let net = LabelNet::start(NODES, |i| {
        config(seed + i as u64, anti_entropy, gossip_push)
    })
    .await;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let all: Vec<usize> = (0..NODES).collect();
    let (left, right) = all.split_at(NODES / 2);

    // Phase 1, connected. Acknowledged labels are kept in the order they were acknowledged per
    // node; phases follow one another, so later phases supersede earlier ones.
    let mut acked = label(&net, &all, &plan(&mut rng, 1)).await;

    // Phase 2: two halves that cannot reach each other both keep labelling.
    net.partition(left, right).await;
    acked.extend(label(&net, &all, &plan(&mut rng, 2)).await);

    // Phase 3: healed; everyone labels a little more.
    net.heal(left, right).await;
    acked.extend(label(&net, &all, &plan(&mut rng, 3)).await);

    let want = expected(&acked);
    assert!(
        want.len() > 60,
        "the plan overlaps too much: {}",
        want.len()
    );
    net.wait_for("every node to hold exactly the acknowledged labels", &want)
        .await;
    for (i, node) in net.nodes.iter().enumerate() {
        let (held, rejected) = node.holdings().await;
        assert_eq!(held, want, "node {i}: none lost, none extra, latest values");
        assert_eq!(rejected, 0, "node {i} stored something invalid");
    }
    let counters = net.counters();
    assert_eq!(counters.recorded, acked.len() as u64);
    assert_eq!(counters.gossip_rejected + counters.sync_refused, 0);
    net
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_nodes_converge_on_the_acknowledged_labels_across_a_partition() {
    let net = partition_scenario(1, true, true).await;
    let c = net.counters();
    assert!(
        c.gossip_accepted > 0,
        "gossip push delivered nothing: {c:?}"
    );
    assert!(c.sessions_completed > 0, "anti-entropy never ran: {c:?}");
    // Which path carries the partition's labels across is a race: anti-entropy, or gossipsub's
    // own IHAVE/IWANT of its message cache (the last ~1.5 s of messages) right after healing.
    // The next test takes gossip away to show that anti-entropy alone heals a partition.
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anti_entropy_alone_converges_across_a_partition() {
    let net = partition_scenario(2, true, false).await;
    let c = net.counters();
    assert_eq!(
        c.gossip_accepted + c.gossip_ignored,
        0,
        "gossip was off: {c:?}"
    );
    assert!(c.sync_applied > 0, "{c:?}");
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_alone_delivers_every_label_to_every_connected_node() {
    let net = LabelNet::start(NODES, |i| config(30 + i as u64, false, true)).await;
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let all: Vec<usize> = (0..NODES).collect();
    let mut acked = label(&net, &all, &plan(&mut rng, 1)).await;
    acked.extend(label(&net, &all, &plan(&mut rng, 2)).await);
    let want = expected(&acked);
    net.wait_for("every node to hold every gossiped label", &want)
        .await;
    let c = net.counters();
    assert_eq!(
        c.sessions_completed + c.sessions_failed,
        0,
        "anti-entropy was off: {c:?}"
    );
    assert_eq!(c.sync_applied, 0, "{c:?}");
    assert!(
        c.gossip_accepted >= (NODES - 1) as u64 * want.len() as u64 / 2,
        "{c:?}"
    );
    net.stop().await;
}
