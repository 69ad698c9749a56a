//! Private gold labels (`dataset create --private-gold`): the published pages carry no answer a
//! Sybil could copy, while the owner's own node still measures labelers against them.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::path::Path;
use std::process::Command;

use serde_json::{Value as Json, json};
use swarmlabel_store::{Catalog, Home};

use crate::support::process;

use process::{Process, fails, ok};

fn json(text: &str) -> Json {
    serde_json::from_str(text).unwrap()
}

/// Every gold label the published pages of `id` carry (what any peer that fetches it can read).
fn published_gold(home: &Path, id: &str) -> Vec<u16> {
    let catalog = Catalog::of(&Home::open(home).unwrap());
    let listed = catalog.get(&id.parse().unwrap()).unwrap();
    (0..listed.root.root().pages.len())
        .flat_map(|i| catalog.page(&listed, i).unwrap().samples)
        .filter_map(|s| s.gold)
        .collect()
}

#[test]
fn private_gold_is_not_published_and_still_measures_labelers() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    ok(&home, &["init"]);
    let csv = dir.path().join("gold.csv");
    std::fs::write(&csv, "x,label\n0,a\n1,b\n2,a\n").unwrap();
    let create = |extra: &[&str]| {
        let mut args = vec!["dataset", "create", csv.to_str().unwrap(), "--json"];
        args.extend(["--name", "g", "--labels", "a,b,c"]);
        args.extend(extra);
        json(&ok(&home, &args))
    };
    let public = create(&[]);
    assert_eq!(public["gold"], json!(3));
    let public_id = public["id"].as_str().unwrap().to_owned();
    assert_eq!(published_gold(&home, &public_id).len(), 3);

    let private = create(&["--private-gold"]);
    let id = private["id"].as_str().unwrap().to_owned();
    assert_ne!(id, public_id, "the published manifests differ");
    assert_eq!(private["gold"], json!(0), "the root announces no gold");
    assert_eq!(private["private_gold"], json!(3));
    assert_eq!(published_gold(&home, &id), Vec::<u16>::new());

    // The owner still exports them (a CSV of samples and its answers) ...
    let exported = ok(&home, &["dataset", "export", &id, "--format", "jsonl"]);
    let rows: Vec<Json> = exported.lines().map(json).collect();
    let labels: Vec<_> = rows.iter().map(|r| r["label"].clone()).collect();
    assert_eq!(labels, [json!("a"), json!("b"), json!("a")]);
    let samples: Vec<String> = rows
        .iter()
        .map(|r| r["sample_id"].as_str().unwrap().to_owned())
        .collect();

    // ... and measures its labelers against them: one right, one wrong.
    let daemon = Process::spawn(
        Command::new(env!("CARGO_BIN_EXE_swarmlabel"))
            .args(["run", "--listen", "/ip4/127.0.0.1/tcp/0"])
            .env("SWARMLABEL_HOME", &home),
    );
    daemon.line("api: ");
    ok(&home, &["label", &id, &samples[0], "a"]);
    ok(&home, &["label", &id, &samples[1], "c"]);
    let stats = json(&ok(&home, &["labels", &id, "--stats", "--json"]));
    assert_eq!(stats["counts"]["gold_samples_labelled"], json!(2));
    assert_eq!(stats["annotators"][0]["gold_votes"], json!(2));
    assert_eq!(stats["annotators"][0]["gold_accuracy"], json!(0.5));
    drop(daemon);

    // A damaged gold file is named, never rewritten: only this home has it.
    let path = Catalog::of(&Home::open(&home).unwrap()).private_gold_path(&id.parse().unwrap());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[12] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let err = fails(&home, &["dataset", "export", &id, "--format", "jsonl"]);
    assert!(
        err.contains(&format!(
            "the private gold labels in {} are damaged",
            path.display()
        )),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "kept as it was");
}
