//! What the learning loop needs from the model network: publish this node's model, get the
//! merged model of the dataset, and hear when it changes ([`ModelExchange`]).
//!
//! The network implementation (signed announcements on the dataset's model topic, weights as
//! verified blobs, registry anti-entropy) is the node's model registry; the loop only sees this
//! trait. [`LocalExchange`] is an in-process implementation for peers that share one process
//! (the simulator and tests): the same signed updates, `swarmlabel_crdt::registry` and the
//! production merged-model computation (`models::merged::compute`), without the transport, so
//! every peer sees every update at once. [`ServiceExchange`] is the network one: the node's models service.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use swarmlabel_active_learning::{Model, ModelError, ModelSpec};
use swarmlabel_crdt::registry::{
    Architecture, ModelUpdate, Registry, SignedUpdate, Validation, WeightsHash, merge,
};

use crate::models::MergedModel;
use crate::models::merged::compute;
use tokio::sync::watch;

use swarmlabel_store::identity::Identity;

/// Errors of publishing a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExchangeError {
    /// The weights are not a model this node can read.
    #[error("the model to publish is unreadable: {0}")]
    Model(#[from] ModelError),
    /// The update could not be signed or was refused.
    #[error("the model update was refused: {0}")]
    Refused(String),
    /// The network side failed.
    #[error("the model could not be published: {0}")]
    Network(String),
}

/// Publish my model, get the merged model, hear when it changes.
pub trait ModelExchange: fmt::Debug + Send + Sync + 'static {
    /// Announces this node's model of `dataset`: safetensors `weights`, trained on
    /// `labels_trained` labels, with its validation figures.
    fn publish(
        &self,
        dataset: swarmlabel_crdt::DatasetId,
        weights: Vec<u8>,
        labels_trained: u64,
        architecture: Architecture,
        validation: Validation,
    ) -> BoxFuture<'_, Result<(), ExchangeError>>;

    /// The merged model of `dataset` as this node holds it now, if any update is known.
    fn merged(&self, dataset: swarmlabel_crdt::DatasetId) -> Option<Arc<MergedModel>>;

    /// A receiver whose value (the merged model's hash) changes when the merged model does.
    fn watch(&self, dataset: swarmlabel_crdt::DatasetId) -> watch::Receiver<Option<[u8; 32]>>;
}

/// The architecture of a model spec: BLAKE3 of its JSON and a short name.
pub fn architecture(spec: &ModelSpec) -> Architecture {
    let json = serde_json::to_vec(spec).unwrap_or_default();
    let name = match spec.architecture {
        swarmlabel_active_learning::Architecture::Linear { .. } => "linear",
        swarmlabel_active_learning::Architecture::Mlp { .. } => "mlp",
        swarmlabel_active_learning::Architecture::Cnn { .. } => "cnn",
        _ => "model",
    };
    Architecture::new(*blake3::hash(&json).as_bytes(), name)
        .expect("invariant: the names above are printable ASCII")
}

/// Models of one process's peers, merged in one place (see the module doc).
#[derive(Debug, Clone)]
pub struct LocalExchange {
    inner: Arc<Mutex<HashMap<swarmlabel_crdt::DatasetId, Shared>>>,
    method: merge::Method,
}

#[derive(Debug)]
struct Shared {
    registry: Registry,
    weights: HashMap<WeightsHash, Arc<Vec<u8>>>,
    merged: Option<Arc<MergedModel>>,
    tx: watch::Sender<Option<[u8; 32]>>,
}

impl LocalExchange {
    /// An empty exchange merging with `method`.
    pub fn new(method: merge::Method) -> Self {
        Self {
            inner: Arc::default(),
            method,
        }
    }

    /// The handle of the peer with `identity` (it signs that peer's updates).
    pub fn peer(&self, identity: Identity) -> LocalPeer {
        LocalPeer {
            exchange: self.clone(),
            identity,
            version: Arc::default(),
        }
    }

    fn with<T>(&self, dataset: swarmlabel_crdt::DatasetId, f: impl FnOnce(&mut Shared) -> T) -> T {
        let mut map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let shared = map.entry(dataset).or_insert_with(|| Shared {
            registry: Registry::new(dataset),
            weights: HashMap::new(),
            merged: None,
            tx: watch::channel(None).0,
        });
        f(shared)
    }
}

/// One peer's handle on a [`LocalExchange`].
#[derive(Debug, Clone)]
pub struct LocalPeer {
    exchange: LocalExchange,
    identity: Identity,
    version: Arc<std::sync::atomic::AtomicU64>,
}

impl ModelExchange for LocalPeer {
    fn publish(
        &self,
        dataset: swarmlabel_crdt::DatasetId,
        weights: Vec<u8>,
        labels_trained: u64,
        architecture: Architecture,
        validation: Validation,
    ) -> BoxFuture<'_, Result<(), ExchangeError>> {
        Box::pin(async move {
            // Refuse what this node could not load itself, as the network side does.
            Model::from_safetensors_bytes(&weights)?;
            let version = 1 + self
                .version
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let update = ModelUpdate {
                dataset,
                peer: self.identity.public_key(),
                version,
                labels_trained,
                architecture,
                weights_hash: WeightsHash(*blake3::hash(&weights).as_bytes()),
                weights_bytes: weights.len() as u64,
                validation,
            };
            let signed = SignedUpdate::sign(update, self.identity.signing_key())
                .map_err(|e| ExchangeError::Refused(e.to_string()))?;
            let method = self.exchange.method;
            self.exchange.with(dataset, |shared| {
                shared
                    .registry
                    .insert(signed)
                    .map_err(|e| ExchangeError::Refused(e.to_string()))?;
                shared
                    .weights
                    .entry(WeightsHash(*blake3::hash(&weights).as_bytes()))
                    .or_insert_with(|| Arc::new(weights));
                // The production computation, so that `sim` measures what nodes run.
                let merged = compute(&shared.registry, &shared.weights, method, None, None, None)
                    .map_err(|e| ExchangeError::Refused(e.to_string()))?;
                let hash = merged.hash.0;
                shared.merged = Some(Arc::new(merged));
                shared.tx.send_replace(Some(hash));
                Ok(())
            })
        })
    }

    fn merged(&self, dataset: swarmlabel_crdt::DatasetId) -> Option<Arc<MergedModel>> {
        self.exchange.with(dataset, |shared| shared.merged.clone())
    }

    fn watch(&self, dataset: swarmlabel_crdt::DatasetId) -> watch::Receiver<Option<[u8; 32]>> {
        self.exchange.with(dataset, |shared| shared.tx.subscribe())
    }
}

/// The node's models service (`crate::models::Models`: model gossip, weights as verified blobs,
/// registry anti-entropy) as the exchange of one dataset's loop.
#[derive(Debug)]
pub struct ServiceExchange {
    models: crate::models::Models,
    dataset: swarmlabel_store::dataset::DatasetId,
    current: watch::Receiver<crate::models::Current>,
    hashes: watch::Sender<Option<[u8; 32]>>,
}

impl ServiceExchange {
    /// Opens `dataset` in `models` and follows its merged model.
    pub async fn open(
        models: crate::models::Models,
        dataset: swarmlabel_store::dataset::DatasetId,
    ) -> Result<Self, crate::models::ModelsError> {
        models.open(dataset).await?;
        let current = models.watch(dataset).await?;
        let hash_of = |c: &crate::models::Current| c.as_ref().map(|m| m.hash.0);
        let (hashes, _) = watch::channel(hash_of(&current.borrow()));
        // Forward changes of the service's watch as hashes, until either side is gone.
        let (mut rx, tx) = (current.clone(), hashes.clone());
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let hash = hash_of(&rx.borrow_and_update());
                tx.send_replace(hash);
            }
        });
        Ok(Self {
            models,
            dataset,
            current,
            hashes,
        })
    }
}

impl ModelExchange for ServiceExchange {
    fn publish(
        &self,
        _dataset: swarmlabel_crdt::DatasetId,
        weights: Vec<u8>,
        labels_trained: u64,
        architecture: Architecture,
        validation: Validation,
    ) -> BoxFuture<'_, Result<(), ExchangeError>> {
        Box::pin(async move {
            let publication = crate::models::Publication {
                dataset: self.dataset,
                weights,
                labels_trained,
                architecture,
                validation,
            };
            self.models
                .publish(publication)
                .await
                .map(|_| ())
                .map_err(|e| ExchangeError::Network(e.to_string()))
        })
    }

    fn merged(&self, _dataset: swarmlabel_crdt::DatasetId) -> Option<Arc<MergedModel>> {
        self.current.borrow().clone()
    }

    fn watch(&self, _dataset: swarmlabel_crdt::DatasetId) -> watch::Receiver<Option<[u8; 32]>> {
        self.hashes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn peers_of_one_exchange_see_one_merged_model_of_their_updates() {
        let exchange = LocalExchange::new(merge::Method::WeightedMean);
        let dataset = swarmlabel_crdt::DatasetId([3; 32]);
        let spec = ModelSpec::linear(2, 2);
        let a = exchange.peer(Identity::generate().unwrap());
        let b = exchange.peer(Identity::generate().unwrap());
        let mut changes = b.watch(dataset);
        assert!(a.merged(dataset).is_none());
        let wa = Model::new(spec.clone(), 1).unwrap();
        let wb = Model::new(spec.clone(), 2).unwrap();
        let arch = architecture(&spec);
        let v = Validation::from_counts(0, 0);
        a.publish(
            dataset,
            wa.to_safetensors_bytes().unwrap(),
            1,
            arch.clone(),
            v,
        )
        .await
        .unwrap();
        changes.changed().await.unwrap();
        b.publish(dataset, wb.to_safetensors_bytes().unwrap(), 3, arch, v)
            .await
            .unwrap();
        let merged = a.merged(dataset).unwrap();
        assert_eq!(merged.included.len(), 2);
        assert_eq!(Some(merged.hash.0), *changes.borrow_and_update());
        assert_eq!(b.merged(dataset), Some(merged.clone()));
        // The weighted mean of the two: (1 * a + 3 * b) / 4, coordinate by coordinate.
        let m = Model::from_safetensors_bytes(&merged.weights).unwrap();
        let (ma, mb, mm) = (
            wa.weights().unwrap(),
            wb.weights().unwrap(),
            m.weights().unwrap(),
        );
        for ((ta, tb), tm) in ma.iter().zip(&mb).zip(&mm) {
            for ((x, y), z) in ta.1.iter().zip(&tb.1).zip(&tm.1) {
                assert!((z - (x + 3.0 * y) / 4.0).abs() < 1e-6);
            }
        }
    }
}
