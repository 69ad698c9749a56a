//! The swarm actor's part in labels: label topics, the sync protocol's requests both ways, and
//! handing what peers send to the labels service (bytes only; the service decides).

use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::{PeerId, gossipsub};
use tokio::sync::{mpsc, oneshot};

use super::{Internal, NodeActor};
use crate::dataset::DatasetId;
use crate::net::labels::{Inbound, Verdict, topic};
use crate::net::{NetError, RequestError, sync};

/// Sync requests from one peer being answered at most; more are answered `Busy`.
pub(super) const MAX_INBOUND_SYNC_PER_PEER: usize = 4;
/// Gossip messages awaiting the labels service's verdict at most; more are ignored.
pub(super) const MAX_PENDING_VERDICTS: usize = 1_024;

pub(crate) enum LabelsCommand {
    Attach {
        inbox: mpsc::Sender<Inbound>,
        reply: oneshot::Sender<()>,
    },
    Subscribe {
        dataset: DatasetId,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    Publish {
        dataset: DatasetId,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    Request {
        peer: PeerId,
        request: sync::Request,
        reply: oneshot::Sender<Result<sync::Response, RequestError>>,
    },
    TopicPeers {
        dataset: DatasetId,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
}

/// The labels state of the swarm actor.
#[derive(Default)]
pub(super) struct LabelsGlue {
    inbox: Option<mpsc::Sender<Inbound>>,
    requests: std::collections::HashMap<
        OutboundRequestId,
        oneshot::Sender<Result<sync::Response, RequestError>>,
    >,
    inbound_per_peer: std::collections::HashMap<PeerId, usize>,
    pending_verdicts: usize,
}

impl NodeActor {
    pub(super) fn on_labels_command(&mut self, command: LabelsCommand) {
        match command {
            LabelsCommand::Attach { inbox, reply } => {
                self.labels.inbox = Some(inbox);
                let _ = reply.send(());
            }
            LabelsCommand::Subscribe { dataset, reply } => {
                let t = gossipsub::IdentTopic::new(topic(&dataset));
                let result = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .subscribe(&t)
                    .map(|_| ())
                    .map_err(|e| NetError::Build(format!("cannot subscribe to {t}: {e}")));
                let _ = reply.send(result);
            }
            LabelsCommand::Publish {
                dataset,
                data,
                reply,
            } => {
                let t = gossipsub::IdentTopic::new(topic(&dataset));
                let result = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(t, data)
                    .map(|_| ())
                    .map_err(|e| NetError::Publish(e.to_string()));
                let _ = reply.send(result);
            }
            LabelsCommand::Request {
                peer,
                request,
                reply,
            } => {
                if self.banned.contains(&peer) {
                    let _ = reply.send(Err(RequestError::Banned));
                    return;
                }
                let id = self.swarm.behaviour_mut().sync.send_request(&peer, request);
                self.labels.requests.insert(id, reply);
            }
            LabelsCommand::TopicPeers { dataset, reply } => {
                let hash = gossipsub::IdentTopic::new(topic(&dataset)).hash();
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
        }
    }

    pub(super) fn on_sync_event(
        &mut self,
        event: request_response::Event<sync::Request, sync::Response>,
    ) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.serve_sync(peer, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.labels.requests.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(reply) = self.labels.requests.remove(&request_id) {
                    let _ = reply.send(Err(RequestError::Failed(error.to_string())));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "a label sync request from a peer failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn serve_sync(
        &mut self,
        peer: PeerId,
        request: sync::Request,
        channel: ResponseChannel<sync::Response>,
    ) {
        let busy = self
            .labels
            .inbound_per_peer
            .get(&peer)
            .is_some_and(|n| *n >= MAX_INBOUND_SYNC_PER_PEER);
        let Some(inbox) = self.labels.inbox.clone().filter(|_| !busy) else {
            let response = if busy {
                sync::Response::Busy
            } else {
                sync::Response::Unknown
            };
            let _ = self
                .swarm
                .behaviour_mut()
                .sync
                .send_response(channel, response);
            return;
        };
        let (reply, answer) = oneshot::channel();
        if inbox
            .try_send(Inbound::Sync {
                peer,
                request,
                reply,
            })
            .is_err()
        {
            let _ = self
                .swarm
                .behaviour_mut()
                .sync
                .send_response(channel, sync::Response::Busy);
            return;
        }
        *self.labels.inbound_per_peer.entry(peer).or_default() += 1;
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            let response = answer.await.unwrap_or(sync::Response::Busy);
            let _ = tx
                .send(Internal::SyncAnswer {
                    peer,
                    channel,
                    response,
                })
                .await;
        });
    }

    pub(super) fn on_sync_answer(
        &mut self,
        peer: PeerId,
        channel: ResponseChannel<sync::Response>,
        response: sync::Response,
    ) {
        if let Some(n) = self.labels.inbound_per_peer.get_mut(&peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.labels.inbound_per_peer.remove(&peer);
            }
        }
        let _ = self
            .swarm
            .behaviour_mut()
            .sync
            .send_response(channel, response);
    }

    /// Hands a message on a label topic to the labels service; its verdict comes back as
    /// [`Internal::Verdict`]. Without a service, or with its queue full, the message is ignored.
    pub(super) fn on_label_gossip(
        &mut self,
        source: PeerId,
        id: gossipsub::MessageId,
        dataset: DatasetId,
        data: Vec<u8>,
    ) {
        let inbox = self
            .labels
            .inbox
            .clone()
            .filter(|_| self.labels.pending_verdicts < MAX_PENDING_VERDICTS);
        let (reply, verdict) = oneshot::channel();
        let queued = inbox.is_some_and(|inbox| {
            inbox
                .try_send(Inbound::Gossip {
                    peer: source,
                    dataset,
                    data,
                    reply,
                })
                .is_ok()
        });
        if !queued {
            self.report_verdict(source, &id, Verdict::Ignore);
            return;
        }
        self.labels.pending_verdicts += 1;
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            let verdict = verdict.await.unwrap_or(Verdict::Ignore);
            let _ = tx
                .send(Internal::Verdict {
                    source,
                    id,
                    verdict,
                })
                .await;
        });
    }

    pub(super) fn on_verdict(
        &mut self,
        source: PeerId,
        id: gossipsub::MessageId,
        verdict: Verdict,
    ) {
        self.labels.pending_verdicts = self.labels.pending_verdicts.saturating_sub(1);
        self.report_verdict(source, &id, verdict);
    }

    pub(super) fn report_verdict(
        &mut self,
        source: PeerId,
        id: &gossipsub::MessageId,
        verdict: Verdict,
    ) {
        let acceptance = match verdict {
            Verdict::Accept => gossipsub::MessageAcceptance::Accept,
            Verdict::Ignore => gossipsub::MessageAcceptance::Ignore,
            Verdict::Reject => gossipsub::MessageAcceptance::Reject,
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(id, &source, acceptance);
    }
}
