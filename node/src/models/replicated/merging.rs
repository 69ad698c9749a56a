//! The merges of the models kind: one at a time per dataset, on a blocking thread, again when
//! the registry or the held weights changed meanwhile; the result goes out on the watch channel.

use std::sync::Arc;

use swarmlabel_crdt::registry::WeightsHash;
use swarmlabel_ids::DatasetId;

use super::{Event, Registries};
use crate::models::merged::{self, MergedError, MergedModel};
use crate::replicate::Context;

impl Registries {
    pub(super) fn mark_dirty(&mut self, dataset: DatasetId, cx: &mut Context<Self>) {
        let Some(held) = self.held.get_mut(&dataset) else {
            return;
        };
        held.dirty = true;
        if held.merging {
            return;
        }
        held.merging = true;
        held.dirty = false;
        let registry = held.registry.clone();
        let screen = held.screen.clone();
        let policy = held.policy.clone();
        let method = self.config.method;
        let architecture = self.config.architecture.clone();
        let hashes: Vec<WeightsHash> = registry
            .latest()
            .map(|u| u.weights_hash)
            .filter(|h| self.have.contains(h))
            .collect();
        let blobs = self.home.blobs();
        let work = async move {
            // CPU work and file reads: on a blocking thread, never on the runtime's.
            let result = tokio::task::spawn_blocking(move || {
                let held = hashes
                    .into_iter()
                    .filter_map(|h| Some((h, Arc::new(blobs.get(&h).ok()?))))
                    .collect();
                merged::compute(
                    &registry,
                    &held,
                    method,
                    architecture.as_ref(),
                    screen.as_ref(),
                    policy.as_deref(),
                )
            })
            .await
            .ok();
            Event::Merged { dataset, result }
        };
        cx.spawn(
            work,
            Event::Merged {
                dataset,
                result: None,
            },
        );
    }

    pub(super) fn on_merged(
        &mut self,
        dataset: DatasetId,
        result: Option<Result<MergedModel, MergedError>>,
        cx: &mut Context<Self>,
    ) {
        let Some(held) = self.held.get_mut(&dataset) else {
            return;
        };
        held.merging = false;
        self.stats.merges.inc();
        match result {
            Some(Ok(model)) => {
                held.problem = None;
                held.merged.send_if_modified(|current| {
                    if current.as_deref() == Some(&model) {
                        return false;
                    }
                    *current = Some(Arc::new(model));
                    true
                });
            }
            Some(Err(e)) => {
                held.problem = Some(e.to_string());
                held.merged
                    .send_if_modified(|current| current.take().is_some());
            }
            None => held.problem = Some("the merge task panicked".to_owned()),
        }
        if held.dirty {
            self.mark_dirty(dataset, cx);
        }
    }
}
