#![allow(missing_docs)] // The NetworkBehaviour derive generates an undocumented event enum.
//! The libp2p behaviours of a node, and the parts a bootstrap peer shares with it (protocol names,
//! Kademlia, identify and gossipsub settings), so that every peer speaks the same way.

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    StreamProtocol, allow_block_list, autonat, connection_limits, dcutr, gossipsub, identify, kad,
    mdns, ping, relay, request_response,
};

use super::{announce, blob, replication};

/// Our Kademlia protocol (not the IPFS DHT: our records mean other things).
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/swarmlabel/kad/1.0.0");
/// The identify protocol version string every swarmlabel peer sends.
pub const PROTOCOL_VERSION: &str = "/swarmlabel/1.0.0";
/// Gossipsub messages at most: an announcement and framing.
pub const MAX_GOSSIP_BYTES: usize = announce::MAX_LEN + 16 * 1024;

/// Limits and timings shared by nodes and bootstrap peers.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Established connections at most.
    pub max_connections: u32,
    /// Established connections per peer at most.
    pub max_connections_per_peer: u32,
    /// Incoming connections being set up at most.
    pub max_pending_incoming: u32,
    /// How long a blob request may take.
    pub request_timeout: Duration,
    /// Concurrent streams of the blob protocol per connection.
    pub max_blob_streams: usize,
    /// How long one replication request may take (a label shard's first sync carries its
    /// document).
    pub sync_request_timeout: Duration,
    /// Concurrent streams of the replication protocol per connection.
    pub max_sync_streams: usize,
    /// Replication requests of one kind each peer may get answered: a second, and at once
    /// (64/s, 1,024 at once by default: an honest session asks a few requests per differing
    /// shard of a dataset, at most 256 shards, once per anti-entropy round). Over it the swarm
    /// answers `busy` without waking the kind.
    pub replication_requests: (f64, f64),
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1_000,
            max_connections_per_peer: 4,
            max_pending_incoming: 256,
            request_timeout: Duration::from_secs(60),
            max_blob_streams: 256,
            sync_request_timeout: Duration::from_secs(30),
            max_sync_streams: 8,
            replication_requests: (64.0, 1_024.0),
        }
    }
}

/// The connection limits behaviour for `limits`.
pub fn connection_limits(limits: &Limits) -> connection_limits::Behaviour {
    connection_limits::Behaviour::new(
        connection_limits::ConnectionLimits::default()
            .with_max_established(Some(limits.max_connections))
            .with_max_established_per_peer(Some(limits.max_connections_per_peer))
            .with_max_pending_incoming(Some(limits.max_pending_incoming)),
    )
}

/// Kademlia under [`KAD_PROTOCOL`], its provider records in a store bounded for strangers
/// ([`super::provider_store`]).
pub fn kad(key: &Keypair) -> kad::Behaviour<super::provider_store::ProviderStore> {
    let peer = key.public().to_peer_id();
    let store = super::provider_store::ProviderStore::new(peer);
    let mut config = kad::Config::new(KAD_PROTOCOL);
    config.set_query_timeout(Duration::from_secs(30));
    kad::Behaviour::with_config(peer, store, config)
}

/// Identify, announcing [`PROTOCOL_VERSION`] and our agent version.
pub fn identify(key: &Keypair) -> identify::Behaviour {
    identify::Behaviour::new(
        identify::Config::new(PROTOCOL_VERSION.to_owned(), key.public())
            .with_agent_version(format!("swarmlabel/{}", env!("CARGO_PKG_VERSION")))
            .with_push_listen_addr_updates(true),
    )
}

/// Gossipsub with signed messages, strict validation (every message is checked by the
/// application before it is forwarded), the message size limit every peer must share, and peer
/// scoring ([`score_params`], [`score_thresholds`]): a message the application rejects costs its
/// sender, and a sender of a few is graylisted (everything it sends is dropped unread).
/// Subscribe with [`subscribe`] so that the topic is scored.
pub fn gossipsub(key: &Keypair) -> gossipsub::Behaviour {
    let config = gossipsub::ConfigBuilder::default()
        .max_transmit_size(MAX_GOSSIP_BYTES)
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .heartbeat_interval(Duration::from_millis(500))
        .build()
        .expect("invariant: the gossipsub settings above are valid");
    let mut behaviour =
        gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), config)
            .expect("invariant: signed gossipsub with a valid config builds");
    behaviour
        .with_peer_score(score_params(), score_thresholds())
        .expect("invariant: the score parameters are valid and set once");
    behaviour
}

/// Subscribes to `topic` and scores it with [`topic_score_params`].
pub fn subscribe(
    gossipsub: &mut gossipsub::Behaviour,
    topic: &gossipsub::IdentTopic,
) -> Result<bool, gossipsub::SubscriptionError> {
    let subscribed = gossipsub.subscribe(topic)?;
    // Scoring is on (see `gossipsub`), so setting a topic's parameters cannot fail.
    let _ = gossipsub.set_topic_params(topic.clone(), topic_score_params());
    Ok(subscribed)
}

/// Peer score parameters (documented in docs/protocol.md). IP colocation is not scored:
/// volunteers behind one NAT (a lab, a campus) share an address and are not Sybils for it.
pub fn score_params() -> gossipsub::PeerScoreParams {
    gossipsub::PeerScoreParams {
        // Positive score is capped low, so that a peer cannot bank good behaviour to spend on
        // invalid messages.
        topic_score_cap: 10.0,
        ip_colocation_factor_weight: 0.0,
        ..gossipsub::PeerScoreParams::default()
    }
}

/// Score thresholds: gossip below -10, publishing below -50, graylisting below -80.
pub fn score_thresholds() -> gossipsub::PeerScoreThresholds {
    gossipsub::PeerScoreThresholds {
        gossip_threshold: -10.0,
        publish_threshold: -50.0,
        graylist_threshold: -80.0,
        accept_px_threshold: 10.0,
        opportunistic_graft_threshold: 5.0,
    }
}

/// The score of one topic. Each invalid message (rejected by the application) adds one to its
/// sender's count, which weighs `-20 x count²` and decays by 0.5 % a second (a half-life of
/// about 2 minutes 20 s): one invalid message stops gossip with its sender, two graylist it.
/// Mesh delivery rates are not scored: datasets are quiet most of the time, and an honest peer
/// with nothing to say must not be penalised for it.
pub fn topic_score_params() -> gossipsub::TopicScoreParams {
    gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 300.0,
        first_message_deliveries_weight: 0.5,
        first_message_deliveries_decay: 0.9,
        first_message_deliveries_cap: 10.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -20.0,
        invalid_message_deliveries_decay: 0.995,
        ..gossipsub::TopicScoreParams::default()
    }
}

/// The behaviours of a swarmlabel node.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Connection limits.
    pub limits: connection_limits::Behaviour,
    /// Peers banned for sending corrupt data.
    pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    /// Identify: learns peers' listen addresses and protocols.
    pub identify: identify::Behaviour,
    /// Ping: liveness.
    pub ping: ping::Behaviour,
    /// Kademlia: dataset providers.
    pub kad: kad::Behaviour<super::provider_store::ProviderStore>,
    /// Gossipsub: dataset announcements, labels and model announcements.
    pub gossipsub: gossipsub::Behaviour,
    /// The blob protocol.
    pub blob: request_response::Behaviour<blob::Codec>,
    /// The replication protocol of every replicated kind (labels, models, policy).
    pub replication: request_response::Behaviour<replication::Codec>,
    /// AutoNAT: learns whether our addresses are reachable.
    pub autonat: autonat::Behaviour,
    /// Relay client, for peers behind NAT.
    pub relay_client: relay::client::Behaviour,
    /// Hole punching over relayed connections.
    pub dcutr: dcutr::Behaviour,
    /// Peers on the same LAN, found by multicast DNS (off for nodes that listen on loopback
    /// only, or when turned off).
    pub mdns: Toggle<mdns::tokio::Behaviour>,
}

impl std::fmt::Debug for Behaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Behaviour").finish_non_exhaustive()
    }
}

impl Behaviour {
    /// The behaviours of a node with key `key`; `private_addrs_routable` makes AutoNAT count
    /// private addresses as routable (a test bed of private ranges); `lan` turns mDNS on (a
    /// socket that cannot be made, e.g. without multicast, leaves it off with a warning).
    pub fn new(
        key: &Keypair,
        relay_client: relay::client::Behaviour,
        limits: &Limits,
        private_addrs_routable: bool,
        lan: bool,
    ) -> Self {
        let peer = key.public().to_peer_id();
        let mdns = lan
            .then(|| mdns::tokio::Behaviour::new(mdns::Config::default(), peer))
            .and_then(|made| {
                made.map_err(|e| tracing::warn!(error = %e, "no LAN discovery (mDNS)"))
                    .ok()
            });
        let blob = request_response::Behaviour::with_codec(
            blob::codec(),
            [(blob::PROTOCOL, request_response::ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(limits.request_timeout)
                .with_max_concurrent_streams(limits.max_blob_streams),
        );
        let replication = request_response::Behaviour::with_codec(
            replication::codec(),
            [(
                replication::PROTOCOL,
                request_response::ProtocolSupport::Full,
            )],
            request_response::Config::default()
                .with_request_timeout(limits.sync_request_timeout)
                .with_max_concurrent_streams(limits.max_sync_streams),
        );
        Self {
            limits: connection_limits(limits),
            blocked: allow_block_list::Behaviour::default(),
            identify: identify(key),
            ping: ping::Behaviour::default(),
            kad: kad(key),
            gossipsub: gossipsub(key),
            blob,
            replication,
            autonat: autonat::Behaviour::new(
                peer,
                autonat::Config {
                    only_global_ips: !private_addrs_routable,
                    ..autonat::Config::default()
                },
            ),
            relay_client,
            dcutr: dcutr::Behaviour::new(peer),
            mdns: mdns.into(),
        }
    }
}
