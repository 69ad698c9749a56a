//! Issue 15 in a real network: the built binaries in Linux network namespaces, hosts behind
//! nftables masquerading routers, a bootstrap peer on the public segment. Root only (CI is).

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const DIGITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/digits.csv");
#[path = "support/netns.rs"]
mod netns;
#[path = "support/process.rs"]
mod process;

use process::{HANG, Process, ok};

fn swarmlabel() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_swarmlabel"))
}

fn bootstrap_bin() -> PathBuf {
    let path = swarmlabel().with_file_name("swarmlabel-bootstrap");
    assert!(
        path.exists(),
        "{} is missing: run the whole suite (scripts/test or cargo test --workspace)",
        path.display()
    );
    path
}

/// `swarmlabel ARGS` in namespace `ns` with home `home`: its stdout (it must succeed).
fn ok_in(net: &netns::Net, ns: &str, home: &Path, args: &[&str]) -> String {
    let out = net
        .command(ns, &swarmlabel())
        .args(args)
        .env("SWARMLABEL_HOME", home)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "swarmlabel {args:?} in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Polls `check` (every 200 ms: the condition is the event) until true; fails with `what`.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < HANG, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The owner behind a NAT router serves digits; a labeler on the public segment joins it by id.
/// The owner is found through its relayed address (it reserved a slot on the bootstrap peer's
/// relay), dials the labeler back, and the dataset arrives whole over that direct connection.
#[test]
fn a_public_labeler_fetches_from_an_owner_behind_a_nat() {
    let net = netns::Net::new(1, 1);
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("bootstrap.key");
    let boot = Process::spawn(net.command("pub", &bootstrap_bin()).args([
        "--key-file",
        key.to_str().unwrap(),
        "--listen",
        "/ip4/10.77.1.1/tcp/4001",
        "--listen-addrs-reachable",
    ]));
    let boot_addr = boot.line("listening on ");

    let owner = dir.path().join("owner");
    ok(&owner, &["init"]);
    let labels = "0,1,2,3,4,5,6,7,8,9";
    let create = [
        "-q", "dataset", "create", DIGITS, "--name", "d", "--labels", labels,
    ];
    let id = ok(&owner, &create).trim().to_owned();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "--listen",
            "/ip4/0.0.0.0/tcp/0",
            "--bootstrap",
            &boot_addr,
        ];
        args.push("--private-addrs-routable");
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let owner_node = Process::spawn(
        net.command("h1", &swarmlabel())
            .args(run(&[]))
            .env("SWARMLABEL_HOME", &owner),
    );
    owner_node.line("api: ");
    wait_until("the owner's relay reservation", || {
        let status: serde_json::Value =
            serde_json::from_str(&ok_in(&net, "h1", &owner, &["status", "--json"])).unwrap();
        status["listen_addrs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.as_str().unwrap().contains("/p2p-circuit"))
    });

    let labeler = dir.path().join("labeler");
    ok(&labeler, &["init"]);
    let labeler_node = Process::spawn(
        net.command("pub", &swarmlabel())
            .args(run(&["--join", &id]))
            .env("SWARMLABEL_HOME", &labeler),
    );
    labeler_node.line("api: ");
    wait_until("the join to finish", || {
        let status: serde_json::Value =
            serde_json::from_str(&ok_in(&net, "pub", &labeler, &["status", "--json"])).unwrap();
        assert_ne!(status["joins"][&id]["state"], "failed", "{status}");
        status["joins"][&id]["state"] == "done"
    });
    let verify = ok(&labeler, &["dataset", "verify", &id]);
    assert!(verify.contains("all 1797 samples intact"), "{verify}");
    let owner_peer: serde_json::Value =
        serde_json::from_str(&ok(&owner, &["id", "--json"])).unwrap();
    let peers: serde_json::Value =
        serde_json::from_str(&ok_in(&net, "pub", &labeler, &["peers", "--json"])).unwrap();
    let to_owner = peers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer_id"] == owner_peer["peer_id"])
        .unwrap_or_else(|| panic!("not connected to the owner: {peers}"));
    assert_eq!(to_owner["relayed_only"], false, "{to_owner}");
}
