//! This node's own model updates: signed at the next version, recorded durably, their weights
//! served over the blob protocol, announced on the dataset's model topic; the weights they
//! supersede collected.

use swarmlabel_crdt::registry::{Architecture, ModelUpdate, SignedUpdate, Validation, WeightsHash};
use swarmlabel_ids::DatasetId;
use swarmlabel_store::store::BlobId;

use super::super::service::ModelsError;
use super::super::store;
use super::{Event, Registries};
use crate::replicate::Context;

impl Registries {
    /// Publishes this node's update of `dataset` for weights already stored.
    pub(super) fn publish(
        &mut self,
        dataset: DatasetId,
        (hash, size, labels_trained, architecture, validation): (
            BlobId,
            u64,
            u64,
            Architecture,
            Validation,
        ),
        cx: &mut Context<Self>,
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
            dataset,
            peer: self.me_key,
            version,
            labels_trained,
            architecture,
            weights_hash: hash,
            weights_bytes: size,
            validation,
        };
        let signed = SignedUpdate::sign(update, self.identity.signing_key())?;
        let superseded = held
            .registry
            .get(&self.me_key)
            .map(|e| e.latest().update().weights_hash);
        let mut registry = held.registry.clone();
        registry.insert(signed.clone())?;
        store::save(&self.home, &registry)?;
        if let Some(held) = self.held.get_mut(&dataset) {
            held.registry = registry;
        }
        self.collect_weights(superseded.into_iter().collect(), cx);
        self.stats.published.inc();
        self.have.insert(hash);
        self.serve(vec![hash], cx);
        cx.publish(dataset, signed.to_bytes());
        self.mark_dirty(dataset, cx);
        Ok(signed)
    }

    /// Serves weights to peers over the blob protocol.
    pub(super) fn serve(&self, hashes: Vec<WeightsHash>, cx: &mut Context<Self>) {
        if let (Some(node), false) = (self.node.clone(), hashes.is_empty()) {
            let ids = hashes.into_iter().collect();
            cx.spawn(
                async move {
                    let _ = node.serve_blobs(ids, true).await;
                    Event::Served
                },
                Event::Served,
            );
        }
    }
}
