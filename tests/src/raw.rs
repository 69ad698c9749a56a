//! A raw libp2p peer that speaks swarmlabel's wire protocols (gossipsub, the blob protocol, the
//! replication protocol) as bytes, with none of a node's checks: the attacker of the hostile
//! tests, and a peer that can misbehave on purpose (answer wrongly, or never).

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use futures::StreamExt as _;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, noise, tcp, yamux};
use swarmlabel_net::swarm::behaviour::gossipsub as our_gossipsub;
use swarmlabel_net::swarm::codec::{Codec, Frame};
use swarmlabel_net::swarm::{blob, replication};
use swarmlabel_store::Identity;

use crate::network::within;

/// Any bytes, as one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raw(pub Vec<u8>);

impl Frame for Raw {
    fn to_frame(&self) -> io::Result<Vec<u8>> {
        Ok(self.0.clone())
    }

    fn from_frame(frame: Vec<u8>) -> io::Result<Self> {
        Ok(Raw(frame))
    }
}

/// Frames the raw peer reads at most either way.
const MAX_FRAME: usize = 80 << 20;

#[allow(missing_docs, missing_debug_implementations)] // The derive's event enum has neither.
mod behaviour {
    use super::*;

    /// The behaviours of a raw peer.
    #[derive(NetworkBehaviour)]
    pub struct Behaviour {
        /// Gossipsub configured as every swarmlabel peer configures it.
        pub gossipsub: gossipsub::Behaviour,
        /// The blob protocol, as raw bytes.
        pub blob: request_response::Behaviour<Codec<Raw, Raw>>,
        /// The replication protocol, as raw bytes (a request is `kind tag ‖ body`).
        pub replication: request_response::Behaviour<Codec<Raw, Raw>>,
    }
}
pub use behaviour::{Behaviour, BehaviourEvent};

/// A request a node sent to the raw peer, not answered yet.
#[derive(Debug)]
pub struct Incoming {
    /// The requester.
    pub peer: PeerId,
    /// The request bytes.
    pub bytes: Vec<u8>,
    /// Where the answer goes (drop it, or hold it, to never answer).
    pub channel: ResponseChannel<Raw>,
}

/// A raw peer. Drive it with [`RawPeer::step`] (or the helpers that wait) while the test runs.
pub struct RawPeer {
    /// The swarm.
    pub swarm: Swarm<Behaviour>,
    /// Its identity (its libp2p key and the key it signs with).
    pub identity: Identity,
    answers: HashMap<OutboundRequestId, Result<Vec<u8>, String>>,
    /// Blob requests received and not answered yet.
    pub blob_requests: Vec<Incoming>,
    /// Replication requests received and not answered yet.
    pub replication_requests: Vec<Incoming>,
}

impl std::fmt::Debug for RawPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawPeer")
            .field("peer", self.swarm.local_peer_id())
            .finish_non_exhaustive()
    }
}

fn rr(protocol: libp2p::StreamProtocol) -> request_response::Behaviour<Codec<Raw, Raw>> {
    request_response::Behaviour::with_codec(
        Codec::new(MAX_FRAME, MAX_FRAME),
        [(protocol, ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(Duration::from_secs(30)),
    )
}

impl RawPeer {
    /// A raw peer with a fresh identity, on TCP.
    pub fn new() -> Self {
        Self::with_identity(Identity::generate().expect("the OS gives a random key"))
    }

    /// A raw peer with `identity`.
    pub fn with_identity(identity: Identity) -> Self {
        let swarm = libp2p::SwarmBuilder::with_existing_identity(identity.to_libp2p_keypair())
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .expect("TCP with noise and yamux builds")
            .with_behaviour(|key| Behaviour {
                gossipsub: our_gossipsub(key),
                blob: rr(blob::PROTOCOL),
                replication: rr(replication::PROTOCOL),
            })
            .expect("the raw peer's behaviours build")
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        Self {
            swarm,
            identity,
            answers: HashMap::new(),
            blob_requests: Vec::new(),
            replication_requests: Vec::new(),
        }
    }

    /// Its peer id.
    pub fn peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Dials `addr`.
    pub fn dial(&mut self, addr: Multiaddr) {
        self.swarm.dial(addr).expect("the address is dialable");
    }

    /// Drives the swarm for at most `wait`, handling one event if one comes.
    pub async fn step(&mut self, wait: Duration) {
        let Ok(event) = tokio::time::timeout(wait, self.swarm.select_next_some()).await else {
            return;
        };
        let SwarmEvent::Behaviour(event) = event else {
            return;
        };
        let (message, blob) = match event {
            BehaviourEvent::Blob(e) => (e, true),
            BehaviourEvent::Replication(e) => (e, false),
            BehaviourEvent::Gossipsub(_) => return,
        };
        match message {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let incoming = Incoming {
                    peer,
                    bytes: request.0,
                    channel,
                };
                if blob {
                    self.blob_requests.push(incoming);
                } else {
                    self.replication_requests.push(incoming);
                }
            }
            request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                self.answers.insert(request_id, Ok(response.0));
            }
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                self.answers.insert(request_id, Err(error.to_string()));
            }
            _ => {}
        }
    }

    /// Subscribes to `topic` and waits until `n` peers are known to be subscribed to it.
    pub async fn subscribe(&mut self, topic: &str, n: usize) {
        let t = gossipsub::IdentTopic::new(topic);
        self.swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&t)
            .expect("a valid topic");
        within("the nodes' subscriptions", async {
            while self
                .swarm
                .behaviour()
                .gossipsub
                .all_peers()
                .filter(|(_, topics)| topics.contains(&&t.hash()))
                .count()
                < n
            {
                self.step(Duration::from_millis(50)).await;
            }
        })
        .await;
    }

    /// Publishes `data` on `topic`; fails when no peer subscribes to it yet.
    pub fn publish(&mut self, topic: &str, data: Vec<u8>) -> Result<(), gossipsub::PublishError> {
        self.swarm
            .behaviour_mut()
            .gossipsub
            .publish(gossipsub::IdentTopic::new(topic), data)
            .map(|_| ())
    }

    /// Sends `bytes` as a blob request (`blob` true) or a replication request to `peer`
    /// without waiting.
    pub fn send(&mut self, peer: PeerId, blob: bool, bytes: Vec<u8>) -> OutboundRequestId {
        let b = self.swarm.behaviour_mut();
        let rr = if blob {
            &mut b.blob
        } else {
            &mut b.replication
        };
        rr.send_request(&peer, Raw(bytes))
    }

    /// Waits for the answer to `id`: its bytes, or why the request failed.
    pub async fn answer(&mut self, id: OutboundRequestId) -> Result<Vec<u8>, String> {
        within("an answer to a raw request", async {
            loop {
                if let Some(answer) = self.answers.remove(&id) {
                    return answer;
                }
                self.step(Duration::from_millis(50)).await;
            }
        })
        .await
    }

    /// Sends a replication request of the kind `tag` to `peer` and waits for the answer.
    pub async fn replicate(
        &mut self,
        peer: PeerId,
        tag: u8,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        let frame = replication::Request { kind: tag, body }
            .to_frame()
            .expect("the request is within the limit");
        let id = self.send(peer, false, frame);
        self.answer(id).await
    }

    /// Answers a request the raw peer received.
    pub fn respond(&mut self, incoming: Incoming, bytes: Vec<u8>, blob: bool) {
        let b = self.swarm.behaviour_mut();
        let rr = if blob {
            &mut b.blob
        } else {
            &mut b.replication
        };
        let _ = rr.send_response(incoming.channel, Raw(bytes));
    }
}

impl Default for RawPeer {
    fn default() -> Self {
        Self::new()
    }
}
