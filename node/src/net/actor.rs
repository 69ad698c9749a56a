//! The actor that owns the swarm. It moves bytes and keeps the little state that needs the
//! swarm (who is connected, which requests are under way); every decision about what to fetch
//! lives elsewhere.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use libp2p::core::ConnectedPoint;
use libp2p::metrics::Recorder as _;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::{ConnectionId, SwarmEvent, dial_opts::DialOpts};
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, identify, kad, noise, tcp, yamux};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};

mod labels;
mod models;

pub(crate) use labels::LabelsCommand;
pub(crate) use models::ModelsCommand;

use super::announce::{self, Announcement};
use super::behaviour::{Behaviour, BehaviourEvent, KAD_PROTOCOL};
use super::blob::{Request, Response};
use super::publish::{self, Publisher};
use super::{Config, NetError, RequestError, metrics::Metrics};
use crate::dataset::manifest::SignedRoot;
use crate::dataset::{Catalog, CatalogError, DatasetId};
use crate::identity::Identity;
use crate::store::{BlobId, BlobStore};

/// Commands queued to the actor at most.
const COMMAND_QUEUE: usize = 256;
/// Blob reads for peers under way at most; more requests are refused (the peer retries elsewhere).
const MAX_SERVING_READS: usize = 128;
/// Datasets remembered from gossip at most (the least recently announced are forgotten).
const MAX_KNOWN_DATASETS: usize = 10_000;

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

/// A connected peer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerInfo {
    /// Its peer id.
    pub peer_id: String,
    /// Remote addresses of its connections.
    pub addresses: Vec<String>,
    /// Whether every connection to it is relayed.
    pub relayed_only: bool,
}

/// A dataset heard of on gossip.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KnownDataset {
    /// The dataset id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// Its label set.
    pub labels: Vec<String>,
    /// Its task kind.
    pub task: String,
    /// Samples.
    pub samples: u64,
    /// Bytes of all samples.
    pub bytes: u64,
    /// Peers that announced it.
    pub providers: Vec<String>,
    /// Seconds since the last announcement.
    pub last_seen_s: u64,
}

/// The outcome of a provider lookup.
#[derive(Debug, Clone, Default)]
pub struct ProviderLookup {
    /// Providers found (not this node, not banned peers), sorted.
    pub providers: Vec<PeerId>,
    /// Kademlia requests the lookup sent.
    pub requests: u32,
    /// Kademlia requests that were answered.
    pub successes: u32,
    /// Requests answered when the first provider was found (`None`: none was found), the
    /// closest thing to a hop count that libp2p exposes.
    pub answered_until_found: Option<u32>,
}

/// A summary of the node.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// Our peer id.
    pub peer_id: String,
    /// Our listen addresses (with `/p2p/`).
    pub listen_addrs: Vec<String>,
    /// Connected peers.
    pub peers: usize,
    /// Datasets served.
    pub serving: Vec<String>,
    /// Datasets heard of on gossip.
    pub known_datasets: usize,
    /// Peers in the Kademlia routing table.
    pub routing_table: usize,
}

pub(crate) enum Command {
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    Serve {
        served: Box<Served>,
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
    Unban {
        peer: PeerId,
        reply: oneshot::Sender<()>,
    },
    Disconnect {
        peer: PeerId,
        reply: oneshot::Sender<()>,
    },
    Labels(LabelsCommand),
    Models(ModelsCommand),
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    Known(oneshot::Sender<Vec<KnownDataset>>),
    Status(oneshot::Sender<Status>),
    Shutdown(oneshot::Sender<()>),
}

/// Work finished off the actor's thread.
enum Internal {
    BlobRead {
        channel: ResponseChannel<Response>,
        response: Response,
    },
    SyncAnswer {
        peer: PeerId,
        channel: ResponseChannel<super::sync::Response>,
        response: super::sync::Response,
    },
    Verdict {
        source: PeerId,
        id: gossipsub::MessageId,
        verdict: super::labels::Verdict,
    },
    ModelsSyncAnswer {
        peer: PeerId,
        channel: ResponseChannel<super::models::Response>,
        response: super::models::Response,
    },
    ModelsVerdict {
        source: PeerId,
        id: gossipsub::MessageId,
        verdict: super::labels::Verdict,
    },
}

struct ProviderQuery {
    found: HashSet<PeerId>,
    answered_until_found: Option<u32>,
    reply: oneshot::Sender<ProviderLookup>,
}

struct Known {
    root: SignedRoot,
    providers: HashSet<PeerId>,
    last_seen: Instant,
}

struct NodeActor {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    internal_tx: mpsc::Sender<Internal>,
    internal_rx: mpsc::Receiver<Internal>,
    store: BlobStore,
    metrics: Metrics,
    libp2p_metrics: libp2p::metrics::Metrics,
    reachable: bool,
    announce_interval: Duration,
    served: HashMap<DatasetId, SignedRoot>,
    servable: HashSet<BlobId>,
    serving_reads: usize,
    banned: HashSet<PeerId>,
    connections: HashMap<PeerId, HashMap<ConnectionId, (Multiaddr, bool)>>,
    requests: HashMap<OutboundRequestId, oneshot::Sender<Result<Response, RequestError>>>,
    provider_queries: HashMap<kad::QueryId, ProviderQuery>,
    publisher: Publisher<kad::QueryId>,
    dials: HashMap<ConnectionId, oneshot::Sender<Result<(), NetError>>>,
    known: HashMap<DatasetId, Known>,
    listen_addrs: Vec<Multiaddr>,
    announce_topic: gossipsub::IdentTopic,
    bootstrap: Vec<Multiaddr>,
    redial_interval: Duration,
    announce_due: bool,
    labels: labels::LabelsGlue,
    models: models::ModelsGlue,
}

/// Builds the swarm, starts listening, and spawns the actor. Returns once every listen address
/// is bound.
pub(crate) async fn spawn(
    identity: &Identity,
    store: BlobStore,
    config: &Config,
    registry: &mut Registry,
    metrics: Metrics,
) -> Result<(mpsc::Sender<Command>, PeerId), NetError> {
    let key = identity.to_libp2p_keypair();
    let peer_id = key.public().to_peer_id();
    let build = |e: &dyn std::fmt::Display| NetError::Build(e.to_string());
    let limits = config.limits.clone();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| build(&e))?
        .with_quic()
        .with_dns()
        .map_err(|e| build(&e))?
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| build(&e))?
        .with_bandwidth_metrics(registry)
        .with_behaviour(|key, relay_client| Behaviour::new(key, relay_client, &limits))
        .map_err(|e| build(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_timeout))
        .build();
    let libp2p_metrics = libp2p::metrics::Metrics::new(registry);

    if config.listen_addrs_reachable {
        swarm.behaviour_mut().kad.set_mode(Some(kad::Mode::Server));
    }
    for addr in &config.external {
        swarm.add_external_address(addr.clone());
    }
    let announce_topic = gossipsub::IdentTopic::new(announce::TOPIC);
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&announce_topic)
        .map_err(|e| build(&e))?;

    let mut pending = 0;
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NetError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
        pending += 1;
    }
    // Wait until every listener is bound, so callers get usable addresses at once.
    let mut listen_addrs = Vec::new();
    while pending > 0 {
        match swarm.select_next_some().await {
            SwarmEvent::NewListenAddr { address, .. } => {
                listen_addrs.push(address);
                pending -= 1;
            }
            SwarmEvent::ListenerError { error, .. }
            | SwarmEvent::ListenerClosed {
                reason: Err(error), ..
            } => {
                return Err(NetError::Build(format!("a listener failed: {error}")));
            }
            _ => {}
        }
    }
    if config.listen_addrs_reachable {
        for addr in &listen_addrs {
            swarm.add_external_address(addr.clone());
        }
    }
    for addr in &config.bootstrap {
        if let Some(Protocol::P2p(peer)) = addr.iter().last() {
            swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
        }
        swarm.dial(addr.clone()).map_err(|e| NetError::Dial {
            addr: addr.clone(),
            reason: e.to_string(),
        })?;
    }

    let (tx, commands) = mpsc::channel(COMMAND_QUEUE);
    let (internal_tx, internal_rx) = mpsc::channel(MAX_SERVING_READS);
    let actor = NodeActor {
        swarm,
        commands,
        internal_tx,
        internal_rx,
        store,
        metrics,
        libp2p_metrics,
        reachable: config.listen_addrs_reachable,
        announce_interval: config.announce_interval,
        served: HashMap::new(),
        servable: HashSet::new(),
        serving_reads: 0,
        banned: HashSet::new(),
        connections: HashMap::new(),
        requests: HashMap::new(),
        provider_queries: HashMap::new(),
        publisher: Publisher::new(publish::MAX_IN_FLIGHT),
        dials: HashMap::new(),
        known: HashMap::new(),
        listen_addrs,
        announce_topic,
        bootstrap: config.bootstrap.clone(),
        redial_interval: config.redial_interval,
        announce_due: false,
        labels: labels::LabelsGlue::default(),
        models: models::ModelsGlue::default(),
    };
    tokio::spawn(tracing::Instrument::instrument(
        actor.run(),
        tracing::info_span!("node", peer = %peer_id),
    ));
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
                Some(internal) = self.internal_rx.recv() => self.on_internal(internal),
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                _ = announce.tick() => self.announce_all(),
                _ = redial.tick() => {
                    self.redial_bootstrap();
                    self.publish_due();
                    if self.announce_due {
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
            Command::Dial { addr, reply } => {
                let opts = DialOpts::unknown_peer_id().address(addr.clone()).build();
                let opts = match addr.iter().last() {
                    Some(Protocol::P2p(peer)) => DialOpts::peer_id(peer)
                        .addresses(vec![addr.clone()])
                        .build(),
                    _ => opts,
                };
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.dials.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NetError::Dial {
                            addr,
                            reason: e.to_string(),
                        }));
                    }
                }
            }
            Command::Serve { served, reply } => {
                let id = served.root.id();
                self.servable.extend(served.blobs.iter().copied());
                self.served.insert(id, served.root.clone());
                self.publisher.request(id);
                self.publish_due();
                self.announce(&served.root);
                let _ = reply.send(());
            }
            Command::Request {
                peer,
                request,
                reply,
            } => {
                if self.banned.contains(&peer) {
                    let _ = reply.send(Err(RequestError::Banned));
                    return;
                }
                if let Some(conns) = self.connections.get(&peer)
                    && !conns.is_empty()
                    && conns.values().all(|(_, relayed)| *relayed)
                {
                    let _ = reply.send(Err(RequestError::Unreachable));
                    return;
                }
                let id = self.swarm.behaviour_mut().blob.send_request(&peer, request);
                self.requests.insert(id, reply);
            }
            Command::FindProviders {
                dataset,
                dht_only,
                reply,
            } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_providers(kad::RecordKey::new(&dataset.0.0));
                let mut found = HashSet::new();
                // Gossip announcements name providers too; the DHT adds the rest.
                if let Some(known) = self.known.get(&dataset).filter(|_| !dht_only) {
                    found.extend(known.providers.iter().copied());
                }
                self.provider_queries.insert(
                    id,
                    ProviderQuery {
                        answered_until_found: None,
                        found,
                        reply,
                    },
                );
            }
            Command::BootstrapDht(reply) => {
                // Fails only when no peer is known yet; the next upkeep or a later call retries.
                let _ = self.swarm.behaviour_mut().kad.bootstrap();
                let _ = reply.send(());
            }
            Command::Ban { peer, reply } => {
                self.banned.insert(peer);
                self.swarm.behaviour_mut().blocked.block_peer(peer);
                self.metrics.peers_banned.inc();
                let _ = reply.send(());
            }
            Command::Unban { peer, reply } => {
                self.banned.remove(&peer);
                self.swarm.behaviour_mut().blocked.unblock_peer(peer);
                let _ = reply.send(());
            }
            Command::Labels(command) => self.on_labels_command(command),
            Command::Models(command) => self.on_models_command(command),
            Command::Disconnect { peer, reply } => {
                let _ = self.swarm.disconnect_peer_id(peer);
                let _ = reply.send(());
            }
            Command::Peers(reply) => {
                let peers = self
                    .connections
                    .iter()
                    .map(|(peer, conns)| PeerInfo {
                        peer_id: peer.to_string(),
                        addresses: conns.values().map(|(a, _)| a.to_string()).collect(),
                        relayed_only: conns.values().all(|(_, r)| *r),
                    })
                    .collect();
                let _ = reply.send(peers);
            }
            Command::Known(reply) => {
                let mut known: Vec<&Known> = self.known.values().collect();
                known.sort_by_key(|k| std::cmp::Reverse(k.last_seen));
                let out = known
                    .into_iter()
                    .map(|k| {
                        let r = k.root.root();
                        KnownDataset {
                            id: k.root.id().to_string(),
                            name: r.name.clone(),
                            description: r.description.clone(),
                            labels: r.labels.clone(),
                            task: r.task.kind().to_owned(),
                            samples: r.sample_count,
                            bytes: r.total_bytes,
                            providers: k.providers.iter().map(ToString::to_string).collect(),
                            last_seen_s: k.last_seen.elapsed().as_secs(),
                        }
                    })
                    .collect();
                let _ = reply.send(out);
            }
            Command::Status(reply) => {
                let routing_table = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .kbuckets()
                    .map(|b| b.num_entries())
                    .sum();
                let status = Status {
                    peer_id: self.swarm.local_peer_id().to_string(),
                    listen_addrs: self
                        .listen_addrs
                        .iter()
                        .map(|a| self.with_p2p(a).to_string())
                        .collect(),
                    peers: self.connections.len(),
                    serving: self.served.keys().map(ToString::to_string).collect(),
                    known_datasets: self.known.len(),
                    routing_table,
                };
                let _ = reply.send(status);
            }
            Command::Shutdown(_) => unreachable!("handled in run"),
        }
    }

    fn on_internal(&mut self, internal: Internal) {
        match internal {
            Internal::BlobRead { channel, response } => {
                self.serving_reads = self.serving_reads.saturating_sub(1);
                if matches!(response, Response::Found(_)) {
                    self.metrics.blobs_served.inc();
                }
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .blob
                    .send_response(channel, response);
            }
            Internal::SyncAnswer {
                peer,
                channel,
                response,
            } => self.on_sync_answer(peer, channel, response),
            Internal::Verdict {
                source,
                id,
                verdict,
            } => self.on_verdict(source, id, verdict),
            Internal::ModelsSyncAnswer {
                peer,
                channel,
                response,
            } => self.on_models_sync_answer(peer, channel, response),
            Internal::ModelsVerdict {
                source,
                id,
                verdict,
            } => self.on_models_verdict(source, id, verdict),
        }
    }

    fn is_bootstrap(&self, peer: &PeerId) -> bool {
        self.bootstrap
            .iter()
            .any(|a| a.iter().last() == Some(Protocol::P2p(*peer)))
    }

    /// Dials the bootstrap peers we are not connected to (one restarted, or the network was down).
    fn redial_bootstrap(&mut self) {
        for addr in self.bootstrap.clone() {
            if let Some(Protocol::P2p(peer)) = addr.iter().last()
                && !self.swarm.is_connected(&peer)
            {
                let opts = DialOpts::peer_id(peer)
                    .addresses(vec![addr])
                    .condition(libp2p::swarm::dial_opts::PeerCondition::DisconnectedAndNotDialing)
                    .build();
                let _ = self.swarm.dial(opts);
            }
        }
    }

    /// Starts the provider publications that are due, as many as the publisher allows at once.
    fn publish_due(&mut self) {
        let now = Instant::now();
        while let Some(id) = self.publisher.next(now) {
            if !self.served.contains_key(&id) {
                continue;
            }
            match self
                .swarm
                .behaviour_mut()
                .kad
                .start_providing(kad::RecordKey::new(&id.0.0))
            {
                Ok(query) => self.publisher.started(query, id),
                // The local store is full: retrying cannot help.
                Err(e) => {
                    tracing::warn!(dataset = %id, error = %e, "cannot provide the dataset on the DHT");
                }
            }
        }
    }

    /// Handles the end of a provider publication: ours (`start_providing`) or libp2p's periodic
    /// republication. A failed one is tried again later (see `publish`).
    fn on_published(&mut self, query: kad::QueryId, result: kad::AddProviderResult) {
        let now = Instant::now();
        let ours = self.publisher.finished(query, result.is_ok(), now);
        if let Err(e) = &result {
            self.metrics.dht_publications_failed.inc();
            let dataset = <[u8; 32]>::try_from(e.key().as_ref())
                .ok()
                .map(|bytes| DatasetId(BlobId(bytes)));
            if ours.is_none()
                && let Some(dataset) = dataset.filter(|d| self.served.contains_key(d))
            {
                self.publisher.failed(dataset, now);
            }
            let dataset = dataset.map_or_else(|| hex::encode(e.key().as_ref()), |d| d.to_string());
            tracing::debug!(%dataset, error = %e, "a provider record was not published; retrying later");
        }
        self.publish_due();
    }

    fn announce_all(&mut self) {
        self.announce_due = false;
        let roots: Vec<SignedRoot> = self.served.values().cloned().collect();
        for root in &roots {
            self.announce(root);
        }
    }

    fn announce(&mut self, root: &SignedRoot) {
        let sequence = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let message = Announcement {
            sequence,
            root: root.clone(),
        }
        .encode();
        let topic = self.announce_topic.clone();
        if let Err(e) = self.swarm.behaviour_mut().gossipsub.publish(topic, message) {
            // No subscribed peer yet is normal at start; the next tick retries.
            tracing::debug!(error = %e, "announcement not sent");
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                if self.reachable {
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
            } => {
                let addr = match &endpoint {
                    ConnectedPoint::Dialer { address, .. } => address.clone(),
                    ConnectedPoint::Listener { send_back_addr, .. } => send_back_addr.clone(),
                };
                let relayed = endpoint.is_relayed();
                self.connections
                    .entry(peer_id)
                    .or_default()
                    .insert(connection_id, (addr, relayed));
                self.metrics.peers.set(self.connections.len() as i64);
                if let Some(reply) = self.dials.remove(&connection_id) {
                    let _ = reply.send(Ok(()));
                }
                if self.is_bootstrap(&peer_id) {
                    // A bootstrap peer that restarted has lost our provider records.
                    for id in self.served.keys().copied().collect::<Vec<_>>() {
                        self.publisher.request(id);
                    }
                    self.publish_due();
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                ..
            } => {
                if let Some(conns) = self.connections.get_mut(&peer_id) {
                    conns.remove(&connection_id);
                    if conns.is_empty() {
                        self.connections.remove(&peer_id);
                    }
                }
                self.metrics.peers.set(self.connections.len() as i64);
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                ..
            } => {
                if let Some(reply) = self.dials.remove(&connection_id) {
                    let _ = reply.send(Err(NetError::Dial {
                        addr: Multiaddr::empty(),
                        reason: error.to_string(),
                    }));
                }
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(event) => {
                self.libp2p_metrics.record(&event);
                if let identify::Event::Received { peer_id, info, .. } = event
                    && info.protocols.contains(&KAD_PROTOCOL)
                {
                    for addr in info.listen_addrs {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
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
                    } => {
                        self.on_gossip(propagation_source, message_id, message);
                    }
                    // A new listener: tell it what we serve at the next upkeep tick rather than
                    // at the next announcement (once per tick, however many newcomers).
                    gossipsub::Event::Subscribed { topic, .. }
                        if topic == self.announce_topic.hash() =>
                    {
                        self.announce_due = true;
                    }
                    gossipsub::Event::Subscribed { peer_id, topic } => {
                        if let Some(dataset) = super::models::dataset_of_topic(topic.as_str()) {
                            self.on_models_subscribed(peer_id, dataset);
                        }
                    }
                    _ => {}
                }
            }
            BehaviourEvent::Blob(event) => self.on_blob_event(event),
            BehaviourEvent::Sync(event) => self.on_sync_event(event),
            BehaviourEvent::Models(event) => self.on_models_sync_event(event),
            BehaviourEvent::Ping(event) => self.libp2p_metrics.record(&event),
            BehaviourEvent::Dcutr(event) => self.libp2p_metrics.record(&event),
            _ => {}
        }
    }

    fn on_kad_event(&mut self, event: kad::Event) {
        let (id, result, step, stats) = match event {
            kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetProviders(result),
                step,
                stats,
            } => (id, result, step, stats),
            kad::Event::OutboundQueryProgressed {
                id,
                result:
                    kad::QueryResult::StartProviding(result)
                    | kad::QueryResult::RepublishProvider(result),
                ..
            } => {
                self.on_published(id, result);
                return;
            }
            _ => return,
        };
        let local = *self.swarm.local_peer_id();
        if let Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) = result {
            for peer in providers {
                if peer == local || self.banned.contains(&peer) {
                    continue;
                }
                // Dial while the query still holds the provider's addresses.
                if !self.swarm.is_connected(&peer) {
                    let _ = self.swarm.dial(peer);
                }
                if let Some(query) = self.provider_queries.get_mut(&id) {
                    query.found.insert(peer);
                    query
                        .answered_until_found
                        .get_or_insert(stats.num_successes());
                }
            }
        }
        if step.last
            && let Some(query) = self.provider_queries.remove(&id)
        {
            let mut providers: Vec<PeerId> = query
                .found
                .into_iter()
                .filter(|p| *p != local && !self.banned.contains(p))
                .collect();
            providers.sort();
            let _ = query.reply.send(ProviderLookup {
                providers,
                requests: stats.num_requests(),
                successes: stats.num_successes(),
                answered_until_found: query.answered_until_found,
            });
        }
    }

    fn on_gossip(&mut self, source: PeerId, id: gossipsub::MessageId, message: gossipsub::Message) {
        if let Some(dataset) = super::labels::dataset_of_topic(message.topic.as_str()) {
            self.on_label_gossip(source, id, dataset, message.data);
            return;
        }
        if let Some(dataset) = super::models::dataset_of_topic(message.topic.as_str()) {
            self.on_model_gossip(source, id, dataset, message);
            return;
        }
        let acceptance = match (message.source, Announcement::decode(&message.data)) {
            (Some(author), Ok(announcement)) if message.topic == self.announce_topic.hash() => {
                let dataset = announcement.dataset();
                if !self.known.contains_key(&dataset) && self.known.len() >= MAX_KNOWN_DATASETS {
                    self.forget_oldest();
                }
                let known = self.known.entry(dataset).or_insert_with(|| Known {
                    root: announcement.root.clone(),
                    providers: HashSet::new(),
                    last_seen: Instant::now(),
                });
                known.last_seen = Instant::now();
                if known.providers.len() < 64 {
                    known.providers.insert(author);
                }
                gossipsub::MessageAcceptance::Accept
            }
            (_, Err(e)) => {
                tracing::debug!(peer = %source, error = %e, "rejected an invalid announcement");
                gossipsub::MessageAcceptance::Reject
            }
            _ => gossipsub::MessageAcceptance::Reject,
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&id, &source, acceptance);
    }

    fn forget_oldest(&mut self) {
        if let Some(oldest) = self
            .known
            .iter()
            .min_by_key(|(_, k)| k.last_seen)
            .map(|(id, _)| *id)
        {
            self.known.remove(&oldest);
        }
    }

    fn on_blob_event(&mut self, event: request_response::Event<Request, Response>) {
        match event {
            request_response::Event::Message {
                peer,
                connection_id,
                message,
            } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    self.serve_request(peer, connection_id, request, channel);
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.requests.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(reply) = self.requests.remove(&request_id) {
                    let _ = reply.send(Err(RequestError::Failed(error.to_string())));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "a blob request from a peer failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn serve_request(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        request: Request,
        channel: ResponseChannel<Response>,
    ) {
        let relayed = self
            .connections
            .get(&peer)
            .and_then(|c| c.get(&connection))
            .is_some_and(|(_, relayed)| *relayed);
        let respond = |swarm: &mut Swarm<Behaviour>, channel, response| {
            let _ = swarm.behaviour_mut().blob.send_response(channel, response);
        };
        match request {
            _ if relayed => respond(&mut self.swarm, channel, Response::Refused),
            Request::Root(id) => {
                let response = match self.served.get(&DatasetId(id)) {
                    Some(root) => Response::Found(root.bytes().to_vec()),
                    None => Response::NotFound,
                };
                respond(&mut self.swarm, channel, response);
            }
            Request::Blob(id) if !self.servable.contains(&id) => {
                respond(&mut self.swarm, channel, Response::NotFound);
            }
            Request::Blob(_) if self.serving_reads >= MAX_SERVING_READS => {
                respond(&mut self.swarm, channel, Response::Refused);
            }
            Request::Blob(id) => {
                self.serving_reads += 1;
                let path = self.store.path(&id);
                let tx = self.internal_tx.clone();
                // Read off the actor's thread. The receiver verifies the hash, so the read does
                // not: a provider with a damaged disk is caught (and avoided) by its peers.
                tokio::spawn(async move {
                    let response = match tokio::fs::read(&path).await {
                        Ok(bytes) => Response::Found(bytes),
                        Err(_) => Response::NotFound,
                    };
                    let _ = tx.send(Internal::BlobRead { channel, response }).await;
                });
            }
        }
    }
}
