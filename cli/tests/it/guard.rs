//! The rollout guard in a running node (issue 17): the merged model of a dataset turns poisoned
//! (three peers' updates, trained on every digit labelled as the next one, as sync would deliver
//! them: written into the home's model registry and blob store before the node starts). The node
//! keeps ranking with its own model, `swarmlabel status` says why, and
//! `swarmlabel_learn_merged_refused_total` counts it.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::process::Command;
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use serde_json::Value as Json;
use swarmlabel_crdt::AnnotatorKey;
use swarmlabel_crdt::registry::{ModelUpdate, Registry, SignedUpdate, Validation};
use swarmlabel_node::learn::exchange::architecture;
use swarmlabel_node::learn::{features, seed_of, train};
use swarmlabel_node::models::store;
use swarmlabel_store::{Catalog, DatasetId, Home};

use crate::support::process;

use process::{Process, ok, wait_until};

const DIGITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/digits.csv");

/// Writes three signed updates of one poisoned model into `home`'s registry of `id`.
fn poison(home: &Home, id: DatasetId) {
    let pool = Arc::new(features::load(&Catalog::of(home), &id).unwrap());
    let wrong: Vec<(usize, usize)> = pool
        .ids
        .iter()
        .enumerate()
        .map(|(row, s)| (row, (usize::from(pool.gold[s]) + 1) % 10))
        .collect();
    let spec = pool.spec.clone();
    let weights = train::run(&train::Job {
        pool,
        start: None,
        seed: seed_of(&id),
        labels: wrong,
        fresh: Vec::new(),
        augment: swarmlabel_active_learning::Augment::Off,
    })
    .unwrap()
    .weights;
    let (blob, _) = home.blobs().put(&weights).unwrap();
    let mut registry = Registry::new(id);
    for n in 1..=3u8 {
        let key = SigningKey::from_bytes(&[n; 32]);
        let update = ModelUpdate {
            dataset: id,
            peer: AnnotatorKey(key.verifying_key().to_bytes()),
            version: 1,
            labels_trained: 100_000,
            architecture: architecture(&spec),
            weights_hash: blob,
            weights_bytes: weights.len() as u64,
            validation: Validation::from_counts(0, 0),
        };
        registry
            .insert(SignedUpdate::sign(update, &key).unwrap())
            .unwrap();
    }
    store::save(home, &registry).unwrap();
}

#[test]
fn a_poisoned_merge_is_refused_with_the_reason_in_status_and_the_metric_raised() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    ok(&home, &["init"]);
    let labels = "0,1,2,3,4,5,6,7,8,9";
    let id = ok(
        &home,
        &[
            "-q", "dataset", "create", DIGITS, "--name", "digits", "--labels", labels,
        ],
    )
    .trim()
    .to_owned();
    poison(&Home::open(&home).unwrap(), id.parse().unwrap());

    let daemon = Process::spawn(
        Command::new(env!("CARGO_BIN_EXE_swarmlabel"))
            .args(["run", "--listen", "/ip4/127.0.0.1/tcp/0"])
            .env("SWARMLABEL_HOME", &home)
            .env_remove("RUST_LOG"),
    );
    let page = daemon.line("labeling page: ");
    let (url, _) = page.split_once("/#token=").unwrap();
    // Wait (for a hang only) until the node trained on its gold labels and judged the merge.
    let mut refusal = Json::Null;
    wait_until("a refusal in status", || {
        let status: Json = serde_json::from_str(&ok(&home, &["status", "--json"])).unwrap();
        refusal = status["guard"][&id].clone();
        refusal.is_object()
    });
    assert!(
        refusal["merged_accuracy"].as_f64().unwrap() < 0.2
            && refusal["kept_accuracy"].as_f64().unwrap() > 0.9,
        "{refusal}"
    );
    let text = ok(&home, &["status"]);
    assert!(
        text.contains(&format!(
            "model guard:    {id} kept the model in use: the new merged model"
        )),
        "{text}"
    );
    let metrics = ureq::get(format!("{url}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    // Each poisoned merge on the way (the three updates alone, then with the node's own) is
    // counted once.
    let series = format!("swarmlabel_learn_merged_refused_total{{dataset=\"{id}\"}} ");
    let refused: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or_else(|| panic!("{series} in\n{metrics}"))
        .parse()
        .unwrap();
    assert!(refused >= 1.0, "{refused}");
}
