#![allow(missing_docs)] // The NetworkBehaviour derive generates an undocumented event enum.
//! The behaviours of a bootstrap peer.

use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{autonat, connection_limits, gossipsub, identify, kad, ping, relay};
use swarmlabel_net::swarm::behaviour::{self as node, Limits};

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) kad: kad::Behaviour<swarmlabel_net::swarm::provider_store::ProviderStore>,
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) relay: relay::Behaviour,
    pub(crate) autonat: autonat::Behaviour,
}

impl Behaviour {
    pub(crate) fn new(key: &Keypair, limits: &Limits, relay: relay::Config) -> Self {
        let peer = key.public().to_peer_id();
        Self {
            limits: node::connection_limits(limits),
            identify: node::identify(key),
            ping: ping::Behaviour::default(),
            kad: node::kad(key),
            gossipsub: node::gossipsub(key),
            relay: relay::Behaviour::new(peer, relay),
            autonat: autonat::Behaviour::new(
                peer,
                autonat::Config {
                    only_global_ips: false,
                    ..autonat::Config::default()
                },
            ),
        }
    }
}
