//! `swarmlabel dataset status ID` (issue 17): the owner sees progress per class, coverage against
//! the redundancy target and the annotators with what the screening flags. Annotators' labels are
//! written into the home's label store before the node starts (as sync delivers them).

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::process::Command;

use serde_json::Value as Json;

use crate::support::process;

use crate::support::crowd;

use process::{Process, ok};

#[test]
fn the_owner_sees_class_progress_coverage_and_a_flagged_spammer() {
    let dir = tempfile::tempdir().unwrap();
    let (home, id, spammer) = crowd::owner_with_a_spammer(dir.path());
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
