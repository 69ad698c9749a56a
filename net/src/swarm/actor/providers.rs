//! Provider discovery on the DHT and the publication of our provider records (the schedule of
//! publications is `provider_records`, I/O-free; this file starts and finishes the queries).

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use libp2p::{PeerId, kad};
use tokio::sync::oneshot;

use super::NodeActor;
use crate::swarm::provider_records::{self, Publisher};
use swarmlabel_store::dataset::DatasetId;

/// The outcome of a provider lookup.
#[derive(Debug, Clone, Default)]
pub struct ProviderLookup {
    /// Providers found (not this node, not banned peers), sorted.
    pub providers: Vec<PeerId>,
    /// Kademlia requests the lookup sent.
    pub requests: u32,
    /// Kademlia requests that were answered.
    pub successes: u32,
    /// Requests answered when the first provider was found (`None`: none was found), the
    /// closest thing to a hop count that libp2p exposes.
    pub answered_until_found: Option<u32>,
}

struct Query {
    found: HashSet<PeerId>,
    answered_until_found: Option<u32>,
    reply: oneshot::Sender<ProviderLookup>,
}

/// Lookups under way and the schedule of our provider records.
pub(super) struct Providers {
    queries: HashMap<kad::QueryId, Query>,
    pub(super) publisher: Publisher<kad::QueryId>,
}

impl Providers {
    pub(super) fn new() -> Self {
        Self {
            queries: HashMap::new(),
            publisher: Publisher::new(provider_records::MAX_IN_FLIGHT),
        }
    }
}

impl NodeActor {
    /// Starts a DHT lookup of `dataset`'s providers; `known` (from gossip) are included.
    pub(super) fn find_providers(
        &mut self,
        dataset: DatasetId,
        known: Vec<PeerId>,
        reply: oneshot::Sender<ProviderLookup>,
    ) {
        let id = self
            .swarm
            .behaviour_mut()
            .kad
            .get_providers(kad::RecordKey::new(&dataset.0));
        self.providers.queries.insert(
            id,
            Query {
                found: known.into_iter().collect(),
                answered_until_found: None,
                reply,
            },
        );
    }

    /// Asks for every served dataset's provider record to be published again.
    pub(super) fn republish_all(&mut self) {
        for id in self.served.keys().copied().collect::<Vec<_>>() {
            self.providers.publisher.request(id);
        }
        self.publish_due();
    }

    pub(super) fn on_kad_event(&mut self, event: kad::Event) {
        let (id, result, step, stats) = match event {
            kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetProviders(result),
                step,
                stats,
            } => (id, result, step, stats),
            kad::Event::OutboundQueryProgressed {
                id,
                result:
                    kad::QueryResult::StartProviding(result)
                    | kad::QueryResult::RepublishProvider(result),
                ..
            } => {
                self.on_published(id, result);
                return;
            }
            _ => return,
        };
        let local = *self.swarm.local_peer_id();
        if let Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) = result {
            for peer in providers {
                if peer == local || self.banned.contains(&peer) {
                    continue;
                }
                // Dial while the query still holds the provider's addresses.
                if !self.swarm.is_connected(&peer) {
                    let _ = self.dial_any_path(
                        peer,
                        libp2p::swarm::dial_opts::PeerCondition::DisconnectedAndNotDialing,
                    );
                }
                if let Some(query) = self.providers.queries.get_mut(&id) {
                    query.found.insert(peer);
                    query
                        .answered_until_found
                        .get_or_insert(stats.num_successes());
                }
            }
        }
        if step.last
            && let Some(query) = self.providers.queries.remove(&id)
        {
            let mut providers: Vec<PeerId> = query
                .found
                .into_iter()
                .filter(|p| *p != local && !self.banned.contains(p))
                .collect();
            providers.sort();
            let _ = query.reply.send(ProviderLookup {
                providers,
                requests: stats.num_requests(),
                successes: stats.num_successes(),
                answered_until_found: query.answered_until_found,
            });
        }
    }

    /// Starts the provider publications that are due, as many as the publisher allows at once.
    pub(super) fn publish_due(&mut self) {
        let now = Instant::now();
        while let Some(id) = self.providers.publisher.next(now) {
            if !self.served.contains_key(&id) {
                continue;
            }
            match self
                .swarm
                .behaviour_mut()
                .kad
                .start_providing(kad::RecordKey::new(&id.0))
            {
                Ok(query) => self.providers.publisher.started(query, id),
                // The local store is full: retrying cannot help.
                Err(e) => {
                    tracing::warn!(dataset = %id, error = %e, "cannot provide the dataset on the DHT");
                }
            }
        }
    }

    /// Handles the end of a provider publication: ours (`start_providing`) or libp2p's periodic
    /// republication. A failed one is tried again later (see `provider_records`).
    fn on_published(&mut self, query: kad::QueryId, result: kad::AddProviderResult) {
        let now = Instant::now();
        let ours = self
            .providers
            .publisher
            .finished(query, result.is_ok(), now);
        if let Err(e) = &result {
            self.metrics.dht_publications_failed.inc();
            let dataset = <[u8; 32]>::try_from(e.key().as_ref()).ok().map(DatasetId);
            if ours.is_none()
                && let Some(dataset) = dataset.filter(|d| self.served.contains_key(d))
            {
                self.providers.publisher.failed(dataset, now);
            }
            let dataset = dataset.map_or_else(|| hex::encode(e.key().as_ref()), |d| d.to_string());
            tracing::debug!(%dataset, error = %e, "a provider record was not published; retrying later");
        }
        self.publish_due();
    }
}
