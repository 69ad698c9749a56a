//! Models as a replicated kind: the registries of the datasets a node holds, registry
//! anti-entropy (pull by digest, push what the peer lacks), judging model announcements, and the
//! work beside them (weights downloads, merges on blocking threads). The replication layer
//! (`crate::replicate`) runs it; this file holds only what is particular to models.

mod bounds;
mod downloads;
mod merging;
mod publishing;
mod stats;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use libp2p::PeerId;
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use swarmlabel_crdt::AnnotatorKey;
use swarmlabel_crdt::registry::{
    Architecture, Inserted, Registry, SignedUpdate, Validation, WeightsHash,
};
use swarmlabel_ids::DatasetId;
use swarmlabel_net::swarm::Node;
use swarmlabel_net::swarm::replication::{Kind, Verdict};
use swarmlabel_store::home::Home;
use swarmlabel_store::identity::Identity;
use swarmlabel_store::store::BlobId;
use tokio::sync::{oneshot, watch};

use super::merged::{MergedError, MergedModel, Screen};
use super::service::{Config, Current, ModelsError};
use super::store;
use super::wire::{self, MAX_ANNOUNCEMENT_LEN, Request, Response};
use crate::replicate::{Context, Gossip, Replicated, Reply, Step};

pub(crate) use downloads::Fetched;
pub(crate) use stats::Stats;

/// Download hints remembered at most (which peer announced which weights).
const MAX_HINTS: usize = 4_096;

/// What the models handle asks of the service.
#[derive(Debug)]
pub(crate) enum Command {
    Open {
        dataset: DatasetId,
        reply: oneshot::Sender<Result<(), ModelsError>>,
    },
    Publish {
        dataset: DatasetId,
        hash: BlobId,
        size: u64,
        labels_trained: u64,
        architecture: Architecture,
        validation: Validation,
        reply: oneshot::Sender<Result<SignedUpdate, ModelsError>>,
    },
    Watch {
        dataset: DatasetId,
        reply: oneshot::Sender<Result<watch::Receiver<Current>, ModelsError>>,
    },
    Registry {
        dataset: DatasetId,
        reply: oneshot::Sender<Result<Registry, ModelsError>>,
    },
    Problem {
        dataset: DatasetId,
        reply: oneshot::Sender<Result<Option<String>, ModelsError>>,
    },
    SetScreen {
        dataset: DatasetId,
        screen: Option<Screen>,
        reply: oneshot::Sender<Result<(), ModelsError>>,
    },
    FollowPolicy {
        dataset: DatasetId,
        policy: watch::Receiver<crate::policy::InForce>,
        reply: oneshot::Sender<Result<(), ModelsError>>,
    },
}

/// Work finished beside the kind.
pub(crate) enum Event {
    Fetched {
        dataset: DatasetId,
        hash: WeightsHash,
        fetched: Fetched,
    },
    Merged {
        dataset: DatasetId,
        result: Option<Result<MergedModel, MergedError>>,
    },
    /// A blob-serving change reached the swarm.
    Served,
    /// Weights no longer in force were deleted: the bytes freed.
    Collected { removed: Result<u64, String> },
    /// A registry's deferred save is due.
    SaveDue { dataset: DatasetId },
}

/// The models of one open dataset.
struct Held {
    registry: Registry,
    merged: watch::Sender<Current>,
    problem: Option<String>,
    screen: Option<Screen>,
    /// The owner's policy in force: updates of keys it does not admit are not merged.
    policy: crate::policy::InForce,
    merging: bool,
    dirty: bool,
    /// When the registry was last saved, and whether a save waits for [`SAVE_INTERVAL`] to pass.
    saved_at: Option<std::time::Instant>,
    save_waiting: bool,
}

/// A registry is saved at most once in this long: under a flood of updates its file (a cache of
/// what peers hold, which anti-entropy brings back) is not rewritten and fsynced for each.
const SAVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// One registry sync session this node runs.
#[derive(Debug)]
pub(crate) enum Session {
    /// We sent our digest.
    Pulled { dataset: DatasetId },
    /// We pushed our records.
    Pushed,
}

/// The model registries of a node and the work on their weights.
pub(crate) struct Registries {
    home: Home,
    identity: Identity,
    me_key: AnnotatorKey,
    node: Option<Node>,
    config: Config,
    rng: ChaCha8Rng,
    stats: Arc<Stats>,
    held: HashMap<DatasetId, Held>,
    /// The owner's policy of each dataset, as the policy kind keeps it in force, also of those
    /// not open yet (applied when they open).
    policies: HashMap<DatasetId, watch::Receiver<crate::policy::InForce>>,
    /// Weights in the blob store, verified when stored.
    have: HashSet<WeightsHash>,
    fetching: HashSet<WeightsHash>,
    /// Superseded weights to delete: a removal runs beside the service at most once at a time,
    /// and what comes meanwhile waits here for the next one (one pass over the saved
    /// registries for many updates, not one for each).
    collect: bounds::Collect,
    /// Downloads that found no peer with the weights: tried again at the next round, or when
    /// someone announces them.
    failed: HashSet<WeightsHash>,
    hints: HashMap<WeightsHash, PeerId>,
}

impl Registries {
    /// Puts the owner's policy of `dataset` in force, if its models are open: the merged model
    /// is computed again without the updates of keys it does not admit.
    fn put_in_force(
        &mut self,
        dataset: DatasetId,
        policy: crate::policy::InForce,
        cx: &mut Context<Self>,
    ) {
        if self.with_held(dataset, |h| h.policy = policy).is_ok() {
            self.mark_dirty(dataset, cx);
        }
    }

    pub(crate) fn new(
        home: Home,
        identity: Identity,
        node: Option<Node>,
        config: Config,
        seed: u64,
        stats: Arc<Stats>,
    ) -> Self {
        Self {
            me_key: identity.public_key(),
            home,
            identity,
            node,
            config,
            rng: ChaCha8Rng::seed_from_u64(seed),
            stats,
            held: HashMap::new(),
            policies: HashMap::new(),
            have: HashSet::new(),
            fetching: HashSet::new(),
            collect: bounds::Collect::default(),
            failed: HashSet::new(),
            hints: HashMap::new(),
        }
    }

    fn open(&mut self, dataset: DatasetId, cx: &mut Context<Self>) -> Result<(), ModelsError> {
        if self.held.contains_key(&dataset) {
            return Ok(());
        }
        let (registry, problems) = store::load(&self.home, dataset)?;
        for problem in problems {
            tracing::warn!(%dataset, "model registry: {problem}");
        }
        let blobs = self.home.blobs();
        let held: Vec<WeightsHash> = registry
            .latest()
            .map(|u| u.weights_hash)
            // Re-hashed: a crash may have left a file cut short (weights are at most 64 MiB).
            .filter(|h| blobs.check(h).is_ok())
            .collect();
        self.have.extend(held.iter().copied());
        self.serve(held, cx);
        let (merged, _) = watch::channel(None);
        self.held.insert(
            dataset,
            Held {
                registry,
                merged,
                problem: None,
                screen: None,
                policy: self.policies.get(&dataset).and_then(|p| p.borrow().clone()),
                merging: false,
                dirty: false,
                saved_at: None,
                save_waiting: false,
            },
        );
        self.fetch_missing(dataset, cx);
        self.mark_dirty(dataset, cx);
        Ok(())
    }

    fn hint(&mut self, hash: WeightsHash, peer: PeerId) {
        if self.hints.len() >= MAX_HINTS {
            self.hints.clear();
        }
        self.failed.remove(&hash);
        self.hints.insert(hash, peer);
    }

    /// Merges a verified registry from `peer` into ours; acts on what changed.
    fn absorb(
        &mut self,
        dataset: DatasetId,
        theirs: &Registry,
        peer: PeerId,
        cx: &mut Context<Self>,
    ) {
        let Some(held) = self.held.get_mut(&dataset) else {
            return;
        };
        let before = bounds::Before::of(&held.registry);
        if held.registry.merge(theirs).is_err() {
            return;
        }
        let new: Vec<WeightsHash> = theirs
            .latest()
            .map(|u| u.weights_hash)
            .filter(|h| !self.have.contains(h))
            .collect();
        for hash in new {
            self.hint(hash, peer);
        }
        self.settle(dataset, before, cx);
    }

    /// Persists the registry (now, or once [`SAVE_INTERVAL`] has passed since the last save),
    /// fetches missing weights, and recomputes the merged model.
    fn registry_changed(&mut self, dataset: DatasetId, cx: &mut Context<Self>) {
        if let Some(held) = self.held.get_mut(&dataset) {
            let now = std::time::Instant::now();
            match held.saved_at.map(|at| at + SAVE_INTERVAL) {
                Some(due) if due > now => {
                    if !held.save_waiting {
                        held.save_waiting = true;
                        let wait = due - now;
                        cx.spawn(
                            async move {
                                tokio::time::sleep(wait).await;
                                Event::SaveDue { dataset }
                            },
                            Event::SaveDue { dataset },
                        );
                    }
                }
                _ => self.save(dataset),
            }
        }
        self.fetch_missing(dataset, cx);
        self.mark_dirty(dataset, cx);
    }

    fn save(&mut self, dataset: DatasetId) {
        let Some(held) = self.held.get_mut(&dataset) else {
            return;
        };
        held.saved_at = Some(std::time::Instant::now());
        held.save_waiting = false;
        if let Err(e) = store::save(&self.home, &held.registry) {
            // Kept in memory; the next change or anti-entropy writes it again.
            tracing::warn!(%dataset, error = %e, "cannot save the model registry");
        }
    }

    fn with_held<T>(
        &mut self,
        dataset: DatasetId,
        f: impl FnOnce(&mut Held) -> T,
    ) -> Result<T, ModelsError> {
        self.held
            .get_mut(&dataset)
            .map(f)
            .ok_or(ModelsError::NotOpen(dataset))
    }
}

impl Replicated for Registries {
    const KIND: Kind = wire::KIND;
    type Request = Request;
    type Response = Response;
    type Session = Session;
    type Command = Command;
    type Event = Event;

    fn held(&self) -> Vec<DatasetId> {
        self.held.keys().copied().collect()
    }

    fn refresh(&mut self, cx: &mut Context<Self>) {
        for (dataset, policy) in crate::policy::changed(&mut self.policies) {
            self.put_in_force(dataset, policy, cx);
        }
    }

    fn command(&mut self, command: Command, cx: &mut Context<Self>) {
        match command {
            Command::Open { dataset, reply } => {
                let _ = reply.send(self.open(dataset, cx));
            }
            Command::Publish {
                dataset,
                hash,
                size,
                labels_trained,
                architecture,
                validation,
                reply,
            } => {
                let update = (hash, size, labels_trained, architecture, validation);
                let _ = reply.send(self.publish(dataset, update, cx));
            }
            Command::Watch { dataset, reply } => {
                let _ = reply.send(self.with_held(dataset, |h| h.merged.subscribe()));
            }
            Command::Registry { dataset, reply } => {
                let _ = reply.send(self.with_held(dataset, |h| h.registry.clone()));
            }
            Command::Problem { dataset, reply } => {
                let _ = reply.send(self.with_held(dataset, |h| h.problem.clone()));
            }
            Command::SetScreen {
                dataset,
                screen,
                reply,
            } => {
                let result = self.with_held(dataset, |h| h.screen = screen);
                if result.is_ok() {
                    self.mark_dirty(dataset, cx);
                }
                let _ = reply.send(result);
            }
            Command::FollowPolicy {
                dataset,
                mut policy,
                reply,
            } => {
                let in_force = policy.borrow_and_update().clone();
                self.policies.insert(dataset, policy);
                self.put_in_force(dataset, in_force, cx);
                let _ = reply.send(Ok(()));
            }
        }
    }

    fn event(&mut self, event: Event, cx: &mut Context<Self>) {
        match event {
            Event::Fetched {
                dataset,
                hash,
                fetched,
            } => self.on_fetched(dataset, hash, fetched, cx),
            Event::Merged { dataset, result } => self.on_merged(dataset, result, cx),
            Event::Served => {}
            Event::SaveDue { dataset } => self.save(dataset),
            Event::Collected { removed } => {
                match removed {
                    Ok(bytes) => {
                        self.stats.weights_removed_bytes.inc_by(bytes);
                    }
                    // Left for `swarmlabel gc`, which removes every weight no registry has in
                    // force.
                    Err(e) => tracing::warn!(error = %e, "cannot delete superseded model weights"),
                }
                self.collect.running = false;
                self.start_collection(cx);
            }
        }
    }

    /// Retries the downloads that failed, at each round.
    fn round(&mut self, cx: &mut Context<Self>) {
        self.failed.clear();
        let datasets: Vec<DatasetId> = self.held.keys().copied().collect();
        for dataset in datasets {
            self.fetch_missing(dataset, cx);
        }
    }

    fn begin(
        &mut self,
        _peer: PeerId,
        dataset: DatasetId,
        _cx: &mut Context<Self>,
    ) -> Option<(Session, Request)> {
        let held = self.held.get(&dataset)?;
        let request = Request::Pull {
            dataset,
            digest: held.registry.digest(),
        };
        Some((Session::Pulled { dataset }, request))
    }

    fn step(
        &mut self,
        peer: PeerId,
        session: &mut Session,
        reply: Reply<Response>,
        cx: &mut Context<Self>,
    ) -> Step<Request> {
        match (reply, &*session) {
            (Reply::Ok(Response::Same), _) => Step::Done,
            (Reply::Ok(Response::Records(records)), Session::Pulled { dataset }) => {
                let dataset = *dataset;
                let theirs = match wire::registry_of(dataset, &records) {
                    Ok(theirs) => theirs,
                    Err(e) => return Step::Refused(format!("a model record does not verify: {e}")),
                };
                self.absorb(dataset, &theirs, peer, cx);
                let Some(held) = self.held.get(&dataset) else {
                    return Step::Done;
                };
                // After the merge we hold the union: push when the peer lacks some of it.
                if held.registry.digest() == theirs.digest() {
                    return Step::Done;
                }
                let records = wire::records_of(&held.registry);
                *session = Session::Pushed;
                Step::Next(Request::Push { dataset, records })
            }
            (Reply::Unknown, _) => {
                Step::Failed("the peer does not hold this dataset's models".into())
            }
            (Reply::Refused, _) => Step::Failed("the peer refused our records".into()),
            (Reply::Busy, _) => Step::Failed("the peer is busy".into()),
            (Reply::Ok(Response::Records(_)), Session::Pushed) => {
                Step::Failed("the peer answered out of protocol".into())
            }
        }
    }

    fn answer(
        &mut self,
        peer: PeerId,
        request: Request,
        cx: &mut Context<Self>,
    ) -> Reply<Response> {
        match request {
            Request::Pull { dataset, digest } => match self.held.get(&dataset) {
                None => Reply::Unknown,
                Some(h) if h.registry.digest() == digest => Reply::Ok(Response::Same),
                Some(h) => Reply::Ok(Response::Records(wire::records_of(&h.registry))),
            },
            Request::Push { dataset, records } => {
                if !self.held.contains_key(&dataset) {
                    return Reply::Unknown;
                }
                match wire::registry_of(dataset, &records) {
                    Err(e) => {
                        tracing::debug!(%peer, %dataset, "refused pushed model records: {e}");
                        Reply::Refused
                    }
                    Ok(theirs) => {
                        self.absorb(dataset, &theirs, peer, cx);
                        Reply::Ok(Response::Same)
                    }
                }
            }
        }
    }

    /// Validates an announcement and stores it durably before it is forwarded.
    fn judge(&mut self, gossip: Gossip, cx: &mut Context<Self>) -> Verdict {
        let dataset = gossip.dataset;
        if !self.held.contains_key(&dataset) {
            return Verdict::Ignore;
        }
        if self.config.gossip_drop_probability > 0.0
            && self.rng.random::<f64>() < self.config.gossip_drop_probability
        {
            // Also counted as ignored, the verdict gossipsub gets.
            self.stats.gossip_dropped.inc();
            return Verdict::Ignore;
        }
        if gossip.data.len() > MAX_ANNOUNCEMENT_LEN {
            return Verdict::Reject;
        }
        let Ok(update) = SignedUpdate::from_bytes(&gossip.data) else {
            return Verdict::Reject;
        };
        let hash = update.update().weights_hash;
        let Some(held) = self.held.get_mut(&dataset) else {
            return Verdict::Ignore;
        };
        let before = bounds::Before::of(&held.registry);
        match held.registry.insert(update) {
            Err(_) => Verdict::Reject,
            Ok(Inserted::New | Inserted::Replaced { .. } | Inserted::Equivocation) => {
                self.hint(hash, gossip.author.unwrap_or(gossip.peer));
                if self.settle(dataset, before, cx) {
                    Verdict::Accept
                } else {
                    // Refused by the policy or the cap: not forwarded either.
                    Verdict::Ignore
                }
            }
            Ok(_) => Verdict::Ignore,
        }
    }
}
