//! The models service of a node: the replication layer (`crate::replicate`) running models
//! ([`super::replicated::Registries`]): one actor on its own thread owns the model registries of
//! the datasets whose models the node holds, fed by the local API ([`Models::publish`]) and by
//! the network (gossip announcements, registry sync requests); it fetches the weights of new
//! updates, runs registry anti-entropy with peers, and recomputes the merged model on a blocking
//! thread whenever the registry or the held weights change.
//!
//! [`Models`] is the cheap, cloneable handle.

use std::sync::Arc;
use std::time::Duration;

use swarmlabel_crdt::registry::merge::Method;
use swarmlabel_crdt::registry::{Architecture, Registry, SignedUpdate, Validation};
use tokio::sync::watch;

use super::merged::{MergedModel, Screen};
use super::replicated::{self, Command, Registries};
use super::store::ModelStoreError;
use crate::replicate::{self, Handle, core};
use swarmlabel_net::swarm::{NetError, Node};
use swarmlabel_store::dataset::DatasetId;
use swarmlabel_store::home::Home;

/// What the merged model of a dataset is now: `None` until one can be made.
pub type Current = Option<Arc<MergedModel>>;

/// Settings of the models service.
#[derive(Debug, Clone)]
pub struct Config {
    /// How coordinates are merged. Default: trimmed mean dropping 20 % on each side, which keeps
    /// the merged weights within the range of the honest values as long as fewer than a fifth of
    /// the peers send anything at all (a weighted mean lets one peer move them anywhere), while
    /// averaging more updates than the median does.
    pub method: Method,
    /// The architecture to merge (`None`: the most common among the updates in force; naming it
    /// stops sybil peers from swaying the choice).
    pub architecture: Option<Architecture>,
    /// The largest weights file accepted, published or fetched (64 MiB by default; at most the
    /// blob protocol's limit of 64 MiB).
    pub max_weights_bytes: u64,
    /// Registry anti-entropy: every 10 s by default (`interval: None` turns it off: gossip
    /// alone), with how many peers, sessions at once, their timeout, the backoff of failing
    /// peers.
    pub anti_entropy: core::Config,
    /// Weight downloads under way at most.
    pub max_fetches: usize,
    /// Peers kept in a dataset's registry at most (1,024 by default): updates of further new
    /// peers are dropped, counted in `swarmlabel_models_entries_refused` (see the allowlist for
    /// keeping Sybils out).
    pub max_entries: usize,
    /// Bytes of weights kept per dataset at most (1 GiB by default): the weights of further
    /// updates are not fetched, and their updates are left out of the merge.
    pub max_dataset_weights_bytes: u64,
    /// Fault injection for tests and simulations, off (0.0) by default: the probability that an
    /// inbound model announcement is dropped (ignored, not stored nor forwarded) as if gossip had
    /// lost it. Counted in `swarmlabel_models_gossip_dropped`.
    pub gossip_drop_probability: f64,
    /// Seed of the random choices (peers per round, drops); `None`: from the operating system.
    pub seed: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            method: Method::TrimmedMean { trim: 0.2 },
            architecture: None,
            max_weights_bytes: 64 << 20,
            anti_entropy: core::Config {
                interval: Some(Duration::from_secs(10)),
                ..core::Config::default()
            },
            max_fetches: 4,
            max_entries: 1_024,
            max_dataset_weights_bytes: 1 << 30,
            gossip_drop_probability: 0.0,
            seed: None,
        }
    }
}

/// A merge method name that is not one of those [`parse_method`] knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown merge method `{0}`; use `trimmed-mean` (20 % each side), `trimmed-mean:F` with F in \
     [0, 0.5), `median` or `weighted-mean`"
)]
pub struct MethodError(pub String);

/// Parses a merge method as a config file or flag spells it: `trimmed-mean` (the default, 20 %
/// trimmed on each side), `trimmed-mean:0.1`, `median` or `weighted-mean`.
pub fn parse_method(name: &str) -> Result<Method, MethodError> {
    let bad = || MethodError(name.to_owned());
    match name {
        "median" => Ok(Method::Median),
        "weighted-mean" => Ok(Method::WeightedMean),
        "trimmed-mean" => Ok(Method::TrimmedMean { trim: 0.2 }),
        _ => {
            let trim: f64 = name
                .strip_prefix("trimmed-mean:")
                .and_then(|t| t.parse().ok())
                .ok_or_else(bad)?;
            if (0.0..0.5).contains(&trim) {
                Ok(Method::TrimmedMean { trim })
            } else {
                Err(bad())
            }
        }
    }
}

/// Errors of the models service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelsError {
    /// The dataset's models are not open on this node.
    #[error("the models of dataset {0} are not open on this node; open them first")]
    NotOpen(DatasetId),
    /// The weights to publish are too large.
    #[error(
        "the weights are {bytes} bytes, more than the {max} allowed; raise max_weights_bytes or \
         publish a smaller model"
    )]
    TooLarge {
        /// Their size.
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// The weights to publish are not float32 safetensors.
    #[error(transparent)]
    Weights(#[from] super::weights::WeightsError),
    /// The update could not be signed (it names another peer than the node's key).
    #[error(transparent)]
    Sign(#[from] swarmlabel_crdt::registry::update::SignError),
    /// The update was refused by the registry (out-of-range validation figures).
    #[error(transparent)]
    Verify(#[from] swarmlabel_crdt::registry::VerifyError),
    /// The registry file could not be written or read.
    #[error(transparent)]
    Store(#[from] ModelStoreError),
    /// The weights could not be stored.
    #[error("cannot store the model weights: {0}")]
    Blob(String),
    /// The network failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The service could not start.
    #[error("cannot start the models service: {0}")]
    Start(String),
    /// The service has stopped.
    #[error("the models service has stopped")]
    Stopped,
}

impl From<replicate::Stopped> for ModelsError {
    fn from(_: replicate::Stopped) -> Self {
        ModelsError::Stopped
    }
}

/// Counts of what the service did since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Updates published by this node.
    pub published: u64,
    /// Announcements accepted (valid and new: stored, forwarded).
    pub gossip_accepted: u64,
    /// Announcements rejected as invalid (framing, signature, dataset, size).
    pub gossip_rejected: u64,
    /// Announcements ignored (known, stale, dataset not held, or dropped by fault
    /// injection).
    pub gossip_ignored: u64,
    /// Announcements dropped by fault injection ([`Config::gossip_drop_probability`]).
    pub gossip_dropped: u64,
    /// Weights files fetched and verified.
    pub weights_fetched: u64,
    /// Weights files from peers refused (wrong hash or size).
    pub weights_rejected: u64,
    /// Registry sync sessions completed.
    pub sessions_completed: u64,
    /// Registry sync sessions failed (timeout, refusal, unreachable peer).
    pub sessions_failed: u64,
    /// Registry sync messages from peers refused (a record that does not verify).
    pub sync_refused: u64,
    /// Merged models computed.
    pub merges: u64,
}

/// What to publish: the model trained by this node.
#[derive(Debug, Clone)]
pub struct Publication {
    /// The dataset.
    pub dataset: DatasetId,
    /// The weights: a float32 safetensors file.
    pub weights: Vec<u8>,
    /// How many labels it was trained on (its weight in a weighted mean).
    pub labels_trained: u64,
    /// What model the weights are weights of.
    pub architecture: Architecture,
    /// Its figures on this node's held-out labels.
    pub validation: Validation,
}

/// A handle to a node's models service. Cheap to clone; the service stops when
/// [`Models::shutdown`] is called or every handle is dropped.
#[derive(Debug, Clone)]
pub struct Models {
    handle: Handle<Registries>,
    home: Home,
    max_weights_bytes: u64,
    stats: Arc<replicated::Stats>,
}

impl Models {
    /// Starts the service for `home` (whose key signs this node's updates). With a `node`, it
    /// takes the node's model gossip and registry sync requests, announces and fetches weights,
    /// and runs anti-entropy; without one it only stores and merges.
    pub async fn start(
        home: Home,
        node: Option<Node>,
        config: Config,
    ) -> Result<Models, ModelsError> {
        let identity = home
            .identity()
            .map_err(|e| ModelsError::Start(e.to_string()))?;
        let stats = Arc::new(replicated::Stats::default());
        if let Some(node) = &node {
            node.with_registry(|r| stats.register(r));
        }
        let seed = match config.seed {
            Some(s) => s,
            None => {
                let mut b = [0u8; 8];
                getrandom::fill(&mut b).map_err(|e| ModelsError::Start(e.to_string()))?;
                u64::from_le_bytes(b)
            }
        };
        let max_weights_bytes = config.max_weights_bytes;
        let settings = replicate::Settings {
            anti_entropy: config.anti_entropy.clone(),
            seed: Some(seed),
        };
        let registries = Registries::new(
            home.clone(),
            identity,
            node.clone(),
            config,
            seed,
            stats.clone(),
        );
        let handle = Handle::start(registries, node, settings)
            .await
            .map_err(|e| ModelsError::Start(e.to_string()))?;
        Ok(Models {
            handle,
            home,
            max_weights_bytes,
            stats,
        })
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(tokio::sync::oneshot::Sender<T>) -> Command,
    ) -> Result<T, ModelsError> {
        Ok(self.handle.call(make).await?)
    }

    /// Opens the models of `dataset`: loads its registry from the home, serves the weights held,
    /// computes the merged model and, with a node, subscribes to its model topic. Opening again
    /// does nothing.
    pub async fn open(&self, dataset: DatasetId) -> Result<(), ModelsError> {
        self.call(|reply| Command::Open { dataset, reply })
            .await??;
        self.handle.subscribe(dataset).await?;
        Ok(())
    }

    /// Publishes a model trained by this node: checks the weights (float32 safetensors, at most
    /// [`Config::max_weights_bytes`]), stores them as a blob, signs an update with the node's key
    /// (version: this node's previous version + 1), records it durably in the registry, and
    /// announces it on gossip. Returns the signed update.
    pub async fn publish(&self, publication: Publication) -> Result<SignedUpdate, ModelsError> {
        let size = publication.weights.len() as u64;
        if size > self.max_weights_bytes {
            return Err(ModelsError::TooLarge {
                bytes: size,
                max: self.max_weights_bytes,
            });
        }
        let blobs = self.home.blobs();
        let weights = publication.weights;
        let hash = tokio::task::spawn_blocking(move || {
            super::weights::decode(&weights)?;
            let id = swarmlabel_store::store::BlobId::of(&weights);
            blobs
                .put_durable(id, &weights)
                .map_err(|e| ModelsError::Blob(e.to_string()))?;
            Ok::<_, ModelsError>(id)
        })
        .await
        .map_err(|e| ModelsError::Blob(e.to_string()))??;
        self.call(|reply| Command::Publish {
            dataset: publication.dataset,
            hash,
            size,
            labels_trained: publication.labels_trained,
            architecture: publication.architecture,
            validation: publication.validation,
            reply,
        })
        .await?
    }

    /// The merged model of an open dataset as of now (`None` until one can be made).
    pub async fn merged(&self, dataset: DatasetId) -> Result<Current, ModelsError> {
        Ok(self.watch(dataset).await?.borrow().clone())
    }

    /// A receiver whose value changes whenever the merged model of an open dataset changes
    /// (wait with `changed()` or `wait_for`; never poll).
    pub async fn watch(&self, dataset: DatasetId) -> Result<watch::Receiver<Current>, ModelsError> {
        self.call(|reply| Command::Watch { dataset, reply }).await?
    }

    /// A copy of the registry of an open dataset.
    pub async fn registry(&self, dataset: DatasetId) -> Result<Registry, ModelsError> {
        self.call(|reply| Command::Registry { dataset, reply })
            .await?
    }

    /// Why no merged model could be made the last time (`None` when there is one).
    pub async fn merge_problem(&self, dataset: DatasetId) -> Result<Option<String>, ModelsError> {
        self.call(|reply| Command::Problem { dataset, reply })
            .await?
    }

    /// Sets (or, with `None`, removes) the outlier screen of an open dataset: from then on the
    /// merged model leaves out updates scoring badly on this node's held-out labels (see
    /// [`Screen`]), and it is recomputed at once. The learning loop sets it once it holds
    /// held-out labels. With a screen, nodes holding different labels may merge differently.
    pub async fn set_screen(
        &self,
        dataset: DatasetId,
        screen: Option<Screen>,
    ) -> Result<(), ModelsError> {
        self.call(|reply| Command::SetScreen {
            dataset,
            screen,
            reply,
        })
        .await?
    }

    /// Keeps `dataset`'s merged model under the owner's policy in force, as `policy` (the policy
    /// kind's watch) says it is now and whenever it changes: the merged model leaves out the
    /// updates of keys it does not admit (see [`crate::policy`]). The dataset's models need not
    /// be open yet: the policy applies when they open.
    pub async fn follow_policy(
        &self,
        dataset: DatasetId,
        policy: tokio::sync::watch::Receiver<crate::policy::InForce>,
    ) -> Result<(), ModelsError> {
        self.call(|reply| Command::FollowPolicy {
            dataset,
            policy,
            reply,
        })
        .await?
    }

    /// The connected peers that hold `dataset`'s models (subscribed to its model topic).
    pub async fn peers(&self, dataset: DatasetId) -> Result<Vec<libp2p::PeerId>, ModelsError> {
        Ok(self.handle.topic_peers(dataset).await?)
    }

    /// What the service did so far.
    pub fn counters(&self) -> Counters {
        let common = self.handle.stats();
        Counters {
            published: self.stats.published.get(),
            gossip_accepted: common.gossip_accepted.get(),
            gossip_rejected: common.gossip_rejected.get(),
            gossip_ignored: common.gossip_ignored.get(),
            gossip_dropped: self.stats.gossip_dropped.get(),
            weights_fetched: self.stats.weights_fetched.get(),
            weights_rejected: self.stats.weights_rejected.get(),
            sessions_completed: common.sessions_completed.get(),
            sessions_failed: common.sessions_failed.get(),
            sync_refused: common.sync_refused.get(),
            merges: self.stats.merges.get(),
        }
    }

    /// Stops the service (the registry is durable at every change; nothing is lost).
    pub async fn shutdown(&self) {
        self.handle.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::weights::{self, Form};
    use std::collections::BTreeMap;

    fn file(values: &[f32]) -> Vec<u8> {
        let form = Form {
            shapes: BTreeMap::from([("w".to_owned(), vec![values.len()])]),
            metadata: BTreeMap::new(),
        };
        weights::encode(&[("w".to_owned(), values.to_vec())], &form).unwrap()
    }

    fn publication(dataset: DatasetId, weights: Vec<u8>) -> Publication {
        Publication {
            dataset,
            weights,
            labels_trained: 3,
            architecture: Architecture::new([1; 32], "tiny").unwrap(),
            validation: Validation::from_counts(2, 3),
        }
    }

    #[test]
    fn merge_methods_parse_by_name_and_bad_ones_say_what_to_use() {
        assert_eq!(parse_method("median"), Ok(Method::Median));
        assert_eq!(parse_method("weighted-mean"), Ok(Method::WeightedMean));
        assert_eq!(
            parse_method("trimmed-mean"),
            Ok(Method::TrimmedMean { trim: 0.2 })
        );
        assert_eq!(
            parse_method("trimmed-mean:0.1"),
            Ok(Method::TrimmedMean { trim: 0.1 })
        );
        for bad in ["trimmed-mean:0.5", "trimmed-mean:x", "mean", ""] {
            let err = parse_method(bad).unwrap_err().to_string();
            assert!(err.contains("use `trimmed-mean`"), "{err}");
        }
    }

    #[tokio::test]
    async fn publishes_versions_merges_and_keeps_the_registry_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (home, _) = Home::init(&dir.path().join("home"), false).unwrap();
        let dataset = DatasetId([9; 32]);
        let config = Config {
            max_weights_bytes: 1_000,
            ..Config::default()
        };
        let models = Models::start(home.clone(), None, config.clone())
            .await
            .unwrap();
        assert!(matches!(
            models.publish(publication(dataset, file(&[1.0]))).await,
            Err(ModelsError::NotOpen(_))
        ));
        models.open(dataset).await.unwrap();
        let mut rx = models.watch(dataset).await.unwrap();
        let first = models
            .publish(publication(dataset, file(&[1.0, 2.0])))
            .await
            .unwrap();
        let second = models
            .publish(publication(dataset, file(&[3.0, 4.0])))
            .await
            .unwrap();
        assert_eq!(first.update().version, 1);
        assert_eq!(second.update().version, 2);
        let registry = models.registry(dataset).await.unwrap();
        let merged = rx
            .wait_for(|m| {
                m.as_ref()
                    .is_some_and(|m| m.registry_digest == registry.digest())
            })
            .await
            .unwrap()
            .clone()
            .unwrap();
        // One peer's update in force: the merged model is its weights (version 2).
        assert_eq!(*merged.weights, file(&[3.0, 4.0]));
        assert_eq!(merged.included.len(), 1);
        // Refused with a reason: not safetensors, too large.
        let err = models
            .publish(publication(dataset, b"junk".to_vec()))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not a safetensors"), "{err}");
        let err = models
            .publish(publication(dataset, vec![0; 1_001]))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("max_weights_bytes"), "{err}");
        models.shutdown().await;

        // Restarted: the registry is loaded from the home and the merged model recomputed.
        let models = Models::start(home, None, config).await.unwrap();
        models.open(dataset).await.unwrap();
        assert_eq!(models.registry(dataset).await.unwrap(), registry);
        let mut rx = models.watch(dataset).await.unwrap();
        let again = rx.wait_for(|m| m.is_some()).await.unwrap().clone().unwrap();
        assert_eq!(*again.weights, file(&[3.0, 4.0]));
        assert_eq!(again.registry_digest, registry.digest());
        let third = models
            .publish(publication(dataset, file(&[5.0, 6.0])))
            .await
            .unwrap();
        assert_eq!(third.update().version, 3, "versions go on after a restart");
        assert_eq!(models.counters().published, 1);
        models.shutdown().await;
    }
}
