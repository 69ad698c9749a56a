//! A network of real nodes in one process: libp2p swarms on 127.0.0.1, real homes in temporary
//! directories, a real bootstrap peer.

use std::future::Future;
use std::time::Duration;

use libp2p::Multiaddr;
use swarmlabel_bootstrap::Bootstrap;
use swarmlabel_node::DatasetId;
use swarmlabel_node::dataset::import::{Options, import};
use swarmlabel_node::dataset::verify::verify;
use swarmlabel_node::net::{Config, Node};
use swarmlabel_node::progress::NoProgress;

use crate::{TempHome, shared_dataset};

/// How long any single step may take before a test calls it a hang.
pub const HANG: Duration = Duration::from_secs(120);

/// Awaits `fut`, failing the test with `what` if it takes longer than [`HANG`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(HANG, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {HANG:?} waiting for {what}"),
    }
}

/// Polls `check` until it returns true (every 20 ms: the condition is the event), failing with
/// `what` after [`HANG`].
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    within(what, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// A node of the test network with its own home.
#[derive(Debug)]
pub struct TestNode {
    /// The home (kept alive as long as the node).
    pub home: TempHome,
    /// The running node.
    pub node: Node,
}

impl TestNode {
    /// Starts a node on 127.0.0.1 that dials `bootstrap`.
    pub async fn start(bootstrap: &[Multiaddr]) -> TestNode {
        Self::start_in(TempHome::new(), bootstrap).await
    }

    /// Starts a node on an existing home (a restart).
    pub async fn start_in(home: TempHome, bootstrap: &[Multiaddr]) -> TestNode {
        let config = Config {
            bootstrap: bootstrap.to_vec(),
            ..Config::loopback()
        };
        let node = Node::start(home.home.clone(), config)
            .await
            .expect("a loopback node starts");
        TestNode { home, node }
    }

    /// Imports `../shared/datasets/digits.csv` as this node's dataset and serves it.
    pub async fn own_digits(&self) -> DatasetId {
        let home = self.home.home.clone();
        let identity = self.home.identity.clone();
        let id = tokio::task::spawn_blocking(move || {
            let labels = (0..10).map(|d| d.to_string()).collect();
            import(
                &home,
                &identity,
                &shared_dataset("digits.csv"),
                &Options::new("digits", labels),
                &NoProgress,
            )
            .expect("digits imports")
            .id
        })
        .await
        .expect("the import task does not panic");
        self.node
            .serve(id)
            .await
            .expect("the node serves its dataset");
        id
    }

    /// Verifies dataset `id` in this node's home; returns the number of intact samples, and
    /// fails the test on any problem.
    pub async fn verify(&self, id: DatasetId) -> u64 {
        let catalog = self.home.home.catalog();
        let report = tokio::task::spawn_blocking(move || verify(&catalog, &id, &NoProgress))
            .await
            .expect("verify does not panic")
            .expect("the dataset is listed");
        assert!(
            report.ok(),
            "dataset {id} is damaged: {:?}",
            &report.problems[..report.problems.len().min(5)]
        );
        report.intact
    }

    /// Stops the node.
    pub async fn stop(self) -> TempHome {
        self.node.shutdown().await;
        self.home
    }
}

/// Starts a bootstrap peer on 127.0.0.1 (`port` 0 for any) with `key`.
pub async fn start_bootstrap(key: libp2p::identity::Keypair, port: u16) -> Bootstrap {
    let config = swarmlabel_bootstrap::Config {
        listen: vec![
            format!("/ip4/127.0.0.1/tcp/{port}")
                .parse()
                .expect("a valid multiaddr"),
        ],
        listen_addrs_reachable: true,
        ..swarmlabel_bootstrap::Config::default()
    };
    Bootstrap::start(key, config)
        .await
        .expect("a loopback bootstrap peer starts")
}
