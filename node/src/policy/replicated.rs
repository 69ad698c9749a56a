//! Policies as a replicated kind: the owner's signed policy of each dataset the node holds,
//! pulled from peers by anti-entropy and pushed on gossip. The highest `(version, bytes)` signed
//! by the dataset's owner wins everywhere, so every node converges on one policy.

use std::collections::HashMap;
use std::sync::Arc;
use swarmlabel_ids::PublicKey;

use libp2p::PeerId;
use swarmlabel_crdt::DatasetId;
use swarmlabel_crdt::policy::{Policy, SignedPolicy};
use swarmlabel_net::swarm::replication::{Kind, Verdict};
use swarmlabel_store::home::Home;
use tokio::sync::{oneshot, watch};

use super::wire::{self, Request, Response};
use super::{PolicyError, store};
use crate::replicate::{Context, Gossip, Replicated, Reply, Step};

/// The policy in force for a dataset, as watchers see it (`None`: open, nobody banned).
pub type InForce = Option<Arc<Policy>>;

/// What the policy handle asks of the service.
#[derive(Debug)]
pub(crate) enum Command {
    Open {
        dataset: DatasetId,
        owner: PublicKey,
        reply: oneshot::Sender<Result<watch::Receiver<InForce>, PolicyError>>,
    },
    Set {
        signed: SignedPolicy,
        reply: oneshot::Sender<Result<(), PolicyError>>,
    },
    Get {
        dataset: DatasetId,
        reply: oneshot::Sender<Option<SignedPolicy>>,
    },
}

struct Held {
    owner: PublicKey,
    current: Option<SignedPolicy>,
    tx: watch::Sender<InForce>,
}

/// The policies of the datasets a node holds.
pub(crate) struct Policies {
    home: Home,
    held: HashMap<DatasetId, Held>,
}

/// How an offered policy compares with the one held.
#[derive(Debug, PartialEq, Eq)]
enum Offer {
    /// Newer, verified, stored and in force.
    Taken,
    /// Valid but not newer.
    Stale,
    /// Not the owner's, not this dataset's, or not a policy.
    Invalid,
    /// The dataset is not held here.
    NotHeld,
}

impl Policies {
    pub(crate) fn new(home: Home) -> Self {
        Self {
            home,
            held: HashMap::new(),
        }
    }

    /// The version and the BLAKE3 of the signed policy held (0 and zeros: none).
    fn held_policy(&self, dataset: &DatasetId) -> (u64, [u8; 32]) {
        self.held
            .get(dataset)
            .and_then(|h| h.current.as_ref())
            .map_or((0, [0; 32]), |p| {
                (p.policy().version, *blake3::hash(&p.to_bytes()).as_bytes())
            })
    }

    /// Takes `bytes` as the policy of `dataset` if it is the owner's and newer.
    fn offer(&mut self, dataset: DatasetId, bytes: &[u8]) -> Offer {
        let Some(held) = self.held.get_mut(&dataset) else {
            return Offer::NotHeld;
        };
        let Ok(signed) = SignedPolicy::from_bytes(bytes) else {
            return Offer::Invalid;
        };
        if signed.verify(dataset, &held.owner).is_err() {
            return Offer::Invalid;
        }
        let newer = held.current.as_ref().is_none_or(|cur| {
            (signed.policy().version, signed.to_bytes()) > (cur.policy().version, cur.to_bytes())
        });
        if !newer {
            return Offer::Stale;
        }
        if let Err(e) = store::save(&self.home, &signed) {
            // Kept in memory and in force; the next policy change writes the file again.
            tracing::warn!(%dataset, error = %e, "cannot store the dataset's policy");
        }
        held.tx
            .send_replace(Some(Arc::new(signed.policy().clone())));
        held.current = Some(signed);
        Offer::Taken
    }
}

impl Replicated for Policies {
    const KIND: Kind = wire::KIND;
    type Request = Request;
    type Response = Response;
    type Session = DatasetId;
    type Command = Command;
    type Event = ();

    fn held(&self) -> Vec<DatasetId> {
        self.held.keys().copied().collect()
    }

    fn command(&mut self, command: Command, cx: &mut Context<Self>) {
        match command {
            Command::Open {
                dataset,
                owner,
                reply,
            } => {
                if let Some(held) = self.held.get(&dataset) {
                    let _ = reply.send(Ok(held.tx.subscribe()));
                    return;
                }
                let current = match store::load(&self.home, dataset, &owner) {
                    Ok(Ok(current)) => current,
                    Ok(Err(damaged)) => {
                        tracing::warn!(%dataset, "{damaged}");
                        None
                    }
                    Err(e) => {
                        let _ = reply.send(Err(PolicyError::Io(e.to_string())));
                        return;
                    }
                };
                let (tx, rx) = watch::channel(
                    current
                        .as_ref()
                        .map(|p: &SignedPolicy| Arc::new(p.policy().clone())),
                );
                self.held.insert(dataset, Held { owner, current, tx });
                let _ = reply.send(Ok(rx));
            }
            Command::Set { signed, reply } => {
                let dataset = signed.policy().dataset;
                let bytes = signed.to_bytes();
                let result = match self.offer(dataset, &bytes) {
                    Offer::Taken => {
                        cx.publish(dataset, bytes);
                        Ok(())
                    }
                    Offer::Stale => Err(PolicyError::NotNewer),
                    Offer::Invalid => Err(PolicyError::NotOwner),
                    Offer::NotHeld => Err(PolicyError::NotOpen(dataset)),
                };
                let _ = reply.send(result);
            }
            Command::Get { dataset, reply } => {
                let _ = reply.send(self.held.get(&dataset).and_then(|h| h.current.clone()));
            }
        }
    }

    fn begin(
        &mut self,
        _peer: PeerId,
        dataset: DatasetId,
        _cx: &mut Context<Self>,
    ) -> Option<(DatasetId, Request)> {
        self.held.contains_key(&dataset).then(|| {
            let (version, held) = self.held_policy(&dataset);
            (
                dataset,
                Request {
                    dataset,
                    version,
                    held,
                },
            )
        })
    }

    fn step(
        &mut self,
        _peer: PeerId,
        dataset: &mut DatasetId,
        reply: Reply<Response>,
        _cx: &mut Context<Self>,
    ) -> Step<Request> {
        match reply {
            Reply::Ok(Response::Same) => Step::Done,
            Reply::Ok(Response::Newer(bytes)) => match self.offer(*dataset, &bytes) {
                Offer::Taken | Offer::Stale | Offer::NotHeld => Step::Done,
                Offer::Invalid => {
                    Step::Refused("the peer sent a policy its owner did not sign".into())
                }
            },
            Reply::Unknown => Step::Failed("the peer does not hold this dataset".into()),
            Reply::Refused => Step::Failed("the peer refused our request".into()),
            Reply::Busy => Step::Failed("the peer is busy".into()),
        }
    }

    fn answer(
        &mut self,
        _peer: PeerId,
        request: Request,
        _cx: &mut Context<Self>,
    ) -> Reply<Response> {
        let Some(held) = self.held.get(&request.dataset) else {
            return Reply::Unknown;
        };
        match &held.current {
            // Newer, or the same version signed otherwise (the owner signed two): the requester
            // keeps the greater of the two, as every node does, so they converge.
            Some(p)
                if p.policy().version > request.version
                    || (p.policy().version == request.version
                        && *blake3::hash(&p.to_bytes()).as_bytes() != request.held) =>
            {
                Reply::Ok(Response::Newer(p.to_bytes()))
            }
            _ => Reply::Ok(Response::Same),
        }
    }

    fn judge(&mut self, gossip: Gossip, _cx: &mut Context<Self>) -> Verdict {
        match self.offer(gossip.dataset, &gossip.data) {
            Offer::Taken => Verdict::Accept,
            Offer::Stale | Offer::NotHeld => Verdict::Ignore,
            Offer::Invalid => Verdict::Reject,
        }
    }
}
