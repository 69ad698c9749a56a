//! The blob protocol both ways: our requests to peers, and the blobs and roots we serve them
//! (read off the actor's thread, a bounded number at a time). Over a relayed connection too: a
//! peer no direct path reaches gets its blobs through the relay, within its operator's budget.

use std::collections::{HashMap, HashSet};

use libp2p::PeerId;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use tokio::sync::oneshot;

use super::{Internal, NodeActor};
use crate::swarm::RequestError;
use crate::swarm::blob::{Request, Response};
use swarmlabel_store::dataset::DatasetId;
use swarmlabel_store::store::{BlobId, BlobStore};

/// Blob reads for peers under way at most; more requests are refused (the peer retries elsewhere).
pub(super) const MAX_SERVING_READS: usize = 128;

/// A blob read for a peer, finished.
pub(super) struct Done {
    channel: ResponseChannel<Response>,
    response: Response,
}

/// What we serve and our requests under way.
pub(super) struct Serving {
    store: BlobStore,
    servable: HashSet<BlobId>,
    reads: usize,
    requests: HashMap<OutboundRequestId, oneshot::Sender<Result<Response, RequestError>>>,
}

impl Serving {
    pub(super) fn new(store: BlobStore) -> Self {
        Self {
            store,
            servable: HashSet::new(),
            reads: 0,
            requests: HashMap::new(),
        }
    }

    pub(super) fn extend(&mut self, ids: impl IntoIterator<Item = BlobId>) {
        self.servable.extend(ids);
    }

    pub(super) fn set_servable(&mut self, ids: Vec<BlobId>, serve: bool) {
        for id in ids {
            if serve {
                self.servable.insert(id);
            } else {
                self.servable.remove(&id);
            }
        }
    }
}

impl NodeActor {
    pub(super) fn request_blob(
        &mut self,
        peer: PeerId,
        request: Request,
        reply: oneshot::Sender<Result<Response, RequestError>>,
    ) {
        if self.banned.contains(&peer) {
            let _ = reply.send(Err(RequestError::Banned));
            return;
        }
        let id = self.swarm.behaviour_mut().blob.send_request(&peer, request);
        self.serving.requests.insert(id, reply);
    }

    pub(super) fn on_blob_event(&mut self, event: request_response::Event<Request, Response>) {
        match event {
            request_response::Event::Message { message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.serve_request(request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.serving.requests.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(reply) = self.serving.requests.remove(&request_id) {
                    let _ = reply.send(Err(RequestError::Failed(error.to_string())));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "a blob request from a peer failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn serve_request(&mut self, request: Request, channel: ResponseChannel<Response>) {
        let respond = |actor: &mut NodeActor, channel, response| {
            let _ = actor
                .swarm
                .behaviour_mut()
                .blob
                .send_response(channel, response);
        };
        match request {
            Request::Root(id) => {
                let response = match self.served.get(&DatasetId::from(id)) {
                    Some(root) => Response::Found(root.bytes().to_vec()),
                    None => Response::NotFound,
                };
                respond(self, channel, response);
            }
            Request::Blob(id) | Request::SizedBlob(id, _)
                if !self.serving.servable.contains(&id) =>
            {
                respond(self, channel, Response::NotFound);
            }
            Request::Blob(_) | Request::SizedBlob(..)
                if self.serving.reads >= MAX_SERVING_READS =>
            {
                respond(self, channel, Response::Refused);
            }
            Request::Blob(id) | Request::SizedBlob(id, _) => {
                self.serving.reads += 1;
                let path = self.serving.store.path(&id);
                let tx = self.internal_tx.clone();
                // Read off the actor's thread. The receiver verifies the hash, so the read does
                // not: a provider with a damaged disk is caught (and avoided) by its peers.
                tokio::spawn(async move {
                    let response = match tokio::fs::read(&path).await {
                        Ok(bytes) => Response::Found(bytes),
                        Err(_) => Response::NotFound,
                    };
                    let _ = tx.send(Internal::Serving(Done { channel, response })).await;
                });
            }
        }
    }

    pub(super) fn on_blob_read(&mut self, done: Done) {
        self.serving.reads = self.serving.reads.saturating_sub(1);
        if matches!(done.response, Response::Found(_)) {
            self.metrics.blobs_served.inc();
        }
        let _ = self
            .swarm
            .behaviour_mut()
            .blob
            .send_response(done.channel, done.response);
    }
}
