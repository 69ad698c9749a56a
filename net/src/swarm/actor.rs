//! The actor that owns the swarm. It moves bytes and keeps the little state that needs the
//! swarm; every decision about what to fetch or replicate lives elsewhere.
//!
//! This file runs the loop; `build` makes the swarm and the actor; each concern has its own file:
//! `connections` (who is connected, dials, bans), `providers` (DHT lookups and provider records),
//! `catalog` (datasets announced on gossip), `serving` (the blob protocol both ways) and
//! `replication` (the replicated kinds' topics and protocol, handed to their services).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt as _;
use libp2p::metrics::Recorder as _;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, identify};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;

mod build;
mod catalog;
mod connections;
mod providers;
mod relays;
mod replication;
mod serving;

pub(crate) use replication::ReplicationCommand;

use super::announce;
use super::behaviour::{Behaviour, BehaviourEvent, KAD_PROTOCOL};
use super::blob::{Request, Response};
use super::{Config, NetError, RequestError, metrics::Metrics};
use swarmlabel_store::dataset::manifest::SignedRoot;
use swarmlabel_store::dataset::{Catalog, CatalogError, DatasetId};
use swarmlabel_store::identity::Identity;
use swarmlabel_store::store::{BlobId, BlobStore};

pub use catalog::KnownDataset;
pub use connections::{DIRECT_WAIT, PeerInfo};
pub use providers::ProviderLookup;

/// Commands queued to the actor at most.
const COMMAND_QUEUE: usize = 256;

/// A dataset this node serves: its root and every blob it names.
#[derive(Debug)]
pub(crate) struct Served {
    root: SignedRoot,
    blobs: Vec<BlobId>,
}

impl Served {
    /// Loads a listed dataset's root and pages.
    pub(crate) fn load(catalog: &Catalog, id: &DatasetId) -> Result<Served, CatalogError> {
        let listed = catalog.get(id)?;
        let mut blobs = Vec::new();
        for (index, page_ref) in listed.root.root().pages.iter().enumerate() {
            blobs.push(page_ref.id);
            blobs.extend(catalog.page(&listed, index)?.samples.iter().map(|s| s.id));
        }
        Ok(Served {
            root: listed.root,
            blobs,
        })
    }
}

/// A summary of the node.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// Our peer id.
    pub peer_id: PeerId,
    /// Our listen addresses (with `/p2p/`).
    pub listen_addrs: Vec<String>,
    /// Connected peers.
    pub peers: usize,
    /// Of those, the ones reached only through a relay (`peers` says which and why).
    pub peers_relayed: usize,
    /// Datasets served.
    pub serving: Vec<DatasetId>,
    /// Datasets heard of on gossip.
    pub known_datasets: usize,
    /// Peers in the Kademlia routing table.
    pub routing_table: usize,
}

/// Strikes after which a peer that sends invalid records by sync is banned (gossip has its own
/// scoring): an honest peer sends none, a forger three pages at most.
const MAX_STRIKES: u32 = 3;
/// Peers with strikes remembered at most (past it, all are forgotten).
const MAX_STRUCK_PEERS: usize = 4_096;

pub(crate) enum Command {
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    /// Resolves once there is a direct (not relayed) connection to `peer`.
    ConnectDirect {
        peer: PeerId,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    Serve {
        served: Box<Served>,
        reply: oneshot::Sender<()>,
    },
    /// Adds blobs (model weights) to those served to peers, or withdraws them.
    Servable {
        ids: Vec<BlobId>,
        serve: bool,
        reply: oneshot::Sender<()>,
    },
    Request {
        peer: PeerId,
        request: Request,
        reply: oneshot::Sender<Result<Response, RequestError>>,
    },
    FindProviders {
        dataset: DatasetId,
        dht_only: bool,
        reply: oneshot::Sender<ProviderLookup>,
    },
    BootstrapDht(oneshot::Sender<()>),
    Ban {
        peer: PeerId,
        reply: oneshot::Sender<()>,
    },
    /// `peer` sent something no honest peer sends outside gossip (an invalid record in a sync
    /// page): a strike; past [`MAX_STRIKES`] it is banned.
    Penalise {
        peer: PeerId,
    },
    Unban {
        peer: PeerId,
        reply: oneshot::Sender<()>,
    },
    Disconnect {
        peer: PeerId,
        reply: oneshot::Sender<()>,
    },
    Replication(ReplicationCommand),
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    Known(oneshot::Sender<Vec<KnownDataset>>),
    Status(oneshot::Sender<Status>),
    Shutdown(oneshot::Sender<()>),
}

/// Work finished off the actor's thread.
enum Internal {
    Serving(serving::Done),
    Replication(replication::Done),
}

struct NodeActor {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    internal_tx: mpsc::Sender<Internal>,
    internal_rx: mpsc::Receiver<Internal>,
    metrics: Metrics,
    libp2p_metrics: libp2p::metrics::Metrics,
    reachable: bool,
    announce_interval: Duration,
    served: HashMap<DatasetId, SignedRoot>,
    banned: HashSet<PeerId>,
    /// Strikes of peers that sent invalid records by sync (see [`Command::Penalise`]).
    strikes: HashMap<PeerId, u32>,
    listen_addrs: Vec<Multiaddr>,
    bootstrap: Vec<Multiaddr>,
    redial_interval: Duration,
    connections: connections::Connections,
    providers: providers::Providers,
    catalog: catalog::Known,
    serving: serving::Serving,
    replication: replication::Replication,
    relays: relays::Relays,
}

/// Whether `addr` is on the loopback interface.
fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

/// Worker threads of a node's network runtime at most.
const NETWORK_THREADS: usize = 2;

/// Builds the swarm, starts listening, and runs the actor, all on a tokio runtime of its own
/// (threads `swarmlabel-net`): what peers send (decoding, signature checks of every gossip
/// message, thousands of streams a second under a flood) then competes with the node's local
/// API for the CPU as threads scheduled by the kernel, instead of queueing the API's tasks
/// behind connection tasks on shared workers. Returns once every listen address is bound.
pub(crate) async fn spawn(
    identity: &Identity,
    store: BlobStore,
    config: &Config,
    registry: &mut Registry,
    metrics: Metrics,
) -> Result<(mpsc::Sender<Command>, PeerId), NetError> {
    let (ready_tx, ready_rx) = oneshot::channel();
    let (identity, config) = (identity.clone(), config.clone());
    let mut own_registry = std::mem::take(registry);
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(NETWORK_THREADS);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("swarmlabel-net")
        .enable_all()
        .build()
        .map_err(|e| NetError::Build(format!("cannot start the network runtime: {e}")))?;
    std::thread::Builder::new()
        .name("swarmlabel-net".into())
        .spawn(move || {
            runtime.block_on(async move {
                let built =
                    build::build(&identity, store, &config, &mut own_registry, metrics).await;
                match built {
                    Ok((actor, tx, peer_id)) => {
                        if ready_tx.send(Ok((tx, peer_id, own_registry))).is_ok() {
                            actor
                                .run()
                                .instrument(tracing::info_span!("node", peer = %peer_id))
                                .await;
                        }
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            });
            // Dropping the runtime ends the connections' tasks with the actor.
        })
        .map_err(|e| NetError::Build(format!("cannot start the network thread: {e}")))?;
    let (tx, peer_id, own_registry) = ready_rx
        .await
        .map_err(|_| NetError::Build("the network thread ended while starting".into()))??;
    *registry = own_registry;
    Ok((tx, peer_id))
}

impl NodeActor {
    async fn run(mut self) {
        let mut announce = tokio::time::interval(self.announce_interval);
        announce.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut redial = tokio::time::interval(self.redial_interval);
        redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown(reply)) => {
                        let _ = reply.send(());
                        break;
                    }
                    Some(command) => self.on_command(command),
                    // Every handle is gone: nobody can use the node any more.
                    None => break,
                },
                Some(internal) = self.internal_rx.recv() => match internal {
                    Internal::Serving(done) => self.on_blob_read(done),
                    Internal::Replication(done) => self.on_replication_done(done),
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                _ = announce.tick() => self.announce_all(),
                _ = redial.tick() => {
                    self.redial_bootstrap();
                    self.expire_direct_waits();
                    self.retry_hole_punching();
                    self.reserve_relays();
                    self.publish_due();
                    if self.catalog.announce_due() {
                        self.announce_all();
                    }
                }
            }
        }
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for peer in peers {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    fn with_p2p(&self, addr: &Multiaddr) -> Multiaddr {
        addr.clone()
            .with_p2p(*self.swarm.local_peer_id())
            .unwrap_or_else(|a| a)
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::ListenAddrs(reply) => {
                let addrs = self.listen_addrs.iter().map(|a| self.with_p2p(a)).collect();
                let _ = reply.send(addrs);
            }
            Command::Dial { addr, reply } => self.dial(addr, reply),
            Command::ConnectDirect { peer, reply } => self.connect_direct(peer, reply),
            Command::Serve { served, reply } => {
                self.serve(&served);
                let _ = reply.send(());
            }
            Command::Servable { ids, serve, reply } => {
                self.serving.set_servable(ids, serve);
                let _ = reply.send(());
            }
            Command::Request {
                peer,
                request,
                reply,
            } => self.request_blob(peer, request, reply),
            Command::FindProviders {
                dataset,
                dht_only,
                reply,
            } => {
                let gossip = if dht_only {
                    Vec::new()
                } else {
                    self.catalog.providers(&dataset)
                };
                self.find_providers(dataset, gossip, reply);
            }
            Command::BootstrapDht(reply) => {
                // Fails only when no peer is known yet; the next upkeep or a later call retries.
                let _ = self.swarm.behaviour_mut().kad.bootstrap();
                let _ = reply.send(());
            }
            Command::Ban { peer, reply } => {
                self.ban(peer);
                let _ = reply.send(());
            }
            Command::Penalise { peer } => self.penalise(peer),
            Command::Unban { peer, reply } => {
                self.banned.remove(&peer);
                self.swarm.behaviour_mut().blocked.unblock_peer(peer);
                let _ = reply.send(());
            }
            Command::Replication(command) => self.on_replication_command(command),
            Command::Disconnect { peer, reply } => {
                let _ = self.swarm.disconnect_peer_id(peer);
                let _ = reply.send(());
            }
            Command::Peers(reply) => {
                let _ = reply.send(self.connections.infos());
            }
            Command::Known(reply) => {
                let _ = reply.send(self.catalog.list());
            }
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Shutdown(_) => unreachable!("handled in run"),
        }
    }

    /// Serves a listed dataset: its blobs to peers, its provider record on the DHT and its
    /// announcement on gossip.
    fn serve(&mut self, served: &Served) {
        let id = served.root.id();
        self.serving.extend(served.blobs.iter().copied());
        self.served.insert(id, served.root.clone());
        self.providers.publisher.request(id);
        self.publish_due();
        self.announce(&served.root);
    }

    /// A strike against `peer`; past [`MAX_STRIKES`] it is banned. The table of struck peers is
    /// bounded: when full, a new peer clears it.
    fn penalise(&mut self, peer: PeerId) {
        if self.strikes.len() >= MAX_STRUCK_PEERS && !self.strikes.contains_key(&peer) {
            self.strikes.clear();
        }
        let strikes = self.strikes.entry(peer).or_default();
        *strikes += 1;
        if *strikes >= MAX_STRIKES {
            self.strikes.remove(&peer);
            tracing::info!(%peer, "banned a peer that sent invalid records again and again");
            self.ban(peer);
        }
    }

    /// A summary of the node.
    fn status(&mut self) -> Status {
        let routing_table = self
            .swarm
            .behaviour_mut()
            .kad
            .kbuckets()
            .map(|b| b.num_entries())
            .sum();
        Status {
            peer_id: *self.swarm.local_peer_id(),
            listen_addrs: self
                .listen_addrs
                .iter()
                .map(|a| self.with_p2p(a).to_string())
                .collect(),
            peers: self.connections.len(),
            peers_relayed: self.connections.relayed_count(),
            serving: self.served.keys().copied().collect(),
            known_datasets: self.catalog.len(),
            routing_table,
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                if relays::is_relayed(&address) {
                    self.on_relayed_listen_addr(&address);
                } else if self.reachable {
                    self.swarm.add_external_address(address.clone());
                }
                if !self.listen_addrs.contains(&address) {
                    self.listen_addrs.push(address);
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => self.on_connected(peer_id, connection_id, &endpoint),
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                ..
            } => self.on_disconnected(peer_id, connection_id),
            // A failed dial does not fail those waiting for a direct connection: another dial
            // of the same peer (through a relay, then hole punching) may still be under way.
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => self.on_dial_failed(connection_id, peer_id, &error),
            SwarmEvent::ExpiredListenAddr { address, .. } => self.on_expired_listen_addr(&address),
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                ..
            } => {
                for address in &addresses {
                    self.on_expired_listen_addr(address);
                }
                self.on_listener_closed(listener_id);
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(event) => {
                self.libp2p_metrics.record(&event);
                if let identify::Event::Received { peer_id, info, .. } = event {
                    self.reverse_relayed(peer_id, &info.listen_addrs);
                    if info.protocols.contains(&KAD_PROTOCOL) {
                        for addr in info.listen_addrs {
                            self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                        }
                    }
                }
            }
            BehaviourEvent::Kad(event) => {
                self.libp2p_metrics.record(&event);
                self.on_kad_event(event);
            }
            BehaviourEvent::Gossipsub(event) => {
                self.libp2p_metrics.record(&event);
                match event {
                    gossipsub::Event::Message {
                        propagation_source,
                        message_id,
                        message,
                    } => self.on_gossip(propagation_source, message_id, message),
                    gossipsub::Event::Subscribed { peer_id, topic } => {
                        if topic == self.catalog.topic().hash() {
                            self.catalog.on_subscribed();
                        } else {
                            self.on_replication_subscribed(peer_id, topic.as_str());
                        }
                    }
                    _ => {}
                }
            }
            BehaviourEvent::Blob(event) => self.on_blob_event(event),
            BehaviourEvent::Replication(event) => self.on_replication_event(event),
            BehaviourEvent::Ping(event) => self.libp2p_metrics.record(&event),
            BehaviourEvent::Mdns(libp2p::mdns::Event::Discovered(found)) => {
                self.on_lan_peers(found)
            }
            BehaviourEvent::Dcutr(event) => {
                self.libp2p_metrics.record(&event);
                if let Err(e) = &event.result {
                    self.direct_failed(event.remote_peer_id, format!("hole punching failed: {e}"));
                }
            }
            _ => {}
        }
    }

    fn on_gossip(&mut self, source: PeerId, id: gossipsub::MessageId, message: gossipsub::Message) {
        if message.topic == self.catalog.topic().hash() {
            let acceptance = self.catalog.on_announcement(source, &message);
            if acceptance == gossipsub::MessageAcceptance::Reject {
                tracing::debug!(peer = %source, "rejected an invalid announcement");
            }
            self.report_acceptance(source, &id, acceptance);
            return;
        }
        self.on_replication_gossip(source, id, message);
    }

    fn announce_all(&mut self) {
        let roots: Vec<SignedRoot> = self.served.values().cloned().collect();
        for root in &roots {
            self.announce(root);
        }
    }

    fn announce(&mut self, root: &SignedRoot) {
        let topic = self.catalog.topic().clone();
        let message = announce::Announcement::now(root).encode();
        if let Err(e) = self.swarm.behaviour_mut().gossipsub.publish(topic, message) {
            // No subscribed peer yet is normal at start; the next tick retries.
            tracing::debug!(error = %e, "announcement not sent");
        }
    }
}
