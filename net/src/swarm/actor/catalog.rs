//! Datasets heard of on the announcement topic: who announced which signed root, and when.
//!
//! Memory is bounded in bytes ([`MAX_KNOWN_BYTES`] of signed roots) and in entries. Each entry is
//! charged to the peer that first announced it, and when the bounds are reached the entry that
//! goes is the least recently announced one of the peer charged the most bytes: a flooder's
//! announcements push out its own, and an honest owner's few datasets stay known however many
//! the flooder sends.
//!
//! Each connected peer may forward at most [`RATE`] announcements and [`BYTE_RATE`] bytes of them
//! a second (bursts of [`BURST`] and [`BYTE_BURST`]): past that they are ignored (neither kept
//! nor forwarded, no penalty), so one connection cannot make this node relay a flood of large
//! roots to its mesh (audit 2026-12-04, N12). A dataset keeps its most recently heard
//! [`MAX_PROVIDERS`] providers: an honest owner re-announcing every minute keeps its place
//! against peers that replayed its root once.

use std::collections::HashMap;
use std::time::Instant;

use libp2p::{PeerId, gossipsub};

use crate::swarm::announce::{self, Announcement};
use swarmlabel_store::dataset::DatasetId;
use swarmlabel_store::dataset::manifest::SignedRoot;

/// Datasets remembered from gossip at most.
const MAX_KNOWN_DATASETS: usize = 10_000;
/// Bytes of signed roots remembered from gossip at most (a root is at most 1 MiB).
pub(crate) const MAX_KNOWN_BYTES: usize = 32 << 20;
/// Providers remembered per dataset at most.
const MAX_PROVIDERS: usize = 64;
/// Announcements a connected peer may forward a second, and at once.
const RATE: f64 = 2.0;
const BURST: f64 = 64.0;
/// Bytes of announcements a connected peer may forward a second, and at once.
const BYTE_RATE: f64 = 256.0 * 1024.0;
const BYTE_BURST: f64 = 4.0 * 1024.0 * 1024.0;

/// A dataset heard of on gossip.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KnownDataset {
    /// The dataset id.
    pub id: DatasetId,
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
    pub providers: Vec<PeerId>,
    /// Seconds since the last announcement.
    pub last_seen_s: u64,
}

struct Entry {
    root: SignedRoot,
    /// The providers, with when each last announced it.
    providers: HashMap<PeerId, Instant>,
    last_seen: Instant,
    /// The peer this entry's bytes are charged to: the first to announce it.
    charged: PeerId,
}

/// The announcement topic and what was heard on it.
pub(super) struct Known {
    topic: gossipsub::IdentTopic,
    datasets: HashMap<DatasetId, Entry>,
    /// Bytes of roots charged to each peer.
    charged: HashMap<PeerId, usize>,
    /// Bytes of all roots held.
    bytes: usize,
    /// A peer newly subscribed: announce what we serve at the next upkeep tick.
    announce_due: bool,
    /// What each connected peer may still forward (messages, bytes).
    rate: crate::quota::Quota,
    byte_rate: crate::quota::Quota,
}

impl Known {
    pub(super) fn new() -> Self {
        Self {
            topic: gossipsub::IdentTopic::new(announce::TOPIC),
            datasets: HashMap::new(),
            charged: HashMap::new(),
            bytes: 0,
            announce_due: false,
            rate: crate::quota::Quota::new(RATE, BURST),
            byte_rate: crate::quota::Quota::new(BYTE_RATE, BYTE_BURST),
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
            .map(|e| e.providers.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Judges and records an announcement that `forwarder` (a connected peer) sent us.
    pub(super) fn on_announcement(
        &mut self,
        forwarder: PeerId,
        message: &gossipsub::Message,
    ) -> gossipsub::MessageAcceptance {
        let now = Instant::now();
        // Over its rate the forwarder's messages are left alone: not decoded, kept or forwarded.
        let size = message.data.len();
        if !self.rate.has(&forwarder, 1, now) || !self.byte_rate.has(&forwarder, size, now) {
            return gossipsub::MessageAcceptance::Ignore;
        }
        self.rate.take(forwarder, 1, now);
        self.byte_rate.take(forwarder, size, now);
        let (Some(author), Ok(announcement)) =
            (message.source, Announcement::decode(&message.data))
        else {
            return gossipsub::MessageAcceptance::Reject;
        };
        let dataset = announcement.dataset();
        if let Some(entry) = self.datasets.get_mut(&dataset) {
            entry.last_seen = now;
            if entry.providers.len() >= MAX_PROVIDERS
                && !entry.providers.contains_key(&author)
                && let Some(stalest) = entry
                    .providers
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(p, _)| *p)
            {
                entry.providers.remove(&stalest);
            }
            entry.providers.insert(author, now);
            return gossipsub::MessageAcceptance::Accept;
        }
        let size = announcement.root.bytes().len();
        self.bytes += size;
        *self.charged.entry(author).or_default() += size;
        self.datasets.insert(
            dataset,
            Entry {
                root: announcement.root,
                providers: HashMap::from([(author, now)]),
                last_seen: now,
                charged: author,
            },
        );
        while self.bytes > MAX_KNOWN_BYTES || self.datasets.len() > MAX_KNOWN_DATASETS {
            if !self.forget_one() {
                break;
            }
        }
        gossipsub::MessageAcceptance::Accept
    }

    /// Forgets the least recently announced dataset of the peer charged the most bytes; returns
    /// whether anything was forgotten.
    fn forget_one(&mut self) -> bool {
        let Some((&heaviest, _)) = self
            .charged
            .iter()
            .max_by_key(|(peer, bytes)| (**bytes, **peer))
        else {
            return false;
        };
        let Some(oldest) = self
            .datasets
            .iter()
            .filter(|(_, e)| e.charged == heaviest)
            .min_by_key(|(_, e)| e.last_seen)
            .map(|(id, _)| *id)
        else {
            // Invariant: a charged peer has an entry; repair the books if not.
            self.charged.remove(&heaviest);
            return true;
        };
        if let Some(entry) = self.datasets.remove(&oldest) {
            let size = entry.root.bytes().len();
            self.bytes -= size;
            if let Some(charged) = self.charged.get_mut(&entry.charged) {
                *charged -= size;
                if *charged == 0 {
                    self.charged.remove(&entry.charged);
                }
            }
        }
        true
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
                    id: e.root.id(),
                    name: r.name.clone(),
                    description: r.description.clone(),
                    labels: r.labels.clone(),
                    task: r.task.kind().to_owned(),
                    samples: r.sample_count,
                    bytes: r.total_bytes,
                    providers: e.providers.keys().copied().collect(),
                    last_seen_s: e.last_seen.elapsed().as_secs(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmlabel_store::dataset::manifest::{PageRef, Root, Task};
    use swarmlabel_store::identity::Identity;
    use swarmlabel_store::store::BlobId;

    fn root(owner: &Identity, description_bytes: usize, n: u32) -> SignedRoot {
        let root = Root {
            name: format!("dataset {n}"),
            description: "d".repeat(description_bytes),
            instructions: String::new(),
            task: Task::TabularClassification {
                features: vec!["x".into()],
            },
            labels: vec!["a".into(), "b".into()],
            redundancy: 3,
            owner: owner.public_key(),
            created_at_ms: 1_700_000_000_000 + u64::from(n),
            sample_count: 1,
            gold_count: 0,
            total_bytes: 1,
            pages: vec![PageRef {
                id: BlobId([n as u8; 32]),
                samples: 1,
            }],
        };
        SignedRoot::sign(root, owner)
    }

    fn message(author: PeerId, root: &SignedRoot) -> gossipsub::Message {
        gossipsub::Message {
            source: Some(author),
            data: Announcement::now(root).encode(),
            sequence_number: None,
            topic: gossipsub::IdentTopic::new(announce::TOPIC).hash(),
        }
    }

    /// Why 5 of issue 14: up to 10,000 roots of up to 1 MiB were held (10 GB). Memory is now
    /// bounded in bytes, and a flooder's roots push out its own, never an honest owner's.
    #[test]
    fn a_flood_of_announcements_stays_within_the_byte_bound_and_honest_ones_survive() {
        let mut known = Known::new();
        let honest: Vec<(PeerId, SignedRoot)> = (0..5)
            .map(|i| {
                let owner = Identity::from_secret_bytes([i + 1; 32]);
                (owner.peer_id(), root(&owner, 1_000, u32::from(i)))
            })
            .collect();
        for (peer, root) in &honest {
            known.on_announcement(*peer, &message(*peer, root));
        }
        let flooder = Identity::from_secret_bytes([99; 32]);
        // 16 KiB roots: 4,000 of them are 64 MiB, twice the bound; each through another
        // connection, so that no forwarder's rate holds them back.
        for n in 0..4_000u32 {
            let spam = root(&flooder, 16 * 1024, 1_000 + n);
            known.on_announcement(PeerId::random(), &message(flooder.peer_id(), &spam));
            assert!(known.bytes <= MAX_KNOWN_BYTES, "{} bytes held", known.bytes);
        }
        let held: usize = known.datasets.values().map(|e| e.root.bytes().len()).sum();
        assert_eq!(held, known.bytes, "the byte count is exact");
        for (_, root) in &honest {
            assert!(
                known.datasets.contains_key(&root.id()),
                "an honest dataset was forgotten"
            );
        }
    }

    /// Audit 2026-12-04, N12: announcements were taken and forwarded without any rate, so one
    /// connection could make a node relay a flood of large roots to its whole mesh. A forwarder
    /// past its rate is ignored (neither kept nor forwarded) and others are not held back.
    #[test]
    fn one_forwarder_past_its_rate_is_ignored_and_others_are_not() {
        let mut known = Known::new();
        let owner = Identity::from_secret_bytes([7; 32]);
        let forwarder = PeerId::random();
        let mut accepted = 0;
        for n in 0..200u32 {
            let big = root(&owner, 16 * 1024, n);
            if known.on_announcement(forwarder, &message(owner.peer_id(), &big))
                == gossipsub::MessageAcceptance::Accept
            {
                accepted += 1;
            }
        }
        // 64 announcements at once, whatever was offered.
        assert!((60..=70).contains(&accepted), "{accepted} of 200 accepted");
        let other = root(&owner, 1_000, 9_999);
        assert_eq!(
            known.on_announcement(PeerId::random(), &message(owner.peer_id(), &other)),
            gossipsub::MessageAcceptance::Accept
        );
    }
}
