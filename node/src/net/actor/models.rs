//! The swarm actor's part in models: model topics, the registry sync protocol's requests both
//! ways, the model weight blobs it may serve, and handing what peers send to the models service
//! (bytes only; the service decides).

use std::collections::HashMap;

use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::{PeerId, gossipsub};
use tokio::sync::{mpsc, oneshot};

use super::labels::{MAX_INBOUND_SYNC_PER_PEER, MAX_PENDING_VERDICTS};
use super::{Internal, NodeActor};
use crate::dataset::DatasetId;
use crate::net::labels::Verdict;
use crate::net::models::{self, Inbound, topic};
use crate::net::{NetError, RequestError};
use crate::store::BlobId;

pub(crate) enum ModelsCommand {
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
        request: models::Request,
        reply: oneshot::Sender<Result<models::Response, RequestError>>,
    },
    TopicPeers {
        dataset: DatasetId,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    /// Adds blobs (model weights) to those served to peers, or withdraws them.
    Servable {
        ids: Vec<BlobId>,
        serve: bool,
        reply: oneshot::Sender<()>,
    },
}

/// The models state of the swarm actor.
#[derive(Default)]
pub(super) struct ModelsGlue {
    inbox: Option<mpsc::Sender<Inbound>>,
    requests: HashMap<OutboundRequestId, oneshot::Sender<Result<models::Response, RequestError>>>,
    inbound_per_peer: HashMap<PeerId, usize>,
    pending_verdicts: usize,
}

impl NodeActor {
    pub(super) fn on_models_command(&mut self, command: ModelsCommand) {
        match command {
            ModelsCommand::Attach { inbox, reply } => {
                self.models.inbox = Some(inbox);
                let _ = reply.send(());
            }
            ModelsCommand::Subscribe { dataset, reply } => {
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
            ModelsCommand::Publish {
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
            ModelsCommand::Request {
                peer,
                request,
                reply,
            } => {
                if self.banned.contains(&peer) {
                    let _ = reply.send(Err(RequestError::Banned));
                    return;
                }
                let id = self
                    .swarm
                    .behaviour_mut()
                    .models
                    .send_request(&peer, request);
                self.models.requests.insert(id, reply);
            }
            ModelsCommand::TopicPeers { dataset, reply } => {
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
            ModelsCommand::Servable { ids, serve, reply } => {
                for id in ids {
                    if serve {
                        self.servable.insert(id);
                    } else {
                        self.servable.remove(&id);
                    }
                }
                let _ = reply.send(());
            }
        }
    }

    pub(super) fn on_models_sync_event(
        &mut self,
        event: request_response::Event<models::Request, models::Response>,
    ) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.serve_models_sync(peer, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.models.requests.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(reply) = self.models.requests.remove(&request_id) {
                    let _ = reply.send(Err(RequestError::Failed(error.to_string())));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "a model sync request from a peer failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn serve_models_sync(
        &mut self,
        peer: PeerId,
        request: models::Request,
        channel: ResponseChannel<models::Response>,
    ) {
        let busy = self
            .models
            .inbound_per_peer
            .get(&peer)
            .is_some_and(|n| *n >= MAX_INBOUND_SYNC_PER_PEER);
        let (reply, answer) = oneshot::channel();
        let queued = !busy
            && self.models.inbox.as_ref().is_some_and(|inbox| {
                inbox
                    .try_send(Inbound::Sync {
                        peer,
                        request,
                        reply,
                    })
                    .is_ok()
            });
        if !queued {
            let response = if busy || self.models.inbox.is_some() {
                models::Response::Busy
            } else {
                models::Response::Unknown
            };
            let _ = self
                .swarm
                .behaviour_mut()
                .models
                .send_response(channel, response);
            return;
        }
        *self.models.inbound_per_peer.entry(peer).or_default() += 1;
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            let response = answer.await.unwrap_or(models::Response::Busy);
            let _ = tx
                .send(Internal::ModelsSyncAnswer {
                    peer,
                    channel,
                    response,
                })
                .await;
        });
    }

    pub(super) fn on_models_sync_answer(
        &mut self,
        peer: PeerId,
        channel: ResponseChannel<models::Response>,
        response: models::Response,
    ) {
        if let Some(n) = self.models.inbound_per_peer.get_mut(&peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.models.inbound_per_peer.remove(&peer);
            }
        }
        let _ = self
            .swarm
            .behaviour_mut()
            .models
            .send_response(channel, response);
    }

    /// Hands a message on a model topic to the models service; its verdict comes back as
    /// [`Internal::ModelsVerdict`]. Without a service, or with its queue full, the message is
    /// ignored (anti-entropy delivers the update later).
    pub(super) fn on_model_gossip(
        &mut self,
        source: PeerId,
        id: gossipsub::MessageId,
        dataset: DatasetId,
        message: gossipsub::Message,
    ) {
        let inbox = self
            .models
            .inbox
            .clone()
            .filter(|_| self.models.pending_verdicts < MAX_PENDING_VERDICTS);
        let (reply, verdict) = oneshot::channel();
        let queued = inbox.is_some_and(|inbox| {
            inbox
                .try_send(Inbound::Gossip {
                    peer: source,
                    author: message.source,
                    dataset,
                    data: message.data,
                    reply,
                })
                .is_ok()
        });
        if !queued {
            self.report_verdict(source, &id, Verdict::Ignore);
            return;
        }
        self.models.pending_verdicts += 1;
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            let verdict = verdict.await.unwrap_or(Verdict::Ignore);
            let _ = tx
                .send(Internal::ModelsVerdict {
                    source,
                    id,
                    verdict,
                })
                .await;
        });
    }

    pub(super) fn on_models_verdict(
        &mut self,
        source: PeerId,
        id: gossipsub::MessageId,
        verdict: Verdict,
    ) {
        self.models.pending_verdicts = self.models.pending_verdicts.saturating_sub(1);
        self.report_verdict(source, &id, verdict);
    }

    /// Tells the models service that `peer` subscribed to the model topic of `dataset` (dropped
    /// when its queue is full: the next anti-entropy round reaches the peer anyway).
    pub(super) fn on_models_subscribed(&mut self, peer: PeerId, dataset: DatasetId) {
        if let Some(inbox) = &self.models.inbox {
            let _ = inbox.try_send(Inbound::Subscribed { peer, dataset });
        }
    }
}
