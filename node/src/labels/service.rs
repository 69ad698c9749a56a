//! The labels service of a node: one actor that owns the [`LabelStore`]s of the datasets whose
//! labels the node holds, fed by the local API (labels recorded here) and by the network (sync
//! requests, gossip), and that runs anti-entropy with peers.
//!
//! [`Labels`] is the cheap, cloneable handle. The actor runs on a thread of its own (stores
//! fsync; automerge work can take milliseconds), around a `select!` over its bounded queues:
//! local commands first, then what peers sent, then finished sessions and the anti-entropy timer.
//! Sync sessions with peers run as tasks beside it and ask it for each message, so a slow or
//! hostile peer holds up only its own session (each step is bounded by the sync request timeout,
//! each session by [`Config::session_timeout`], and there is one session per peer at a time).

mod actor;
mod session;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use swarmlabel_crdt::{Annotations, SignedAnnotation};
use tokio::sync::{mpsc, oneshot};

use super::{LabelStore, LabelStoreError};
use crate::home::Home;
use crate::net::{NetError, Node};

/// Commands queued to the labels actor at most.
const COMMAND_QUEUE: usize = 256;
/// Requests and gossip messages from peers queued at most; more are answered `Busy` or ignored.
const INBOUND_QUEUE: usize = 256;

/// Settings of the labels service.
#[derive(Debug, Clone)]
pub struct Config {
    /// How often an anti-entropy round starts; `None` turns anti-entropy off (gossip alone).
    pub anti_entropy_interval: Option<Duration>,
    /// Whether labels recorded here are pushed on gossip at once.
    pub gossip_push: bool,
    /// Peers synced with per dataset and round at most.
    pub peers_per_round: usize,
    /// Sync sessions under way at most (one per peer at a time).
    pub max_sessions: usize,
    /// How long one session with a peer may take.
    pub session_timeout: Duration,
    /// Messages exchanged per shard and session at most (automerge needs a handful).
    pub max_steps_per_shard: usize,
    /// Seed of the random choice of peers (`None`: from the operating system).
    pub seed: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            anti_entropy_interval: Some(Duration::from_secs(30)),
            gossip_push: true,
            peers_per_round: 3,
            max_sessions: 4,
            session_timeout: Duration::from_secs(120),
            max_steps_per_shard: 32,
            seed: None,
        }
    }
}

/// Errors of the labels service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabelsError {
    /// The dataset's labels are not open on this node.
    #[error("the labels of dataset {0} are not open on this node; open the dataset first")]
    NotOpen(swarmlabel_crdt::DatasetId),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] LabelStoreError),
    /// The network failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The service could not start.
    #[error("cannot start the labels service: {0}")]
    Start(String),
    /// The service has stopped.
    #[error("the labels service has stopped")]
    Stopped,
}

/// Counts of what the service did since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Labels recorded locally (acknowledged: durable).
    pub recorded: u64,
    /// Gossip messages accepted (valid, stored, forwarded).
    pub gossip_accepted: u64,
    /// Gossip messages rejected as invalid (bad framing, signature, slot, dataset, label).
    pub gossip_rejected: u64,
    /// Gossip messages ignored (a dataset not held, nothing new).
    pub gossip_ignored: u64,
    /// Sync messages from peers refused by screening (nothing of them was applied).
    pub sync_refused: u64,
    /// Sync messages from peers that changed a shard (made durable before going on).
    pub sync_applied: u64,
    /// Anti-entropy sessions completed.
    pub sessions_completed: u64,
    /// Anti-entropy sessions that failed (timeout, refusal, unreachable peer).
    pub sessions_failed: u64,
}

/// The counters, shared with the node's Prometheus registry (`swarmlabel_labels_*`).
#[derive(Debug, Default)]
struct Stats {
    recorded: Counter,
    gossip_accepted: Counter,
    gossip_rejected: Counter,
    gossip_ignored: Counter,
    sync_refused: Counter,
    sync_applied: Counter,
    sessions_completed: Counter,
    sessions_failed: Counter,
}

impl Stats {
    fn bump(counter: &Counter) {
        counter.inc();
    }

    fn snapshot(&self) -> Counters {
        Counters {
            recorded: self.recorded.get(),
            gossip_accepted: self.gossip_accepted.get(),
            gossip_rejected: self.gossip_rejected.get(),
            gossip_ignored: self.gossip_ignored.get(),
            sync_refused: self.sync_refused.get(),
            sync_applied: self.sync_applied.get(),
            sessions_completed: self.sessions_completed.get(),
            sessions_failed: self.sessions_failed.get(),
        }
    }

    fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("swarmlabel_labels");
        let series: [(&str, &str, &Counter); 8] = [
            (
                "recorded",
                "Labels recorded on this node (durable)",
                &self.recorded,
            ),
            (
                "gossip_accepted",
                "Label gossip messages accepted",
                &self.gossip_accepted,
            ),
            (
                "gossip_rejected",
                "Label gossip messages rejected as invalid",
                &self.gossip_rejected,
            ),
            (
                "gossip_ignored",
                "Label gossip messages ignored",
                &self.gossip_ignored,
            ),
            (
                "sync_refused",
                "Label sync messages from peers refused by screening",
                &self.sync_refused,
            ),
            (
                "sync_applied",
                "Label sync messages from peers that changed a shard",
                &self.sync_applied,
            ),
            (
                "sessions_completed",
                "Anti-entropy sessions completed",
                &self.sessions_completed,
            ),
            (
                "sessions_failed",
                "Anti-entropy sessions failed",
                &self.sessions_failed,
            ),
        ];
        for (name, help, counter) in series {
            r.register(name, help, counter.clone());
        }
    }
}

/// A handle to a node's labels service. Cheap to clone; the service stops when
/// [`Labels::shutdown`] is called or every handle is dropped.
#[derive(Debug, Clone)]
pub struct Labels {
    tx: mpsc::Sender<actor::Message>,
    node: Option<Node>,
    stats: Arc<Stats>,
}

impl Labels {
    /// Starts the service for `home`. With a `node`, it takes the node's label sync requests and
    /// label gossip, pushes local labels on gossip and runs anti-entropy; without one it only
    /// stores.
    pub async fn start(
        home: Home,
        node: Option<Node>,
        config: Config,
    ) -> Result<Labels, LabelsError> {
        let (tx, commands) = mpsc::channel(COMMAND_QUEUE);
        let (inbound_tx, inbound) = mpsc::channel(INBOUND_QUEUE);
        let stats = Arc::new(Stats::default());
        if let Some(node) = &node {
            node.with_registry(|r| stats.register(r));
        }
        let seed = match config.seed {
            Some(s) => s,
            None => {
                let mut b = [0u8; 8];
                getrandom::fill(&mut b).map_err(|e| LabelsError::Start(e.to_string()))?;
                u64::from_le_bytes(b)
            }
        };
        let actor = actor::LabelsActor::new(
            home,
            node.clone(),
            config,
            seed,
            commands,
            tx.downgrade(),
            inbound,
            stats.clone(),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| LabelsError::Start(e.to_string()))?;
        std::thread::Builder::new()
            .name("swarmlabel-labels".into())
            .spawn(move || runtime.block_on(actor.run()))
            .map_err(|e| LabelsError::Start(e.to_string()))?;
        if let Some(node) = &node {
            node.attach_labels(inbound_tx).await?;
        }
        Ok(Labels { tx, node, stats })
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> actor::Message,
    ) -> Result<T, LabelsError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| LabelsError::Stopped)?;
        rx.await.map_err(|_| LabelsError::Stopped)
    }

    /// Opens the labels of `dataset` (loading its store from the home) and, with a node,
    /// subscribes to its label topic so peers sync and gossip them with us. Opening again does
    /// nothing.
    pub async fn open(&self, dataset: swarmlabel_crdt::Dataset) -> Result<(), LabelsError> {
        self.call(|reply| actor::Message::Open { dataset, reply })
            .await??;
        if let Some(node) = &self.node {
            node.subscribe_labels(node_id(&dataset.id)).await?;
        }
        Ok(())
    }

    /// Records a signed annotation of an open dataset; returns once it is durable, then pushes it
    /// on gossip (when configured).
    pub async fn record(&self, signed: SignedAnnotation) -> Result<(), LabelsError> {
        self.call(|reply| actor::Message::Record { signed, reply })
            .await?
    }

    /// Every valid annotation of an open dataset, with counts of what was ignored.
    pub async fn read(
        &self,
        dataset: swarmlabel_crdt::DatasetId,
    ) -> Result<Annotations, LabelsError> {
        self.call(|reply| actor::Message::Read { dataset, reply })
            .await?
    }

    /// What the service did so far.
    pub fn counters(&self) -> Counters {
        self.stats.snapshot()
    }

    /// Stops the service (stores are durable at every acknowledgement; nothing is lost).
    pub async fn shutdown(&self) {
        let _ = self.call(actor::Message::Shutdown).await;
    }
}

/// The node's id of a crdt dataset id (the same 32 bytes).
pub(crate) fn node_id(id: &swarmlabel_crdt::DatasetId) -> crate::dataset::DatasetId {
    crate::dataset::DatasetId(crate::store::BlobId(id.0))
}

/// Opens a store; kept here so the actor file stays about the actor.
pub(crate) fn open_store(
    home: &Home,
    dataset: swarmlabel_crdt::Dataset,
) -> Result<LabelStore, LabelStoreError> {
    let (store, recovery) = LabelStore::open(home, dataset)?;
    for damaged in &recovery.damaged {
        tracing::warn!(dataset = %dataset.id, "{damaged}");
    }
    Ok(store)
}
