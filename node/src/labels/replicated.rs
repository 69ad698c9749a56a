//! Labels as a replicated kind: the label stores of the datasets a node holds, answering and
//! running automerge's sync shard by shard, and judging label gossip. The replication layer
//! (`crate::replicate`) runs it; this file holds only what is particular to labels.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use libp2p::PeerId;
use prometheus_client::metrics::counter::Counter;
use swarmlabel_crdt::sync::{State, SyncError};
use swarmlabel_crdt::{Annotations, DatasetId, RecordError, ShardId, SignedAnnotation};
use swarmlabel_net::home::Home;
use swarmlabel_net::swarm::replication::{Kind, Verdict};
use tokio::sync::{oneshot, watch};

use super::wire::{self, Digest, Request, Response};
use super::{LabelStore, LabelStoreError, gossip, plan};
use crate::replicate::{Context, Gossip, Replicated, Reply, Step};

/// Sync states kept at most (peers × datasets × shards × role); past it they are all forgotten,
/// which costs only a fuller exchange in the next session with each peer.
const MAX_SYNC_STATES: usize = 65_536;

/// What the labels handle asks of the service.
#[derive(Debug)]
pub(crate) enum Command {
    Open {
        dataset: swarmlabel_crdt::Dataset,
        samples: Option<Arc<swarmlabel_crdt::Samples>>,
        reply: oneshot::Sender<Result<(), super::LabelsError>>,
    },
    Record {
        signed: SignedAnnotation,
        reply: oneshot::Sender<Result<(), super::LabelsError>>,
    },
    Read {
        dataset: DatasetId,
        reply: oneshot::Sender<Result<Annotations, super::LabelsError>>,
    },
    Watch {
        dataset: DatasetId,
        reply: oneshot::Sender<Result<watch::Receiver<u64>, super::LabelsError>>,
    },
    Policy {
        dataset: DatasetId,
        policy: crate::policy::InForce,
        reply: oneshot::Sender<Result<(), super::LabelsError>>,
    },
}

/// Counts particular to labels (`swarmlabel_labels_recorded`, `_sync_applied`).
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) recorded: Counter,
    pub(crate) sync_applied: Counter,
    pub(crate) over_quota: Counter,
}

impl Stats {
    pub(crate) fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        let r = registry.sub_registry_with_prefix("swarmlabel_labels");
        r.register(
            "recorded",
            "Labels recorded on this node (durable)",
            self.recorded.clone(),
        );
        r.register(
            "sync_applied",
            "Label sync messages from peers that changed a shard",
            self.sync_applied.clone(),
        );
        r.register(
            "gossip_over_quota",
            "Label gossip messages ignored because their author was over its quota",
            self.over_quota.clone(),
        );
    }
}

/// Which side of a session a sync state belongs to: a peer may sync with us while we sync with
/// it, and automerge's state must not mix the two exchanges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Role {
    Initiator,
    Responder,
}

type StateKey = (PeerId, DatasetId, ShardId, Role);

/// One session this node runs: the summary, then the shards that differ, one by one.
#[derive(Debug)]
pub(crate) struct Session {
    dataset: DatasetId,
    shards: VecDeque<ShardId>,
    /// The shard being synced, the requests sent for it, and whether the peer had nothing to say
    /// in its last answer.
    current: Option<(ShardId, usize, bool)>,
}

/// The label stores of a node and their sync states.
pub(crate) struct Stores {
    pub(crate) home: Home,
    pub(crate) gossip_push: bool,
    pub(crate) max_steps_per_shard: usize,
    pub(crate) stats: Arc<Stats>,
    stores: HashMap<DatasetId, LabelStore>,
    /// Per open dataset, a count of the changes to its labels (recorded, gossiped, synced): the
    /// learning loop reads the labels again when it moves.
    changes: HashMap<DatasetId, watch::Sender<u64>>,
    states: HashMap<StateKey, State>,
    quota: swarmlabel_net::quota::Quota,
}

impl Stores {
    pub(crate) fn new(
        home: Home,
        gossip_push: bool,
        max_steps_per_shard: usize,
        stats: Arc<Stats>,
    ) -> Self {
        Self {
            home,
            gossip_push,
            max_steps_per_shard,
            stats,
            stores: HashMap::new(),
            changes: HashMap::new(),
            states: HashMap::new(),
            quota: swarmlabel_net::quota::Quota::new(f64::INFINITY, f64::INFINITY),
        }
    }

    /// Sets the gossip quota per author: records a second, and at once.
    pub(crate) fn with_quota(mut self, (rate, burst): (f64, f64)) -> Self {
        self.quota = swarmlabel_net::quota::Quota::new(rate, burst);
        self
    }

    /// Tells the watchers of `dataset` that its labels changed.
    fn changed(&self, dataset: &DatasetId) {
        if let Some(tx) = self.changes.get(dataset) {
            tx.send_modify(|n| *n += 1);
        }
    }

    fn record(
        &mut self,
        signed: SignedAnnotation,
        cx: &mut Context<Self>,
    ) -> Result<(), super::LabelsError> {
        let dataset = signed.annotation().dataset;
        let store = self
            .stores
            .get_mut(&dataset)
            .ok_or(super::LabelsError::NotOpen(dataset))?;
        store.record(&signed)?;
        self.stats.recorded.inc();
        self.changed(&dataset);
        if self.gossip_push
            && let Some(data) = gossip::encode(&[signed])
        {
            cx.publish(dataset, data);
        }
        Ok(())
    }

    fn summary(&mut self, dataset: &DatasetId) -> Option<Vec<Digest>> {
        let store = self.stores.get_mut(dataset)?;
        let layout = store.replica_mut().dataset().layout;
        Some(
            layout
                .shards()
                .map(|s| plan::digest(&store.replica_mut().heads(s)))
                .collect(),
        )
    }

    fn state(&mut self, key: StateKey) -> &mut State {
        if self.states.len() >= MAX_SYNC_STATES && !self.states.contains_key(&key) {
            self.states.clear();
        }
        self.states.entry(key).or_default()
    }

    fn generate(&mut self, key: StateKey, new_round: bool) -> Option<Vec<u8>> {
        let (_, dataset, shard, _) = key;
        if !self.stores.contains_key(&dataset) {
            return None;
        }
        let mut state = std::mem::take(self.state(key));
        if new_round {
            state.new_round();
        }
        let store = self.stores.get_mut(&dataset)?;
        let message = store.replica_mut().generate_sync_message(shard, &mut state);
        self.states.insert(key, state);
        message
    }

    /// Applies a peer's message and makes what it changed durable before returning.
    fn receive(&mut self, key: StateKey, message: &[u8]) -> Result<(), ReceiveError> {
        let (_, dataset, shard, _) = key;
        if !self.stores.contains_key(&dataset) {
            return Err(ReceiveError::NotOpen);
        }
        let mut state = std::mem::take(self.state(key));
        let store = self.stores.get_mut(&dataset).ok_or(ReceiveError::NotOpen)?;
        let result = store
            .replica_mut()
            .receive_sync_message(shard, &mut state, message);
        self.states.insert(key, state);
        match result {
            Ok(received) => {
                if received.changed {
                    self.stats.sync_applied.inc();
                    store.synced(shard, &received.records)?;
                    self.changed(&dataset);
                }
                Ok(())
            }
            Err(e) => Err(ReceiveError::Refused(e)),
        }
    }

    /// The first request for the next shard of `session`, or `None` when no shard is left.
    fn next_shard(&mut self, peer: PeerId, session: &mut Session) -> Option<Request> {
        let shard = session.shards.pop_front()?;
        session.current = Some((shard, 1, false));
        let key = (peer, session.dataset, shard, Role::Initiator);
        let message = self.generate(key, true).unwrap_or_default();
        Some(Request::Sync {
            dataset: session.dataset,
            shard: shard.0,
            new_round: true,
            message,
        })
    }
}

/// Why applying a peer's message failed.
#[derive(Debug, thiserror::Error)]
enum ReceiveError {
    #[error("the dataset is not open")]
    NotOpen,
    #[error(transparent)]
    Refused(SyncError),
    #[error(transparent)]
    Store(#[from] LabelStoreError),
}

impl Replicated for Stores {
    const KIND: Kind = wire::KIND;
    type Request = Request;
    type Response = Response;
    type Session = Session;
    type Command = Command;
    type Event = ();

    fn held(&self) -> Vec<DatasetId> {
        self.stores.keys().copied().collect()
    }

    fn command(&mut self, command: Command, cx: &mut Context<Self>) {
        match command {
            Command::Open {
                dataset,
                samples,
                reply,
            } => {
                let result = if self.stores.contains_key(&dataset.id) {
                    Ok(())
                } else {
                    super::service::open_store(&self.home, dataset, samples)
                        .map(|store| {
                            self.stores.insert(dataset.id, store);
                            self.changes.insert(dataset.id, watch::channel(0).0);
                        })
                        .map_err(super::LabelsError::from)
                };
                let _ = reply.send(result);
            }
            Command::Record { signed, reply } => {
                let _ = reply.send(self.record(signed, cx));
            }
            Command::Read { dataset, reply } => {
                let result = self
                    .stores
                    .get_mut(&dataset)
                    .map(LabelStore::read)
                    .ok_or(super::LabelsError::NotOpen(dataset));
                let _ = reply.send(result);
            }
            Command::Policy {
                dataset,
                policy,
                reply,
            } => {
                let result = match self.stores.get_mut(&dataset) {
                    Some(store) => {
                        store.replica_mut().set_policy(policy);
                        self.changed(&dataset);
                        Ok(())
                    }
                    None => Err(super::LabelsError::NotOpen(dataset)),
                };
                let _ = reply.send(result);
            }
            Command::Watch { dataset, reply } => {
                let result = self
                    .changes
                    .get(&dataset)
                    .map(watch::Sender::subscribe)
                    .ok_or(super::LabelsError::NotOpen(dataset));
                let _ = reply.send(result);
            }
        }
    }

    fn begin(
        &mut self,
        _peer: PeerId,
        dataset: DatasetId,
        _cx: &mut Context<Self>,
    ) -> Option<(Session, Request)> {
        self.stores.contains_key(&dataset).then(|| {
            let session = Session {
                dataset,
                shards: VecDeque::new(),
                current: None,
            };
            (session, Request::Summary { dataset })
        })
    }

    fn step(
        &mut self,
        peer: PeerId,
        session: &mut Session,
        reply: Reply<Response>,
        _cx: &mut Context<Self>,
    ) -> Step<Request> {
        let response = match reply {
            Reply::Ok(response) => response,
            Reply::Unknown => {
                return Step::Failed("the peer does not hold this dataset's labels".into());
            }
            Reply::Refused => return Step::Failed("the peer refused our sync message".into()),
            Reply::Busy => return Step::Failed("the peer is busy".into()),
        };
        match (response, session.current) {
            (Response::Summary(theirs), None) => {
                let Some(mine) = self.summary(&session.dataset) else {
                    return Step::Done;
                };
                match plan::differing_shards(&mine, &theirs) {
                    Ok(shards) => session.shards = shards.into(),
                    Err(e) => return Step::Failed(e.to_string()),
                }
                match self.next_shard(peer, session) {
                    Some(request) => Step::Next(request),
                    None => Step::Done,
                }
            }
            (Response::Sync(theirs), Some((shard, sent, _))) => {
                let key = (peer, session.dataset, shard, Role::Initiator);
                let they_are_done = theirs.is_empty();
                if !they_are_done {
                    match self.receive(key, &theirs) {
                        Ok(()) => {}
                        Err(ReceiveError::Refused(e)) => return Step::Refused(e.to_string()),
                        Err(e) => return Step::Failed(e.to_string()),
                    }
                }
                session.current = Some((shard, sent, they_are_done));
                let mine = if sent < self.max_steps_per_shard {
                    self.generate(key, false)
                } else {
                    // The step bound is reached: the next round continues this shard.
                    None
                };
                if sent >= self.max_steps_per_shard || (mine.is_none() && they_are_done) {
                    return match self.next_shard(peer, session) {
                        Some(request) => Step::Next(request),
                        None => Step::Done,
                    };
                }
                session.current = Some((shard, sent + 1, they_are_done));
                Step::Next(Request::Sync {
                    dataset: session.dataset,
                    shard: shard.0,
                    new_round: false,
                    message: mine.unwrap_or_default(),
                })
            }
            _ => Step::Failed("the peer answered out of protocol".into()),
        }
    }

    fn answer(
        &mut self,
        peer: PeerId,
        request: Request,
        _cx: &mut Context<Self>,
    ) -> Reply<Response> {
        match request {
            Request::Summary { dataset } => match self.summary(&dataset) {
                Some(digests) => Reply::Ok(Response::Summary(digests)),
                None => Reply::Unknown,
            },
            Request::Sync {
                dataset,
                shard,
                new_round,
                message,
            } => {
                let Some(store) = self.stores.get_mut(&dataset) else {
                    return Reply::Unknown;
                };
                let shard = ShardId(shard);
                if !store.replica_mut().dataset().layout.contains(shard) {
                    return Reply::Refused;
                }
                let key = (peer, dataset, shard, Role::Responder);
                if new_round {
                    self.state(key).new_round();
                }
                if !message.is_empty() {
                    match self.receive(key, &message) {
                        Ok(()) => {}
                        Err(ReceiveError::Refused(e)) => {
                            tracing::debug!(%peer, error = %e, "refused a sync message");
                            return Reply::Refused;
                        }
                        Err(ReceiveError::NotOpen) => return Reply::Unknown,
                        // Our disk failed: the peer retries in a later round.
                        Err(ReceiveError::Store(e)) => {
                            tracing::warn!(%dataset, error = %e, "cannot store synced labels");
                            return Reply::Busy;
                        }
                    }
                }
                Reply::Ok(Response::Sync(
                    self.generate(key, false).unwrap_or_default(),
                ))
            }
        }
    }

    /// Validates a gossip message and stores its new labels durably before forwarding.
    fn judge(&mut self, gossip: Gossip, _cx: &mut Context<Self>) -> Verdict {
        let Ok(records) = gossip::decode(&gossip.data) else {
            return Verdict::Reject;
        };
        let dataset = gossip.dataset;
        let Some(store) = self.stores.get_mut(&dataset) else {
            // Not a dataset we hold (we are not subscribed, a peer sent it anyway).
            return Verdict::Ignore;
        };
        let author = gossip.author.unwrap_or(gossip.peer);
        match self
            .quota
            .take(author, records.len(), std::time::Instant::now())
        {
            swarmlabel_net::quota::Take::Taken => {}
            swarmlabel_net::quota::Take::Over => {
                self.stats.over_quota.inc();
                return Verdict::Ignore;
            }
            swarmlabel_net::quota::Take::Flooding => {
                self.stats.over_quota.inc();
                return Verdict::Reject;
            }
        }
        // One batch: one fsync of the record log for the whole message.
        let outcomes = match store.record_batch(&records) {
            Ok(outcomes) => outcomes,
            Err(e) => {
                tracing::warn!(%dataset, error = %e, "cannot store gossiped labels");
                return Verdict::Ignore;
            }
        };
        let mut any_new = false;
        for outcome in outcomes {
            match outcome {
                Ok(new) => any_new |= new,
                // Valid but older than what is held: not worth forwarding. Valid but by a key
                // the owner's policy does not admit: the sender may not have the policy yet, so
                // no penalty either.
                Err(
                    RecordError::NotNewer { .. }
                    | RecordError::Invalid(swarmlabel_crdt::Rejection::NotAdmitted),
                ) => {}
                Err(_) => return Verdict::Reject,
            }
        }
        if any_new {
            self.changed(&dataset);
            Verdict::Accept
        } else {
            Verdict::Ignore
        }
    }
}
