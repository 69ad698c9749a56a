//! The service that runs one replicated kind: an actor on a thread of its own (stores fsync;
//! automerge work can take milliseconds) around a `select!` over bounded queues — local commands
//! first (a person waits for the acknowledgement), then what peers sent, then finished work and
//! the anti-entropy timer. It feeds the I/O-free [`AntiEntropy`] core and the kind, and carries
//! out what they ask: sessions as one request at a time through the swarm, gossip to publish,
//! work beside the kind. A task that panics frees what it held and, for a session, counts as a
//! failed session.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use swarmlabel_ids::DatasetId;
use swarmlabel_net::swarm::replication::{Inbound, Verdict};
use swarmlabel_net::swarm::{NetError, Node, RequestError};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinSet};

use super::core::{Action, AntiEntropy, Config, Outcome, SessionId};
use super::stats::Stats;
use super::{Context, Gossip, Replicated, Reply, Step, Wire};

/// Commands queued to a service at most.
const COMMAND_QUEUE: usize = 256;
/// Requests and gossip messages from peers queued at most; more are answered `busy` or ignored
/// by the swarm.
const INBOUND_QUEUE: usize = 256;

/// Settings of a service.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Anti-entropy (rounds, peers, sessions, timeouts, backoff).
    pub anti_entropy: Config,
    /// Seed of the random choice of peers (`None`: from the operating system).
    pub seed: Option<u64>,
}

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The thread, its runtime or the random seed could not be made.
    #[error("cannot start the {kind} service: {reason}")]
    System {
        /// The kind.
        kind: &'static str,
        /// Why.
        reason: String,
    },
    /// The swarm refused the kind.
    #[error(transparent)]
    Net(#[from] NetError),
}

/// The service has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the service has stopped")]
pub struct Stopped;

enum Message<K: Replicated> {
    Command(K::Command),
    Shutdown(oneshot::Sender<()>),
}

/// A handle to a kind's service. Cheap to clone; the service stops when [`Handle::shutdown`] is
/// called or every handle is dropped.
pub struct Handle<K: Replicated> {
    tx: mpsc::Sender<Message<K>>,
    node: Option<Node>,
    stats: Arc<Stats>,
}

impl<K: Replicated> Clone for Handle<K> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            node: self.node.clone(),
            stats: self.stats.clone(),
        }
    }
}

impl<K: Replicated> std::fmt::Debug for Handle<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("kind", &K::KIND.name)
            .finish_non_exhaustive()
    }
}

impl<K: Replicated> Handle<K> {
    /// Starts the service of `kind` on a thread of its own. With a `node`, it registers the kind
    /// with the swarm (requests, gossip and subscriptions come to it), registers its metrics,
    /// and runs anti-entropy; without one it only serves its handle.
    pub async fn start(
        kind: K,
        node: Option<Node>,
        settings: Settings,
    ) -> Result<Self, StartError> {
        let name = K::KIND.name;
        let system = |reason: String| StartError::System { kind: name, reason };
        let (tx, commands) = mpsc::channel(COMMAND_QUEUE);
        let (inbound_tx, inbound) = mpsc::channel(INBOUND_QUEUE);
        let stats = Arc::new(Stats::default());
        if let Some(node) = &node {
            node.with_registry(|r| stats.register(r, name));
        }
        let seed = match settings.seed {
            Some(s) => s,
            None => {
                let mut b = [0u8; 8];
                getrandom::fill(&mut b).map_err(|e| system(e.to_string()))?;
                u64::from_le_bytes(b)
            }
        };
        let mut config = settings.anti_entropy;
        if node.is_none() {
            config.interval = None;
        }
        let actor = Actor {
            kind,
            node: node.clone(),
            core: AntiEntropy::new(config, seed),
            origin: Instant::now(),
            commands,
            inbound,
            tasks: JoinSet::new(),
            owners: HashMap::new(),
            sessions: HashMap::new(),
            stats: stats.clone(),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| system(e.to_string()))?;
        std::thread::Builder::new()
            .name(format!("swarmlabel-{name}"))
            .spawn(move || {
                let run = std::panic::AssertUnwindSafe(|| runtime.block_on(actor.run()));
                if std::panic::catch_unwind(run).is_err() {
                    // A bug. Labelling on without this kind would lose nothing durable but serve
                    // nothing either, silently: stop the node loudly instead, so that its
                    // supervisor restarts it on its durable state (docs/operations.md).
                    tracing::error!(
                        "the {name} service panicked; stopping the node (exit code 70) so that \
                         it restarts with what it stored"
                    );
                    eprintln!("swarmlabel: the {name} service panicked; stopping (exit code 70)");
                    std::process::exit(70);
                }
            })
            .map_err(|e| system(e.to_string()))?;
        if let Some(node) = &node {
            node.attach(K::KIND, inbound_tx).await?;
        }
        Ok(Self { tx, node, stats })
    }

    /// Sends a command and awaits its reply.
    pub async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> K::Command,
    ) -> Result<T, Stopped> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Message::Command(make(reply)))
            .await
            .map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// Subscribes to the kind's topic of `dataset`, so peers sync and gossip it with us (nothing
    /// without a node).
    pub async fn subscribe(&self, dataset: DatasetId) -> Result<(), NetError> {
        match &self.node {
            Some(node) => node.subscribe(K::KIND, dataset).await,
            None => Ok(()),
        }
    }

    /// The connected peers subscribed to the kind's topic of `dataset` (they hold its records;
    /// none without a node).
    pub async fn topic_peers(&self, dataset: DatasetId) -> Result<Vec<PeerId>, NetError> {
        match &self.node {
            Some(node) => node.topic_peers(K::KIND, dataset).await,
            None => Ok(Vec::new()),
        }
    }

    /// The node the service runs beside, if any.
    pub fn node(&self) -> Option<&Node> {
        self.node.as_ref()
    }

    /// What the service counted so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Stops the service (after the command under way).
    pub async fn shutdown(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Message::Shutdown(reply)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// Work finished beside the actor.
enum Task<K: Replicated> {
    Peers {
        dataset: DatasetId,
        peers: Vec<PeerId>,
    },
    Response {
        session: SessionId,
        result: Result<Vec<u8>, RequestError>,
    },
    Event(K::Event),
    Published,
}

/// What a task holds while it runs, so that a task that panicked still frees it.
enum Owner<K: Replicated> {
    Peers(DatasetId),
    Session(SessionId),
    Event(K::Event),
    Published,
}

/// A session this node runs.
struct Active<K: Replicated> {
    peer: PeerId,
    state: K::Session,
    request: Option<AbortHandle>,
}

struct Actor<K: Replicated> {
    kind: K,
    node: Option<Node>,
    core: AntiEntropy<PeerId>,
    origin: Instant,
    commands: mpsc::Receiver<Message<K>>,
    inbound: mpsc::Receiver<Inbound>,
    tasks: JoinSet<Task<K>>,
    owners: HashMap<tokio::task::Id, Owner<K>>,
    sessions: HashMap<SessionId, Active<K>>,
    stats: Arc<Stats>,
}

impl<K: Replicated> Actor<K> {
    async fn run(mut self) {
        self.sync_held();
        loop {
            let wake = self.core.next_wakeup().map(|d| self.origin + d);
            let timer = async move {
                match wake {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                message = self.commands.recv() => match message {
                    Some(Message::Command(command)) => {
                        self.refresh();
                        let mut cx = Context::new();
                        self.kind.command(command, &mut cx);
                        self.apply(cx);
                        self.sync_held();
                    }
                    Some(Message::Shutdown(reply)) => {
                        let _ = reply.send(());
                        break;
                    }
                    // Every handle is gone.
                    None => break,
                },
                Some(inbound) = self.inbound.recv() => {
                    self.refresh();
                    self.on_inbound(inbound);
                }
                Some(done) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    self.refresh();
                    match done {
                        Ok((id, task)) => {
                            self.owners.remove(&id);
                            self.on_task(task);
                        }
                        // A request task aborted with its abandoned session: already ended.
                        Err(e) if e.is_cancelled() => {
                            self.owners.remove(&e.id());
                        }
                        Err(e) => self.on_task_lost(e.id()),
                    }
                }
                () = timer => {
                    self.refresh();
                    let now = self.now();
                    self.core.tick(now);
                }
            }
            self.drive();
        }
        self.tasks.abort_all();
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Lets the kind take in what changed beside it (see [`Replicated::refresh`]).
    fn refresh(&mut self) {
        let mut cx = Context::new();
        self.kind.refresh(&mut cx);
        self.apply(cx);
    }

    /// Tells the core which datasets the kind holds now.
    fn sync_held(&mut self) {
        let held = self.kind.held();
        let gone: Vec<DatasetId> = self
            .core
            .held()
            .iter()
            .filter(|d| !held.contains(d))
            .copied()
            .collect();
        for dataset in gone {
            self.core.release(&dataset);
        }
        for dataset in held {
            self.core.hold(dataset);
        }
    }

    /// Carries out what the core asks until it asks nothing more.
    fn drive(&mut self) {
        loop {
            let actions = self.core.ready();
            if actions.is_empty() {
                return;
            }
            for action in actions {
                match action {
                    Action::Round => {
                        let mut cx = Context::new();
                        self.kind.round(&mut cx);
                        self.apply(cx);
                    }
                    Action::FindPeers { dataset } => self.find_peers(dataset),
                    Action::Start {
                        session,
                        peer,
                        dataset,
                    } => self.begin(session, peer, dataset),
                    Action::Abandon { session } => {
                        if let Some(active) = self.sessions.remove(&session) {
                            if let Some(request) = active.request {
                                request.abort();
                            }
                            tracing::debug!(kind = K::KIND.name, peer = %active.peer, "a session took too long");
                            self.stats.sessions_failed.inc();
                        }
                    }
                }
            }
        }
    }

    fn find_peers(&mut self, dataset: DatasetId) {
        let Some(node) = self.node.clone() else {
            let now = self.now();
            self.core.peers_found(dataset, &[], now);
            return;
        };
        let task = self.tasks.spawn(async move {
            let peers = node.topic_peers(K::KIND, dataset).await.unwrap_or_default();
            Task::Peers { dataset, peers }
        });
        self.owners.insert(task.id(), Owner::Peers(dataset));
    }

    fn begin(&mut self, session: SessionId, peer: PeerId, dataset: DatasetId) {
        let mut cx = Context::new();
        let started = self.kind.begin(peer, dataset, &mut cx);
        self.apply(cx);
        match started {
            Some((state, request)) => {
                self.sessions.insert(
                    session,
                    Active {
                        peer,
                        state,
                        request: None,
                    },
                );
                self.send(session, &request);
            }
            None => self.end(session, Outcome::Completed),
        }
    }

    /// Sends the session's next request; its response comes back as [`Task::Response`].
    fn send(&mut self, session: SessionId, request: &K::Request) {
        let (Some(node), Some(active)) = (self.node.clone(), self.sessions.get(&session)) else {
            self.end(session, Outcome::Failed);
            return;
        };
        let body = match request.encode() {
            Ok(body) => body,
            Err(e) => {
                tracing::warn!(kind = K::KIND.name, error = %e, "a request could not be encoded");
                self.end(session, Outcome::Failed);
                return;
            }
        };
        let peer = active.peer;
        let task = self.tasks.spawn(async move {
            let result = node.replicate(peer, K::KIND, body).await;
            Task::Response { session, result }
        });
        self.owners.insert(task.id(), Owner::Session(session));
        if let Some(active) = self.sessions.get_mut(&session) {
            active.request = Some(task);
        }
    }

    fn end(&mut self, session: SessionId, outcome: Outcome) {
        self.sessions.remove(&session);
        let now = self.now();
        self.core.finished(session, outcome, now);
        match outcome {
            Outcome::Completed => self.stats.sessions_completed.inc(),
            Outcome::Failed => self.stats.sessions_failed.inc(),
        };
    }

    fn on_response(&mut self, session: SessionId, result: Result<Vec<u8>, RequestError>) {
        let Some(active) = self.sessions.get_mut(&session) else {
            // Abandoned: too late.
            return;
        };
        active.request = None;
        let peer = active.peer;
        let reply = match result
            .map_err(|e| e.to_string())
            .and_then(|body| Reply::<K::Response>::decode(&body).map_err(|e| e.to_string()))
        {
            Ok(reply) => reply,
            Err(e) => {
                tracing::debug!(kind = K::KIND.name, %peer, error = %e, "a session failed");
                self.end(session, Outcome::Failed);
                return;
            }
        };
        let mut cx = Context::new();
        let step = self.kind.step(peer, &mut active.state, reply, &mut cx);
        self.apply(cx);
        match step {
            Step::Next(request) => self.send(session, &request),
            Step::Done => self.end(session, Outcome::Completed),
            Step::Failed(reason) => {
                tracing::debug!(kind = K::KIND.name, %peer, %reason, "a session failed");
                self.end(session, Outcome::Failed);
            }
            Step::Refused(reason) => {
                tracing::debug!(kind = K::KIND.name, %peer, %reason, "refused what a peer sent");
                self.stats.sync_refused.inc();
                // Something no honest peer sends: a strike (the third bans it).
                if let Some(node) = &self.node {
                    node.penalise(peer);
                }
                self.end(session, Outcome::Failed);
            }
        }
    }

    fn on_inbound(&mut self, inbound: Inbound) {
        let mut cx = Context::new();
        match inbound {
            Inbound::Request { peer, body, reply } => {
                let answer = match K::Request::decode(&body) {
                    Ok(request) => self.kind.answer(peer, request, &mut cx),
                    Err(e) => {
                        tracing::debug!(kind = K::KIND.name, %peer, error = %e, "refused a request that does not decode");
                        Reply::Refused
                    }
                };
                if matches!(answer, Reply::Refused) {
                    self.stats.sync_refused.inc();
                }
                let body = answer.encode().unwrap_or_else(|e| {
                    tracing::warn!(kind = K::KIND.name, %peer, error = %e, "an answer could not be encoded");
                    Reply::<K::Response>::Busy
                        .encode()
                        .unwrap_or_default()
                });
                let _ = reply.send(body);
            }
            Inbound::Gossip {
                peer,
                author,
                dataset,
                data,
                reply,
            } => {
                let gossip = Gossip {
                    peer,
                    author,
                    dataset,
                    data,
                };
                let verdict = self.kind.judge(gossip, &mut cx);
                match verdict {
                    Verdict::Accept => self.stats.gossip_accepted.inc(),
                    Verdict::Ignore => self.stats.gossip_ignored.inc(),
                    Verdict::Reject => {
                        tracing::debug!(kind = K::KIND.name, %peer, %dataset, "rejected a gossip message");
                        self.stats.gossip_rejected.inc()
                    }
                };
                let _ = reply.send(verdict);
            }
            Inbound::Subscribed { peer, dataset } => {
                let now = self.now();
                self.core.subscribed(peer, dataset, now);
            }
        }
        self.apply(cx);
    }

    fn on_task(&mut self, task: Task<K>) {
        match task {
            Task::Peers { dataset, peers } => {
                let now = self.now();
                self.core.peers_found(dataset, &peers, now);
            }
            Task::Response { session, result } => self.on_response(session, result),
            Task::Event(event) => {
                let mut cx = Context::new();
                self.kind.event(event, &mut cx);
                self.apply(cx);
                self.sync_held();
            }
            Task::Published => {}
        }
    }

    /// A task panicked (a bug): free what it held.
    fn on_task_lost(&mut self, id: tokio::task::Id) {
        tracing::error!(kind = K::KIND.name, "a task of the service panicked");
        match self.owners.remove(&id) {
            Some(Owner::Peers(dataset)) => {
                let now = self.now();
                self.core.peers_found(dataset, &[], now);
            }
            Some(Owner::Session(session)) => {
                if self.sessions.contains_key(&session) {
                    self.end(session, Outcome::Failed);
                }
            }
            Some(Owner::Event(if_lost)) => {
                let mut cx = Context::new();
                self.kind.event(if_lost, &mut cx);
                self.apply(cx);
            }
            Some(Owner::Published) | None => {}
        }
    }

    /// Carries out what a call into the kind asked for.
    fn apply(&mut self, cx: Context<K>) {
        for (work, if_lost) in cx.spawn {
            let task = self.tasks.spawn(async move { Task::Event(work.await) });
            self.owners.insert(task.id(), Owner::Event(if_lost));
        }
        // Called before and after every event: nothing to publish costs no handle clone.
        if cx.publish.is_empty() {
            return;
        }
        let Some(node) = self.node.clone() else {
            return;
        };
        for (dataset, data) in cx.publish {
            let node = node.clone();
            let task = self.tasks.spawn(async move {
                if let Err(e) = node.publish(K::KIND, dataset, data).await {
                    // No peer yet is normal; anti-entropy delivers it later.
                    tracing::debug!(kind = K::KIND.name, %dataset, error = %e, "not published on gossip");
                }
                Task::Published
            });
            self.owners.insert(task.id(), Owner::Published);
        }
    }
}
