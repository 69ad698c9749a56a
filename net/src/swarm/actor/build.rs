//! Making the swarm and the actor that owns it: transports, behaviour, listeners bound,
//! bootstrap peers dialled.

use std::collections::{HashMap, HashSet};

use futures::StreamExt as _;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, noise, tcp, yamux};
use prometheus_client::registry::Registry;
use swarmlabel_store::identity::Identity;
use swarmlabel_store::store::BlobStore;
use tokio::sync::mpsc;

use super::super::behaviour::Behaviour;
use super::super::{Config, NetError, metrics::Metrics};
use super::{
    COMMAND_QUEUE, Command, NodeActor, catalog, connections, is_loopback, providers, relays,
    replication, serving,
};

/// Builds the swarm and the actor, and starts listening; returns once every listen address is
/// bound. Runs on the network runtime.
pub(super) async fn build(
    identity: &Identity,
    store: BlobStore,
    config: &Config,
    registry: &mut Registry,
    metrics: Metrics,
) -> Result<(NodeActor, mpsc::Sender<Command>, PeerId), NetError> {
    let key = identity.to_libp2p_keypair();
    let peer_id = key.public().to_peer_id();
    let build = |e: &dyn std::fmt::Display| NetError::Build(e.to_string());
    let mut swarm = new_swarm(key, config, registry)?;
    let libp2p_metrics = libp2p::metrics::Metrics::new(registry);

    if config.listen_addrs_reachable {
        swarm
            .behaviour_mut()
            .kad
            .set_mode(Some(libp2p::kad::Mode::Server));
    }
    for addr in &config.external {
        swarm.add_external_address(addr.clone());
    }
    let catalog = catalog::Known::new();
    super::super::behaviour::subscribe(&mut swarm.behaviour_mut().gossipsub, catalog.topic())
        .map_err(|e| build(&e))?;

    let listen_addrs = listen(&mut swarm, config).await?;
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
    let (internal_tx, internal_rx) = mpsc::channel(serving::MAX_SERVING_READS);
    let actor = NodeActor {
        swarm,
        commands,
        internal_tx,
        internal_rx,
        metrics,
        libp2p_metrics,
        reachable: config.listen_addrs_reachable,
        announce_interval: config.announce_interval,
        served: HashMap::new(),
        banned: HashSet::new(),
        strikes: HashMap::new(),
        listen_addrs,
        bootstrap: config.bootstrap.clone(),
        redial_interval: config.redial_interval,
        connections: connections::Connections::default(),
        providers: providers::Providers::new(),
        catalog,
        serving: serving::Serving::new(store),
        replication: replication::Replication::new(config.limits.replication_requests),
        relays: relays::Relays::new(config.use_relays),
    };
    Ok((actor, tx, peer_id))
}

/// The swarm: TCP (noise, yamux), QUIC, DNS and the relay client, with bandwidth metrics, around
/// this node's behaviour.
fn new_swarm(
    key: libp2p::identity::Keypair,
    config: &Config,
    registry: &mut Registry,
) -> Result<Swarm<Behaviour>, NetError> {
    let build = |e: &dyn std::fmt::Display| NetError::Build(e.to_string());
    let limits = config.limits.clone();
    let private_addrs_routable = config.private_addrs_routable;
    let lan = config.mdns && config.listen.iter().any(|a| !is_loopback(a));
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
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
        .with_behaviour(|key, relay_client| {
            Behaviour::new(key, relay_client, &limits, private_addrs_routable, lan)
        })
        .map_err(|e| build(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_timeout))
        .build();
    Ok(swarm)
}

/// Listens on every configured address; returns once each is bound, so callers get usable
/// addresses at once.
async fn listen(swarm: &mut Swarm<Behaviour>, config: &Config) -> Result<Vec<Multiaddr>, NetError> {
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
    Ok(listen_addrs)
}
