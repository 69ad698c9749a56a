//! A network of real nodes in one process: libp2p swarms on 127.0.0.1, real homes in temporary
//! directories, a real bootstrap peer.

use std::future::Future;
use std::time::Duration;

use libp2p::Multiaddr;
use swarmlabel_bootstrap::Bootstrap;
use swarmlabel_formats::import::{Options, import};
use swarmlabel_net::swarm::{Config, Node};
use swarmlabel_store::DatasetId;
use swarmlabel_store::dataset::verify::verify;
use swarmlabel_store::progress::NoProgress;

use crate::{TempHome, test_data};

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

    /// Starts a node on 127.0.0.1 that no peer is told it can dial (its listen addresses are not
    /// advertised), as a node behind a NAT: it must reserve a relay slot to be reached.
    pub async fn start_unreachable(bootstrap: &[Multiaddr]) -> TestNode {
        let config = Config {
            bootstrap: bootstrap.to_vec(),
            listen_addrs_reachable: false,
            ..Config::loopback()
        };
        Self::start_with(TempHome::new(), config).await
    }

    /// Starts a node on an existing home (a restart).
    pub async fn start_in(home: TempHome, bootstrap: &[Multiaddr]) -> TestNode {
        let config = Config {
            bootstrap: bootstrap.to_vec(),
            ..Config::loopback()
        };
        Self::start_with(home, config).await
    }

    async fn start_with(home: TempHome, config: Config) -> TestNode {
        let node = Node::start(home.home.clone(), config)
            .await
            .expect("a loopback node starts");
        TestNode { home, node }
    }

    /// Imports `testdata/digits.csv` as this node's dataset and serves it.
    pub async fn own_digits(&self) -> DatasetId {
        let home = self.home.home.clone();
        let identity = self.home.identity.clone();
        let id = tokio::task::spawn_blocking(move || {
            let labels = (0..10).map(|d| d.to_string()).collect();
            import(
                &home,
                &identity,
                &test_data("digits.csv"),
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
        let catalog = swarmlabel_store::Catalog::of(&self.home.home);
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

/// Dials every pair `(a, b)` of `nodes` (node `a` dials `addrs[b]`) and waits until each is
/// connected. A dial may be cancelled because the peers are already connecting the other way
/// (identify, Kademlia): the connection is what counts.
pub async fn connect(nodes: &[&Node], addrs: &[Multiaddr], pairs: &[(usize, usize)]) {
    let dials = pairs.iter().map(|&(a, b)| {
        let (node, addr) = (nodes[a], addrs[b].clone());
        async move { node.dial(addr).await }
    });
    let _ = futures::future::join_all(dials).await;
    wait_until("every dialled pair to be connected", || async {
        for &(a, b) in pairs {
            let peers = nodes[a].peers().await.expect("the node runs");
            let b = nodes[b].peer_id();
            if !peers.iter().any(|p| p.peer_id == b) {
                return false;
            }
        }
        true
    })
    .await;
}

/// Dials every pair of `nodes` and waits until they are all connected.
pub async fn full_mesh(nodes: &[&Node], addrs: &[Multiaddr]) {
    let n = nodes.len();
    let pairs: Vec<(usize, usize)> = (0..n)
        .flat_map(|a| (a + 1..n).map(move |b| (a, b)))
        .collect();
    within("the full mesh", connect(nodes, addrs, &pairs)).await;
}

/// Cuts every connection between the nodes `a` and `b` of `nodes`, both ways (bans, which also
/// refuse redials), and waits until no node of one side is connected to the other.
pub async fn partition(nodes: &[&Node], a: &[usize], b: &[usize]) {
    for &i in a {
        for &j in b {
            let (x, y) = (nodes[i], nodes[j]);
            x.ban(y.peer_id()).await.expect("the node runs");
            y.ban(x.peer_id()).await.expect("the node runs");
        }
    }
    wait_until("the two sides to be disconnected", || async {
        for &i in a.iter().chain(b) {
            let other = if a.contains(&i) { b } else { a };
            let others: std::collections::BTreeSet<libp2p::PeerId> =
                other.iter().map(|&j| nodes[j].peer_id()).collect();
            let peers = nodes[i].peers().await.expect("the node runs");
            if peers.iter().any(|p| others.contains(&p.peer_id)) {
                return false;
            }
        }
        true
    })
    .await;
}

/// Lifts the bans between the nodes `a` and `b` of `nodes` and connects the two sides again.
pub async fn heal(nodes: &[&Node], addrs: &[Multiaddr], a: &[usize], b: &[usize]) {
    for &i in a {
        for &j in b {
            let (x, y) = (nodes[i], nodes[j]);
            x.unban(y.peer_id()).await.expect("the node runs");
            y.unban(x.peer_id()).await.expect("the node runs");
        }
    }
    let pairs: Vec<(usize, usize)> = a
        .iter()
        .flat_map(|&i| b.iter().map(move |&j| (i, j)))
        .collect();
    within("the sides to reconnect", connect(nodes, addrs, &pairs)).await;
}
