//! The learning loop's [`ModelExchange`] over the node's [`Models`] service: publishing goes
//! out as a signed announcement on the dataset's model topic (weights as a verified blob), and the
//! merged model is the one the service derives from every peer's latest update.
//!
//! The trait's `merged` and `watch` are synchronous, the service's are not: a task per dataset
//! copies each change of the service's merged model into a local cell and a `watch` channel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use swarmlabel_crdt::registry::{Architecture, Validation};
use tokio::sync::watch;

use crate::dataset::DatasetId;
use crate::learn::exchange::{ExchangeError, MergedModel, ModelExchange};
use crate::models::{Models, ModelsError, Publication};
use crate::store::BlobId;

/// A [`ModelExchange`] over a node's models service.
#[derive(Debug, Clone)]
pub struct NetworkExchange {
    models: Models,
    cells: Arc<Mutex<HashMap<swarmlabel_crdt::DatasetId, Cell>>>,
}

#[derive(Debug)]
struct Cell {
    merged: Option<MergedModel>,
    tx: watch::Sender<Option<[u8; 32]>>,
}

impl NetworkExchange {
    /// An exchange publishing to and merging from `models`.
    pub fn new(models: Models) -> Self {
        Self {
            models,
            cells: Arc::default(),
        }
    }

    /// Opens `dataset`'s models (registry, topic, anti-entropy) and starts following its
    /// merged model. Call before the learning loop of the dataset starts.
    pub async fn open(&self, dataset: DatasetId) -> Result<(), ModelsError> {
        self.models.open(dataset).await?;
        let mut rx = self.models.watch(dataset).await?;
        let key = swarmlabel_crdt::DatasetId(dataset.0.0);
        {
            let mut cells = self.cells.lock().unwrap_or_else(PoisonError::into_inner);
            cells.entry(key).or_insert_with(|| Cell {
                merged: None,
                tx: watch::channel(None).0,
            });
        }
        let cells = self.cells.clone();
        tokio::spawn(async move {
            loop {
                let current = rx.borrow_and_update().clone();
                let merged = current.map(|m| MergedModel {
                    hash: m.hash.0,
                    bytes: m.weights.clone(),
                    peers: m.included.len(),
                });
                {
                    let mut cells = cells.lock().unwrap_or_else(PoisonError::into_inner);
                    if let Some(cell) = cells.get_mut(&key) {
                        let hash = merged.as_ref().map(|m| m.hash);
                        cell.merged = merged;
                        cell.tx.send_if_modified(|h| {
                            let changed = *h != hash;
                            *h = hash;
                            changed
                        });
                    }
                }
                if rx.changed().await.is_err() {
                    break;
                }
            }
        });
        Ok(())
    }
}

impl ModelExchange for NetworkExchange {
    fn publish(
        &self,
        dataset: swarmlabel_crdt::DatasetId,
        weights: Vec<u8>,
        labels_trained: u64,
        architecture: Architecture,
        validation: Validation,
    ) -> BoxFuture<'_, Result<(), ExchangeError>> {
        Box::pin(async move {
            self.models
                .publish(Publication {
                    dataset: DatasetId(BlobId(dataset.0)),
                    weights,
                    labels_trained,
                    architecture,
                    validation,
                })
                .await
                .map(|_| ())
                .map_err(|e| match e {
                    ModelsError::Net(_) | ModelsError::Stopped => {
                        ExchangeError::Network(e.to_string())
                    }
                    other => ExchangeError::Refused(other.to_string()),
                })
        })
    }

    fn merged(&self, dataset: swarmlabel_crdt::DatasetId) -> Option<MergedModel> {
        let cells = self.cells.lock().unwrap_or_else(PoisonError::into_inner);
        cells.get(&dataset).and_then(|c| c.merged.clone())
    }

    fn watch(&self, dataset: swarmlabel_crdt::DatasetId) -> watch::Receiver<Option<[u8; 32]>> {
        let mut cells = self.cells.lock().unwrap_or_else(PoisonError::into_inner);
        cells
            .entry(dataset)
            .or_insert_with(|| Cell {
                merged: None,
                tx: watch::channel(None).0,
            })
            .tx
            .subscribe()
    }
}
