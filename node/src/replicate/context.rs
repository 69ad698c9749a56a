//! What a kind asks of the layer around it while it handles something: gossip to publish and
//! work to run beside it. The kind's methods stay free of network waits; the service carries the
//! effects out once the method returns.

use std::fmt;

use futures::future::BoxFuture;
use swarmlabel_ids::DatasetId;

use super::Replicated;

/// Effects collected from one call into a kind.
pub struct Context<K: Replicated> {
    pub(super) publish: Vec<(DatasetId, Vec<u8>)>,
    pub(super) spawn: Vec<(BoxFuture<'static, K::Event>, K::Event)>,
}

impl<K: Replicated> fmt::Debug for Context<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("publish", &self.publish.len())
            .field("spawn", &self.spawn.len())
            .finish()
    }
}

impl<K: Replicated> Default for Context<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Replicated> Context<K> {
    /// An empty context.
    pub fn new() -> Self {
        Self {
            publish: Vec::new(),
            spawn: Vec::new(),
        }
    }

    /// Publishes `data` on the kind's gossip topic of `dataset` (best effort: a message nobody
    /// receives is made up for by anti-entropy).
    pub fn publish(&mut self, dataset: DatasetId, data: Vec<u8>) {
        self.publish.push((dataset, data));
    }

    /// Runs `work` beside the kind; its result comes back to [`Replicated::event`]. If the work
    /// panics, `if_lost` comes back instead, so the kind can free what the work held.
    pub fn spawn(
        &mut self,
        work: impl Future<Output = K::Event> + Send + 'static,
        if_lost: K::Event,
    ) {
        self.spawn.push((Box::pin(work), if_lost));
    }

    /// Whether the call asked for nothing.
    pub fn is_empty(&self) -> bool {
        self.publish.is_empty() && self.spawn.is_empty()
    }

    /// Takes the work to run beside the kind (for tests that drive a kind by hand).
    #[cfg(test)]
    pub(crate) fn take_spawned(&mut self) -> Vec<BoxFuture<'static, K::Event>> {
        std::mem::take(&mut self.spawn)
            .into_iter()
            .map(|(work, _)| work)
            .collect()
    }

    /// Takes the gossip to publish (for drivers other than the service: tests, simulations).
    pub fn take_published(&mut self) -> Vec<(DatasetId, Vec<u8>)> {
        std::mem::take(&mut self.publish)
    }
}
