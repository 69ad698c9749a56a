//! Relay reservations: a node that others cannot dial (behind a NAT) reserves a slot on the relay
//! of each bootstrap peer it is connected to, listens on the relayed address
//! (`<bootstrap>/p2p-circuit`) and advertises it (identify, provider records), so that peers can
//! reach it through the relay; DCUtR then tries to turn such a connection into a direct one.
//!
//! A peer that reaches us through the relay while we cannot be dialled may itself be dialable:
//! then we dial it back directly (connection reversal), which needs no hole punching.
//!
//! A node reserves while it has no reachable address of its own: not configured reachable
//! (`listen_addrs_reachable`, `external`) and none confirmed by AutoNAT. A reservation that ends
//! (the relay restarted, the connection dropped) is made again at the next upkeep tick.

use std::collections::HashMap;

use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

use super::NodeActor;

/// The reservations of a node, by relay.
#[derive(Debug)]
pub(super) struct Relays {
    /// Whether this node reserves at all (`Config::use_relays`).
    enabled: bool,
    reserved: HashMap<PeerId, ListenerId>,
}

impl Relays {
    pub(super) fn new(enabled: bool) -> Self {
        Self {
            enabled,
            reserved: HashMap::new(),
        }
    }
}

/// Whether `addr` goes through a relay.
pub(super) fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

impl NodeActor {
    /// Whether peers can dial this node without a relay: configured so, or an external address
    /// of its own confirmed.
    fn dialable(&self) -> bool {
        self.reachable || self.swarm.external_addresses().any(|a| !is_relayed(a))
    }

    /// Reserves a slot on each connected bootstrap peer's relay this node has none on, while it
    /// is not dialable. Called at every upkeep tick and when a bootstrap peer connects.
    pub(super) fn reserve_relays(&mut self) {
        if !self.relays.enabled || self.dialable() {
            return;
        }
        for addr in self.bootstrap.clone() {
            let Some(Protocol::P2p(relay)) = addr.iter().last() else {
                continue;
            };
            if self.relays.reserved.contains_key(&relay) || !self.swarm.is_connected(&relay) {
                continue;
            }
            match self
                .swarm
                .listen_on(addr.clone().with(Protocol::P2pCircuit))
            {
                Ok(listener) => {
                    self.relays.reserved.insert(relay, listener);
                }
                Err(e) => tracing::debug!(%relay, error = %e, "cannot ask for a relay slot"),
            }
        }
    }

    /// The addresses of `peer` through the relay of each bootstrap peer we are connected to
    /// (`<bootstrap>/p2p-circuit/p2p/<peer>`): a node behind a NAT reserves a slot on every
    /// bootstrap peer it is connected to, so this reaches it even when no address of it is known
    /// (a provider record published before its reservation, a routing table without it).
    pub(super) fn relay_paths(&self, peer: PeerId) -> Vec<Multiaddr> {
        self.bootstrap
            .iter()
            .filter(|addr| {
                matches!(addr.iter().last(), Some(Protocol::P2p(relay))
                    if relay != peer && self.swarm.is_connected(&relay))
            })
            .map(|addr| {
                addr.clone()
                    .with(Protocol::P2pCircuit)
                    .with(Protocol::P2p(peer))
            })
            .collect()
    }

    /// Dials `peer` at every address known for it (kad's, identify's) and through every relay
    /// we are connected to, if `condition` holds; the first connection made wins.
    pub(super) fn dial_any_path(
        &mut self,
        peer: PeerId,
        condition: libp2p::swarm::dial_opts::PeerCondition,
    ) -> Result<(), libp2p::swarm::DialError> {
        let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
            .addresses(self.relay_paths(peer))
            .extend_addresses_through_behaviour()
            .condition(condition)
            .build();
        self.swarm.dial(opts)
    }

    /// Connection reversal: `peer` is connected to us through relays only and told us its
    /// addresses (identify); dial them directly. A peer that is dialable gets a direct
    /// connection at once; for one behind a NAT too, hole punching (DCUtR) is the way left.
    pub(super) fn reverse_relayed(&mut self, peer: PeerId, addrs: &[Multiaddr]) {
        if !self.connections.relayed_only(&peer) {
            return;
        }
        let direct: Vec<Multiaddr> = addrs.iter().filter(|a| !is_relayed(a)).cloned().collect();
        if direct.is_empty() {
            return;
        }
        let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
            .addresses(direct)
            .condition(libp2p::swarm::dial_opts::PeerCondition::Always)
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            tracing::debug!(%peer, error = %e, "cannot dial a relayed peer back");
        }
    }

    /// A listener closed: if it was a reservation, the next tick asks again.
    pub(super) fn on_listener_closed(&mut self, listener: ListenerId) {
        self.relays.reserved.retain(|relay, id| {
            let gone = *id == listener;
            if gone {
                tracing::info!(%relay, "the relay reservation ended; asking again");
            }
            !gone
        });
    }

    /// A listen address is gone (a reservation ended with its relay connection): it is no longer
    /// shown nor advertised.
    pub(super) fn on_expired_listen_addr(&mut self, address: &Multiaddr) {
        self.listen_addrs.retain(|a| a != address);
        if is_relayed(address) {
            self.swarm.remove_external_address(address);
        }
    }

    /// A relayed listen address (a reservation accepted) is advertised, so that identify and
    /// provider records carry it to peers.
    pub(super) fn on_relayed_listen_addr(&mut self, address: &Multiaddr) {
        tracing::info!(%address, "reachable through a relay");
        self.swarm.add_external_address(address.clone());
        // Provider records published before carry no address of ours: publish them again.
        self.republish_all();
    }
}
