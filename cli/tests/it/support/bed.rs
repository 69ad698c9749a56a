//! The network tests' bed: a [`Net`] of namespaces and NAT routers, its bootstrap peer on the
//! public segment, and `swarmlabel` nodes started in it.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::path::{Path, PathBuf};

use serde_json::Value;
use swarmlabel_testbed::{Nat, Net};

use super::process::{Process, bootstrap_bin, ok, swarmlabel, wait_until};

/// The digits CSV in the repository.
pub(crate) const DIGITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/digits.csv");

/// A network with its bootstrap peer running at `10.77.ID.1:4001` in the public segment.
pub(crate) struct Bed {
    pub(crate) net: Net,
    pub(crate) dir: tempfile::TempDir,
    /// The bootstrap peer's full address.
    pub(crate) boot_addr: String,
    boot: Option<Process>,
}

impl Bed {
    /// The net (`routers` of these kinds, `hosts` behind each) and its bootstrap peer.
    pub(crate) fn new(id: u8, routers: &[Nat], hosts: u8) -> Bed {
        let net = Net::new(id, routers, hosts).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut bed = Bed {
            net,
            dir,
            boot_addr: String::new(),
            boot: None,
        };
        bed.start_bootstrap();
        bed
    }

    /// Starts the bootstrap peer (again: same key, same address).
    pub(crate) fn start_bootstrap(&mut self) {
        let key = self.dir.path().join("bootstrap.key");
        let listen = format!("/ip4/{}/tcp/4001", self.net.public_ip());
        let boot = Process::spawn(self.net.command("pub", bootstrap_bin()).args([
            "--key-file",
            key.to_str().unwrap(),
            "--listen",
            &listen,
            "--listen-addrs-reachable",
        ]));
        self.boot_addr = boot.line("listening on ");
        self.boot = Some(boot);
    }

    /// Kills the bootstrap peer.
    pub(crate) fn kill_bootstrap(&mut self) {
        self.boot = None;
    }

    /// A fresh home `name` (initialised).
    pub(crate) fn home(&self, name: &str) -> PathBuf {
        let home = self.dir.path().join(name);
        ok(&home, &["init"]);
        home
    }

    /// A home `name` that owns the digits dataset: the home and the dataset id.
    pub(crate) fn digits_owner(&self, name: &str) -> (PathBuf, String) {
        let home = self.home(name);
        let labels = "0,1,2,3,4,5,6,7,8,9";
        let create = [
            "-q", "dataset", "create", DIGITS, "--name", "d", "--labels", labels,
        ];
        let id = ok(&home, &create).trim().to_owned();
        (home, id)
    }

    /// An owner of digits running in namespace `ns` (behind a router) once it holds a relay
    /// slot: its home, the dataset id and its process.
    pub(crate) fn digits_owner_behind_nat(&self, ns: &str) -> (PathBuf, String, Process) {
        let (owner, id) = self.digits_owner("owner");
        let node = self.run(ns, &owner, &[]);
        wait_until("the owner's relay reservation", || {
            self.has_relay_slot(ns, &owner)
        });
        (owner, id, node)
    }

    /// Waits for the join of `id` by the node of `home` in `ns` to finish, and checks that all
    /// 1,797 digits are stored intact and that the connection to `provider` is direct.
    pub(crate) fn assert_joined_directly(&self, ns: &str, home: &Path, id: &str, provider: &Path) {
        wait_until("the join to finish", || {
            self.join_state(ns, home, id) == "done"
        });
        let verify = ok(home, &["dataset", "verify", id]);
        assert!(verify.contains("all 1797 samples intact"), "{verify}");
        let to_provider = self
            .peer(ns, home, &Self::peer_id(provider))
            .expect("connected to the provider");
        assert_eq!(to_provider["relayed_only"], false, "{to_provider}");
    }

    /// `swarmlabel run` in namespace `ns` with `home`, on TCP, with the bootstrap peer and
    /// private addresses counted as routable (the bed has no other); `extra` arguments last.
    /// Returns once its API is up.
    pub(crate) fn run(&self, ns: &str, home: &Path, extra: &[&str]) -> Process {
        let mut args = vec!["--bootstrap", &self.boot_addr, "--private-addrs-routable"];
        args.extend_from_slice(extra);
        self.run_alone(ns, home, &args)
    }

    /// `swarmlabel run` in namespace `ns` with `home`, on TCP, with nothing but `extra`: no
    /// bootstrap peer, nothing said about addresses. Returns once its API is up.
    pub(crate) fn run_alone(&self, ns: &str, home: &Path, extra: &[&str]) -> Process {
        let node = Process::spawn(
            self.net
                .command(ns, swarmlabel())
                .args(["run", "--listen", "/ip4/0.0.0.0/tcp/0"])
                .args(extra)
                .env("SWARMLABEL_HOME", home),
        );
        node.line("api: ");
        node
    }

    /// The stdout of `swarmlabel ARGS` run in namespace `ns` with `home` (it must succeed).
    pub(crate) fn cli(&self, ns: &str, home: &Path, args: &[&str]) -> String {
        let out = self
            .net
            .command(ns, swarmlabel())
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

    /// `swarmlabel ARGS --json` in `ns`, parsed.
    pub(crate) fn json(&self, ns: &str, home: &Path, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        serde_json::from_str(&self.cli(ns, home, &args)).unwrap()
    }

    /// Whether the node of `home` in `ns` listens on a relayed address (holds a reservation).
    pub(crate) fn has_relay_slot(&self, ns: &str, home: &Path) -> bool {
        self.json(ns, home, &["status"])["listen_addrs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.as_str().unwrap().contains("/p2p-circuit"))
    }

    /// The state of the join of `id` by the node of `home` in `ns` (`looking`, `done`, …); a
    /// failed join fails the test.
    pub(crate) fn join_state(&self, ns: &str, home: &Path, id: &str) -> String {
        let status = self.json(ns, home, &["status"]);
        assert_ne!(status["joins"][id]["state"], "failed", "{status}");
        status["joins"][id]["state"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// What the node of `home` in `ns` says of its connection to `peer`, if connected.
    pub(crate) fn peer(&self, ns: &str, home: &Path, peer: &str) -> Option<Value> {
        let peers = self.json(ns, home, &["peers"]);
        peers
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["peer_id"] == peer)
            .cloned()
    }

    /// The peer id of `home`.
    pub(crate) fn peer_id(home: &Path) -> String {
        let id: Value = serde_json::from_str(&ok(home, &["id", "--json"])).unwrap();
        id["peer_id"].as_str().unwrap().to_owned()
    }

    /// The public key (hex) that signs the labels of `home`: their annotator.
    pub(crate) fn annotator(home: &Path) -> String {
        let id: Value = serde_json::from_str(&ok(home, &["id", "--json"])).unwrap();
        id["public_key"].as_str().unwrap().to_owned()
    }

    /// The sample ids of dataset `id` in `home`, in order.
    pub(crate) fn samples(home: &Path, id: &str) -> Vec<String> {
        ok(home, &["dataset", "export", id, "--format", "jsonl"])
            .lines()
            .map(|l| {
                let row: Value = serde_json::from_str(l).unwrap();
                row["sample_id"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    /// The (annotator, sample, label) triples the node of `home` in `ns` holds for `id`,
    /// sorted.
    pub(crate) fn labels(&self, ns: &str, home: &Path, id: &str) -> Vec<(String, String, String)> {
        let labels = self.json(ns, home, &["labels", id]);
        let mut triples: Vec<_> = labels["annotations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                let field = |k: &str| l[k].as_str().unwrap_or_default().to_owned();
                (field("annotator"), field("sample"), field("value"))
            })
            .collect();
        triples.sort();
        triples
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        self.boot = None;
    }
}

/// The routers' kinds, for readability at call sites.
pub(crate) const EIM: Nat = Nat::EndpointIndependent;
/// A port-randomising ("symmetric") router.
pub(crate) const SYMMETRIC: Nat = Nat::Symmetric;
/// A router that answers unsolicited packets (TCP reset, ICMP port-unreachable).
pub(crate) const REJECTING: Nat = Nat::Rejecting;
