//! The README's network walkthrough with the built binaries, each in its own process: a bootstrap
//! peer, a node serving digits, a node that joins the dataset by id alone.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::path::Path;
use std::process::Command;

const DIGITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/digits.csv");
use crate::support::process;

use process::{Process, bootstrap_bin, ok, swarmlabel, wait_until};

fn get(url: &str) -> String {
    ureq::get(url)
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap()
}

#[test]
fn a_node_joins_a_dataset_by_id_alone_and_ends_with_a_verified_copy() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("bootstrap.key");
    let boot = Process::spawn(Command::new(bootstrap_bin()).args([
        "--key-file",
        key.to_str().unwrap(),
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--listen-addrs-reachable",
        "--metrics",
        "127.0.0.1:0",
    ]));
    let boot_addr = boot.line("listening on ");
    let boot_metrics = boot.line("metrics on ");

    let owner = dir.path().join("owner");
    ok(&owner, &["init"]);
    let id = ok(
        &owner,
        &[
            "-q",
            "dataset",
            "create",
            DIGITS,
            "--name",
            "digits",
            "--labels",
            "0,1,2,3,4,5,6,7,8,9",
        ],
    );
    let id = id.trim().to_owned();
    let run_args = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--listen-addrs-reachable",
            "--bootstrap",
            &boot_addr,
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let join_state = |labeler: &std::path::Path| {
        let status: serde_json::Value =
            serde_json::from_str(&ok(labeler, &["status", "--json"])).unwrap();
        status["joins"][&id].clone()
    };

    // The labeler joins before any node serves the dataset: it keeps looking (issue 15: one
    // lookup, then "joining failed" for good).
    let labeler = dir.path().join("labeler");
    ok(&labeler, &["init"]);
    let labeler_node = Process::spawn(
        Command::new(swarmlabel())
            .args(run_args(&["--join", &id]))
            .env("SWARMLABEL_HOME", &labeler),
    );
    let labeler_metrics = labeler_node.line("metrics: ");
    wait_until("a failed lookup, and the join still looking", || {
        let join = join_state(&labeler);
        assert_ne!(join["state"], "failed", "the join gave up: {join}");
        join["state"] == "looking" && join["attempts"].as_u64() >= Some(1)
    });
    let looking = join_state(&labeler);
    assert!(
        looking["error"]
            .as_str()
            .unwrap()
            .starts_with("no provider of dataset"),
        "{looking}"
    );

    let owner_node = Process::spawn(
        Command::new(swarmlabel())
            .args(run_args(&[]))
            .env("SWARMLABEL_HOME", &owner),
    );
    let owner_id: serde_json::Value = serde_json::from_str(&ok(&owner, &["id", "--json"])).unwrap();
    let owner_addr = owner_node.line("listening on ");
    assert!(
        owner_addr.ends_with(owner_id["peer_id"].as_str().unwrap()),
        "{owner_addr}"
    );

    wait_until("the join to finish", || {
        let status: serde_json::Value =
            serde_json::from_str(&ok(&labeler, &["status", "--json"])).unwrap();
        match status["joins"][&id]["state"].as_str() {
            Some("done") => true,
            Some("failed") => panic!("the join failed: {status}"),
            _ => false,
        }
    });
    let verify = ok(&labeler, &["dataset", "verify", &id]);
    assert!(verify.contains("all 1797 samples intact"), "{verify}");

    // The joined dataset is heard of on gossip and the owner's node is a peer.
    wait_until("the announcement", || {
        ok(&labeler, &["dataset", "search", "digits"]).contains("digits")
    });
    let peers = ok(&labeler, &["peers", "--json"]);
    assert!(peers.contains(&boot_addr.rsplit('/').next().unwrap().to_owned()));

    // Both processes serve Prometheus text with the series the runbook documents.
    let node_text = get(&labeler_metrics);
    for series in [
        "swarmlabel_blobs_verified_total 1798",
        "swarmlabel_blobs_rejected_total 0",
        "swarmlabel_fetched_bytes_total",
        "swarmlabel_peers ",
        "libp2p_bandwidth_bytes_total",
        "libp2p_kad_query_result_get_providers",
    ] {
        assert!(
            node_text.contains(series),
            "node metrics lack {series:?}:\n{node_text}"
        );
    }
    let boot_text = get(&boot_metrics);
    for series in [
        "libp2p_swarm_connections_established_total",
        "libp2p_kad_inbound_requests_total",
        "libp2p_bandwidth_bytes_total",
    ] {
        assert!(
            boot_text.contains(series),
            "bootstrap metrics lack {series:?}:\n{boot_text}"
        );
    }

    // Without the token, or with a foreign Host header, the API refuses and says why.
    let api: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(labeler.join("api.json")).unwrap()).unwrap();
    let url = format!("{}/api/v1/status", api["url"].as_str().unwrap());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut no_token = agent.get(&url).call().unwrap();
    assert_eq!(no_token.status(), 401);
    assert!(
        no_token
            .body_mut()
            .read_to_string()
            .unwrap()
            .contains("token")
    );
    let token = format!("Bearer {}", api["token"].as_str().unwrap());
    let mut foreign = agent
        .get(&url)
        .header("Authorization", &token)
        .header("Host", "evil.example:80")
        .call()
        .unwrap();
    assert_eq!(foreign.status(), 403);
    assert!(
        foreign
            .body_mut()
            .read_to_string()
            .unwrap()
            .contains("Host header")
    );
    assert_eq!(
        agent
            .get(&url)
            .header("Authorization", &token)
            .call()
            .unwrap()
            .status(),
        200
    );

    // Labels travel between the daemons: each labels a sample through its API, and both end
    // up listing both labels (gossip push, or anti-entropy if gossip missed it).
    let samples: Vec<String> = ok(&owner, &["dataset", "export", &id, "--format", "jsonl"])
        .lines()
        .take(3)
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["sample_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    ok(&owner, &["label", &id, &samples[0], "3"]);
    ok(&labeler, &["label", &id, &samples[1], "7"]);
    let listed = |home: &Path| -> Vec<(String, String)> {
        let list: serde_json::Value =
            serde_json::from_str(&ok(home, &["labels", &id, "--json"])).unwrap();
        let mut out: Vec<(String, String)> = list["annotations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["sample"].as_str().unwrap().to_owned(),
                    a["value"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        out.sort();
        out
    };
    let mut both = vec![
        (samples[0].clone(), "3".to_owned()),
        (samples[1].clone(), "7".to_owned()),
    ];
    both.sort();
    wait_until("both daemons to list both labels", || {
        listed(&owner) == both && listed(&labeler) == both
    });

    // Why 6 of issue 14: an owner had no way to stop a labeler. The owner bans the labeler's
    // key: on both nodes its label leaves the list (retroactively), and its next label is
    // refused with a sentence saying why. Only the owner can change the policy.
    let labeler_key = serde_json::from_str::<serde_json::Value>(&ok(&labeler, &["id", "--json"]))
        .unwrap()["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = process::cli(&labeler, &["dataset", "ban", &id, &labeler_key]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("only the dataset's owner"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let shown = ok(
        &owner,
        &["dataset", "ban", &id, &labeler_key, "--reason", "test ban"],
    );
    assert!(
        shown.contains("banned") && shown.contains("test ban"),
        "{shown}"
    );
    let only_owner = vec![(samples[0].clone(), "3".to_owned())];
    wait_until("both daemons to drop the banned labeler's label", || {
        listed(&owner) == only_owner && listed(&labeler) == only_owner
    });
    let after = process::cli(&labeler, &["label", &id, &samples[2], "1"]);
    assert!(!after.status.success(), "a banned key's label was taken");
    assert!(
        String::from_utf8_lossy(&after.stderr).contains("owner"),
        "{}",
        String::from_utf8_lossy(&after.stderr)
    );

    // Audit 2026-12-04, N11: two bans sent at once each read the policy in force and signed the
    // next version of it, so one replaced the other silently. Both hold now, on the other node
    // too; and the owner cannot ban its own key.
    let (first, second) = ("11".repeat(32), "22".repeat(32));
    std::thread::scope(|s| {
        for key in [&first, &second] {
            let (owner, id) = (&owner, &id);
            s.spawn(move || ok(owner, &["-q", "dataset", "ban", id, key]));
        }
    });
    let banned = |home: &std::path::Path| -> Vec<String> {
        let view: serde_json::Value =
            serde_json::from_str(&ok(home, &["dataset", "policy", &id, "--json"])).unwrap();
        let mut keys: Vec<String> = view["banned"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["key"].as_str().unwrap().to_owned())
            .collect();
        keys.sort();
        keys
    };
    let mut all = vec![labeler_key.clone(), first, second];
    all.sort();
    wait_until("both bans on both nodes", || {
        banned(&owner) == all && banned(&labeler) == all
    });
    let owner_key = serde_json::from_str::<serde_json::Value>(&ok(&owner, &["id", "--json"]))
        .unwrap()["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = process::cli(&owner, &["dataset", "ban", &id, &owner_key]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("own key cannot be banned"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    drop(labeler_node);
    drop(owner_node);
    drop(boot);
}
