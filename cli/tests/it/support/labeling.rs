//! A real `swarmlabel run` daemon with one dataset in a temp home, an HTTP client for its API,
//! and a direct read of its label store (the CRDT), for the labeling tests.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::path::{Path, PathBuf};
use std::process::Command;

use swarmlabel_crdt::{SignedAnnotation, Value};
use swarmlabel_node::labels::LabelStore;
use swarmlabel_store::Home;

use super::process::{Process, ok};

/// The shapes dataset's labels.
pub(crate) const SHAPES: [&str; 4] = ["circle", "square", "triangle", "cross"];

/// A home with one dataset and, while `daemon` is set, its running node.
pub(crate) struct Node {
    /// Held for its `Drop`: the home lives in it.
    _dir: tempfile::TempDir,
    pub(crate) home: PathBuf,
    pub(crate) id: String,
    pub(crate) daemon: Option<Process>,
    pub(crate) url: String,
    pub(crate) token: String,
    agent: ureq::Agent,
}

/// A response: status and JSON body.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: serde_json::Value,
}

impl Reply {
    /// The error sentence of a refusal.
    pub(crate) fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or_else(|| {
            panic!(
                "status {} without a JSON error sentence: {}",
                self.status, self.body
            )
        })
    }
}

impl Node {
    /// A home with a generated shapes dataset of `count` images, not yet running.
    pub(crate) fn shapes(count: usize) -> Node {
        Node::shapes_with(count, &[])
    }

    /// [`Node::shapes`], with more flags for `dataset create`.
    pub(crate) fn shapes_with(count: usize, extra: &[&str]) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        ok(&home, &["init"]);
        let images = dir.path().join("shapes");
        ok(
            &home,
            &[
                "-q",
                "dataset",
                "generate",
                "shapes",
                "--out",
                images.to_str().unwrap(),
                "--count",
                &count.to_string(),
            ],
        );
        let id = ok(
            &home,
            &[
                "-q",
                "dataset",
                "create",
                images.to_str().unwrap(),
                "--name",
                "shapes",
                "--labels",
                &SHAPES.join(","),
            ]
            .into_iter()
            .chain(extra.iter().copied())
            .collect::<Vec<_>>(),
        )
        .trim()
        .to_owned();
        Node::with(dir, home, id)
    }

    /// A home with the digits table (testdata/digits.csv), not yet running.
    pub(crate) fn digits() -> Node {
        Node::digits_with(&[])
    }

    /// [`Node::digits`], with more flags for `dataset create`.
    pub(crate) fn digits_with(extra: &[&str]) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        ok(&home, &["init"]);
        let csv = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/digits.csv");
        let id = ok(
            &home,
            &[
                "-q",
                "dataset",
                "create",
                csv,
                "--name",
                "digits",
                "--labels",
                "0,1,2,3,4,5,6,7,8,9",
            ]
            .into_iter()
            .chain(extra.iter().copied())
            .collect::<Vec<_>>(),
        )
        .trim()
        .to_owned();
        Node::with(dir, home, id)
    }

    fn with(dir: tempfile::TempDir, home: PathBuf, id: String) -> Node {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        Node {
            _dir: dir,
            home,
            id,
            daemon: None,
            url: String::new(),
            token: String::new(),
            agent,
        }
    }

    /// Starts `swarmlabel run` on loopback and waits until its API is up.
    pub(crate) fn start(&mut self) {
        let daemon = Process::spawn(
            Command::new(env!("CARGO_BIN_EXE_swarmlabel"))
                .args(["run", "--listen", "/ip4/127.0.0.1/tcp/0"])
                .env("SWARMLABEL_HOME", &self.home)
                .env_remove("RUST_LOG"),
        );
        let page = daemon.line("labeling page: ");
        let (url, token) = page.split_once("/#token=").unwrap();
        self.url = url.to_owned();
        self.token = token.to_owned();
        self.daemon = Some(daemon);
    }

    /// Kills the daemon (SIGKILL: every acknowledged label is already durable).
    pub(crate) fn stop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.child.kill().unwrap();
            d.child.wait().unwrap();
        }
    }

    /// Sends a request with these headers (the token and the right Host unless overridden).
    pub(crate) fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Reply {
        let uri = format!("{}{path}", self.url);
        let auth = format!("Bearer {}", self.token);
        let mut all: Vec<(&str, &str)> = vec![("Authorization", auth.as_str())];
        for (k, v) in headers {
            all.retain(|(name, _)| !name.eq_ignore_ascii_case(k));
            if !v.is_empty() {
                all.push((k, v));
            }
        }
        let response = match method {
            "GET" => {
                let mut r = self.agent.get(&uri);
                for (k, v) in &all {
                    r = r.header(*k, *v);
                }
                r.call()
            }
            _ => {
                let mut r = self.agent.post(&uri);
                for (k, v) in &all {
                    r = r.header(*k, *v);
                }
                r.header("Content-Type", "application/json")
                    .send(body.unwrap_or(""))
            }
        };
        let mut response = response.unwrap();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        Reply { status, body }
    }

    pub(crate) fn get(&self, path: &str) -> Reply {
        self.send("GET", path, &[], None)
    }

    /// A change with a fresh request id.
    pub(crate) fn post(&self, path: &str, body: &str) -> Reply {
        let id = fresh_id();
        self.send("POST", path, &[("X-Request-Id", &id)], Some(body))
    }

    /// The dataset's API path.
    pub(crate) fn ds(&self) -> String {
        format!("/api/v1/datasets/{}", self.id)
    }

    /// Every annotation in the home's label store, read from the CRDT files directly (stop the
    /// daemon first), each signature verified.
    pub(crate) fn stored(&self) -> Vec<SignedAnnotation> {
        assert!(
            self.daemon.is_none(),
            "stop the daemon before reading its store"
        );
        read_store(&self.home, &self.id)
    }
}

fn fresh_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The annotations of dataset `id` in `home`'s store, every signature verified.
pub(crate) fn read_store(home: &Path, id: &str) -> Vec<SignedAnnotation> {
    let home = Home::open(home).unwrap();
    let id: swarmlabel_store::DatasetId = id.parse().unwrap();
    let listed = swarmlabel_store::Catalog::of(&home).get(&id).unwrap();
    let root = listed.root.root();
    let dataset = LabelStore::crdt_dataset(&id, root.labels.len(), root.sample_count);
    let (mut store, recovery) = LabelStore::open(&home, dataset).unwrap();
    assert!(recovery.damaged.is_empty(), "{:?}", recovery.damaged);
    let read = store.read();
    assert_eq!(read.rejected.total(), 0, "the store holds invalid values");
    for a in &read.annotations {
        assert!(a.verify(), "an annotation's signature does not verify");
    }
    read.annotations
}

/// The label votes among `annotations`.
pub(crate) fn votes(annotations: &[SignedAnnotation]) -> Vec<&SignedAnnotation> {
    annotations
        .iter()
        .filter(|a| matches!(a.annotation().value, Value::Label(_)))
        .collect()
}
