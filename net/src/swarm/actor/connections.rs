//! Who is connected and how (direct or relayed), dials with a reply, bans, and the bootstrap
//! peers kept dialled.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{ConnectionId, DialError, dial_opts::DialOpts};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::oneshot;

use super::{NodeActor, relays};
use crate::swarm::NetError;

/// How long a wait for a direct connection lasts (a dial, or hole punching over a relayed
/// connection) before the peer is called out of direct reach. Hole punching that works does so
/// within a few round trips; dials through NATs that drop them can hang for minutes.
pub const DIRECT_WAIT: Duration = Duration::from_secs(15);
/// The first wait before hole punching is tried again with a peer reached only through a relay
/// (on a new relayed connection); it doubles after each failure, up to [`PUNCH_RETRY_MAX`].
pub(super) const PUNCH_RETRY_FIRST: Duration = Duration::from_secs(30);
/// Direct dials a hole punch makes at most (DCUtR's attempts): once that many failed while we
/// wait for a direct connection over a relayed one, the punch has failed.
const HOLE_PUNCH_DIALS: u8 = 3;
/// The longest wait between two hole punching attempts with one peer.
pub(super) const PUNCH_RETRY_MAX: Duration = Duration::from_secs(600);

/// A connected peer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerInfo {
    /// Its peer id.
    pub peer_id: PeerId,
    /// Remote addresses of its connections.
    pub addresses: Vec<String>,
    /// Whether every connection to it is relayed.
    pub relayed_only: bool,
    /// The path: `direct`, or `relayed` (everything, blobs included, goes through a relay
    /// within its operator's budget, while hole punching is tried again).
    pub path: &'static str,
    /// Why no direct connection could be made, while every connection is relayed and an
    /// attempt failed (hole punching through NATs that do not allow it, a dial that failed).
    pub direct_failure: Option<String>,
    /// Seconds until hole punching is tried again, while the path is relayed after a failure.
    pub next_punch_in_s: Option<u64>,
}

/// One waiting for a direct connection.
type Waiter = oneshot::Sender<Result<(), NetError>>;

/// The open connections per peer, and the dials awaiting their outcome.
#[derive(Default)]
pub(super) struct Connections {
    open: HashMap<PeerId, HashMap<ConnectionId, (Multiaddr, bool)>>,
    dials: HashMap<ConnectionId, oneshot::Sender<Result<(), NetError>>>,
    /// Who waits for a direct connection to a peer (a relayed one being upgraded by DCUtR), and
    /// until when.
    direct: HashMap<PeerId, (Instant, Vec<Waiter>)>,
    /// Why the last attempt at a direct connection to a peer failed, until one succeeds or the
    /// peer disconnects.
    direct_failures: HashMap<PeerId, String>,
    /// When hole punching is tried again with a peer reached only through relays, and the wait
    /// after that one (doubling), until a direct connection exists or the peer is gone.
    punch_retries: HashMap<PeerId, (Instant, Duration)>,
    /// Direct dials that failed, per peer waited for, since the last verdict on it.
    direct_dial_failures: HashMap<PeerId, u8>,
}

impl Connections {
    pub(super) fn len(&self) -> usize {
        self.open.len()
    }

    /// Peers reached only through relays.
    pub(super) fn relayed_count(&self) -> usize {
        self.open
            .values()
            .filter(|c| !c.is_empty() && c.values().all(|(_, relayed)| *relayed))
            .count()
    }

    pub(super) fn infos(&self) -> Vec<PeerInfo> {
        self.open
            .iter()
            .map(|(peer, conns)| {
                let relayed_only = conns.values().all(|(_, r)| *r);
                let now = Instant::now();
                PeerInfo {
                    peer_id: *peer,
                    addresses: conns.values().map(|(a, _)| a.to_string()).collect(),
                    relayed_only,
                    path: if relayed_only { "relayed" } else { "direct" },
                    direct_failure: relayed_only
                        .then(|| self.direct_failures.get(peer).cloned())
                        .flatten(),
                    next_punch_in_s: relayed_only
                        .then(|| self.punch_retries.get(peer))
                        .flatten()
                        .map(|(at, _)| at.saturating_duration_since(now).as_secs()),
                }
            })
            .collect()
    }

    /// Whether one of our connections to `peer` is direct.
    pub(super) fn is_direct(&self, peer: &PeerId) -> bool {
        self.open
            .get(peer)
            .is_some_and(|c| c.values().any(|(_, relayed)| !*relayed))
    }

    /// Whether we are connected to `peer` through relays only.
    pub(super) fn relayed_only(&self, peer: &PeerId) -> bool {
        self.open
            .get(peer)
            .is_some_and(|c| !c.is_empty() && c.values().all(|(_, relayed)| *relayed))
    }
}

impl NodeActor {
    pub(super) fn dial(&mut self, addr: Multiaddr, reply: oneshot::Sender<Result<(), NetError>>) {
        let opts = match addr.iter().last() {
            Some(Protocol::P2p(peer)) => DialOpts::peer_id(peer)
                .addresses(vec![addr.clone()])
                .build(),
            _ => DialOpts::unknown_peer_id().address(addr.clone()).build(),
        };
        let id = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.connections.dials.insert(id, reply);
            }
            Err(e) => {
                let _ = reply.send(Err(NetError::Dial {
                    addr,
                    reason: e.to_string(),
                }));
            }
        }
    }

    /// Replies once there is a direct connection to `peer`: at once if there is one; else
    /// dials it (by peer id, with the addresses the swarm knows: a relayed one is upgraded by
    /// DCUtR) and waits, or fails when the dial or the hole punching fails.
    pub(super) fn connect_direct(
        &mut self,
        peer: PeerId,
        reply: oneshot::Sender<Result<(), NetError>>,
    ) {
        if self.connections.is_direct(&peer) {
            let _ = reply.send(Ok(()));
            return;
        }
        self.connections
            .direct
            .entry(peer)
            .or_insert_with(|| (Instant::now() + DIRECT_WAIT, Vec::new()))
            .1
            .push(reply);
        if !self.swarm.is_connected(&peer) {
            match self.dial_any_path(
                peer,
                libp2p::swarm::dial_opts::PeerCondition::DisconnectedAndNotDialing,
            ) {
                // Already being dialled (a provider lookup dials what it finds): wait for that.
                Ok(()) | Err(DialError::DialPeerConditionFalse(_)) => {}
                Err(e) => self.direct_failed(peer, format!("cannot dial it: {e}")),
            }
        }
    }

    /// Fails those waiting for a direct connection to `peer`, remembers why for `peers`, and
    /// schedules hole punching again (the relay carries everything meanwhile).
    pub(super) fn direct_failed(&mut self, peer: PeerId, reason: String) {
        tracing::info!(%peer, "no direct connection: {reason}");
        self.connections.direct_dial_failures.remove(&peer);
        self.connections
            .direct_failures
            .insert(peer, reason.clone());
        let now = Instant::now();
        let wait = self
            .connections
            .punch_retries
            .get(&peer)
            .map_or(PUNCH_RETRY_FIRST, |(_, w)| *w);
        self.connections
            .punch_retries
            .insert(peer, (now + wait, (wait * 2).min(PUNCH_RETRY_MAX)));
        let waiters = self.connections.direct.remove(&peer).map(|(_, w)| w);
        for waiter in waiters.unwrap_or_default() {
            let _ = waiter.send(Err(NetError::Unreachable {
                peer,
                reason: reason.clone(),
            }));
        }
    }

    /// Gives up the waits for a direct connection that lasted [`DIRECT_WAIT`] (called at every
    /// upkeep tick).
    pub(super) fn expire_direct_waits(&mut self) {
        let now = Instant::now();
        let expired: Vec<PeerId> = self
            .connections
            .direct
            .iter()
            .filter(|(_, (until, _))| *until <= now)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in expired {
            self.direct_failed(
                peer,
                format!(
                    "no direct connection within {} s: the NATs between us let no dial or hole punch through",
                    DIRECT_WAIT.as_secs()
                ),
            );
        }
    }

    /// Tries hole punching again with the peers reached only through relays whose wait is over:
    /// a new relayed connection to each, on which DCUtR tries again (it tries once per
    /// connection). The relayed connection in use stays until a direct one replaces it.
    pub(super) fn retry_hole_punching(&mut self) {
        let now = Instant::now();
        let due: Vec<PeerId> = self
            .connections
            .punch_retries
            .iter()
            .filter(|(peer, (at, _))| *at <= now && self.connections.relayed_only(peer))
            .map(|(peer, _)| *peer)
            .collect();
        for peer in due {
            if let Some((at, _)) = self.connections.punch_retries.get_mut(&peer) {
                // Until this attempt's outcome: a failure schedules the next one.
                *at = now + PUNCH_RETRY_MAX;
            }
            let mut relayed: Vec<Multiaddr> = self.connections.open[&peer]
                .values()
                .filter(|(_, relayed)| *relayed)
                .map(|(addr, _)| addr.clone())
                .filter(|addr| addr.iter().any(|p| p == Protocol::P2pCircuit))
                .chain(self.relay_paths(peer))
                .collect();
            relayed.sort();
            relayed.dedup();
            tracing::debug!(%peer, "trying hole punching again on a new relayed connection");
            let opts = DialOpts::peer_id(peer)
                .addresses(relayed)
                .condition(libp2p::swarm::dial_opts::PeerCondition::Always)
                .build();
            let _ = self.swarm.dial(opts);
        }
    }

    pub(super) fn ban(&mut self, peer: PeerId) {
        self.banned.insert(peer);
        self.swarm.behaviour_mut().blocked.block_peer(peer);
        self.metrics.peers_banned.inc();
    }

    pub(super) fn on_connected(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        endpoint: &ConnectedPoint,
    ) {
        let addr = match endpoint {
            ConnectedPoint::Dialer { address, .. } => address.clone(),
            ConnectedPoint::Listener { send_back_addr, .. } => send_back_addr.clone(),
        };
        self.connections
            .open
            .entry(peer)
            .or_default()
            .insert(connection, (addr, endpoint.is_relayed()));
        self.metrics.peers.set(self.connections.len() as i64);
        if let Some(reply) = self.connections.dials.remove(&connection) {
            let _ = reply.send(Ok(()));
        }
        if !endpoint.is_relayed() {
            self.connections.direct_failures.remove(&peer);
            self.connections.punch_retries.remove(&peer);
            self.connections.direct_dial_failures.remove(&peer);
            let waiters = self.connections.direct.remove(&peer).map(|(_, w)| w);
            for waiter in waiters.unwrap_or_default() {
                let _ = waiter.send(Ok(()));
            }
            // A direct path replaces the relay: close the relayed connections, so that the
            // relay's circuit budget is spared and every request takes the direct path.
            let relayed: Vec<ConnectionId> = self.connections.open[&peer]
                .iter()
                .filter(|(_, (_, relayed))| *relayed)
                .map(|(id, _)| *id)
                .collect();
            for id in relayed {
                self.swarm.close_connection(id);
            }
        }
        if self.is_bootstrap(&peer) {
            // A bootstrap peer that restarted has lost our provider records, and our relay slot.
            self.republish_all();
            self.reserve_relays();
        }
    }

    pub(super) fn on_disconnected(&mut self, peer: PeerId, connection: ConnectionId) {
        if let Some(conns) = self.connections.open.get_mut(&peer) {
            conns.remove(&connection);
            if conns.is_empty() {
                self.connections.open.remove(&peer);
                self.connections.direct_failures.remove(&peer);
                self.connections.punch_retries.remove(&peer);
                self.connections.direct_dial_failures.remove(&peer);
            }
        }
        self.metrics.peers.set(self.connections.len() as i64);
    }

    pub(super) fn on_dial_failed(
        &mut self,
        connection: ConnectionId,
        peer: Option<PeerId>,
        error: &DialError,
    ) {
        if let Some(reply) = self.connections.dials.remove(&connection) {
            let _ = reply.send(Err(NetError::Dial {
                addr: Multiaddr::empty(),
                reason: error.to_string(),
            }));
        }
        // A direct dial to a peer we wait for a direct connection to, over a relayed one: the
        // dials of a hole punch. DCUtR tells only the side that started it when it gives up;
        // the other side counts the dials that failed (as many as DCUtR makes).
        let Some(peer) = peer else { return };
        let direct_dial = match error {
            DialError::Transport(attempts) => {
                !attempts.is_empty() && attempts.iter().all(|(a, _)| !relays::is_relayed(a))
            }
            _ => false,
        };
        if direct_dial
            && self.connections.relayed_only(&peer)
            && self.connections.direct.contains_key(&peer)
        {
            let failed = self
                .connections
                .direct_dial_failures
                .entry(peer)
                .or_default();
            *failed += 1;
            if *failed >= HOLE_PUNCH_DIALS {
                self.direct_failed(
                    peer,
                    format!(
                        "hole punching failed: {HOLE_PUNCH_DIALS} direct dials failed ({error})"
                    ),
                );
            }
        }
    }

    fn is_bootstrap(&self, peer: &PeerId) -> bool {
        self.bootstrap
            .iter()
            .any(|a| a.iter().last() == Some(Protocol::P2p(*peer)))
    }

    /// Peers found on the LAN (mDNS): dialled at their LAN addresses, which are also given to
    /// Kademlia, so that a LAN needs no bootstrap peer and its private addresses are used.
    pub(super) fn on_lan_peers(&mut self, found: Vec<(PeerId, Multiaddr)>) {
        let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
        for (peer, addr) in found {
            if !self.banned.contains(&peer) {
                by_peer.entry(peer).or_default().push(addr);
            }
        }
        for (peer, addrs) in by_peer {
            for addr in &addrs {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer, addr.clone());
            }
            let opts = DialOpts::peer_id(peer)
                .addresses(addrs)
                .condition(libp2p::swarm::dial_opts::PeerCondition::DisconnectedAndNotDialing)
                .build();
            let _ = self.swarm.dial(opts);
        }
    }

    /// Dials the bootstrap peers we are not connected to (one restarted, or the network was down).
    pub(super) fn redial_bootstrap(&mut self) {
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
}
