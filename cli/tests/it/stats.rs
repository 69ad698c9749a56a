//! `swarmlabel labels --stats` and `swarmlabel export` against a running daemon: what one
//! annotator's labels add up to, exactly, and raw annotations whose signatures check; then
//! several annotators, whose labels are written into the home's label store before the daemon
//! starts (one daemon signs with one key, and sync between nodes is not here yet).

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use ed25519_dalek::SigningKey;
use serde_json::{Value as Json, json};
use swarmlabel_consensus::UNANCHORED;
use swarmlabel_crdt::{Annotation, AnnotatorKey, DatasetId, SampleId, SignedAnnotation, Value};
use swarmlabel_node::labels::LabelStore;

use crate::support::process;

use process::{Process, fails, ok};

fn json(text: &str) -> Json {
    serde_json::from_str(text).unwrap()
}

/// Creates a dataset from CSV text; returns its id and its sample ids in dataset order.
fn create(home: &Path, dir: &Path, name: &str, csv: &str) -> (String, Vec<String>) {
    let path = dir.join(format!("{name}.csv"));
    std::fs::write(&path, csv).unwrap();
    let id = ok(
        home,
        &[
            "-q",
            "dataset",
            "create",
            path.to_str().unwrap(),
            "--name",
            name,
            "--labels",
            "a,b,c",
        ],
    )
    .trim()
    .to_owned();
    let samples = ok(home, &["dataset", "export", &id, "--format", "jsonl"])
        .lines()
        .map(|l| json(l)["sample_id"].as_str().unwrap().to_owned())
        .collect();
    (id, samples)
}

#[test]
fn stats_and_exports_are_exact_and_raw_signatures_verify() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    ok(&home, &["init"]);
    let key = json(&ok(&home, &["id", "--json"]))["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    // No gold labels (no label column).
    let (plain, s) = create(&home, dir.path(), "plain", "x,y\n0,1\n1,2\n2,3\n3,4\n4,5\n");
    // Gold labels a, b.
    let (gold, g) = create(&home, dir.path(), "gold", "x,label\n0,a\n1,b\n");

    let no_node = fails(&home, &["labels", &plain, "--stats"]);
    assert_eq!(
        no_node,
        format!(
            "error: no swarmlabel node is running for {}; start one with `swarmlabel run`\n",
            home.display()
        )
    );

    let daemon = Process::spawn(
        Command::new(env!("CARGO_BIN_EXE_swarmlabel"))
            .args(["run", "--listen", "/ip4/127.0.0.1/tcp/0"])
            .env("SWARMLABEL_HOME", &home),
    );
    daemon.line("api: ");
    for (sample, answer) in [
        (&s[0], "a"),
        (&s[1], "b"),
        (&s[2], "c"),
        (&s[2], "a"), // a change of mind: only the later label counts
        (&s[3], "--skip"),
        (&s[4], "--unsure"),
    ] {
        ok(&home, &["label", &plain, sample, answer]);
    }
    ok(&home, &["label", &gold, &g[0], "a"]); // right
    ok(&home, &["label", &gold, &g[1], "c"]); // wrong: the gold label is b

    // Stats, as JSON.
    let stats = json(&ok(&home, &["labels", &plain, "--stats", "--json"]));
    assert_eq!(stats["dataset"], json!(plain));
    // One annotator and no gold labels: nothing tells skill from truth, so Dawid–Skene (the
    // default) gives way to majority vote, and says so.
    assert_eq!(stats["method"], json!("majority"));
    assert_eq!(stats["note"], json!(UNANCHORED));
    assert_eq!(stats["labels"], json!(["a", "b", "c"]));
    assert_eq!(
        stats["counts"],
        json!({
            "samples_annotated": 5,
            "samples_labelled": 3,
            "samples_with_consensus": 3,
            "gold_samples_labelled": 0,
            "annotations": 5,
            "votes": 3,
            "skips": 1,
            "unsure": 1,
            "annotators": 1,
            "rejected": {
                "total": 0, "malformed": 0, "wrong_dataset": 0, "wrong_slot": 0,
                "unknown_label": 0, "bad_signature": 0
            },
            "conflicted_slots": 0
        })
    );
    let undefined = json!({
        "value": null,
        "unavailable": "no sample has two or more votes, so agreement is undefined"
    });
    assert_eq!(
        stats["agreement"],
        json!({ "krippendorff_alpha": undefined, "fleiss_kappa": undefined })
    );
    let annotators = stats["annotators"].as_array().unwrap();
    assert_eq!(annotators.len(), 1);
    assert_eq!(
        annotators[0],
        json!({
            "annotator": key, "votes": 3, "skips": 1, "unsure": 1, "reliability": null,
            "agrees_with_consensus": 1.0, "gold_votes": 0, "gold_accuracy": null,
            "flag": null
        })
    );

    // Stats, for a human.
    let table = ok(&home, &["labels", &plain, "--stats"]);
    for line in [
        format!("dataset {plain}"),
        "annotations               5  (3 votes, 1 skips, 1 unsure) by 1 annotators".to_owned(),
        "ignored                   0".to_owned(),
        "Krippendorff's alpha    not given: no sample has two or more votes, so agreement is undefined".to_owned(),
        format!("note: {UNANCHORED}"),
        format!(
            "   1  {}            -       3       1       1       100%              -",
            &key[..16]
        ),
    ] {
        assert!(table.lines().any(|l| l == line), "{line:?} not in\n{table}");
    }

    // Gold labels anchor Dawid–Skene: the consensus of a gold sample is its gold label.
    let gold_stats = json(&ok(&home, &["labels", &gold, "--stats", "--json"]));
    assert_eq!(gold_stats["counts"]["gold_samples_labelled"], json!(2));
    assert_eq!(gold_stats["annotators"][0]["gold_votes"], json!(2));
    assert_eq!(gold_stats["annotators"][0]["gold_accuracy"], json!(0.5));
    assert_eq!(gold_stats["method"], json!("dawid-skene"));
    assert_eq!(gold_stats["note"], json!(null));
    assert!(gold_stats["annotators"][0]["reliability"].is_f64());

    // Consensus exports, rows in sample id order.
    let sorted = |rows: Vec<(&String, &str)>| -> Vec<String> {
        let map: BTreeMap<&String, &str> = rows.into_iter().collect();
        map.into_iter()
            .map(|(s, rest)| format!("{s},{rest}"))
            .collect()
    };
    let header = "sample_id,label,confidence,votes,skips,unsure";
    let majority = sorted(vec![
        (&s[0], "a,1,1,0,0"),
        (&s[1], "b,1,1,0,0"),
        (&s[2], "a,1,1,0,0"),
        (&s[3], ",,0,1,0"),
        (&s[4], ",,0,0,1"),
    ]);
    assert_eq!(
        ok(
            &home,
            &["export", &plain, "--format", "csv", "--method", "majority"]
        ),
        format!("{header}\n{}\n", majority.join("\n"))
    );
    let gold_csv = sorted(vec![(&g[0], "a,1,1,0,0"), (&g[1], "b,1,1,0,0")]);
    assert_eq!(
        ok(&home, &["export", &gold, "--format", "csv"]),
        format!("{header}\n{}\n", gold_csv.join("\n"))
    );
    let gold_majority = sorted(vec![(&g[0], "a,1,1,0,0"), (&g[1], "c,1,1,0,0")]);
    assert_eq!(
        ok(
            &home,
            &["export", &gold, "--format", "csv", "--method", "majority"]
        ),
        format!("{header}\n{}\n", gold_majority.join("\n"))
    );
    let lines: Vec<Json> = ok(&home, &["export", &plain, "--format", "jsonl"])
        .lines()
        .map(json)
        .collect();
    let want: BTreeMap<&String, Json> = [
        (&s[0], json!(["a", 1.0, 1, 0, 0])),
        (&s[1], json!(["b", 1.0, 1, 0, 0])),
        (&s[2], json!(["a", 1.0, 1, 0, 0])),
        (&s[3], json!([null, null, 0, 1, 0])),
        (&s[4], json!([null, null, 0, 0, 1])),
    ]
    .into_iter()
    .collect();
    let want: Vec<Json> = want
        .into_iter()
        .map(|(sample, v)| {
            json!({"sample_id": sample, "label": v[0], "confidence": v[1],
                   "votes": v[2], "skips": v[3], "unsure": v[4]})
        })
        .collect();
    assert_eq!(lines, want);

    // Raw annotations: to a file, which appears whole and alone.
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let raw_path = out_dir.join("raw.csv");
    ok(
        &home,
        &[
            "export",
            &plain,
            "--format",
            "csv",
            "--raw",
            "--out",
            raw_path.to_str().unwrap(),
        ],
    );
    let files: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files, ["raw.csv"]);
    let raw_csv = std::fs::read_to_string(&raw_path).unwrap();
    let mut rows = raw_csv.lines();
    assert_eq!(
        rows.next(),
        Some(
            "sample_id,annotator,time_ms,kind,label,suggestion,suggestion_confidence,signature,seq"
        )
    );
    let times: BTreeMap<String, u64> =
        json(&ok(&home, &["labels", &plain, "--json"]))["annotations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["sample"].as_str().unwrap().to_owned(),
                    a["time_ms"].as_u64().unwrap(),
                )
            })
            .collect();
    let expected: BTreeMap<&String, (&str, &str)> = [
        (&s[0], ("label", "a")),
        (&s[1], ("label", "b")),
        (&s[2], ("label", "a")),
        (&s[3], ("skip", "")),
        (&s[4], ("unsure", "")),
    ]
    .into_iter()
    .collect();
    let rows: Vec<Vec<&str>> = rows.map(|r| r.split(',').collect()).collect();
    assert_eq!(rows.len(), expected.len());
    for (row, (sample, (kind, label))) in rows.iter().zip(&expected) {
        let time_ms = times[sample.as_str()];
        assert_eq!(
            row[..7],
            [
                sample.as_str(),
                key.as_str(),
                time_ms.to_string().as_str(),
                kind,
                label,
                "",
                ""
            ]
        );
        let value = match (*kind, *label) {
            ("label", "a") => Value::Label(0),
            ("label", "b") => Value::Label(1),
            ("skip", _) => Value::Skip,
            _ => Value::Unsure,
        };
        let annotation = |value| Annotation {
            dataset: DatasetId(hex::decode(&plain).unwrap().try_into().unwrap()),
            sample: SampleId(hex::decode(sample).unwrap().try_into().unwrap()),
            annotator: AnnotatorKey(hex::decode(&key).unwrap().try_into().unwrap()),
            seq: row[8].parse().unwrap(),
            time_ms,
            value,
            suggestion: None,
        };
        let signature: [u8; 64] = hex::decode(row[7]).unwrap().try_into().unwrap();
        assert!(
            SignedAnnotation::from_parts(annotation(value), signature).verify(),
            "the signature of {row:?} does not verify"
        );
        assert!(
            !SignedAnnotation::from_parts(annotation(Value::Label(2)), signature).verify(),
            "a changed value must not verify"
        );
    }
    // The same annotations as JSONL.
    let raw_jsonl: Vec<Json> = ok(&home, &["export", &plain, "--format", "jsonl", "--raw"])
        .lines()
        .map(json)
        .collect();
    let from_jsonl: Vec<Vec<String>> = raw_jsonl
        .iter()
        .map(|r| {
            [
                "sample_id",
                "annotator",
                "time_ms",
                "kind",
                "label",
                "suggestion",
                "suggestion_confidence",
                "signature",
                "seq",
            ]
            .iter()
            .map(|f| match &r[*f] {
                Json::Null => String::new(),
                Json::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect()
        })
        .collect();
    let from_csv: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|f| (*f).to_owned()).collect())
        .collect();
    assert_eq!(from_jsonl, from_csv);

    // Bad input: one sentence each, and no file left behind.
    assert_eq!(
        fails(&home, &["export", "zzzz"]),
        "error: no dataset with id 'zzzz' in this home; `swarmlabel dataset ls` lists them\n"
    );
    let bad_format = fails(
        &home,
        &[
            "export",
            &plain,
            "--format",
            "xml",
            "--out",
            out_dir.join("x.csv").to_str().unwrap(),
        ],
    );
    assert!(
        bad_format.starts_with("error: invalid value 'xml' for '--format <FORMAT>'")
            && bad_format.contains("[possible values: csv, jsonl, imagefolder]"),
        "{bad_format}"
    );
    assert!(!out_dir.join("x.csv").exists());
    let bad_method = fails(&home, &["labels", &plain, "--method", "majority"]);
    assert!(bad_method.contains("--stats"), "{bad_method}");
    drop(daemon);
}

/// The annotation a raw CSV row describes (`labels` names the label indices).
fn annotation_of(dataset: &str, row: &[&str], labels: &[&str]) -> SignedAnnotation {
    let bytes = |h: &str| -> [u8; 32] { hex::decode(h).unwrap().try_into().unwrap() };
    let value = match row[3] {
        "label" => Value::Label(labels.iter().position(|l| *l == row[4]).unwrap() as u16),
        "skip" => Value::Skip,
        _ => Value::Unsure,
    };
    let annotation = Annotation {
        dataset: DatasetId(bytes(dataset)),
        sample: SampleId(bytes(row[0])),
        annotator: AnnotatorKey(bytes(row[1])),
        seq: row[8].parse().unwrap(),
        time_ms: row[2].parse().unwrap(),
        value,
        suggestion: None,
    };
    SignedAnnotation::from_parts(annotation, hex::decode(row[7]).unwrap().try_into().unwrap())
}

/// Three annotators' labels written into the home's label store (as sync will deliver them) and
/// one by the node itself through the API: the daemon aggregates all four.
#[test]
fn several_annotators_in_the_store_are_aggregated_by_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    ok(&home, &["init"]);
    let (id, s) = create(&home, dir.path(), "pets", "x,y\n0,1\n1,2\n2,3\n3,4\n4,5\n");
    let keys: Vec<SigningKey> = (1..=3u8)
        .map(|n| SigningKey::from_bytes(&[n; 32]))
        .collect();
    let hex_key = |k: &SigningKey| hex::encode(k.verifying_key().to_bytes());
    {
        let node_home = swarmlabel_store::Home::open(&home).unwrap();
        let dataset = LabelStore::crdt_dataset(&id.parse().unwrap(), 3, 5);
        let (mut store, _) = LabelStore::open(&node_home, dataset).unwrap();
        let (a, b, c) = (Value::Label(0), Value::Label(1), Value::Label(2));
        // Worked out by hand in swarmlabel-consensus's tests (cat = a, dog = b, bird = c).
        for (annotator, sample, value) in [
            (0, 0, a),
            (1, 0, a),
            (2, 0, b),
            (0, 1, b),
            (1, 1, b),
            (2, 1, b),
            (0, 2, a),
            (1, 2, b),
            (0, 3, Value::Skip),
            (1, 3, Value::Unsure),
            (0, 4, c),
            (2, 4, Value::Skip),
        ] {
            let key: &SigningKey = &keys[annotator];
            let sample = SampleId(hex::decode(&s[sample]).unwrap().try_into().unwrap());
            store.record_own(key, sample, value, None, 1_000).unwrap();
        }
    }
    let _daemon = Process::spawn(
        Command::new(env!("CARGO_BIN_EXE_swarmlabel"))
            .args(["run", "--listen", "/ip4/127.0.0.1/tcp/0"])
            .env("SWARMLABEL_HOME", &home),
    );
    _daemon.line("api: ");
    // The node's own annotator agrees with the others on sample 1.
    ok(&home, &["label", &id, &s[1], "b"]);
    let me = json(&ok(&home, &["id", "--json"]))["public_key"]
        .as_str()
        .unwrap()
        .to_owned();

    let stats = json(&ok(
        &home,
        &["labels", &id, "--stats", "--json", "--method", "majority"],
    ));
    assert_eq!(stats["method"], json!("majority"));
    assert_eq!(stats["note"], json!(null));
    let counts = &stats["counts"];
    assert_eq!(
        [
            "samples_annotated",
            "samples_labelled",
            "samples_with_consensus",
            "annotations",
            "votes",
            "skips",
            "unsure",
            "annotators"
        ]
        .map(|f| counts[f].as_u64().unwrap()),
        [5, 4, 3, 13, 10, 2, 1, 4]
    );
    // Coincidences of the samples with two or more votes (sample 1 now has 4 votes for b, each
    // pair weighted 1/3): a-a 1, a-b 2, b-a 2, b-b 4; n_a = 3, n_b = 6, n = 9;
    // alpha = 1 - (n - 1) * 4 / (2 * 3 * 6) = 1/9.
    let alpha = stats["agreement"]["krippendorff_alpha"]["value"]
        .as_f64()
        .unwrap();
    assert!((alpha - 1.0 / 9.0).abs() < 1e-9, "alpha {alpha}");
    let kappa = &stats["agreement"]["fleiss_kappa"];
    assert_eq!(kappa["value"], json!(null));
    assert!(
        kappa["unavailable"]
            .as_str()
            .unwrap()
            .starts_with("Fleiss' kappa needs the same number of votes on every sample"),
        "{kappa}"
    );
    let ranked: Vec<&str> = stats["annotators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["annotator"].as_str().unwrap())
        .collect();
    assert_eq!(ranked.len(), 4);
    assert_eq!(ranked[3], hex_key(&keys[2]), "the dissenter is ranked last");
    let of = |key: &str| {
        stats["annotators"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["annotator"] == json!(key))
            .unwrap()
            .clone()
    };
    let agrees = |key: &str| of(key)["agrees_with_consensus"].as_f64().unwrap();
    assert_eq!(agrees(&hex_key(&keys[0])), 1.0);
    assert_eq!(agrees(&hex_key(&keys[2])), 0.5);
    assert_eq!(of(&me)["votes"], json!(1));

    let rows: BTreeMap<&String, &str> = [
        (&s[0], "a,0.6667,3,0,0"),
        (&s[1], "b,1,4,0,0"),
        (&s[2], ",,2,0,0"),
        (&s[3], ",,0,1,1"),
        (&s[4], "c,1,1,1,0"),
    ]
    .into_iter()
    .collect();
    let expected: Vec<String> = rows.iter().map(|(s, r)| format!("{s},{r}")).collect();
    assert_eq!(
        ok(
            &home,
            &["export", &id, "--format", "csv", "--method", "majority"]
        ),
        format!(
            "sample_id,label,confidence,votes,skips,unsure\n{}\n",
            expected.join("\n")
        )
    );

    // Every raw annotation, from all four annotators, carries a signature that verifies.
    let raw = ok(&home, &["export", &id, "--format", "csv", "--raw"]);
    let raw_rows: Vec<Vec<&str>> = raw
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(raw_rows.len(), 13);
    let mut annotators = std::collections::BTreeSet::new();
    for row in &raw_rows {
        assert!(
            annotation_of(&id, row, &["a", "b", "c"]).verify(),
            "{row:?}"
        );
        annotators.insert(row[1]);
    }
    assert_eq!(annotators.len(), 4);
}
