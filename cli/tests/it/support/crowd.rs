//! An owner's home with a shapes dataset of 40 images (redundancy target 4) whose first 30
//! samples carry labels from four annotators written into the label store (as sync delivers
//! them): three answer the truth (the image's folder), the fourth always the first label.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use serde_json::Value as Json;
use swarmlabel_crdt::{SampleId, Value};
use swarmlabel_node::labels::LabelStore;

use super::process::ok;

/// The home, the dataset id and the spammer's key (hex).
pub(crate) fn owner_with_a_spammer(dir: &Path) -> (PathBuf, String, String) {
    let home = dir.join("home");
    ok(&home, &["init"]);
    let shapes = dir.join("shapes");
    let shapes = shapes.to_str().unwrap();
    ok(
        &home,
        &[
            "-q", "dataset", "generate", "shapes", "--out", shapes, "--count", "40",
        ],
    );
    let id = ok(
        &home,
        &[
            "-q",
            "dataset",
            "create",
            shapes,
            "--name",
            "shapes",
            "--redundancy",
            "4",
        ],
    )
    .trim()
    .to_owned();
    let shown: Json =
        serde_json::from_str(&ok(&home, &["dataset", "show", &id, "--json"])).unwrap();
    let labels: Vec<String> = serde_json::from_value(shown["labels"].clone()).unwrap();
    // Every image's folder is its gold label: the truth the honest annotators answer.
    let rows: Vec<Json> = ok(&home, &["dataset", "export", &id, "--format", "jsonl"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let keys: Vec<SigningKey> = (1..=4u8)
        .map(|n| SigningKey::from_bytes(&[n; 32]))
        .collect();
    let spammer = hex::encode(keys[3].verifying_key().to_bytes());
    {
        let node_home = swarmlabel_store::Home::open(&home).unwrap();
        let dataset = LabelStore::crdt_dataset(&id.parse().unwrap(), labels.len(), 40);
        let (mut store, _) = LabelStore::open(&node_home, dataset).unwrap();
        // 30 samples: three annotators answer the truth, the fourth always the first label.
        for (i, row) in rows.iter().take(30).enumerate() {
            let sample = SampleId(
                hex::decode(row["sample_id"].as_str().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap(),
            );
            let truth = labels
                .iter()
                .position(|l| Some(l.as_str()) == row["label"].as_str())
                .unwrap() as u16;
            for (k, key) in keys.iter().enumerate() {
                let value = Value::Label(if k == 3 { 0 } else { truth });
                store
                    .record_own(key, sample, value, None, 1_000 + i as u64)
                    .unwrap();
            }
        }
    }
    (home, id, spammer)
}
