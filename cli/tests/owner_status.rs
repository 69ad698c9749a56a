//! `swarmlabel dataset status ID` (issue 17): the owner sees progress per class, coverage against
//! the redundancy target and the annotators with what the screening flags. Annotators' labels are
//! written into the home's label store before the node starts (as sync delivers them).

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::process::Command;

use ed25519_dalek::SigningKey;
use serde_json::Value as Json;
use swarmlabel_crdt::{Annotation, AnnotatorKey, SampleId, SignedAnnotation, Value};
use swarmlabel_node::labels::LabelStore;

#[path = "support/process.rs"]
mod process;

use process::{Process, ok};

#[test]
fn the_owner_sees_class_progress_coverage_and_a_flagged_spammer() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    ok(&home, &["init"]);
    let shapes = dir.path().join("shapes");
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
        let node_home = swarmlabel_net::Home::open(&home).unwrap();
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
                let annotation = Annotation {
                    dataset: dataset.id,
                    sample,
                    annotator: AnnotatorKey(key.verifying_key().to_bytes()),
                    time_ms: 1_000 + i as u64,
                    value: Value::Label(if k == 3 { 0 } else { truth }),
                    suggestion: None,
                };
                store
                    .record(&SignedAnnotation::sign(annotation, key).unwrap())
                    .unwrap();
            }
        }
    }
    let daemon = Process::spawn(
        Command::new(env!("CARGO_BIN_EXE_swarmlabel"))
            .args(["run", "--listen", "/ip4/127.0.0.1/tcp/0"])
            .env("SWARMLABEL_HOME", &home)
            .env_remove("RUST_LOG"),
    );
    daemon.line("api: ");

    let status: Json =
        serde_json::from_str(&ok(&home, &["dataset", "status", &id, "--json"])).unwrap();
    assert_eq!(status["samples"], 40);
    assert_eq!(status["redundancy_target"], 4);
    // 30 samples have their 4 labels, 10 none.
    assert_eq!(status["coverage"]["at_target"], 30, "{status}");
    assert_eq!(status["coverage"]["below_target"], 10);
    // Per class, the consensus of the 30 samples is their truth (3 honest votes against 1).
    let per_class: u64 = status["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["consensus"].as_u64().unwrap())
        .sum();
    assert_eq!(per_class, 30, "{status}");
    assert_eq!(status["flagged"], 1, "{status}");
    let flagged: Vec<&Json> = status["annotators"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| !a["flag"].is_null())
        .collect();
    assert_eq!(flagged[0]["annotator"], spammer.as_str());
    assert_eq!(flagged[0]["flag"]["kind"], "fixed");
    // The spammer ranks last by reliability.
    assert_eq!(
        status["annotators"].as_array().unwrap().last().unwrap()["annotator"],
        spammer.as_str()
    );

    let text = ok(&home, &["dataset", "status", &id]);
    assert!(
        text.contains("coverage: 30 of 40 samples have the 4 label(s) wanted (75 %)"),
        "{text}"
    );
    assert!(
        text.contains(&format!("{spammer}  reliability"))
            && text.contains("FLAGGED fixed: answers \""),
        "{text}"
    );
    assert!(text.contains("1 flagged: look at their answers"), "{text}");
}
