#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod behaviour;
pub mod key;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use libp2p::identity::Keypair;
use libp2p::metrics::Recorder as _;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, identify, noise, tcp, yamux};
use prometheus_client::registry::Registry;
use swarmlabel_net::swarm::announce::{self, Announcement};
use swarmlabel_net::swarm::behaviour::{KAD_PROTOCOL, Limits};
use tokio::sync::{mpsc, oneshot};

use behaviour::{Behaviour, BehaviourEvent};

/// Settings of a bootstrap peer.
#[derive(Debug, Clone)]
pub struct Config {
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Addresses others reach us at. Without one (or `listen_addrs_reachable`), the relay does
    /// not advertise itself and Kademlia hands out no address for us.
    pub external: Vec<Multiaddr>,
    /// Treat the listen addresses as reachable (loopback tests, a host with a public address).
    pub listen_addrs_reachable: bool,
    /// Connection limits.
    pub limits: Limits,
    /// Relay reservations at most.
    pub max_reservations: usize,
    /// Relayed circuits at most.
    pub max_circuits: usize,
    /// Bytes one relayed circuit may carry (0: no circuit is relayed at all).
    pub relay_circuit_bytes: u64,
    /// How long one relayed circuit may last.
    pub relay_circuit_duration: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: vec![
                "/ip4/0.0.0.0/tcp/4001"
                    .parse()
                    .expect("invariant: a valid multiaddr"),
                "/ip4/0.0.0.0/udp/4001/quic-v1"
                    .parse()
                    .expect("invariant: a valid multiaddr"),
            ],
            external: Vec::new(),
            listen_addrs_reachable: false,
            limits: Limits {
                max_connections: 10_000,
                max_pending_incoming: 1_024,
                ..Limits::default()
            },
            max_reservations: 1_024,
            max_circuits: 256,
            relay_circuit_bytes: 16 << 20,
            relay_circuit_duration: Duration::from_secs(600),
        }
    }
}

/// Why a bootstrap peer could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The swarm could not be built.
    #[error("cannot start the bootstrap peer: {0}")]
    Build(String),
    /// A listen address could not be used.
    #[error("cannot listen on {addr}: {reason}; choose another address or port")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
}

/// A running bootstrap peer. Dropping it does not stop it: call [`Bootstrap::shutdown`].
#[derive(Debug)]
pub struct Bootstrap {
    peer_id: PeerId,
    listen_addrs: Vec<Multiaddr>,
    registry: Arc<Mutex<Registry>>,
    stop: mpsc::Sender<oneshot::Sender<()>>,
}

impl Bootstrap {
    /// Starts a bootstrap peer with `key` and waits until it listens.
    pub async fn start(key: Keypair, config: Config) -> Result<Bootstrap, Error> {
        let build = |e: &dyn std::fmt::Display| Error::Build(e.to_string());
        let mut registry = Registry::default();
        swarmlabel_net::swarm::metrics::register_build_info(&mut registry, "bootstrap");
        let limits = config.limits.clone();
        // libp2p reads a byte limit of 0 as "no limit": 0 here means no circuit at all.
        let relay_config = libp2p::relay::Config {
            max_reservations: config.max_reservations,
            max_circuits: if config.relay_circuit_bytes == 0 {
                0
            } else {
                config.max_circuits
            },
            max_circuit_bytes: config.relay_circuit_bytes,
            max_circuit_duration: config.relay_circuit_duration,
            ..libp2p::relay::Config::default()
        };
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
            .with_bandwidth_metrics(&mut registry)
            .with_behaviour(|key| Behaviour::new(key, &limits, relay_config))
            .map_err(|e| build(&e))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        let metrics = libp2p::metrics::Metrics::new(&mut registry);
        swarm
            .behaviour_mut()
            .kad
            .set_mode(Some(libp2p::kad::Mode::Server));
        let topic = gossipsub::IdentTopic::new(announce::TOPIC);
        swarmlabel_net::swarm::behaviour::subscribe(&mut swarm.behaviour_mut().gossipsub, &topic)
            .map_err(|e| build(&e))?;
        for addr in &config.external {
            swarm.add_external_address(addr.clone());
        }
        for addr in &config.listen {
            swarm.listen_on(addr.clone()).map_err(|e| Error::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
        }
        let mut listen_addrs = Vec::new();
        while listen_addrs.len() < config.listen.len() {
            match swarm.select_next_some().await {
                SwarmEvent::NewListenAddr { address, .. } => listen_addrs.push(address),
                SwarmEvent::ListenerError { error, .. } => return Err(build(&error)),
                _ => {}
            }
        }
        if config.listen_addrs_reachable {
            for addr in &listen_addrs {
                swarm.add_external_address(addr.clone());
            }
        }
        let peer_id = *swarm.local_peer_id();
        let listen_addrs = listen_addrs
            .into_iter()
            .map(|a| a.with_p2p(peer_id).unwrap_or_else(|a| a))
            .collect();
        let (stop, stop_rx) = mpsc::channel(1);
        tokio::spawn(run(swarm, metrics, stop_rx));
        Ok(Bootstrap {
            peer_id,
            listen_addrs,
            registry: Arc::new(Mutex::new(registry)),
            stop,
        })
    }

    /// The peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The listen addresses, each ending in `/p2p/<peer id>`.
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.listen_addrs
    }

    /// The metric registry (libp2p's connection, bandwidth, Kademlia, identify, gossipsub and
    /// relay series).
    pub fn registry(&self) -> Arc<Mutex<Registry>> {
        self.registry.clone()
    }

    /// Closes every connection and stops.
    pub async fn shutdown(self) {
        let (tx, rx) = oneshot::channel();
        if self.stop.send(tx).await.is_ok() {
            let _ = rx.await;
        }
    }
}

async fn run(
    mut swarm: Swarm<Behaviour>,
    metrics: libp2p::metrics::Metrics,
    mut stop: mpsc::Receiver<oneshot::Sender<()>>,
) {
    let done = loop {
        tokio::select! {
            biased;
            reply = stop.recv() => break reply,
            event = swarm.select_next_some() => on_event(&mut swarm, &metrics, event),
        }
    };
    let peers: Vec<PeerId> = swarm.connected_peers().copied().collect();
    for peer in peers {
        let _ = swarm.disconnect_peer_id(peer);
    }
    drop(swarm);
    if let Some(reply) = done {
        let _ = reply.send(());
    }
}

fn on_event(
    swarm: &mut Swarm<Behaviour>,
    metrics: &libp2p::metrics::Metrics,
    event: SwarmEvent<BehaviourEvent>,
) {
    metrics.record(&event);
    let SwarmEvent::Behaviour(event) = event else {
        return;
    };
    match event {
        BehaviourEvent::Identify(event) => {
            metrics.record(&event);
            if let identify::Event::Received { peer_id, info, .. } = event
                && info.protocols.contains(&KAD_PROTOCOL)
            {
                for addr in info.listen_addrs {
                    // Only addresses a peer can be dialled at help others.
                    if !addr.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
                        swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
                }
            }
        }
        BehaviourEvent::Kad(event) => metrics.record(&event),
        BehaviourEvent::Relay(event) => metrics.record(&event),
        BehaviourEvent::Ping(event) => metrics.record(&event),
        BehaviourEvent::Gossipsub(event) => {
            metrics.record(&event);
            if let gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } = event
            {
                // Forward only well-formed, validly signed announcements.
                let acceptance = match Announcement::decode(&message.data) {
                    Ok(_)
                        if message.topic == gossipsub::IdentTopic::new(announce::TOPIC).hash() =>
                    {
                        gossipsub::MessageAcceptance::Accept
                    }
                    _ => gossipsub::MessageAcceptance::Reject,
                };
                swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, acceptance);
            }
        }
        _ => {}
    }
}
