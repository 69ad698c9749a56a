//! The registry CRDT: per dataset, the latest verified update of each peer.
//!
//! Per peer the state is the set of distinct signed records seen at the highest version,
//! represented by its greatest and smallest record in the order (encoding, signature). The
//! greatest is the update in force; the smallest, when it carries another update, is the proof
//! that the peer equivocated (two signed contents for one version). Merging is the union of these
//! sets, so it is commutative, associative and idempotent (property tests in `laws.rs`), and every
//! node that has seen the same records holds the same registry whatever the order.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use super::update::{ModelUpdate, SignedUpdate, VerifyError};
use crate::annotation::{AnnotatorKey, DatasetId};

/// The domain of [`Registry::digest`].
const DIGEST_DOMAIN: &str = "swarmlabel/registry-digest/v1";

/// One peer's entry: its update in force, and the evidence if it equivocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    greatest: SignedUpdate,
    smallest: SignedUpdate,
}

impl Entry {
    fn single(update: SignedUpdate) -> Self {
        Self {
            greatest: update.clone(),
            smallest: update,
        }
    }

    /// The update in force: of the highest version, and of the greatest encoding among the
    /// contents signed for that version.
    pub fn latest(&self) -> &SignedUpdate {
        &self.greatest
    }

    /// Another signed update of the same peer and version, if the peer equivocated: with
    /// [`Entry::latest`] it proves it (both signatures verify).
    pub fn equivocation(&self) -> Option<&SignedUpdate> {
        (self.smallest.update() != self.greatest.update()).then_some(&self.smallest)
    }

    /// Adds one verified record of this peer; reports how it changed the entry.
    fn absorb(&mut self, record: &SignedUpdate) -> Inserted {
        let version = self.greatest.update().version;
        let new = record.update().version;
        match new.cmp(&version) {
            Ordering::Less => Inserted::Stale,
            Ordering::Greater => {
                *self = Self::single(record.clone());
                Inserted::Replaced { previous: version }
            }
            Ordering::Equal => {
                if rank(record) > rank(&self.greatest) {
                    self.greatest = record.clone();
                }
                if rank(record) < rank(&self.smallest) {
                    self.smallest = record.clone();
                }
                if record.update() != self.greatest.update()
                    || record.update() != self.smallest.update()
                {
                    Inserted::Equivocation
                } else {
                    Inserted::Duplicate
                }
            }
        }
    }
}

/// The order of records of one peer and version: by canonical encoding, then signature. Total,
/// and the same on every node.
fn rank(record: &SignedUpdate) -> (Vec<u8>, [u8; 64]) {
    (record.update().encode(), *record.signature())
}

/// What [`Registry::insert`] did with a verified update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Inserted {
    /// The first update of this peer.
    New,
    /// A higher version replaced the peer's update of version `previous`.
    Replaced {
        /// The version replaced.
        previous: u64,
    },
    /// Older than the peer's update in force: ignored.
    Stale,
    /// Already known (the same update, possibly with another valid signature).
    Duplicate,
    /// Another content for the version in force: the peer equivocated. The greater encoding is in
    /// force and the entry keeps the evidence.
    Equivocation,
}

/// Errors of [`Registry::merge`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MergeError {
    /// The registries are of different datasets.
    #[error("cannot merge the model registry of dataset {theirs} into that of dataset {ours}")]
    OtherDataset {
        /// This registry's dataset.
        ours: DatasetId,
        /// The other registry's dataset.
        theirs: DatasetId,
    },
}

/// The model registry of one dataset: the latest verified update of each peer. Holds only
/// updates that passed [`SignedUpdate::verify`] for its dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    dataset: DatasetId,
    entries: BTreeMap<AnnotatorKey, Entry>,
}

impl Registry {
    /// An empty registry of `dataset`.
    pub fn new(dataset: DatasetId) -> Self {
        Self {
            dataset,
            entries: BTreeMap::new(),
        }
    }

    /// The dataset.
    pub fn dataset(&self) -> DatasetId {
        self.dataset
    }

    /// Verifies `update` for this registry's dataset ([`SignedUpdate::verify`]) and adds it.
    /// A refused update leaves the registry unchanged.
    pub fn insert(&mut self, update: SignedUpdate) -> Result<Inserted, VerifyError> {
        update.verify(self.dataset)?;
        let peer = update.update().peer;
        Ok(match self.entries.get_mut(&peer) {
            Some(entry) => entry.absorb(&update),
            None => {
                self.entries.insert(peer, Entry::single(update));
                Inserted::New
            }
        })
    }

    /// Merges `other` into this registry: per peer the highest version, equivocations resolved
    /// and recorded as by [`Registry::insert`]. Commutative, associative and idempotent.
    /// `other`'s updates were verified when they entered it, so they are not verified again.
    pub fn merge(&mut self, other: &Registry) -> Result<(), MergeError> {
        if other.dataset != self.dataset {
            return Err(MergeError::OtherDataset {
                ours: self.dataset,
                theirs: other.dataset,
            });
        }
        for (peer, theirs) in &other.entries {
            match self.entries.get_mut(peer) {
                Some(ours) => {
                    ours.absorb(&theirs.greatest);
                    ours.absorb(&theirs.smallest);
                }
                None => {
                    self.entries.insert(*peer, theirs.clone());
                }
            }
        }
        Ok(())
    }

    /// Removes `peer`'s entry (a node's own bound on what it keeps: the owner's policy, a cap on
    /// entries); returns it. Merging the entry back later adds it again.
    pub fn remove(&mut self, peer: &AnnotatorKey) -> Option<Entry> {
        self.entries.remove(peer)
    }

    /// The entry of `peer`.
    pub fn get(&self, peer: &AnnotatorKey) -> Option<&Entry> {
        self.entries.get(peer)
    }

    /// Every signed record held, as anti-entropy sends them: each peer's update in force and its
    /// equivocation evidence, in peer order.
    pub fn records(&self) -> Vec<SignedUpdate> {
        let mut out = Vec::with_capacity(self.len());
        for (_, entry) in self.entries() {
            out.push(entry.latest().clone());
            if let Some(other) = entry.equivocation() {
                out.push(other.clone());
            }
        }
        out
    }

    /// The entries, sorted by peer key.
    pub fn entries(&self) -> impl Iterator<Item = (&AnnotatorKey, &Entry)> {
        self.entries.iter()
    }

    /// The update in force of each peer, sorted by peer key: the input of [`super::merge`].
    pub fn latest(&self) -> impl Iterator<Item = &ModelUpdate> {
        self.entries.values().map(|e| e.greatest.update())
    }

    /// The peers that equivocated at their version in force, sorted.
    pub fn equivocators(&self) -> impl Iterator<Item = &AnnotatorKey> {
        self.entries
            .iter()
            .filter(|(_, e)| e.equivocation().is_some())
            .map(|(peer, _)| peer)
    }

    /// The number of peers with an update.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no peer has an update.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// BLAKE3 over the dataset and the entries sorted by peer (each entry's records in force and
    /// of evidence, length-prefixed): equal registries have equal digests, and nodes compare
    /// registries by exchanging 32 bytes.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(DIGEST_DOMAIN.as_bytes());
        h.update(&[0]);
        h.update(&self.dataset.0);
        h.update(&(self.entries.len() as u64).to_le_bytes());
        for entry in self.entries.values() {
            for record in [&entry.greatest, &entry.smallest] {
                let bytes = record.to_bytes();
                // At most MAX_SIGNED_LEN (290) bytes.
                h.update(&(bytes.len() as u16).to_le_bytes());
                h.update(&bytes);
            }
        }
        *h.finalize().as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::testing::{DATASET, signed, signed_as, update};
    use crate::registry::update::WeightsHash;
    use crate::testing::annotator;

    #[test]
    fn keeps_the_highest_version_per_peer() {
        let mut r = Registry::new(DATASET);
        assert_eq!(r.insert(signed(1, 2, 10)), Ok(Inserted::New));
        assert_eq!(r.insert(signed(1, 1, 99)), Ok(Inserted::Stale));
        assert_eq!(r.insert(signed(2, 7, 5)), Ok(Inserted::New));
        assert_eq!(
            r.insert(signed(1, 3, 20)),
            Ok(Inserted::Replaced { previous: 2 })
        );
        assert_eq!(r.insert(signed(1, 3, 20)), Ok(Inserted::Duplicate));
        assert_eq!(r.len(), 2);
        let versions: Vec<_> = r.latest().map(|u| (u.peer, u.version)).collect();
        let mut expected = vec![(annotator(1), 3), (annotator(2), 7)];
        expected.sort();
        assert_eq!(versions, expected);
        assert_eq!(r.equivocators().count(), 0);
    }

    #[test]
    fn equivocation_keeps_the_greater_encoding_and_the_evidence_in_any_order() {
        let a = signed(1, 5, 10);
        let b = signed_as(
            1,
            crate::registry::ModelUpdate {
                weights_hash: WeightsHash([0xff; 32]),
                ..update(1, 5, 10)
            },
        );
        let (small, great) = if a.update().encode() < b.update().encode() {
            (a, b)
        } else {
            (b, a)
        };
        let mut one = Registry::new(DATASET);
        one.insert(small.clone()).unwrap();
        assert_eq!(one.insert(great.clone()), Ok(Inserted::Equivocation));
        let mut two = Registry::new(DATASET);
        two.insert(great.clone()).unwrap();
        assert_eq!(two.insert(small.clone()), Ok(Inserted::Equivocation));
        assert_eq!(one, two);
        assert_eq!(one.digest(), two.digest());
        let entry = one.get(&annotator(1)).unwrap();
        assert_eq!(entry.latest(), &great);
        assert_eq!(entry.equivocation(), Some(&small));
        assert_eq!(one.equivocators().collect::<Vec<_>>(), vec![&annotator(1)]);
        // A higher version clears the equivocation of an older one.
        one.insert(signed(1, 6, 10)).unwrap();
        assert_eq!(one.equivocators().count(), 0);
    }

    #[test]
    fn refuses_unverified_updates_and_other_datasets() {
        let mut r = Registry::new(DATASET);
        let good = signed(1, 1, 1);
        let forged = SignedUpdate::from_parts(good.update().clone(), [0; 64]);
        assert!(matches!(
            r.insert(forged),
            Err(VerifyError::BadSignature { .. })
        ));
        assert!(r.is_empty());
        let mut other = Registry::new(DatasetId([1; 32]));
        assert!(matches!(
            other.insert(good),
            Err(VerifyError::WrongDataset { .. })
        ));
        assert!(matches!(
            r.merge(&other),
            Err(MergeError::OtherDataset { .. })
        ));
    }

    #[test]
    fn digest_tells_registries_apart() {
        let mut a = Registry::new(DATASET);
        let empty = a.digest();
        a.insert(signed(1, 1, 1)).unwrap();
        let one = a.digest();
        a.insert(signed(1, 2, 1)).unwrap();
        assert_ne!(empty, one);
        assert_ne!(one, a.digest());
        assert_ne!(Registry::new(DatasetId([1; 32])).digest(), empty);
    }
}
