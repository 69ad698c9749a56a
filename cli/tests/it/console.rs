//! The owner's console in Chromium (issue 17): a running node that owns a dataset with labels
//! from four annotators, one of them a spammer. The console shows the per-class progress, the
//! learning curve and the flagged spammer; the owner bans it with the keyboard, and the node's
//! statistics no longer count its labels.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::path::Path;
use std::process::Command;

use serde_json::Value as Json;

use crate::support::process;

use crate::support::browser;

use crate::support::crowd;

use browser::{BROWSER, output_dir, require_browser};
use process::{Process, ok, wait_until};

fn json(text: &str) -> Json {
    serde_json::from_str(text).unwrap()
}

#[test]
fn the_owner_sees_the_loop_and_bans_a_flagged_spammer_with_the_keyboard() {
    require_browser();
    let _one = BROWSER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    let (home, id, spammer) = crowd::owner_with_a_spammer(dir.path());
    let daemon = Process::spawn(
        Command::new(env!("CARGO_BIN_EXE_swarmlabel"))
            .args(["run", "--listen", "/ip4/127.0.0.1/tcp/0"])
            .env("SWARMLABEL_HOME", &home)
            .env_remove("RUST_LOG"),
    );
    let page = daemon.line("labeling page: ");
    let (url, token) = page.split_once("/#token=").unwrap();
    // Wait (for a hang only) until the loop has trained once, so the curve has a point.
    wait_until("the loop to train once", || {
        json(&ok(&home, &["dataset", "status", &id, "--json"]))["learning_curve"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
    });

    let out = output_dir("console");
    let run = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser/console.mjs"))
        .args([url, token, out.to_str().unwrap()])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "the console run failed: {stderr}");
    let seen = json(String::from_utf8_lossy(&run.stdout).lines().last().unwrap());

    // Per class: the 30 labelled samples' consensus, over the four shapes.
    let classes = seen["classes"].as_array().unwrap();
    assert_eq!(classes.len(), 4, "{seen}");
    let total: u64 = classes.iter().map(|c| c[1].as_u64().unwrap()).sum();
    assert_eq!(total, 30, "{seen}");
    assert!(
        seen["coverage"]
            .as_str()
            .unwrap()
            .starts_with("30 of 40 samples have the 4 label(s) wanted"),
        "{seen}"
    );
    assert!(!seen["curve"].as_array().unwrap().is_empty(), "{seen}");
    assert_eq!(seen["flagged"]["key"], spammer.as_str(), "{seen}");
    assert!(
        seen["flagged"]["flag"]
            .as_str()
            .unwrap()
            .starts_with("fixed: answers"),
        "{seen}"
    );
    assert_eq!(seen["banned"], spammer.as_str());

    // Through the API: the spammer's labels no longer count.
    let stats = json(&ok(&home, &["labels", &id, "--stats", "--json"]));
    let keys: Vec<&str> = stats["annotators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["annotator"].as_str().unwrap())
        .collect();
    assert!(!keys.contains(&spammer.as_str()), "{stats}");
    assert_eq!(stats["counts"]["annotators"], 3, "{stats}");
    assert_eq!(stats["counts"]["votes"], 90, "{stats}");
    let policy = json(&ok(&home, &["dataset", "policy", &id, "--json"]));
    assert_eq!(policy["banned"][0]["key"], spammer.as_str(), "{policy}");
}
