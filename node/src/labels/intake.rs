//! How many records a node takes, and from whom: token buckets per connected peer (the one that
//! sent them: the gossip relay, the peer a pull was answered by), per annotator (whoever relays
//! their records), and one for all peers together. Gossip and sync take from the same buckets,
//! and a record costs a token only when it is new here (a copy heard again costs nothing).
//!
//! Over a quota, records are left for later, never held against the sender: gossip gets
//! `Ignore` (gossipsub neither forwards nor scores it), a pull stops and is tried again at a later
//! round. So an honest peer that relays a fast labeler is never banned for it (audit N3), and
//! fresh keys (a new annotator key, a new gossip source per message) buy no extra room (N4): what
//! one connected peer can make a node store is at most `burst + rate × seconds` records, and all
//! peers together at most the global bucket's (`docs/protocol.md`, *Quotas*). I/O-free: time is
//! an input.

use std::time::Instant;

use libp2p::PeerId;
use swarmlabel_crdt::{AnnotatorKey, SignedAnnotation};
use swarmlabel_net::quota::{Quota, Take};

/// Rates (records a second) and bursts of the three buckets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Per connected peer: (rate, burst).
    pub per_peer: (f64, f64),
    /// Per annotator: (rate, burst).
    pub per_author: (f64, f64),
    /// All peers together: (rate, burst).
    pub all: (f64, f64),
}

impl Default for Limits {
    /// Per peer 1,000 a second (65,536 at once), per annotator 50 a second (16,384 at once: a
    /// volunteer's whole history arrives in one go when a node joins), 4,000 a second from all
    /// peers together (262,144 at once).
    fn default() -> Self {
        Self {
            per_peer: (1_000.0, 65_536.0),
            per_author: (50.0, 16_384.0),
            all: (4_000.0, 262_144.0),
        }
    }
}

impl Limits {
    /// No limit (tests of other things, trusted tools).
    pub fn unlimited() -> Self {
        let none = (f64::INFINITY, f64::INFINITY);
        Self {
            per_peer: none,
            per_author: none,
            all: none,
        }
    }
}

/// The buckets.
#[derive(Debug)]
pub(crate) struct Intake {
    peers: Quota<PeerId>,
    authors: Quota<AnnotatorKey>,
    all: Quota<()>,
}

/// What [`Intake::admit`] let through.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Admitted {
    /// The records within every quota, in the order offered.
    pub(crate) taken: Vec<SignedAnnotation>,
    /// How many were left for later.
    pub(crate) over: usize,
}

impl Intake {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            peers: Quota::new(limits.per_peer.0, limits.per_peer.1),
            authors: Quota::new(limits.per_author.0, limits.per_author.1),
            all: Quota::new(limits.all.0, limits.all.1),
        }
    }

    /// Of `records` (new to this node) that `peer` sent, the ones within every quota at `now`,
    /// taking a token from each bucket for each. Once a record of a chain is left out, the
    /// chain's later ones in the batch are too (a chain is taken in order only).
    pub(crate) fn admit(
        &mut self,
        peer: PeerId,
        records: Vec<SignedAnnotation>,
        now: Instant,
    ) -> Admitted {
        let mut out = Admitted::default();
        let mut stopped: Vec<AnnotatorKey> = Vec::new();
        for record in records {
            let author = record.annotation().annotator;
            let fits = !stopped.contains(&author)
                && self.peers.has(&peer, 1, now)
                && self.authors.has(&author, 1, now)
                && self.all.has(&(), 1, now);
            if fits {
                let taken = [
                    self.peers.take(peer, 1, now),
                    self.authors.take(author, 1, now),
                    self.all.take((), 1, now),
                ];
                debug_assert!(taken.iter().all(|t| *t == Take::Taken));
                out.taken.push(record);
            } else {
                if !stopped.contains(&author) {
                    stopped.push(author);
                }
                out.over += 1;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use swarmlabel_crdt::{Annotation, DatasetId, SampleId, Signer as _, Value};

    fn record(author: u8, seq: u32) -> SignedAnnotation {
        let key = ed25519_dalek::SigningKey::from_bytes(&[author; 32]);
        let a = Annotation {
            dataset: DatasetId([1; 32]),
            sample: SampleId([seq as u8; 32]),
            annotator: AnnotatorKey(key.public_key()),
            seq,
            time_ms: 1,
            value: Value::Label(0),
            suggestion: None,
        };
        SignedAnnotation::sign(a, &key).unwrap()
    }

    #[test]
    fn fresh_authors_buy_no_room_past_the_peers_bucket() {
        let mut intake = Intake::new(Limits {
            per_peer: (1.0, 10.0),
            per_author: (1.0, 100.0),
            all: (1_000.0, 1_000.0),
        });
        let (flooder, honest) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        // One record each by 30 fresh keys: 10 taken, the rest left for later.
        let fresh: Vec<_> = (0..30).map(|a| record(a, 1)).collect();
        let got = intake.admit(flooder, fresh, t0);
        assert_eq!((got.taken.len(), got.over), (10, 20));
        // Another peer has its own bucket.
        assert_eq!(
            intake.admit(honest, vec![record(200, 1)], t0).taken.len(),
            1
        );
        // Ten seconds later, ten more.
        let later: Vec<_> = (100..130).map(|a| record(a, 1)).collect();
        let got = intake.admit(flooder, later, t0 + Duration::from_secs(10));
        assert_eq!(got.taken.len(), 10);
    }

    #[test]
    fn an_authors_bucket_holds_whoever_relays_and_a_chain_stops_at_its_first_refusal() {
        let mut intake = Intake::new(Limits {
            per_peer: (1_000.0, 1_000.0),
            per_author: (0.0, 3.0),
            all: (1_000.0, 1_000.0),
        });
        let t0 = Instant::now();
        let chain: Vec<_> = (1..=2).map(|s| record(1, s)).collect();
        assert_eq!(intake.admit(PeerId::random(), chain, t0).taken.len(), 2);
        // From another relay: one more fits, then the author's bucket is empty, and the
        // chain's later records wait with it.
        let rest = vec![record(1, 3), record(1, 4), record(2, 1), record(1, 5)];
        let got = intake.admit(PeerId::random(), rest, t0);
        let taken: Vec<(u8, u32)> = got
            .taken
            .iter()
            .map(|r| (r.annotation().sample.0[0], r.annotation().seq))
            .collect();
        assert_eq!(taken, vec![(3, 3), (1, 1)]);
        assert_eq!(got.over, 2);
    }

    #[test]
    fn all_peers_together_share_one_bucket() {
        let mut intake = Intake::new(Limits {
            per_peer: (1_000.0, 1_000.0),
            per_author: (1_000.0, 1_000.0),
            all: (0.0, 5.0),
        });
        let t0 = Instant::now();
        let mut taken = 0;
        for a in 0..10 {
            taken += intake
                .admit(PeerId::random(), vec![record(a, 1)], t0)
                .taken
                .len();
        }
        assert_eq!(taken, 5);
    }
}
