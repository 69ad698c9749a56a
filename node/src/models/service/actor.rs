//! The models actor: owns the registries, answers the handle and the network, and starts the
//! work beside it (weight downloads, sync sessions, merges on blocking threads).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use libp2p::PeerId;
use rand::seq::IndexedRandom as _;
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use swarmlabel_crdt::AnnotatorKey;
use swarmlabel_crdt::registry::{
    Architecture, Inserted, ModelUpdate, Registry, SignedUpdate, Validation, WeightsHash,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use super::session::{self, Fetched};
use super::{Config, Current, ModelsError, Stats, crdt_id};
use crate::dataset::DatasetId;
use crate::home::Home;
use crate::identity::Identity;
use crate::models::merged::{MergedError, MergedModel, Screen};
use crate::models::store;
use crate::net::Node;
use crate::net::labels::Verdict;
use crate::net::models::{Inbound, MAX_ANNOUNCEMENT_LEN, Request, Response};
use crate::store::BlobId;

mod downloads;
mod merging;

/// Download hints remembered at most (which peer announced which weights).
const MAX_HINTS: usize = 4_096;

pub(super) enum Message {
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
    Shutdown(oneshot::Sender<()>),
}

/// What the actor is built from.
pub(super) struct Wiring {
    pub(super) home: Home,
    pub(super) identity: Identity,
    pub(super) node: Option<Node>,
    pub(super) config: Config,
    pub(super) seed: u64,
    pub(super) commands: mpsc::Receiver<Message>,
    pub(super) inbound: mpsc::Receiver<Inbound>,
    pub(super) stats: Arc<Stats>,
}

/// The models of one open dataset.
struct Held {
    registry: Registry,
    merged: watch::Sender<Current>,
    problem: Option<String>,
    screen: Option<Screen>,
    merging: bool,
    dirty: bool,
}

/// Work finished beside the actor.
enum Done {
    Candidates {
        dataset: DatasetId,
        peers: Vec<PeerId>,
    },
    Session {
        peer: PeerId,
        dataset: DatasetId,
        outcome: Result<Option<Registry>, session::Error>,
    },
    Fetched {
        dataset: DatasetId,
        hash: WeightsHash,
        fetched: Fetched,
    },
    Merged {
        dataset: DatasetId,
        result: Option<Result<MergedModel, MergedError>>,
    },
}

/// What a task holds while it runs, so that a task that panicked still frees it.
#[derive(Debug, Clone, Copy)]
enum Owner {
    Candidates(DatasetId),
    Session(PeerId),
    Fetch(WeightsHash),
    Merge(DatasetId),
}

pub(super) struct ModelsActor {
    home: Home,
    identity: Identity,
    me_key: AnnotatorKey,
    node: Option<Node>,
    config: Config,
    rng: ChaCha8Rng,
    commands: mpsc::Receiver<Message>,
    inbound: mpsc::Receiver<Inbound>,
    stats: Arc<Stats>,
    held: HashMap<DatasetId, Held>,
    /// Weights in the blob store, verified when stored.
    have: HashSet<WeightsHash>,
    fetching: HashSet<WeightsHash>,
    /// Downloads that found no peer with the weights: tried again at the next round, or when
    /// someone announces them.
    failed: HashSet<WeightsHash>,
    hints: HashMap<WeightsHash, PeerId>,
    tasks: JoinSet<Done>,
    in_session: HashSet<PeerId>,
    looking: HashSet<DatasetId>,
    owners: HashMap<tokio::task::Id, Owner>,
}

impl ModelsActor {
    pub(super) fn new(w: Wiring) -> Self {
        Self {
            me_key: AnnotatorKey(w.identity.public_key().0),
            home: w.home,
            identity: w.identity,
            node: w.node,
            config: w.config,
            rng: ChaCha8Rng::seed_from_u64(w.seed),
            commands: w.commands,
            inbound: w.inbound,
            stats: w.stats,
            held: HashMap::new(),
            have: HashSet::new(),
            fetching: HashSet::new(),
            failed: HashSet::new(),
            hints: HashMap::new(),
            tasks: JoinSet::new(),
            in_session: HashSet::new(),
            looking: HashSet::new(),
            owners: HashMap::new(),
        }
    }

    pub(super) async fn run(mut self) {
        let period = self
            .config
            .anti_entropy_interval
            .filter(|_| self.node.is_some());
        let mut tick =
            tokio::time::interval(period.unwrap_or(std::time::Duration::from_secs(3600)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                command = self.commands.recv() => match command {
                    Some(Message::Shutdown(reply)) => {
                        let _ = reply.send(());
                        break;
                    }
                    Some(command) => self.on_message(command),
                    None => break,
                },
                Some(inbound) = self.inbound.recv() => self.on_inbound(inbound),
                Some(done) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    match done {
                        Ok((id, done)) => {
                            self.owners.remove(&id);
                            self.on_done(done);
                        }
                        Err(e) => self.on_task_lost(e.id()),
                    }
                }
                _ = tick.tick(), if period.is_some() => self.start_round(),
            }
        }
        self.tasks.abort_all();
    }

    fn on_message(&mut self, message: Message) {
        match message {
            Message::Open { dataset, reply } => {
                let _ = reply.send(self.open(dataset));
            }
            Message::Publish {
                dataset,
                hash,
                size,
                labels_trained,
                architecture,
                validation,
                reply,
            } => {
                let update = (hash, size, labels_trained, architecture, validation);
                let _ = reply.send(self.publish(dataset, update));
            }
            Message::Watch { dataset, reply } => {
                let result = self
                    .held
                    .get(&dataset)
                    .map(|h| h.merged.subscribe())
                    .ok_or(ModelsError::NotOpen(dataset));
                let _ = reply.send(result);
            }
            Message::Registry { dataset, reply } => {
                let result = self
                    .held
                    .get(&dataset)
                    .map(|h| h.registry.clone())
                    .ok_or(ModelsError::NotOpen(dataset));
                let _ = reply.send(result);
            }
            Message::Problem { dataset, reply } => {
                let result = self
                    .held
                    .get(&dataset)
                    .map(|h| h.problem.clone())
                    .ok_or(ModelsError::NotOpen(dataset));
                let _ = reply.send(result);
            }
            Message::SetScreen {
                dataset,
                screen,
                reply,
            } => {
                let result = match self.held.get_mut(&dataset) {
                    Some(held) => {
                        held.screen = screen;
                        self.mark_dirty(dataset);
                        Ok(())
                    }
                    None => Err(ModelsError::NotOpen(dataset)),
                };
                let _ = reply.send(result);
            }
            Message::Shutdown(_) => unreachable!("handled in run"),
        }
    }

    fn open(&mut self, dataset: DatasetId) -> Result<(), ModelsError> {
        if self.held.contains_key(&dataset) {
            return Ok(());
        }
        let (registry, problems) = store::load(&self.home, crdt_id(&dataset))?;
        for problem in problems {
            tracing::warn!(%dataset, "model registry: {problem}");
        }
        let blobs = self.home.blobs();
        let held: Vec<WeightsHash> = registry
            .latest()
            .map(|u| u.weights_hash)
            // Re-hashed: a crash may have left a file cut short (weights are at most 64 MiB).
            .filter(|h| blobs.check(&BlobId(h.0)).is_ok())
            .collect();
        self.have.extend(held.iter().copied());
        self.serve(held);
        let (merged, _) = watch::channel(None);
        self.held.insert(
            dataset,
            Held {
                registry,
                merged,
                problem: None,
                screen: None,
                merging: false,
                dirty: false,
            },
        );
        self.fetch_missing(dataset);
        self.mark_dirty(dataset);
        Ok(())
    }

    fn publish(
        &mut self,
        dataset: DatasetId,
        (hash, size, labels_trained, architecture, validation): (
            BlobId,
            u64,
            u64,
            Architecture,
            Validation,
        ),
    ) -> Result<SignedUpdate, ModelsError> {
        let held = self
            .held
            .get(&dataset)
            .ok_or(ModelsError::NotOpen(dataset))?;
        let version = held
            .registry
            .get(&self.me_key)
            .map_or(1, |e| e.latest().update().version + 1);
        let update = ModelUpdate {
            dataset: crdt_id(&dataset),
            peer: self.me_key,
            version,
            labels_trained,
            architecture,
            weights_hash: WeightsHash(hash.0),
            weights_bytes: size,
            validation,
        };
        let signed = SignedUpdate::sign(update, &self.identity)?;
        let mut registry = held.registry.clone();
        registry.insert(signed.clone())?;
        store::save(&self.home, &registry)?;
        if let Some(held) = self.held.get_mut(&dataset) {
            held.registry = registry;
        }
        self.stats.published.inc();
        self.have.insert(WeightsHash(hash.0));
        self.serve(vec![WeightsHash(hash.0)]);
        if let Some(node) = self.node.clone() {
            let data = signed.to_bytes();
            // Off the actor: the swarm actor's queue may be momentarily full.
            tokio::spawn(async move {
                if let Err(e) = node.publish_model(dataset, data).await {
                    // No peer yet is normal; anti-entropy delivers it later.
                    tracing::debug!(%dataset, error = %e, "model update not announced on gossip");
                }
            });
        }
        self.mark_dirty(dataset);
        Ok(signed)
    }

    /// Serves weights to peers over the blob protocol.
    fn serve(&self, hashes: Vec<WeightsHash>) {
        if let (Some(node), false) = (self.node.clone(), hashes.is_empty()) {
            let ids = hashes.into_iter().map(|h| BlobId(h.0)).collect();
            tokio::spawn(async move {
                let _ = node.serve_blobs(ids, true).await;
            });
        }
    }

    fn on_inbound(&mut self, inbound: Inbound) {
        match inbound {
            Inbound::Gossip {
                peer,
                author,
                dataset,
                data,
                reply,
            } => {
                let verdict = self.judge(dataset, author.unwrap_or(peer), &data);
                match verdict {
                    Verdict::Accept => self.stats.gossip_accepted.inc(),
                    Verdict::Ignore => self.stats.gossip_ignored.inc(),
                    Verdict::Reject => {
                        tracing::debug!(%peer, %dataset, "rejected a model announcement");
                        self.stats.gossip_rejected.inc()
                    }
                };
                let _ = reply.send(verdict);
            }
            Inbound::Sync {
                peer,
                request,
                reply,
            } => {
                let _ = reply.send(self.answer(peer, request));
            }
            Inbound::Subscribed { peer, dataset } => {
                if self.held.contains_key(&dataset) {
                    self.start_session(peer, dataset);
                }
            }
        }
    }

    /// Validates an announcement and stores it durably before it is forwarded.
    fn judge(&mut self, dataset: DatasetId, author: PeerId, data: &[u8]) -> Verdict {
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
        if data.len() > MAX_ANNOUNCEMENT_LEN {
            return Verdict::Reject;
        }
        let Ok(update) = SignedUpdate::from_bytes(data) else {
            return Verdict::Reject;
        };
        let hash = update.update().weights_hash;
        let Some(held) = self.held.get_mut(&dataset) else {
            return Verdict::Ignore;
        };
        match held.registry.insert(update) {
            Err(_) => Verdict::Reject,
            Ok(Inserted::New | Inserted::Replaced { .. } | Inserted::Equivocation) => {
                self.hint(hash, author);
                self.registry_changed(dataset);
                Verdict::Accept
            }
            Ok(_) => Verdict::Ignore,
        }
    }

    fn hint(&mut self, hash: WeightsHash, peer: PeerId) {
        if self.hints.len() >= MAX_HINTS {
            self.hints.clear();
        }
        self.failed.remove(&hash);
        self.hints.insert(hash, peer);
    }

    fn answer(&mut self, peer: PeerId, request: Request) -> Response {
        match request {
            Request::Pull { dataset, digest } => match self.held.get(&dataset) {
                None => Response::Unknown,
                Some(h) if h.registry.digest() == digest => Response::Same,
                Some(h) => Response::Records(session::wire_records(&h.registry)),
            },
            Request::Push { dataset, records } => {
                if !self.held.contains_key(&dataset) {
                    return Response::Unknown;
                }
                match session::registry_of(dataset, &records) {
                    Err(e) => {
                        tracing::debug!(%peer, %dataset, "refused pushed model records: {e}");
                        self.stats.sync_refused.inc();
                        Response::Refused
                    }
                    Ok(theirs) => {
                        self.absorb(dataset, &theirs, peer);
                        Response::Same
                    }
                }
            }
        }
    }

    /// Merges a verified registry from `peer` into ours; acts on what changed.
    fn absorb(&mut self, dataset: DatasetId, theirs: &Registry, peer: PeerId) {
        let Some(held) = self.held.get_mut(&dataset) else {
            return;
        };
        let before = held.registry.digest();
        if held.registry.merge(theirs).is_err() || held.registry.digest() == before {
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
        self.registry_changed(dataset);
    }

    /// Persists the registry, fetches missing weights, and recomputes the merged model.
    fn registry_changed(&mut self, dataset: DatasetId) {
        if let Some(held) = self.held.get(&dataset)
            && let Err(e) = store::save(&self.home, &held.registry)
        {
            // Kept in memory; the next change or anti-entropy writes it again.
            tracing::warn!(%dataset, error = %e, "cannot save the model registry");
        }
        self.fetch_missing(dataset);
        self.mark_dirty(dataset);
    }

    /// A new anti-entropy round: for each dataset, ask for the peers that hold it (the answer
    /// comes back as `Done::Candidates`), and retry downloads that failed.
    fn start_round(&mut self) {
        let Some(node) = self.node.clone() else {
            return;
        };
        self.failed.clear();
        let datasets: Vec<DatasetId> = self.held.keys().copied().collect();
        for dataset in datasets {
            self.fetch_missing(dataset);
            if !self.looking.insert(dataset) {
                continue;
            }
            let node = node.clone();
            let task = self.tasks.spawn(async move {
                let peers = node.model_peers(dataset).await.unwrap_or_default();
                Done::Candidates { dataset, peers }
            });
            self.owners.insert(task.id(), Owner::Candidates(dataset));
        }
    }

    fn start_session(&mut self, peer: PeerId, dataset: DatasetId) {
        let Some(node) = self.node.clone() else {
            return;
        };
        if self.in_session.contains(&peer) || self.in_session.len() >= self.config.max_sessions {
            return;
        }
        let Some(held) = self.held.get(&dataset) else {
            return;
        };
        self.in_session.insert(peer);
        let ours = held.registry.clone();
        let task = self.tasks.spawn(async move {
            let outcome = session::sync(node, peer, dataset, ours).await;
            Done::Session {
                peer,
                dataset,
                outcome,
            }
        });
        self.owners.insert(task.id(), Owner::Session(peer));
    }

    fn on_done(&mut self, done: Done) {
        match done {
            Done::Candidates { dataset, peers } => {
                self.looking.remove(&dataset);
                let free: Vec<PeerId> = peers
                    .into_iter()
                    .filter(|p| !self.in_session.contains(p))
                    .collect();
                let picked: Vec<PeerId> = free
                    .choose_multiple(&mut self.rng, self.config.peers_per_round)
                    .copied()
                    .collect();
                for peer in picked {
                    self.start_session(peer, dataset);
                }
            }
            Done::Session {
                peer,
                dataset,
                outcome,
            } => {
                self.in_session.remove(&peer);
                match outcome {
                    Ok(theirs) => {
                        self.stats.sessions_completed.inc();
                        if let Some(theirs) = theirs {
                            self.absorb(dataset, &theirs, peer);
                        }
                    }
                    Err(e) => {
                        if matches!(e, session::Error::Refused(_)) {
                            self.stats.sync_refused.inc();
                        }
                        tracing::debug!(%peer, %dataset, error = %e, "model registry sync failed");
                        self.stats.sessions_failed.inc();
                    }
                }
            }
            Done::Fetched {
                dataset,
                hash,
                fetched,
            } => self.on_fetched(dataset, hash, fetched),
            Done::Merged { dataset, result } => self.on_merged(dataset, result),
        }
    }

    fn on_task_lost(&mut self, id: tokio::task::Id) {
        match self.owners.remove(&id) {
            Some(Owner::Candidates(dataset)) => {
                self.looking.remove(&dataset);
            }
            Some(Owner::Session(peer)) => {
                self.in_session.remove(&peer);
            }
            Some(Owner::Fetch(hash)) => {
                self.fetching.remove(&hash);
            }
            Some(Owner::Merge(dataset)) => self.on_merged(dataset, None),
            None => {}
        }
    }
}
