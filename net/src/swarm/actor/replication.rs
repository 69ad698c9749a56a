//! The swarm's part in replication, one copy for every kind: the kinds' gossip topics, the
//! replication protocol both ways, and handing what peers send to each kind's service over its
//! bounded queue (bytes only; the service decides). Per kind and peer, requests being answered and
//! gossip awaiting a verdict are bounded, so that one peer cannot crowd out the others.

use std::collections::HashMap;

use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::{PeerId, gossipsub};
use tokio::sync::{mpsc, oneshot};

use super::{Internal, NodeActor};
use crate::swarm::replication::{
    Inbound, Kind, MAX_FRAME_LEN, MAX_INBOUND_PER_PEER, MAX_PENDING_VERDICTS,
    MAX_PENDING_VERDICTS_PER_PEER, MAX_QUEUED_BYTES, Request, Response, Verdict, status,
};
use crate::swarm::{NetError, RequestError};
use swarmlabel_store::dataset::DatasetId;

pub(crate) enum ReplicationCommand {
    Attach {
        kind: Kind,
        inbox: mpsc::Sender<Inbound>,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    Subscribe {
        kind: Kind,
        dataset: DatasetId,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    Publish {
        kind: Kind,
        dataset: DatasetId,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    Request {
        peer: PeerId,
        kind: Kind,
        body: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, RequestError>>,
    },
    TopicPeers {
        kind: Kind,
        dataset: DatasetId,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    GossipScore {
        peer: PeerId,
        reply: oneshot::Sender<Option<f64>>,
    },
}

/// Work of a kind's service finished beside the actor.
pub(super) enum Done {
    Answer {
        tag: u8,
        peer: PeerId,
        channel: ResponseChannel<Response>,
        body: Vec<u8>,
        /// The length of the request answered (what it held of the inbox's byte budget).
        asked: usize,
    },
    Verdict {
        tag: u8,
        source: PeerId,
        id: gossipsub::MessageId,
        verdict: Verdict,
    },
}

/// A kind whose service is attached.
struct Attached {
    kind: Kind,
    inbox: mpsc::Sender<Inbound>,
    /// Requests being answered, per peer.
    answering: HashMap<PeerId, usize>,
    /// Bytes of the requests being answered, from all peers.
    queued_bytes: usize,
    /// Gossip messages awaiting a verdict, per peer, and in all.
    judging: HashMap<PeerId, usize>,
    judging_total: usize,
    /// Requests each peer may still get answered (see `Limits::replication_requests`).
    requests: crate::quota::Quota,
}

/// Where the answer to one of our requests goes.
type Reply = oneshot::Sender<Result<Vec<u8>, RequestError>>;

/// The replication state of the swarm actor.
pub(super) struct Replication {
    kinds: HashMap<u8, Attached>,
    requests: HashMap<OutboundRequestId, (Kind, Reply)>,
    /// Requests per peer and kind: a second, and at once.
    request_quota: (f64, f64),
}

impl Replication {
    pub(super) fn new(request_quota: (f64, f64)) -> Self {
        Self {
            kinds: HashMap::new(),
            requests: HashMap::new(),
            request_quota,
        }
    }

    fn by_topic(&self, topic: &str) -> Option<(u8, DatasetId)> {
        self.kinds
            .values()
            .find_map(|a| Some((a.kind.tag, a.kind.dataset_of_topic(topic)?)))
    }
}

fn decrement(map: &mut HashMap<PeerId, usize>, peer: &PeerId) {
    if let Some(n) = map.get_mut(peer) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(peer);
        }
    }
}

impl NodeActor {
    pub(super) fn on_replication_command(&mut self, command: ReplicationCommand) {
        match command {
            ReplicationCommand::Attach { kind, inbox, reply } => {
                let _ = reply.send(self.attach(kind, inbox));
            }
            ReplicationCommand::Subscribe {
                kind,
                dataset,
                reply,
            } => {
                let topic = gossipsub::IdentTopic::new(kind.topic(&dataset));
                let result = super::super::behaviour::subscribe(
                    &mut self.swarm.behaviour_mut().gossipsub,
                    &topic,
                )
                .map(|_| ())
                .map_err(|e| NetError::Build(format!("cannot subscribe to {topic}: {e}")));
                let _ = reply.send(result);
            }
            ReplicationCommand::Publish {
                kind,
                dataset,
                data,
                reply,
            } => {
                let topic = gossipsub::IdentTopic::new(kind.topic(&dataset));
                let result = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(topic, data)
                    .map(|_| ())
                    .map_err(|e| NetError::Publish(e.to_string()));
                let _ = reply.send(result);
            }
            ReplicationCommand::Request {
                peer,
                kind,
                body,
                reply,
            } => {
                if self.banned.contains(&peer) {
                    let _ = reply.send(Err(RequestError::Banned));
                    return;
                }
                let request = Request {
                    kind: kind.tag,
                    body,
                };
                let id = self
                    .swarm
                    .behaviour_mut()
                    .replication
                    .send_request(&peer, request);
                self.replication.requests.insert(id, (kind, reply));
            }
            ReplicationCommand::TopicPeers {
                kind,
                dataset,
                reply,
            } => {
                let hash = gossipsub::IdentTopic::new(kind.topic(&dataset)).hash();
                let peers = self
                    .swarm
                    .behaviour()
                    .gossipsub
                    .all_peers()
                    .filter(|(_, topics)| topics.contains(&&hash))
                    .map(|(p, _)| *p)
                    .filter(|p| self.swarm.is_connected(p) && !self.banned.contains(p))
                    .collect();
                let _ = reply.send(peers);
            }
            ReplicationCommand::GossipScore { peer, reply } => {
                let _ = reply.send(self.swarm.behaviour().gossipsub.peer_score(&peer));
            }
        }
    }

    fn attach(&mut self, kind: Kind, inbox: mpsc::Sender<Inbound>) -> Result<(), NetError> {
        if kind.max_request >= MAX_FRAME_LEN || kind.max_response > MAX_FRAME_LEN {
            return Err(NetError::Build(format!(
                "the {} kind's messages may be larger than the replication protocol carries \
                 ({MAX_FRAME_LEN} bytes)",
                kind.name
            )));
        }
        if let Some(other) = self.replication.kinds.get(&kind.tag)
            && other.kind != kind
        {
            return Err(NetError::Build(format!(
                "the replication tag {} of the {} kind is taken by the {} kind",
                kind.tag, kind.name, other.kind.name
            )));
        }
        self.replication.kinds.insert(
            kind.tag,
            Attached {
                kind,
                inbox,
                answering: HashMap::new(),
                queued_bytes: 0,
                judging: HashMap::new(),
                judging_total: 0,
                requests: crate::quota::Quota::new(
                    self.replication.request_quota.0,
                    self.replication.request_quota.1,
                ),
            },
        );
        Ok(())
    }

    pub(super) fn on_replication_event(
        &mut self,
        event: request_response::Event<Request, Response>,
    ) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.serve_replication(peer, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some((kind, reply)) = self.replication.requests.remove(&request_id) {
                        let result = if response.0.len() > kind.max_response {
                            Err(RequestError::Failed(format!(
                                "a {} response over the limit of {} bytes",
                                kind.name, kind.max_response
                            )))
                        } else {
                            Ok(response.0)
                        };
                        let _ = reply.send(result);
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some((_, reply)) = self.replication.requests.remove(&request_id) {
                    let _ = reply.send(Err(RequestError::Failed(error.to_string())));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "a replication request from a peer failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn respond(&mut self, channel: ResponseChannel<Response>, body: Vec<u8>) {
        let _ = self
            .swarm
            .behaviour_mut()
            .replication
            .send_response(channel, Response(body));
    }

    fn serve_replication(
        &mut self,
        peer: PeerId,
        request: Request,
        channel: ResponseChannel<Response>,
    ) {
        let Some(attached) = self.replication.kinds.get_mut(&request.kind) else {
            self.respond(channel, vec![status::UNKNOWN]);
            return;
        };
        if request.body.len() > attached.kind.max_request {
            self.respond(channel, vec![status::REFUSED]);
            return;
        }
        let over_rate =
            attached.requests.take(peer, 1, std::time::Instant::now()) != crate::quota::Take::Taken;
        let asked = request.body.len();
        if over_rate
            || attached.answering.get(&peer).copied().unwrap_or(0) >= MAX_INBOUND_PER_PEER
            || attached.queued_bytes + asked > MAX_QUEUED_BYTES
        {
            self.respond(channel, vec![status::BUSY]);
            return;
        }
        let (reply, answer) = oneshot::channel();
        let inbound = Inbound::Request {
            peer,
            body: request.body,
            reply,
        };
        if attached.inbox.try_send(inbound).is_err() {
            self.respond(channel, vec![status::BUSY]);
            return;
        }
        *attached.answering.entry(peer).or_default() += 1;
        attached.queued_bytes += asked;
        let (tag, tx) = (request.kind, self.internal_tx.clone());
        tokio::spawn(async move {
            let body = answer.await.unwrap_or_else(|_| vec![status::BUSY]);
            let done = Done::Answer {
                tag,
                peer,
                channel,
                body,
                asked,
            };
            let _ = tx.send(Internal::Replication(done)).await;
        });
    }

    /// Hands a message on a kind's topic to its service; the verdict comes back as
    /// [`Done::Verdict`]. Without a service, or past the bounds, the message is ignored.
    pub(super) fn on_replication_gossip(
        &mut self,
        source: PeerId,
        id: gossipsub::MessageId,
        message: gossipsub::Message,
    ) {
        let Some((tag, dataset)) = self.replication.by_topic(message.topic.as_str()) else {
            // A topic we do not know (we never subscribe to one): nothing to forward.
            self.report_verdict(source, &id, Verdict::Ignore);
            return;
        };
        let Some(attached) = self.replication.kinds.get_mut(&tag) else {
            return;
        };
        let crowded = attached.judging_total >= MAX_PENDING_VERDICTS
            || attached.judging.get(&source).copied().unwrap_or(0) >= MAX_PENDING_VERDICTS_PER_PEER;
        let (reply, verdict) = oneshot::channel();
        let inbound = Inbound::Gossip {
            peer: source,
            author: message.source,
            dataset,
            data: message.data,
            reply,
        };
        if crowded || attached.inbox.try_send(inbound).is_err() {
            self.report_verdict(source, &id, Verdict::Ignore);
            return;
        }
        attached.judging_total += 1;
        *attached.judging.entry(source).or_default() += 1;
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            let verdict = verdict.await.unwrap_or(Verdict::Ignore);
            let done = Done::Verdict {
                tag,
                source,
                id,
                verdict,
            };
            let _ = tx.send(Internal::Replication(done)).await;
        });
    }

    /// Tells a kind's service that `peer` subscribed to one of its topics (dropped when its queue
    /// is full: the next anti-entropy round reaches the peer anyway).
    pub(super) fn on_replication_subscribed(&mut self, peer: PeerId, topic: &str) {
        if let Some((tag, dataset)) = self.replication.by_topic(topic)
            && let Some(attached) = self.replication.kinds.get(&tag)
        {
            let _ = attached
                .inbox
                .try_send(Inbound::Subscribed { peer, dataset });
        }
    }

    pub(super) fn on_replication_done(&mut self, done: Done) {
        match done {
            Done::Answer {
                tag,
                peer,
                channel,
                body,
                asked,
            } => {
                if let Some(attached) = self.replication.kinds.get_mut(&tag) {
                    decrement(&mut attached.answering, &peer);
                    attached.queued_bytes = attached.queued_bytes.saturating_sub(asked);
                }
                self.respond(channel, body);
            }
            Done::Verdict {
                tag,
                source,
                id,
                verdict,
            } => {
                if let Some(attached) = self.replication.kinds.get_mut(&tag) {
                    attached.judging_total = attached.judging_total.saturating_sub(1);
                    decrement(&mut attached.judging, &source);
                }
                self.report_verdict(source, &id, verdict);
            }
        }
    }

    fn report_verdict(&mut self, source: PeerId, id: &gossipsub::MessageId, verdict: Verdict) {
        let acceptance = match verdict {
            Verdict::Accept => gossipsub::MessageAcceptance::Accept,
            Verdict::Ignore => gossipsub::MessageAcceptance::Ignore,
            Verdict::Reject => gossipsub::MessageAcceptance::Reject,
        };
        self.report_acceptance(source, id, acceptance);
    }

    /// Reports a verdict to gossipsub; a peer whose score a rejection takes below the graylist
    /// threshold is also disconnected and refused from then on (it sent invalid messages twice:
    /// everything it would send is dropped anyway, and its sync requests and connections cost).
    pub(super) fn report_acceptance(
        &mut self,
        source: PeerId,
        id: &gossipsub::MessageId,
        acceptance: gossipsub::MessageAcceptance,
    ) {
        let rejected = acceptance == gossipsub::MessageAcceptance::Reject;
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        gossipsub.report_message_validation_result(id, &source, acceptance);
        let graylist = crate::swarm::behaviour::score_thresholds().graylist_threshold;
        if rejected && gossipsub.peer_score(&source).is_some_and(|s| s < graylist) {
            tracing::info!(peer = %source, "banned a peer that sent invalid gossip again and again");
            self.ban(source);
        }
    }
}
