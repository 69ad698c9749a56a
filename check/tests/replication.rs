//! Model checking of replication (stateright, breadth first, exhaustive): three nodes running the
//! real anti-entropy core, holding records merged by the real rules of annotations and of the
//! model registry, over a network that loses, duplicates and reorders messages, partitions and
//! heals, and carries a hostile peer's forged records. Checked in every reachable state:
//! - no record a node acknowledged is ever lost from that node (or superseded by a later one of
//!   its slot);
//! - no record with a bad signature is ever held;
//! - once the network is connected and quiet, every node holds the same records.
//!
//! A merge that keeps the first write it saw is checked too, and the checker must find the
//! counterexample: the check can fail. The states explored are printed (`--nocapture`) and
//! recorded in `docs/architecture.md`.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

#[path = "replication/records.rs"]
mod records;
#[path = "replication/system.rs"]
mod system;

use std::time::Duration;

use ed25519_dalek::SigningKey;
use stateright::{Checker as _, Model as _};
use swarmlabel_crdt::registry::{
    Architecture, ModelUpdate, Registry, SignedUpdate, Validation, WeightsHash,
};
use swarmlabel_crdt::validate::Dataset;
use swarmlabel_crdt::{Annotation, AnnotatorKey, SampleId, ShardLayout, SignedAnnotation, Value};
use swarmlabel_ids::DatasetId;
use swarmlabel_node::replicate::core;

use records::{Annotations, Models, RecordSet};
use system::{Config, System};

/// The states a check must explore at least (the bar for exhaustiveness).
const AT_LEAST: usize = 100_000;
const DATASET: DatasetId = DatasetId([0x5a; 32]);

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn env(name: &str, default: u32) -> u32 {
    std::env::var(format!("MODEL_{name}"))
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn anti_entropy() -> core::Config {
    core::Config {
        interval: Some(Duration::from_secs(10)),
        peers_per_round: 2,
        max_sessions: 4,
        session_timeout: Duration::from_secs(15),
        backoff_first: Duration::from_secs(10),
        backoff_max: Duration::from_secs(20),
    }
}

/// The faults a run may inject (each budget is per run).
#[derive(Debug, Clone, Copy)]
struct Faults {
    drops: u32,
    duplicates: u32,
    reorders: u32,
    partition: bool,
}

/// A lossy network: one message lost and one overtaken, anywhere in the run.
const LOSSY: Faults = Faults {
    drops: 1,
    duplicates: 0,
    reorders: 1,
    partition: false,
};
/// A split network: node 0 cut off from the others and healed, and one message duplicated.
const SPLIT: Faults = Faults {
    drops: 0,
    duplicates: 1,
    reorders: 0,
    partition: true,
};

fn config<R: RecordSet>(
    faults: Faults,
    initial: R,
    writes: Vec<Vec<R::Record>>,
    forged: Vec<R::Record>,
) -> Config<R> {
    Config {
        initial,
        writes,
        forged,
        anti_entropy: anti_entropy(),
        rounds_before: env("BEFORE", 0),
        rounds_after: env("AFTER", 2),
        drops: env("DROPS", faults.drops) as u8,
        duplicates: env("DUPS", faults.duplicates) as u8,
        reorders: env("REORDERS", faults.reorders) as u8,
        partition: env("PARTITION", u32::from(faults.partition)) == 1,
        gossip: env("GOSSIP", 0) == 1,
    }
}

/// A label of the sample by `annotator`, the `seq`-th of its chain, signed by `signer`.
fn label(signer: u8, annotator: u8, seq: u32, value: u16) -> SignedAnnotation {
    let annotation = Annotation {
        dataset: DATASET,
        sample: SampleId([7; 32]),
        annotator: AnnotatorKey(key(annotator).verifying_key().to_bytes()),
        seq,
        time_ms: u64::from(seq),
        value: Value::Label(value),
        suggestion: None,
    };
    if signer == annotator {
        SignedAnnotation::sign(annotation, &key(signer)).unwrap()
    } else {
        // Someone else's slot claimed with the signer's signature: never verifies.
        let own = Annotation {
            annotator: AnnotatorKey(key(signer).verifying_key().to_bytes()),
            ..annotation
        };
        let signed = SignedAnnotation::sign(own, &key(signer)).unwrap();
        SignedAnnotation::from_parts(annotation, *signed.signature())
    }
}

/// Node 0's annotator labels the sample, then changes its mind; node 1's annotator labels the
/// same sample; node 2 only replicates. The hostile peer claims node 1's slot. On a split
/// network (a larger space per write), node 0 does not change its mind.
fn annotations(faults: Faults, keep_first: bool) -> Config<Annotations> {
    let dataset = Dataset {
        id: DATASET,
        label_count: 4,
        layout: ShardLayout::new(0).unwrap(),
    };
    let first = if faults.partition {
        vec![label(1, 1, 1, 1)]
    } else {
        vec![label(1, 1, 1, 0), label(1, 1, 2, 1)]
    };
    config(
        faults,
        Annotations::new(dataset, keep_first),
        vec![first, vec![label(2, 2, 1, 2)], vec![]],
        vec![label(9, 2, 5, 3)],
    )
}

fn update(signer: u8, peer: u8, version: u64) -> SignedUpdate {
    let update = ModelUpdate {
        dataset: DATASET,
        peer: AnnotatorKey(key(peer).verifying_key().to_bytes()),
        version,
        labels_trained: 10 * version,
        architecture: Architecture::new([3; 32], "linear").unwrap(),
        weights_hash: WeightsHash([peer.wrapping_mul(16).wrapping_add(version as u8); 32]),
        weights_bytes: 100,
        validation: Validation::from_counts(1, 2),
    };
    if signer == peer {
        SignedUpdate::sign(update, &key(signer)).unwrap()
    } else {
        let own = ModelUpdate {
            peer: AnnotatorKey(key(signer).verifying_key().to_bytes()),
            ..update.clone()
        };
        let signed = SignedUpdate::sign(own, &key(signer)).unwrap();
        SignedUpdate::from_parts(update, *signed.signature())
    }
}

/// Node 0 publishes two versions of its model (one on a split network), node 1 one; the
/// hostile peer forges node 1's.
fn models(faults: Faults) -> Config<Models> {
    let first = if faults.partition {
        vec![update(1, 1, 2)]
    } else {
        vec![update(1, 1, 1), update(1, 1, 2)]
    };
    config(
        faults,
        Models::new(Registry::new(DATASET)),
        vec![first, vec![update(2, 2, 1)], vec![]],
        vec![update(9, 2, 5)],
    )
}

fn check<R: RecordSet>(what: &str, cfg: Config<R>) -> usize {
    let started = std::time::Instant::now();
    // A guard against a configuration too large for the machine; reaching it fails the test,
    // because the check is only worth something when it is exhaustive.
    let limit = env("LIMIT", 50_000_000) as usize;
    let checker = System::new(cfg)
        .checker()
        .threads(2)
        .target_state_count(limit)
        .spawn_bfs()
        .join();
    let states = checker.unique_state_count();
    println!(
        "{what}: {states} distinct states explored ({} visits), depth {}, {:.1} s",
        checker.state_count(),
        checker.max_depth(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        checker.state_count() < limit,
        "{what}: the check stopped at its limit of {limit} states, so it was not exhaustive"
    );
    let mut found: Vec<&str> = checker.discoveries().into_keys().collect();
    found.sort_unstable();
    println!("{what}: discoveries {found:?}");
    checker.assert_properties();
    assert!(states >= AT_LEAST, "{what}: only {states} states explored");
    states
}

#[test]
fn annotations_stay_signed_acknowledged_and_converge_on_a_lossy_network() {
    check("annotations, lossy", annotations(LOSSY, false));
}

#[test]
fn annotations_stay_signed_acknowledged_and_converge_across_a_partition() {
    check("annotations, split", annotations(SPLIT, false));
}

#[test]
fn the_model_registry_stays_signed_acknowledged_and_converges_on_a_lossy_network() {
    check("model registry, lossy", models(LOSSY));
}

#[test]
fn the_model_registry_stays_signed_acknowledged_and_converges_across_a_partition() {
    check("model registry, split", models(SPLIT));
}

#[test]
fn a_merge_that_keeps_the_first_write_it_saw_is_caught() {
    let checker = System::new(annotations(LOSSY, true))
        .checker()
        .threads(2)
        .spawn_bfs()
        .join();
    let path = checker
        .discovery("once quiet, every node holds the same digest")
        .expect("the checker finds nodes that never converge");
    println!(
        "keep-first merge: counterexample of {} steps found among {} states",
        path.into_actions().len(),
        checker.unique_state_count()
    );
}
