//! Which blob to ask from which provider: an I/O-free scheduler driven by the outcomes of
//! requests, so that it can be tested without a network.
//!
//! Providers are scored: a verified blob raises the score, a failed request lowers it a little, a
//! blob that does not hash to its id lowers it by [`CORRUPT_PENALTY`] and bans the provider (the
//! caller disconnects it and never asks it again). Each provider has at most
//! `max_in_flight_per_provider` requests under way; a blob goes to the best-scored provider with
//! room that has not already failed to deliver it.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use libp2p::PeerId;

use swarmlabel_store::store::BlobId;

/// Score lost for a blob whose bytes do not match its hash.
pub const CORRUPT_PENALTY: i32 = 100;
/// Score lost for a failed request (timeout, closed connection, refusal).
pub const FAILURE_PENALTY: i32 = 5;
/// A provider at or below this score is banned.
pub const BAN_SCORE: i32 = -50;
/// Consecutive failures after which a provider is considered gone.
pub const MAX_CONSECUTIVE_FAILURES: u32 = 3;

/// How a provider stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Asked for blobs.
    Active,
    /// Sent corrupt data: never asked again.
    Banned,
    /// Left or keeps failing: not asked until it is added again.
    Gone,
}

#[derive(Debug, Clone)]
struct Provider {
    score: i32,
    in_flight: usize,
    consecutive_failures: u32,
    standing: Standing,
}

/// The scheduler of one fetch.
#[derive(Debug)]
pub struct Scheduler {
    providers: BTreeMap<PeerId, Provider>,
    pending: VecDeque<BlobId>,
    in_flight: HashMap<BlobId, PeerId>,
    failed_at: HashMap<BlobId, HashSet<PeerId>>,
    /// Exact sizes of wanted blobs, where known: no response is read past them.
    sizes: HashMap<BlobId, u64>,
    max_in_flight_per_provider: usize,
}

impl Scheduler {
    /// A scheduler with no providers and nothing wanted.
    pub fn new(max_in_flight_per_provider: usize) -> Self {
        Self {
            providers: BTreeMap::new(),
            pending: VecDeque::new(),
            in_flight: HashMap::new(),
            failed_at: HashMap::new(),
            sizes: HashMap::new(),
            max_in_flight_per_provider: max_in_flight_per_provider.max(1),
        }
    }

    /// Adds a provider, or makes a gone one active again (a banned one stays banned). Blobs it
    /// failed to deliver before may be asked of it again.
    pub fn add_provider(&mut self, peer: PeerId) {
        let p = self.providers.entry(peer).or_insert(Provider {
            score: 0,
            in_flight: 0,
            consecutive_failures: 0,
            standing: Standing::Active,
        });
        if p.standing == Standing::Gone {
            p.standing = Standing::Active;
            p.consecutive_failures = 0;
        }
        if p.standing == Standing::Active {
            for peers in self.failed_at.values_mut() {
                peers.remove(&peer);
            }
        }
    }

    /// Adds blobs to fetch.
    pub fn want(&mut self, ids: impl IntoIterator<Item = BlobId>) {
        self.pending.extend(ids);
    }

    /// Adds blobs to fetch whose exact sizes are known (from the manifest): a provider's answer
    /// is read no further than its blob's size.
    pub fn want_sized(&mut self, blobs: impl IntoIterator<Item = (BlobId, u64)>) {
        for (id, size) in blobs {
            self.sizes.insert(id, size);
            self.pending.push_back(id);
        }
    }

    /// The known size of a wanted blob.
    pub fn size_of(&self, id: &BlobId) -> Option<u64> {
        self.sizes.get(id).copied()
    }

    /// The next request to send, if a pending blob has a provider with room.
    pub fn next_request(&mut self) -> Option<(PeerId, BlobId)> {
        for _ in 0..self.pending.len() {
            let id = self.pending.pop_front()?;
            let failed = self.failed_at.get(&id);
            let best = self
                .providers
                .iter()
                .filter(|(peer, p)| {
                    p.standing == Standing::Active
                        && p.in_flight < self.max_in_flight_per_provider
                        && !failed.is_some_and(|f| f.contains(peer))
                })
                // Best score first; among equals, the least loaded; then the lowest peer id.
                .max_by(|(pa, a), (pb, b)| {
                    a.score
                        .cmp(&b.score)
                        .then(b.in_flight.cmp(&a.in_flight))
                        .then(pb.cmp(pa))
                })
                .map(|(peer, _)| *peer);
            match best {
                Some(peer) => {
                    if let Some(p) = self.providers.get_mut(&peer) {
                        p.in_flight += 1;
                    }
                    self.in_flight.insert(id, peer);
                    return Some((peer, id));
                }
                None => self.pending.push_back(id),
            }
        }
        None
    }

    fn finish(&mut self, peer: PeerId, id: BlobId) -> Option<&mut Provider> {
        if self.in_flight.get(&id) == Some(&peer) {
            self.in_flight.remove(&id);
            let p = self.providers.get_mut(&peer)?;
            p.in_flight = p.in_flight.saturating_sub(1);
            return Some(p);
        }
        None
    }

    /// `peer` delivered `id` and it hashed right.
    pub fn on_verified(&mut self, peer: PeerId, id: BlobId) {
        if let Some(p) = self.finish(peer, id) {
            p.score = (p.score + 1).min(100);
            p.consecutive_failures = 0;
        }
        self.failed_at.remove(&id);
    }

    /// `peer` sent bytes for `id` that hash to something else. Returns whether this banned it
    /// (only once: answers still under way from a banned provider return false).
    pub fn on_corrupt(&mut self, peer: PeerId, id: BlobId) -> bool {
        let banned = match self.finish(peer, id) {
            Some(p) => {
                p.score -= CORRUPT_PENALTY;
                let newly = p.score <= BAN_SCORE && p.standing != Standing::Banned;
                if newly {
                    p.standing = Standing::Banned;
                }
                newly
            }
            None => false,
        };
        self.retry(peer, id);
        banned
    }

    /// `peer` does not have `id`.
    pub fn on_not_found(&mut self, peer: PeerId, id: BlobId) {
        self.finish(peer, id);
        self.retry(peer, id);
    }

    /// The request for `id` to `peer` failed (timeout, closed connection, refusal).
    pub fn on_failed(&mut self, peer: PeerId, id: BlobId) {
        if let Some(p) = self.finish(peer, id) {
            p.score -= FAILURE_PENALTY;
            p.consecutive_failures += 1;
            if p.consecutive_failures >= MAX_CONSECUTIVE_FAILURES && p.standing == Standing::Active
            {
                p.standing = Standing::Gone;
            }
        }
        self.retry(peer, id);
    }

    /// `peer` left: its blobs under way go back to the queue.
    pub fn on_gone(&mut self, peer: PeerId) {
        if let Some(p) = self.providers.get_mut(&peer)
            && p.standing == Standing::Active
        {
            p.standing = Standing::Gone;
        }
        let lost: Vec<BlobId> = self
            .in_flight
            .iter()
            .filter(|(_, p)| **p == peer)
            .map(|(id, _)| *id)
            .collect();
        for id in lost {
            self.finish(peer, id);
            self.pending.push_back(id);
        }
    }

    fn retry(&mut self, peer: PeerId, id: BlobId) {
        self.failed_at.entry(id).or_default().insert(peer);
        self.pending.push_back(id);
    }

    /// Everything wanted was delivered.
    pub fn is_done(&self) -> bool {
        self.pending.is_empty() && self.in_flight.is_empty()
    }

    /// Requests under way.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Blobs not yet delivered.
    pub fn remaining(&self) -> usize {
        self.pending.len() + self.in_flight.len()
    }

    /// A provider's standing.
    pub fn standing(&self, peer: &PeerId) -> Option<Standing> {
        self.providers.get(peer).map(|p| p.standing)
    }

    /// Pending blobs, for reports.
    pub fn pending(&self) -> impl Iterator<Item = &BlobId> {
        self.pending.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u8) -> Vec<BlobId> {
        (0..n).map(|i| BlobId([i; 32])).collect()
    }

    #[test]
    fn spreads_requests_over_providers_within_their_limits() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut s = Scheduler::new(2);
        s.add_provider(a);
        s.add_provider(b);
        s.want(ids(6));
        let mut sent = Vec::new();
        while let Some(r) = s.next_request() {
            sent.push(r);
        }
        assert_eq!(sent.len(), 4, "two providers with room for two each");
        assert_eq!(sent.iter().filter(|(p, _)| *p == a).count(), 2);
        let blobs: HashSet<_> = sent.iter().map(|(_, id)| *id).collect();
        assert_eq!(blobs.len(), 4, "no blob is asked twice at once");
        for (p, id) in sent {
            s.on_verified(p, id);
        }
        while let Some((p, id)) = s.next_request() {
            s.on_verified(p, id);
        }
        assert!(s.is_done());
    }

    #[test]
    fn corrupt_data_bans_the_provider_and_the_blob_goes_to_another() {
        let (bad, good) = (PeerId::random(), PeerId::random());
        let mut s = Scheduler::new(1);
        s.add_provider(bad);
        s.want(ids(1));
        let (p, id) = s.next_request().unwrap();
        assert_eq!(p, bad);
        assert!(s.on_corrupt(bad, id));
        assert_eq!(s.standing(&bad), Some(Standing::Banned));
        s.in_flight.insert(BlobId([9; 32]), bad);
        assert!(
            !s.on_corrupt(bad, BlobId([9; 32])),
            "a ban is reported once"
        );
        s.pending.retain(|b| *b != BlobId([9; 32]));
        assert_eq!(
            s.next_request(),
            None,
            "a banned provider is not asked again"
        );
        s.add_provider(good);
        s.add_provider(bad);
        assert_eq!(
            s.standing(&bad),
            Some(Standing::Banned),
            "re-adding does not unban"
        );
        assert_eq!(s.next_request(), Some((good, id)));
        s.on_verified(good, id);
        assert!(s.is_done());
    }

    #[test]
    fn a_provider_that_leaves_gives_its_blobs_back() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut s = Scheduler::new(4);
        s.add_provider(a);
        s.want(ids(3));
        let first: Vec<_> = std::iter::from_fn(|| s.next_request()).collect();
        assert_eq!(first.len(), 3);
        s.on_gone(a);
        assert_eq!(s.in_flight(), 0);
        assert_eq!(s.next_request(), None);
        s.add_provider(b);
        let second: Vec<_> = std::iter::from_fn(|| s.next_request()).collect();
        assert!(second.iter().all(|(p, _)| *p == b));
        assert_eq!(second.len(), 3);
        // A late answer from the provider that left changes nothing.
        s.on_verified(a, first[0].1);
        assert_eq!(s.in_flight(), 3);
    }

    #[test]
    fn not_found_moves_on_and_repeated_failures_mean_gone() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut s = Scheduler::new(1);
        s.add_provider(a);
        s.add_provider(b);
        s.want(ids(1));
        let (p1, id) = s.next_request().unwrap();
        s.on_not_found(p1, id);
        let (p2, _) = s.next_request().unwrap();
        assert_ne!(p1, p2, "the blob goes to the provider that did not say no");
        s.on_not_found(p2, id);
        assert_eq!(s.next_request(), None, "nobody left to ask");
        assert_eq!(s.remaining(), 1);
        for _ in 0..MAX_CONSECUTIVE_FAILURES {
            s.add_provider(a);
            if let Some((p, id)) = s.next_request() {
                s.on_failed(p, id);
            }
        }
        assert_eq!(s.standing(&a), Some(Standing::Gone));
    }
}
