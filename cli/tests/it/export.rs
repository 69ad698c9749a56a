//! Exports ML tools load as they are (issue 16): labels put back onto the original files, and an
//! image folder that Hugging Face `datasets` loads. The Python side runs in the virtual
//! environment `scripts/test` creates (`target/hf-venv`, `datasets` and `pillow` from PyPI).

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use crate::support::process;

use crate::support::labeling;

use labeling::Node;

/// The Python of `target/hf-venv`, with a sentence when it is missing.
fn python() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/hf-venv/bin/python");
    let ok = Command::new(&path)
        .args(["-c", "import datasets, PIL"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} with Hugging Face datasets is missing; run scripts/test, which creates it (python3 -m venv, pip install datasets pillow)",
        path.display()
    );
    path
}

#[test]
fn labelled_images_export_as_an_imagefolder_that_hugging_face_datasets_loads() {
    let python = python();
    let mut node = Node::shapes(12);
    node.start();
    // The owner's home kept each sample's file, relative to the imported folder.
    let names: HashMap<String, String> = std::fs::read_to_string(
        node.home
            .join("datasets")
            .join(format!("{}.names", node.id)),
    )
    .unwrap()
    .lines()
    .map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        (
            v["sample"].as_str().unwrap().to_owned(),
            v["file"].as_str().unwrap().to_owned(),
        )
    })
    .collect();
    assert_eq!(names.len(), 12, "{names:?}");
    // Label 8 of them with their folder's shape.
    let mut labelled: Vec<(&String, &String)> = names.iter().collect();
    labelled.sort();
    labelled.truncate(8);
    for (sample, file) in &labelled {
        let label = file.split('/').next().unwrap();
        let body = serde_json::json!({ "sample": sample, "label": label }).to_string();
        let r = node.post(&format!("{}/labels", node.ds()), &body);
        assert_eq!(r.status, 200, "{:?}", r.body);
    }

    // The consensus CSV names the original files.
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("labels.csv");
    process::ok(
        &node.home,
        &[
            "export",
            &node.id,
            "--format",
            "csv",
            "--out",
            csv_path.to_str().unwrap(),
        ],
    );
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("sample_id,file_name,label,confidence,votes,skips,unsure")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 8);
    for row in &rows {
        assert_eq!(row[1], names[row[0]], "{row:?}");
        assert_eq!(row[2], names[row[0]].split('/').next().unwrap(), "{row:?}");
    }

    // The image folder, loaded by Hugging Face datasets.
    let out = dir.path().join("labelled");
    process::ok(
        &node.home,
        &[
            "export",
            &node.id,
            "--format",
            "imagefolder",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let script = r#"
import json, sys, pathlib, datasets
ds = datasets.load_dataset("imagefolder", data_dir=sys.argv[1], split="train")
paths = ds.cast_column("image", datasets.Image(decode=False))
rows = []
for row, raw in zip(ds, paths):
    rows.append({
        "sample_id": row["sample_id"],
        "label": row["label"],
        "folder": pathlib.Path(raw["image"]["path"]).parent.name,
        "original_file": row["original_file"],
        "width": row["image"].size[0],
    })
print(json.dumps(rows))
"#;
    let run = Command::new(&python)
        .args(["-c", script, out.to_str().unwrap()])
        .env("HF_DATASETS_OFFLINE", "1")
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HOME", dir.path().join("hf"))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "datasets could not load the export: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let loaded: Vec<serde_json::Value> =
        serde_json::from_str(String::from_utf8_lossy(&run.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(
        loaded.len(),
        8,
        "every labelled image, no other: {loaded:?}"
    );
    for row in &loaded {
        let sample = row["sample_id"].as_str().unwrap();
        let shape = names[sample].split('/').next().unwrap();
        assert_eq!(row["label"], shape, "{row}");
        assert_eq!(
            row["folder"], shape,
            "under its consensus label's folder: {row}"
        );
        assert_eq!(row["original_file"], names[sample].as_str());
        assert!(row["width"].as_u64().unwrap() > 0);
    }
}
