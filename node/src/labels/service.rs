//! The labels service of a node: the replication layer (`crate::replicate`) running labels
//! ([`super::replicated::Stores`]): one actor on its own thread owns the [`LabelStore`]s of the
//! datasets whose labels the node holds, fed by the local API (labels recorded here) and by the
//! network (sync requests, gossip), and runs anti-entropy with peers.
//!
//! [`Labels`] is the cheap, cloneable handle. A slow or hostile peer holds up only its own
//! session: each request is bounded by the sync request timeout, each session by
//! [`crate::replicate::core::Config::session_timeout`], one session per peer at a time.

use std::sync::Arc;

use swarmlabel_crdt::{Annotations, SampleId, SignedAnnotation, Suggestion, Value};
use swarmlabel_net::swarm::{NetError, Node};
use swarmlabel_store::home::Home;

use super::replicated::{self, Command, Stores};
use super::{LabelStore, LabelStoreError};
use crate::replicate::{self, Handle, core};

/// A human's answer for this node to sign (see [`Labels::record_own`]).
#[derive(Debug, Clone, Copy)]
pub struct Own {
    /// The sample.
    pub sample: SampleId,
    /// The answer.
    pub value: Value,
    /// The model's suggestion shown, if any.
    pub suggestion: Option<Suggestion>,
    /// When the human answered (ms since 1970).
    pub time_ms: u64,
}

/// Settings of the labels service.
#[derive(Debug, Clone)]
pub struct Config {
    /// Anti-entropy: how often a round starts (`interval: None` turns it off: gossip alone), with
    /// how many peers, sessions at once, their timeout, the backoff of failing peers.
    pub anti_entropy: core::Config,
    /// Whether labels recorded here are pushed on gossip at once.
    pub gossip_push: bool,
    /// Pages pulled per range of a shard in one session at most (the next round goes on): 128
    /// pages of [`super::wire::PAGE_RECORDS`], 16,384 records.
    pub max_pages_per_shard: usize,
    /// Seed of the random choice of peers (`None`: from the operating system).
    pub seed: Option<u64>,
    /// How many records this node takes from each connected peer, of each annotator, and from
    /// all peers together, by gossip and sync alike (see [`super::intake`]). Over a quota,
    /// records are left for a later round, never held against the sender.
    pub intake: super::intake::Limits,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            anti_entropy: core::Config::default(),
            gossip_push: true,
            max_pages_per_shard: 128,
            seed: None,
            intake: super::intake::Limits::default(),
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
    #[error(transparent)]
    Start(#[from] replicate::StartError),
    /// The service has stopped.
    #[error("the labels service has stopped")]
    Stopped,
    /// The home's key could not be read, so this node cannot sign labels.
    #[error("this node's key could not be read, so it cannot sign labels; check HOME/key")]
    NoKey,
}

impl From<replicate::Stopped> for LabelsError {
    fn from(_: replicate::Stopped) -> Self {
        LabelsError::Stopped
    }
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
    /// Gossip messages ignored (a dataset not held, nothing new, over a quota).
    pub gossip_ignored: u64,
    /// Pages or requests from peers refused (an invalid record, out of protocol).
    pub sync_refused: u64,
    /// Pages pulled from peers that held new records (made durable before going on).
    pub sync_applied: u64,
    /// Records from peers left for later because a quota was spent.
    pub over_quota: u64,
    /// Anti-entropy sessions completed.
    pub sessions_completed: u64,
    /// Anti-entropy sessions that failed (timeout, refusal, unreachable peer).
    pub sessions_failed: u64,
}

/// A handle to a node's labels service. Cheap to clone; the service stops when
/// [`Labels::shutdown`] is called or every handle is dropped.
#[derive(Debug, Clone)]
pub struct Labels {
    handle: Handle<Stores>,
    stats: Arc<replicated::Stats>,
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
        let stats = Arc::new(replicated::Stats::default());
        if let Some(node) = &node {
            node.with_registry(|r| stats.register(r));
        }
        let stores = Stores::new(
            home,
            config.gossip_push,
            config.max_pages_per_shard,
            stats.clone(),
            config.intake,
        );
        let settings = replicate::Settings {
            anti_entropy: config.anti_entropy,
            seed: config.seed,
        };
        let handle = Handle::start(stores, node, settings).await?;
        Ok(Labels { handle, stats })
    }

    /// Opens the labels of `dataset` (loading its store from the home) and, with a node,
    /// subscribes to its label topic so peers sync and gossip them with us. Opening again does
    /// nothing.
    pub async fn open(&self, dataset: swarmlabel_crdt::Dataset) -> Result<(), LabelsError> {
        self.open_with(dataset, None).await
    }

    /// [`Labels::open`], taking only annotations of `samples` (the manifest's, from
    /// [`super::samples_of`]) from the API and from peers when given. A node always gives them.
    pub async fn open_with(
        &self,
        dataset: swarmlabel_crdt::Dataset,
        samples: Option<Arc<swarmlabel_crdt::Samples>>,
    ) -> Result<(), LabelsError> {
        self.handle
            .call(|reply| Command::Open {
                dataset,
                samples,
                reply,
            })
            .await??;
        self.handle.subscribe(dataset.id).await?;
        Ok(())
    }

    /// Signs this node's human's answer with the node's key at the next place of its chain in
    /// an open dataset and records it; returns the record once it is durable, then pushes it on
    /// gossip (when configured). The one way a node labels: the API, the simulator, the demo
    /// and the test harness all come through here.
    pub async fn record_own(
        &self,
        dataset: swarmlabel_crdt::DatasetId,
        answer: Own,
    ) -> Result<SignedAnnotation, LabelsError> {
        self.handle
            .call(|reply| Command::RecordOwn {
                dataset,
                answer,
                reply,
            })
            .await?
    }

    /// Records an annotation signed elsewhere (by its annotator, at its chain's next place) in
    /// an open dataset; returns once it is durable, then pushes it on gossip (when configured).
    pub async fn record(&self, signed: SignedAnnotation) -> Result<(), LabelsError> {
        self.handle
            .call(|reply| Command::Record { signed, reply })
            .await?
    }

    /// Keeps an open dataset under the owner's policy in force, as `policy` (the policy kind's
    /// watch) says it is now and whenever it changes: annotations of keys it does not admit are
    /// refused from then on and no longer read (see [`crate::policy`]).
    pub async fn follow_policy(
        &self,
        dataset: swarmlabel_crdt::DatasetId,
        policy: tokio::sync::watch::Receiver<crate::policy::InForce>,
    ) -> Result<(), LabelsError> {
        self.handle
            .call(|reply| Command::FollowPolicy {
                dataset,
                policy,
                reply,
            })
            .await?
    }

    /// Every valid annotation of an open dataset, with counts of what was ignored.
    pub async fn read(
        &self,
        dataset: swarmlabel_crdt::DatasetId,
    ) -> Result<Annotations, LabelsError> {
        self.handle
            .call(|reply| Command::Read { dataset, reply })
            .await?
    }

    /// A receiver whose value (a count of changes) moves whenever the labels of an open
    /// `dataset` change: recorded here, accepted from gossip or applied by a sync.
    pub async fn watch(
        &self,
        dataset: swarmlabel_crdt::DatasetId,
    ) -> Result<tokio::sync::watch::Receiver<u64>, LabelsError> {
        self.handle
            .call(|reply| Command::Watch { dataset, reply })
            .await?
    }

    /// The connected peers that hold `dataset`'s labels (subscribed to its label topic).
    pub async fn peers(
        &self,
        dataset: swarmlabel_crdt::DatasetId,
    ) -> Result<Vec<libp2p::PeerId>, LabelsError> {
        Ok(self.handle.topic_peers(dataset).await?)
    }

    /// What the service did so far.
    pub fn counters(&self) -> Counters {
        let common = self.handle.stats();
        Counters {
            recorded: self.stats.recorded.get(),
            gossip_accepted: common.gossip_accepted.get(),
            gossip_rejected: common.gossip_rejected.get(),
            gossip_ignored: common.gossip_ignored.get(),
            sync_refused: common.sync_refused.get(),
            sync_applied: self.stats.sync_applied.get(),
            over_quota: self.stats.over_quota.get(),
            sessions_completed: common.sessions_completed.get(),
            sessions_failed: common.sessions_failed.get(),
        }
    }

    /// Stops the service (stores are durable at every acknowledgement; nothing is lost).
    pub async fn shutdown(&self) {
        self.handle.shutdown().await;
    }
}

/// Opens a store, logging what its recovery found.
pub(crate) fn open_store(
    home: &Home,
    dataset: swarmlabel_crdt::Dataset,
    samples: Option<Arc<swarmlabel_crdt::Samples>>,
) -> Result<LabelStore, LabelStoreError> {
    let (store, recovery) = LabelStore::open_with(home, dataset, samples)?;
    for damaged in &recovery.damaged {
        tracing::warn!(dataset = %dataset.id, "{damaged}");
    }
    Ok(store)
}
