//! The labels actor: owns the stores, answers the handle, the network and the sessions.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use libp2p::PeerId;
use rand::SeedableRng as _;
use rand_chacha::ChaCha8Rng;
use swarmlabel_crdt::sync::{State, SyncError};
use swarmlabel_crdt::{Annotations, DatasetId, RecordError, ShardId, SignedAnnotation};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::session::{self, Outcome};
use super::{Config, LabelsError, Stats, node_id, open_store};
use crate::home::Home;
use crate::labels::{LabelStore, LabelStoreError, gossip, plan};
use crate::net::labels::{Inbound, Verdict};
use crate::net::{Node, sync};

/// Sync states kept at most (peers × datasets × shards × role); past it they are all forgotten,
/// which costs only a fuller exchange in the next session with each peer.
const MAX_SYNC_STATES: usize = 65_536;

pub(super) enum Message {
    Open {
        dataset: swarmlabel_crdt::Dataset,
        reply: oneshot::Sender<Result<(), LabelsError>>,
    },
    Record {
        signed: SignedAnnotation,
        reply: oneshot::Sender<Result<(), LabelsError>>,
    },
    Read {
        dataset: DatasetId,
        reply: oneshot::Sender<Result<Annotations, LabelsError>>,
    },
    /// A session's request: our shard digests of a dataset (`None`: not open).
    Summary {
        dataset: DatasetId,
        reply: oneshot::Sender<Option<Vec<sync::Digest>>>,
    },
    /// A session's request: our next sync message to `peer` for a shard.
    Generate {
        peer: PeerId,
        dataset: DatasetId,
        shard: ShardId,
        new_round: bool,
        reply: oneshot::Sender<Option<Vec<u8>>>,
    },
    /// A session's request: apply `peer`'s sync message for a shard (durably).
    Receive {
        peer: PeerId,
        dataset: DatasetId,
        shard: ShardId,
        message: Vec<u8>,
        reply: oneshot::Sender<Result<(), session::Error>>,
    },
    Shutdown(oneshot::Sender<()>),
}

/// Which side of a session a sync state belongs to: a peer may sync with us while we sync with
/// it, and automerge's state must not mix the two exchanges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Role {
    Initiator,
    Responder,
}

type StateKey = (PeerId, DatasetId, ShardId, Role);

/// Work finished beside the actor.
pub(super) enum Done {
    /// The peers that hold a dataset's labels, for a round.
    Candidates {
        dataset: DatasetId,
        peers: Vec<PeerId>,
    },
    /// A session ended.
    Session { peer: PeerId, outcome: Outcome },
}

pub(super) struct LabelsActor {
    home: Home,
    node: Option<Node>,
    config: Config,
    rng: ChaCha8Rng,
    commands: mpsc::Receiver<Message>,
    me: mpsc::WeakSender<Message>,
    inbound: mpsc::Receiver<Inbound>,
    stats: Arc<Stats>,
    stores: HashMap<DatasetId, LabelStore>,
    states: HashMap<StateKey, State>,
    tasks: JoinSet<Done>,
    in_session: HashSet<PeerId>,
    /// Datasets whose candidate peers are being asked for (one request each at a time, so a
    /// busy swarm actor cannot pile them up).
    looking: HashSet<DatasetId>,
    /// What each task is for, so that a task that panicked still frees its peer or dataset.
    owners: HashMap<tokio::task::Id, Owner>,
}

/// What a task holds while it runs.
#[derive(Debug, Clone, Copy)]
enum Owner {
    Candidates(DatasetId),
    Session(PeerId),
}

impl LabelsActor {
    #[allow(clippy::too_many_arguments)] // Wiring, called once by `Labels::start`.
    pub(super) fn new(
        home: Home,
        node: Option<Node>,
        config: Config,
        seed: u64,
        commands: mpsc::Receiver<Message>,
        me: mpsc::WeakSender<Message>,
        inbound: mpsc::Receiver<Inbound>,
        stats: Arc<Stats>,
    ) -> Self {
        Self {
            home,
            node,
            config,
            rng: ChaCha8Rng::seed_from_u64(seed),
            commands,
            me,
            inbound,
            stats,
            stores: HashMap::new(),
            states: HashMap::new(),
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
                // Local work first: a person waits for the acknowledgement.
                command = self.commands.recv() => match command {
                    Some(Message::Shutdown(reply)) => {
                        let _ = reply.send(());
                        break;
                    }
                    Some(command) => self.on_message(command),
                    // Every handle is gone.
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
                let result = if self.stores.contains_key(&dataset.id) {
                    Ok(())
                } else {
                    open_store(&self.home, dataset)
                        .map(|store| {
                            self.stores.insert(dataset.id, store);
                        })
                        .map_err(LabelsError::from)
                };
                let _ = reply.send(result);
            }
            Message::Record { signed, reply } => {
                let _ = reply.send(self.record(signed));
            }
            Message::Read { dataset, reply } => {
                let result = self
                    .stores
                    .get_mut(&dataset)
                    .map(LabelStore::read)
                    .ok_or(LabelsError::NotOpen(dataset));
                let _ = reply.send(result);
            }
            Message::Summary { dataset, reply } => {
                let _ = reply.send(self.summary(&dataset));
            }
            Message::Generate {
                peer,
                dataset,
                shard,
                new_round,
                reply,
            } => {
                let message = self.generate((peer, dataset, shard, Role::Initiator), new_round);
                let _ = reply.send(message);
            }
            Message::Receive {
                peer,
                dataset,
                shard,
                message,
                reply,
            } => {
                let result = self
                    .receive((peer, dataset, shard, Role::Initiator), &message)
                    .map_err(session::Error::from);
                let _ = reply.send(result);
            }
            Message::Shutdown(_) => unreachable!("handled in run"),
        }
    }

    fn record(&mut self, signed: SignedAnnotation) -> Result<(), LabelsError> {
        let dataset = signed.annotation().dataset;
        let store = self
            .stores
            .get_mut(&dataset)
            .ok_or(LabelsError::NotOpen(dataset))?;
        store.record(&signed)?;
        Stats::bump(&self.stats.recorded);
        if self.config.gossip_push
            && let Some(node) = self.node.clone()
            && let Some(data) = gossip::encode(&[signed])
        {
            // Off the actor: the swarm actor's queue may be momentarily full.
            tokio::spawn(async move {
                if let Err(e) = node.publish_labels(node_id(&dataset), data).await {
                    // No peer yet is normal; anti-entropy delivers it later.
                    tracing::debug!(%dataset, error = %e, "label not pushed on gossip");
                }
            });
        }
        Ok(())
    }

    fn summary(&mut self, dataset: &DatasetId) -> Option<Vec<sync::Digest>> {
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
                    Stats::bump(&self.stats.sync_applied);
                    store.persist(shard)?;
                }
                Ok(())
            }
            Err(e) => {
                Stats::bump(&self.stats.sync_refused);
                tracing::debug!(peer = %key.0, error = %e, "refused a sync message");
                Err(ReceiveError::Refused(e))
            }
        }
    }

    fn on_inbound(&mut self, inbound: Inbound) {
        match inbound {
            Inbound::Sync {
                peer,
                request,
                reply,
            } => {
                let response = self.answer(peer, request);
                let _ = reply.send(response);
            }
            Inbound::Gossip {
                peer,
                dataset,
                data,
                reply,
            } => {
                let verdict = self.judge(&DatasetId(dataset.0.0), &data);
                match verdict {
                    Verdict::Accept => Stats::bump(&self.stats.gossip_accepted),
                    Verdict::Ignore => Stats::bump(&self.stats.gossip_ignored),
                    Verdict::Reject => {
                        tracing::debug!(%peer, "rejected a label gossip message");
                        Stats::bump(&self.stats.gossip_rejected);
                    }
                }
                let _ = reply.send(verdict);
            }
        }
    }

    fn answer(&mut self, peer: PeerId, request: sync::Request) -> sync::Response {
        match request {
            sync::Request::Summary { dataset } => match self.summary(&DatasetId(dataset.0.0)) {
                Some(digests) => sync::Response::Summary(digests),
                None => sync::Response::Unknown,
            },
            sync::Request::Sync {
                dataset,
                shard,
                new_round,
                message,
            } => {
                let dataset = DatasetId(dataset.0.0);
                let Some(store) = self.stores.get_mut(&dataset) else {
                    return sync::Response::Unknown;
                };
                let shard = ShardId(shard);
                if !store.replica_mut().dataset().layout.contains(shard) {
                    return sync::Response::Refused;
                }
                let key = (peer, dataset, shard, Role::Responder);
                if new_round {
                    self.state(key).new_round();
                }
                if !message.is_empty() {
                    match self.receive(key, &message) {
                        Ok(()) => {}
                        Err(ReceiveError::Refused(_)) => return sync::Response::Refused,
                        Err(ReceiveError::NotOpen) => return sync::Response::Unknown,
                        // Our disk failed: the peer retries in a later round.
                        Err(ReceiveError::Store(e)) => {
                            tracing::warn!(%dataset, error = %e, "cannot store synced labels");
                            return sync::Response::Busy;
                        }
                    }
                }
                sync::Response::Sync(self.generate(key, false).unwrap_or_default())
            }
        }
    }

    /// Validates a gossip message and stores its new labels durably before forwarding.
    fn judge(&mut self, dataset: &DatasetId, data: &[u8]) -> Verdict {
        let Ok(records) = gossip::decode(data) else {
            return Verdict::Reject;
        };
        let Some(store) = self.stores.get_mut(dataset) else {
            // Not a dataset we hold (we are not subscribed, a peer sent it anyway).
            return Verdict::Ignore;
        };
        let mut any_new = false;
        for signed in &records {
            let before = store
                .replica_mut()
                .get(&signed.annotation().sample, &signed.annotation().annotator);
            match store.record(signed) {
                Ok(()) => any_new |= before.as_ref() != Some(signed),
                // Valid but older than what is held: not worth forwarding.
                Err(LabelStoreError::Record(RecordError::NotNewer { .. })) => {}
                Err(LabelStoreError::Record(_)) => return Verdict::Reject,
                Err(e) => {
                    tracing::warn!(%dataset, error = %e, "cannot store gossiped labels");
                    return Verdict::Ignore;
                }
            }
        }
        if any_new {
            Verdict::Accept
        } else {
            Verdict::Ignore
        }
    }

    fn start_round(&mut self) {
        let Some(node) = self.node.clone() else {
            return;
        };
        for dataset in self.stores.keys().copied() {
            if !self.looking.insert(dataset) {
                continue;
            }
            let node = node.clone();
            let task = self.tasks.spawn(async move {
                let peers = node
                    .label_peers(node_id(&dataset))
                    .await
                    .unwrap_or_default();
                Done::Candidates { dataset, peers }
            });
            self.owners.insert(task.id(), Owner::Candidates(dataset));
        }
    }

    /// A task panicked (a bug): free what it held so the peer or dataset is synced again.
    fn on_task_lost(&mut self, id: tokio::task::Id) {
        tracing::error!("a labels sync task panicked");
        match self.owners.remove(&id) {
            Some(Owner::Candidates(dataset)) => {
                self.looking.remove(&dataset);
            }
            Some(Owner::Session(peer)) => {
                self.in_session.remove(&peer);
                Stats::bump(&self.stats.sessions_failed);
            }
            None => {}
        }
    }

    fn on_done(&mut self, done: Done) {
        match done {
            Done::Candidates { dataset, peers } => {
                self.looking.remove(&dataset);
                let room = self
                    .config
                    .max_sessions
                    .saturating_sub(self.in_session.len());
                let k = self.config.peers_per_round.min(room);
                let picked = plan::pick_peers(&peers, &self.in_session, k, &mut self.rng);
                let Some(node) = self.node.clone() else {
                    return;
                };
                for peer in picked {
                    self.in_session.insert(peer);
                    let run = session::run(
                        node.clone(),
                        self.me.clone(),
                        peer,
                        dataset,
                        self.config.max_steps_per_shard,
                    );
                    let timeout = self.config.session_timeout;
                    let task = self.tasks.spawn(async move {
                        let outcome = tokio::time::timeout(timeout, run)
                            .await
                            .unwrap_or(Err(session::Error::Timeout));
                        Done::Session { peer, outcome }
                    });
                    self.owners.insert(task.id(), Owner::Session(peer));
                }
            }
            Done::Session { peer, outcome } => {
                self.in_session.remove(&peer);
                match outcome {
                    Ok(_) => Stats::bump(&self.stats.sessions_completed),
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "anti-entropy session failed");
                        Stats::bump(&self.stats.sessions_failed);
                    }
                }
            }
        }
    }
}

/// Why applying a peer's message failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum ReceiveError {
    #[error("the dataset is not open")]
    NotOpen,
    #[error(transparent)]
    Refused(SyncError),
    #[error(transparent)]
    Store(#[from] LabelStoreError),
}
