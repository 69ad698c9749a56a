//! Datasets heard of on the announcement topic: who announced which signed root, and when.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use libp2p::{PeerId, gossipsub};

use crate::dataset::DatasetId;
use crate::dataset::manifest::SignedRoot;
use crate::swarm::announce::{self, Announcement};

/// Datasets remembered from gossip at most (the least recently announced are forgotten).
const MAX_KNOWN_DATASETS: usize = 10_000;
/// Providers remembered per dataset at most.
const MAX_PROVIDERS: usize = 64;

/// A dataset heard of on gossip.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KnownDataset {
    /// The dataset id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// Its label set.
    pub labels: Vec<String>,
    /// Its task kind.
    pub task: String,
    /// Samples.
    pub samples: u64,
    /// Bytes of all samples.
    pub bytes: u64,
    /// Peers that announced it.
    pub providers: Vec<String>,
    /// Seconds since the last announcement.
    pub last_seen_s: u64,
}

struct Entry {
    root: SignedRoot,
    providers: HashSet<PeerId>,
    last_seen: Instant,
}

/// The announcement topic and what was heard on it.
pub(super) struct Known {
    topic: gossipsub::IdentTopic,
    datasets: HashMap<DatasetId, Entry>,
    /// A peer newly subscribed: announce what we serve at the next upkeep tick.
    announce_due: bool,
}

impl Known {
    pub(super) fn new() -> Self {
        Self {
            topic: gossipsub::IdentTopic::new(announce::TOPIC),
            datasets: HashMap::new(),
            announce_due: false,
        }
    }

    pub(super) fn topic(&self) -> &gossipsub::IdentTopic {
        &self.topic
    }

    pub(super) fn len(&self) -> usize {
        self.datasets.len()
    }

    /// A peer subscribed to announcements: tell it what we serve at the next upkeep tick rather
    /// than at the next announcement (once per tick, however many newcomers).
    pub(super) fn on_subscribed(&mut self) {
        self.announce_due = true;
    }

    /// Whether an announcement round is due now; clears the flag.
    pub(super) fn announce_due(&mut self) -> bool {
        std::mem::take(&mut self.announce_due)
    }

    /// The providers of `dataset` that announced it.
    pub(super) fn providers(&self, dataset: &DatasetId) -> Vec<PeerId> {
        self.datasets
            .get(dataset)
            .map(|e| e.providers.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Judges and records an announcement.
    pub(super) fn on_announcement(
        &mut self,
        message: &gossipsub::Message,
    ) -> gossipsub::MessageAcceptance {
        let (Some(author), Ok(announcement)) =
            (message.source, Announcement::decode(&message.data))
        else {
            return gossipsub::MessageAcceptance::Reject;
        };
        let dataset = announcement.dataset();
        if !self.datasets.contains_key(&dataset) && self.datasets.len() >= MAX_KNOWN_DATASETS {
            self.forget_oldest();
        }
        let entry = self.datasets.entry(dataset).or_insert_with(|| Entry {
            root: announcement.root,
            providers: HashSet::new(),
            last_seen: Instant::now(),
        });
        entry.last_seen = Instant::now();
        if entry.providers.len() < MAX_PROVIDERS {
            entry.providers.insert(author);
        }
        gossipsub::MessageAcceptance::Accept
    }

    fn forget_oldest(&mut self) {
        if let Some(oldest) = self
            .datasets
            .iter()
            .min_by_key(|(_, e)| e.last_seen)
            .map(|(id, _)| *id)
        {
            self.datasets.remove(&oldest);
        }
    }

    /// The datasets heard of, most recently announced first.
    pub(super) fn list(&self) -> Vec<KnownDataset> {
        let mut known: Vec<&Entry> = self.datasets.values().collect();
        known.sort_by_key(|e| std::cmp::Reverse(e.last_seen));
        known
            .into_iter()
            .map(|e| {
                let r = e.root.root();
                KnownDataset {
                    id: e.root.id().to_string(),
                    name: r.name.clone(),
                    description: r.description.clone(),
                    labels: r.labels.clone(),
                    task: r.task.kind().to_owned(),
                    samples: r.sample_count,
                    bytes: r.total_bytes,
                    providers: e.providers.iter().map(ToString::to_string).collect(),
                    last_seen_s: e.last_seen.elapsed().as_secs(),
                }
            })
            .collect()
    }
}
