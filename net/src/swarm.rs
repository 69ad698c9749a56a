//! The peer-to-peer layer: a libp2p swarm owned by one actor that only moves bytes.
//!
//! [`Node`] is the cheap, cloneable handle; its methods send a message to the actor over a bounded
//! queue and await the reply. The actor owns the swarm, serves blobs and manifest roots of the
//! datasets it serves, provides them on the DHT, announces them on gossip, and answers requests.
//! Fetching (`fetch`) runs in the caller's task and drives an I/O-free [`schedule::Scheduler`]
//! through the handle, so the actor is never blocked by it.

mod actor;
pub mod announce;
pub mod behaviour;
pub mod blob;
pub mod codec;
pub mod fetch;
pub mod metrics;
mod provider_records;
pub mod provider_store;
pub mod replication;
pub mod schedule;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};

use swarmlabel_store::dataset::DatasetId;
use swarmlabel_store::home::Home;
use swarmlabel_store::store::BlobId;

pub use actor::{DIRECT_WAIT, KnownDataset, PeerInfo, ProviderLookup, Status};

/// Settings of a node's network.
#[derive(Debug, Clone)]
pub struct Config {
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start (with `/p2p/ID`): they seed the DHT.
    pub bootstrap: Vec<Multiaddr>,
    /// Addresses others can reach us at (e.g. a public address behind port forwarding).
    pub external: Vec<Multiaddr>,
    /// Treat our listen addresses as reachable by others (loopback tests, a LAN without NAT).
    /// Kademlia only hands out providers' confirmed external addresses, so without this (or
    /// `external`, or AutoNAT's confirmation) a node's datasets cannot be found.
    pub listen_addrs_reachable: bool,
    /// How often served datasets are announced again on gossip.
    pub announce_interval: Duration,
    /// Blob requests under way to one provider at most, per fetch.
    pub max_in_flight_per_provider: usize,
    /// Connection limits and timeouts.
    pub limits: behaviour::Limits,
    /// Connections with no open stream are closed after this long.
    pub idle_timeout: Duration,
    /// How often the node does its upkeep: dials bootstrap peers it lost, and announces its
    /// datasets to peers that newly subscribed.
    pub redial_interval: Duration,
    /// Reserve a slot on the bootstrap peers' relays while this node has no address others can
    /// dial (behind a NAT): peers then reach it through the relay, and hole punching (DCUtR)
    /// tries to make the connection direct. On by default.
    pub use_relays: bool,
    /// Count private addresses (10/8, 192.168/16, ...) as routable for AutoNAT, which ignores
    /// them by default: for networks built of private ranges, such as the namespace test bed.
    pub private_addrs_routable: bool,
    /// Find peers on the same LAN by multicast DNS and dial them at their LAN addresses, with no
    /// bootstrap peer needed. On by default; a node that listens on loopback only has no LAN and
    /// never uses it.
    pub mdns: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: vec![
                "/ip4/0.0.0.0/tcp/0"
                    .parse()
                    .expect("invariant: a valid multiaddr"),
                "/ip4/0.0.0.0/udp/0/quic-v1"
                    .parse()
                    .expect("invariant: a valid multiaddr"),
            ],
            bootstrap: Vec::new(),
            external: Vec::new(),
            listen_addrs_reachable: false,
            announce_interval: Duration::from_secs(60),
            max_in_flight_per_provider: 32,
            limits: behaviour::Limits::default(),
            idle_timeout: Duration::from_secs(60),
            redial_interval: Duration::from_secs(1),
            use_relays: true,
            private_addrs_routable: false,
            mdns: true,
        }
    }
}

impl Config {
    /// A config for tests and local networks: listen on one TCP port of 127.0.0.1, reachable.
    pub fn loopback() -> Self {
        Self {
            listen: vec![
                "/ip4/127.0.0.1/tcp/0"
                    .parse()
                    .expect("invariant: a valid multiaddr"),
            ],
            listen_addrs_reachable: true,
            announce_interval: Duration::from_secs(2),
            redial_interval: Duration::from_millis(500),
            ..Self::default()
        }
    }
}

/// Errors of the network layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The swarm could not be built.
    #[error("cannot start the network: {0}")]
    Build(String),
    /// A listen address could not be used.
    #[error("cannot listen on {addr}: {reason}; choose another address or port")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
    /// A dial failed.
    #[error("cannot dial {addr}: {reason}")]
    Dial {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// No direct connection to a peer could be made (blobs never travel over relays).
    #[error("peer {peer} is out of direct reach ({reason}); data comes from other providers")]
    Unreachable {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// Serving a dataset failed.
    #[error(transparent)]
    Catalog(#[from] swarmlabel_store::dataset::CatalogError),
    /// A gossip message could not be published (often: no peer subscribed to its topic yet).
    #[error("cannot publish on gossip: {0}")]
    Publish(String),
}

/// Why a blob request failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// The peer is banned.
    #[error("peer is banned")]
    Banned,
    /// The only connection to the peer is relayed, and blobs never travel over relays.
    #[error("peer is reachable only through a relay")]
    Unreachable,
    /// The request failed on the wire (dial failure, timeout, closed connection, bad response).
    #[error("request failed: {0}")]
    Failed(String),
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
}

/// A running node's handle. Cheap to clone; the node stops when [`Node::shutdown`] is called or
/// every handle is dropped.
#[derive(Debug, Clone)]
pub struct Node {
    tx: mpsc::Sender<actor::Command>,
    peer_id: PeerId,
    home: Home,
    metrics: metrics::Metrics,
    registry: Arc<Mutex<Registry>>,
    max_in_flight_per_provider: usize,
}

impl Node {
    /// Starts a node for `home` (its key is the libp2p identity) and waits until it listens.
    pub async fn start(home: Home, config: Config) -> Result<Node, NetError> {
        let identity = home
            .identity()
            .map_err(|e| NetError::Build(e.to_string()))?;
        let mut registry = Registry::default();
        let metrics = metrics::Metrics::default();
        metrics.register(&mut registry);
        metrics::register_build_info(&mut registry, "node");
        let (tx, peer_id) = actor::spawn(
            &identity,
            home.blobs(),
            &config,
            &mut registry,
            metrics.clone(),
        )
        .await?;
        Ok(Node {
            tx,
            peer_id,
            home,
            metrics,
            registry: Arc::new(Mutex::new(registry)),
            max_in_flight_per_provider: config.max_in_flight_per_provider,
        })
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The node's home.
    pub fn home(&self) -> &Home {
        &self.home
    }

    /// The node's own metric series.
    pub fn metrics(&self) -> &metrics::Metrics {
        &self.metrics
    }

    /// All metrics (libp2p's and ours) in the Prometheus text format.
    pub fn encode_metrics(&self) -> String {
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        metrics::encode(&registry)
    }

    /// Registers more series in the node's registry (those of the services beside it).
    pub fn with_registry<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        let mut registry = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut registry)
    }

    pub(crate) fn max_in_flight_per_provider(&self) -> usize {
        self.max_in_flight_per_provider
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> actor::Command,
    ) -> Result<T, NetError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    /// The addresses the node listens on, each ending in `/p2p/<peer id>`.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NetError> {
        self.call(actor::Command::ListenAddrs).await
    }

    /// Waits until there is a direct (not relayed) connection to `peer`: dials it if needed, and
    /// lets hole punching upgrade a relayed connection. Fails when no direct path can be made.
    /// Bound it with a timeout: a hole punch that never answers is a libp2p timeout away.
    pub async fn connect_direct(&self, peer: PeerId) -> Result<(), NetError> {
        self.call(|reply| actor::Command::ConnectDirect { peer, reply })
            .await?
    }

    /// Dials `addr` and waits until connected.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NetError> {
        self.call(|reply| actor::Command::Dial { addr, reply })
            .await?
    }

    /// Serves a dataset listed in the home: answers requests for its root, pages and stored
    /// samples, provides it on the DHT and announces it on gossip.
    pub async fn serve(&self, id: DatasetId) -> Result<(), NetError> {
        let catalog = swarmlabel_store::Catalog::of(&self.home);
        let served = tokio::task::spawn_blocking(move || actor::Served::load(&catalog, &id))
            .await
            .map_err(|e| NetError::Build(e.to_string()))??;
        self.call(|reply| actor::Command::Serve {
            served: Box::new(served),
            reply,
        })
        .await
    }

    /// Asks `peer` for a blob or root.
    pub async fn request(
        &self,
        peer: PeerId,
        request: blob::Request,
    ) -> Result<blob::Response, RequestError> {
        self.call(|reply| actor::Command::Request {
            peer,
            request,
            reply,
        })
        .await
        .map_err(|_| RequestError::Stopped)?
    }

    /// The providers of `dataset` that the DHT and gossip announcements know (not this node, not
    /// banned peers).
    pub async fn find_providers(&self, dataset: DatasetId) -> Result<Vec<PeerId>, NetError> {
        let lookup = self
            .call(|reply| actor::Command::FindProviders {
                dataset,
                dht_only: false,
                reply,
            })
            .await?;
        Ok(lookup.providers)
    }

    /// Looks `dataset` up on the DHT alone, with the lookup's statistics.
    pub async fn dht_providers(&self, dataset: DatasetId) -> Result<ProviderLookup, NetError> {
        self.call(|reply| actor::Command::FindProviders {
            dataset,
            dht_only: true,
            reply,
        })
        .await
    }

    /// Starts a Kademlia bootstrap (a lookup of our own id, which fills the routing table).
    pub async fn bootstrap_dht(&self) -> Result<(), NetError> {
        self.call(actor::Command::BootstrapDht).await
    }

    /// Bans `peer`: closes its connections and refuses new ones.
    pub async fn ban(&self, peer: PeerId) -> Result<(), NetError> {
        self.call(|reply| actor::Command::Ban { peer, reply }).await
    }

    /// Counts a strike against `peer`, which sent something no honest peer sends (an invalid
    /// record in a sync page): the third bans it until restart. Best effort (never waits).
    pub fn penalise(&self, peer: PeerId) {
        let _ = self.tx.try_send(actor::Command::Penalise { peer });
    }

    /// Lifts a ban: `peer` may connect again (nothing is dialled).
    pub async fn unban(&self, peer: PeerId) -> Result<(), NetError> {
        self.call(|reply| actor::Command::Unban { peer, reply })
            .await
    }

    /// Registers a replicated kind: from now on its requests, the gossip on its topics and the
    /// peers subscribing to them go to `inbox` (its service; see [`replication::Inbound`]). Until
    /// then its requests are answered `unknown` and its gossip is ignored. Attaching again
    /// replaces the inbox.
    pub async fn attach(
        &self,
        kind: replication::Kind,
        inbox: mpsc::Sender<replication::Inbound>,
    ) -> Result<(), NetError> {
        self.call(|reply| {
            actor::Command::Replication(actor::ReplicationCommand::Attach { kind, inbox, reply })
        })
        .await?
    }

    /// Subscribes to `kind`'s gossip topic of `dataset`.
    pub async fn subscribe(
        &self,
        kind: replication::Kind,
        dataset: DatasetId,
    ) -> Result<(), NetError> {
        self.call(|reply| {
            actor::Command::Replication(actor::ReplicationCommand::Subscribe {
                kind,
                dataset,
                reply,
            })
        })
        .await?
    }

    /// Publishes `data` on `kind`'s gossip topic of `dataset`.
    pub async fn publish(
        &self,
        kind: replication::Kind,
        dataset: DatasetId,
        data: Vec<u8>,
    ) -> Result<(), NetError> {
        self.call(|reply| {
            actor::Command::Replication(actor::ReplicationCommand::Publish {
                kind,
                dataset,
                data,
                reply,
            })
        })
        .await?
    }

    /// Connected peers subscribed to `kind`'s topic of `dataset` (they hold its records), not
    /// banned ones.
    pub async fn topic_peers(
        &self,
        kind: replication::Kind,
        dataset: DatasetId,
    ) -> Result<Vec<PeerId>, NetError> {
        self.call(|reply| {
            actor::Command::Replication(actor::ReplicationCommand::TopicPeers {
                kind,
                dataset,
                reply,
            })
        })
        .await
    }

    /// This node's gossipsub score of `peer` (see [`behaviour::score_params`]): below
    /// [`behaviour::score_thresholds`]' graylist threshold, everything it sends on gossip is
    /// dropped unread. `None` for a peer gossipsub does not know.
    pub async fn gossip_score(&self, peer: PeerId) -> Result<Option<f64>, NetError> {
        self.call(|reply| {
            actor::Command::Replication(actor::ReplicationCommand::GossipScore { peer, reply })
        })
        .await
    }

    /// Sends a request of `kind` to `peer` and awaits the response body (bounded by the sync
    /// request timeout of [`behaviour::Limits`] and by the kind's response limit).
    pub async fn replicate(
        &self,
        peer: PeerId,
        kind: replication::Kind,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, RequestError> {
        self.call(|reply| {
            actor::Command::Replication(actor::ReplicationCommand::Request {
                peer,
                kind,
                body,
                reply,
            })
        })
        .await
        .map_err(|_| RequestError::Stopped)?
    }

    /// Serves the blobs `ids` (model weights held in the blob store) to peers that ask for them
    /// over the blob protocol, or stops serving them (`serve` false).
    pub async fn serve_blobs(&self, ids: Vec<BlobId>, serve: bool) -> Result<(), NetError> {
        self.call(|reply| actor::Command::Servable { ids, serve, reply })
            .await
    }

    /// Closes every connection to `peer` (it may reconnect).
    pub async fn disconnect(&self, peer: PeerId) -> Result<(), NetError> {
        self.call(|reply| actor::Command::Disconnect { peer, reply })
            .await
    }

    /// The peers connected now.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, NetError> {
        self.call(actor::Command::Peers).await
    }

    /// Datasets heard of on gossip, most recently announced first.
    pub async fn known_datasets(&self) -> Result<Vec<KnownDataset>, NetError> {
        self.call(actor::Command::Known).await
    }

    /// A summary of the node's state.
    pub async fn status(&self) -> Result<Status, NetError> {
        self.call(actor::Command::Status).await
    }

    /// Fetches a dataset (see [`fetch::fetch`]).
    pub async fn fetch(
        &self,
        dataset: DatasetId,
        options: fetch::Options,
    ) -> Result<fetch::Report, fetch::FetchError> {
        fetch::fetch(self, dataset, options).await
    }

    /// Stops the node: closes connections and ends the actor.
    pub async fn shutdown(&self) {
        let _ = self.call(actor::Command::Shutdown).await;
    }
}
