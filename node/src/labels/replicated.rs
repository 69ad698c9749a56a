//! Labels as a replicated kind: the label stores of the datasets a node holds, answering
//! pulls and pulling shard by shard, and judging label gossip. The replication layer
//! (`crate::replicate`) runs it; this file holds only what is particular to labels.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use libp2p::PeerId;
use swarmlabel_crdt::{Annotations, DatasetId, RecordError, Rejection, ShardId, SignedAnnotation};
use swarmlabel_net::swarm::replication::{Kind, Verdict};
use swarmlabel_store::Identity;
use swarmlabel_store::home::Home;
use tokio::sync::{oneshot, watch};

use super::intake::{Intake, Limits};
use super::service::Own;
pub(crate) use super::stats::Stats;
use super::waiting::Waiting;
use super::wire::{self, Digest, PAGE_RECORDS, Range, Request, Response};
use super::{LabelStore, gossip, plan};

mod pulls;
use crate::replicate::{Context, Gossip, Replicated, Reply, Step};

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
    RecordOwn {
        dataset: DatasetId,
        answer: Own,
        reply: oneshot::Sender<Result<SignedAnnotation, super::LabelsError>>,
    },
    Read {
        dataset: DatasetId,
        reply: oneshot::Sender<Result<Annotations, super::LabelsError>>,
    },
    Watch {
        dataset: DatasetId,
        reply: oneshot::Sender<Result<watch::Receiver<u64>, super::LabelsError>>,
    },
    FollowPolicy {
        dataset: DatasetId,
        policy: watch::Receiver<crate::policy::InForce>,
        reply: oneshot::Sender<Result<(), super::LabelsError>>,
    },
}

/// One session this node runs: the summary, then the shards that differ, pulled range by
/// range, page by page.
#[derive(Debug)]
pub(crate) struct Session {
    dataset: DatasetId,
    shards: VecDeque<ShardId>,
    /// The shard being pulled, the range of annotator keys, and the pages taken of it.
    current: Option<(ShardId, Range, usize)>,
}

/// The label stores of a node.
pub(crate) struct Stores {
    pub(crate) home: Home,
    identity: Option<Identity>,
    pub(crate) gossip_push: bool,
    pub(crate) max_pages_per_shard: usize,
    pub(crate) stats: Arc<Stats>,
    stores: HashMap<DatasetId, LabelStore>,
    /// Per open dataset, a count of the changes to its labels (recorded, gossiped, synced): the
    /// learning loop reads the labels again when it moves.
    changes: HashMap<DatasetId, watch::Sender<u64>>,
    intake: Intake,
    /// Per open dataset, records heard before their chain's previous one (gossip takes
    /// different paths), taken as soon as it arrives; at most [`MAX_WAITING`], the oldest
    /// dropped first (anti-entropy brings those).
    waiting: HashMap<DatasetId, Waiting>,
    /// The owner's policy of each open dataset, as the policy kind keeps it in force.
    policies: HashMap<DatasetId, watch::Receiver<crate::policy::InForce>>,
}

/// Records waiting for their chain's previous one, per dataset.
const MAX_WAITING: usize = 1024;

/// Why records from a peer were not all taken.
#[derive(Debug, thiserror::Error)]
enum TakeError {
    #[error("the dataset is not open")]
    NotOpen,
    /// Something no honest peer sends (a bad signature, a record of another dataset, a label
    /// outside the label set, a sample the manifest does not list).
    #[error("an invalid record ({0:?})")]
    Invalid(Rejection),
    #[error(transparent)]
    Store(#[from] super::LabelStoreError),
}

/// What taking a peer's records did.
#[derive(Debug, Default)]
struct Taken {
    new: usize,
    over_quota: usize,
}

impl Stores {
    pub(crate) fn new(
        home: Home,
        gossip_push: bool,
        max_pages_per_shard: usize,
        stats: Arc<Stats>,
        limits: Limits,
    ) -> Self {
        let identity = home.identity().ok();
        Self {
            home,
            identity,
            gossip_push,
            max_pages_per_shard,
            stats,
            stores: HashMap::new(),
            changes: HashMap::new(),
            intake: Intake::new(limits),
            waiting: HashMap::new(),
            policies: HashMap::new(),
        }
    }

    /// Tells the watchers of `dataset` that its labels changed.
    fn changed(&self, dataset: &DatasetId) {
        if let Some(tx) = self.changes.get(dataset) {
            tx.send_modify(|n| *n += 1);
        }
    }

    fn publish(&self, dataset: DatasetId, signed: SignedAnnotation, cx: &mut Context<Self>) {
        if self.gossip_push
            && let Some(data) = gossip::encode(&[signed])
        {
            cx.publish(dataset, data);
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
        self.publish(dataset, signed, cx);
        Ok(())
    }

    fn record_own(
        &mut self,
        dataset: DatasetId,
        own: Own,
        cx: &mut Context<Self>,
    ) -> Result<SignedAnnotation, super::LabelsError> {
        let identity = self.identity.as_ref().ok_or(super::LabelsError::NoKey)?;
        let store = self
            .stores
            .get_mut(&dataset)
            .ok_or(super::LabelsError::NotOpen(dataset))?;
        let signed = store.record_own(
            identity.signing_key(),
            own.sample,
            own.value,
            own.suggestion,
            own.time_ms,
        )?;
        self.stats.recorded.inc();
        self.changed(&dataset);
        self.publish(dataset, signed, cx);
        Ok(signed)
    }

    fn summary(&mut self, dataset: &DatasetId) -> Option<Vec<Digest>> {
        let store = self.stores.get_mut(dataset)?;
        let layout = store.replica_mut().dataset().layout;
        Some(
            layout
                .shards()
                .map(|s| store.replica_mut().digest(s))
                .collect(),
        )
    }

    /// Takes records `peer` sent (by gossip or in a page it answered), within the quotas:
    /// only records new here cost a token; a batch with an invalid record keeps nothing.
    fn take(
        &mut self,
        peer: PeerId,
        dataset: DatasetId,
        records: Vec<SignedAnnotation>,
    ) -> Result<Taken, TakeError> {
        let store = self.stores.get_mut(&dataset).ok_or(TakeError::NotOpen)?;
        let fresh: Vec<SignedAnnotation> = records
            .into_iter()
            .filter(|r| !store.replica_mut().holds(r))
            .collect();
        if fresh.is_empty() {
            return Ok(Taken::default());
        }
        let admitted = self.intake.admit(peer, fresh, Instant::now());
        if admitted.over > 0 {
            self.stats.over_quota.inc_by(admitted.over as u64);
        }
        let outcomes = store.record_batch(&admitted.taken)?;
        let mut new = 0;
        let mut gaps = Vec::new();
        for (outcome, record) in outcomes.into_iter().zip(&admitted.taken) {
            match outcome {
                Ok(true) => new += 1,
                Ok(false) => {}
                // By a key the owner's policy does not admit: the sender may not have the policy
                // yet. Out of its chain's order, or signed twice by its annotator: the relay did
                // nothing wrong. None of these are held against the sender.
                Err(RecordError::Gap { .. }) => gaps.push(*record),
                Err(
                    RecordError::Invalid(Rejection::NotAdmitted) | RecordError::Conflict { .. },
                ) => {}
                Err(RecordError::Invalid(r)) => return Err(TakeError::Invalid(r)),
                Err(_) => {}
            }
        }
        let waiting = self
            .waiting
            .entry(dataset)
            .or_insert_with(|| Waiting::new(MAX_WAITING));
        for record in gaps {
            waiting.insert(record);
        }
        if new > 0 {
            new += Self::take_waiting(store, waiting);
            self.changed(&dataset);
        }
        Ok(Taken {
            new,
            over_quota: admitted.over,
        })
    }

    /// Takes the waiting records whose chains now reach them, as long as some do; returns how
    /// many were new. Drops those held or refused.
    fn take_waiting(store: &mut LabelStore, waiting: &mut Waiting) -> usize {
        let mut new = 0;
        loop {
            let replica = store.replica_mut();
            waiting.take(|r| replica.holds(r));
            let ready = waiting.take(|r| {
                let a = r.annotation();
                replica.next_seq(&a.annotator, &a.sample) == a.seq
            });
            if ready.is_empty() {
                return new;
            }
            match store.record_batch(&ready) {
                Ok(outcomes) => new += outcomes.iter().filter(|o| matches!(o, Ok(true))).count(),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot store labels that waited for their chain");
                    return new;
                }
            }
        }
    }

    fn set_policy(
        &mut self,
        dataset: DatasetId,
        policy: crate::policy::InForce,
    ) -> Result<(), super::LabelsError> {
        let store = self
            .stores
            .get_mut(&dataset)
            .ok_or(super::LabelsError::NotOpen(dataset))?;
        store.replica_mut().set_policy(policy);
        // What a banned key made this node store leaves its disk (its chain only).
        let dropped = store.drop_not_admitted()?;
        if dropped > 0 {
            tracing::info!(%dataset, dropped, "removed the records of annotators the owner's policy no longer admits");
            self.stats.dropped_not_admitted.inc_by(dropped);
        }
        self.changed(&dataset);
        Ok(())
    }
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

    fn refresh(&mut self, _cx: &mut Context<Self>) {
        for (dataset, policy) in crate::policy::changed(&mut self.policies) {
            if let Err(e) = self.set_policy(dataset, policy) {
                tracing::warn!(%dataset, "cannot put the owner's new policy in force: {e}");
            }
        }
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
            Command::RecordOwn {
                dataset,
                answer,
                reply,
            } => {
                let _ = reply.send(self.record_own(dataset, answer, cx));
            }
            Command::Read { dataset, reply } => {
                let result = self
                    .stores
                    .get_mut(&dataset)
                    .map(LabelStore::read)
                    .ok_or(super::LabelsError::NotOpen(dataset));
                let _ = reply.send(result);
            }
            Command::FollowPolicy {
                dataset,
                mut policy,
                reply,
            } => {
                let in_force = policy.borrow_and_update().clone();
                let result = self.set_policy(dataset, in_force);
                if result.is_ok() {
                    self.policies.insert(dataset, policy);
                }
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
            Reply::Refused => return Step::Failed("the peer refused our request".into()),
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
                match self.next_pull(session, None) {
                    Some(request) => Step::Next(request),
                    None => Step::Done,
                }
            }
            (Response::Records { mut records, more }, Some((shard, range, _))) => {
                let dataset = session.dataset;
                let layout = self
                    .stores
                    .get_mut(&dataset)
                    .map(|s| s.replica_mut().dataset().layout);
                // Records of another shard or outside the range asked: out of protocol.
                let in_place = records.iter().all(|r| {
                    let a = r.annotation();
                    layout.is_some_and(|l| l.shard_of(&a.sample) == shard)
                        && range.contains(&a.annotator)
                });
                if !in_place {
                    return Step::Refused("records outside the shard or range asked for".into());
                }
                // A longer page than this node answers with: its first records now (in chain
                // order, so nothing taken waits for a record left out), the rest at the next
                // pull.
                let more = more || records.len() > PAGE_RECORDS;
                records.truncate(PAGE_RECORDS);
                match self.take(peer, dataset, records) {
                    Ok(taken) => {
                        if taken.new > 0 {
                            self.stats.sync_applied.inc();
                        }
                        if taken.over_quota > 0 {
                            // Later: the next round pulls the rest, within the quotas then.
                            return Step::Failed("over this node's quota of records".into());
                        }
                    }
                    Err(TakeError::Invalid(r)) => {
                        return Step::Refused(format!("an invalid record ({r:?})"));
                    }
                    Err(e) => return Step::Failed(e.to_string()),
                }
                match self.after_page(session, more) {
                    Some(request) => Step::Next(request),
                    None => Step::Done,
                }
            }
            _ => Step::Failed("the peer answered out of protocol".into()),
        }
    }

    fn answer(
        &mut self,
        _peer: PeerId,
        request: Request,
        _cx: &mut Context<Self>,
    ) -> Reply<Response> {
        match request {
            Request::Summary { dataset } => match self.summary(&dataset) {
                Some(digests) => Reply::Ok(Response::Summary(digests)),
                None => Reply::Unknown,
            },
            Request::Pull {
                dataset,
                shard,
                range,
                tips,
            } => self.answer_pull(dataset, shard, range, &tips),
        }
    }

    /// Validates a gossip message and stores its new labels durably before forwarding. Only
    /// what is invalid everywhere is rejected; over a quota, out of order or not admitted is
    /// ignored (never held against the relay: audit N3).
    fn judge(&mut self, gossip: Gossip, _cx: &mut Context<Self>) -> Verdict {
        let Ok(records) = gossip::decode(&gossip.data) else {
            return Verdict::Reject;
        };
        let dataset = gossip.dataset;
        if !self.stores.contains_key(&dataset) {
            // Not a dataset we hold (we are not subscribed, a peer sent it anyway).
            return Verdict::Ignore;
        }
        if records.iter().any(|r| r.annotation().dataset != dataset) {
            return Verdict::Reject;
        }
        match self.take(gossip.peer, dataset, records) {
            Ok(taken) if taken.new > 0 && taken.over_quota == 0 => Verdict::Accept,
            Ok(_) => Verdict::Ignore,
            Err(TakeError::Invalid(_)) => Verdict::Reject,
            Err(e) => {
                tracing::warn!(%dataset, error = %e, "cannot store gossiped labels");
                Verdict::Ignore
            }
        }
    }
}
