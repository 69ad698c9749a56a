//! The decisions of anti-entropy, without I/O: how shard heads are summarised, which shards differ
//! from a peer's, and which peers to sync with in a round.

use std::collections::HashSet;
use std::hash::Hash;

use rand::Rng;
use swarmlabel_crdt::{ChangeHash, ShardId};

use crate::net::sync::Digest;

/// The digest of a shard's automerge heads: BLAKE3 over the heads in sorted order. Equal
/// documents have equal heads and so equal digests; an empty shard has the digest of no bytes.
pub fn digest(heads: &[ChangeHash]) -> Digest {
    let mut sorted: Vec<&ChangeHash> = heads.iter().collect();
    sorted.sort();
    let mut hasher = blake3::Hasher::new();
    for h in sorted {
        hasher.update(&h.0);
    }
    *hasher.finalize().as_bytes()
}

/// The two summaries do not describe the same shard layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the peer's summary has {theirs} shards, ours {mine}: different shard layouts")]
pub struct LayoutMismatch {
    /// Our shard count.
    pub mine: usize,
    /// Theirs.
    pub theirs: usize,
}

/// The shards whose digests differ, in shard order. Both sides need the sync whichever holds
/// more, so any difference counts.
pub fn differing_shards(
    mine: &[Digest],
    theirs: &[Digest],
) -> Result<Vec<ShardId>, LayoutMismatch> {
    if mine.len() != theirs.len() {
        return Err(LayoutMismatch {
            mine: mine.len(),
            theirs: theirs.len(),
        });
    }
    Ok(mine
        .iter()
        .zip(theirs)
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, _)| ShardId(i as u16))
        .collect())
}

/// Up to `k` distinct peers drawn uniformly from `candidates`, leaving out `busy` ones (a
/// session with them is under way). Random choice spreads the load of a round over the peers
/// and, over rounds, reaches every one of them.
pub fn pick_peers<P: Copy + Eq + Hash>(
    candidates: &[P],
    busy: &HashSet<P>,
    k: usize,
    rng: &mut impl Rng,
) -> Vec<P> {
    let mut free: Vec<P> = Vec::with_capacity(candidates.len());
    for p in candidates {
        if !busy.contains(p) && !free.contains(p) {
            free.push(*p);
        }
    }
    let k = k.min(free.len());
    // A partial Fisher–Yates shuffle: the first k are a uniform sample.
    for i in 0..k {
        let j = rng.random_range(i..free.len());
        free.swap(i, j);
    }
    free.truncate(k);
    free
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;

    fn hash(b: u8) -> ChangeHash {
        ChangeHash([b; 32])
    }

    #[test]
    fn digests_ignore_head_order_and_tell_documents_apart() {
        assert_eq!(digest(&[hash(1), hash(2)]), digest(&[hash(2), hash(1)]));
        assert_ne!(digest(&[hash(1)]), digest(&[hash(1), hash(2)]));
        assert_ne!(digest(&[]), digest(&[hash(0)]));
    }

    #[test]
    fn only_differing_shards_are_synced_and_layouts_must_match() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        assert_eq!(
            differing_shards(&[a, a, b, a], &[a, b, b, b]).unwrap(),
            vec![ShardId(1), ShardId(3)]
        );
        assert!(differing_shards(&[a, b], &[a, b]).unwrap().is_empty());
        assert_eq!(
            differing_shards(&[a], &[a, a]),
            Err(LayoutMismatch { mine: 1, theirs: 2 })
        );
    }

    #[test]
    fn peers_are_picked_distinct_never_busy_and_all_in_time() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let candidates: Vec<u32> = (0..10).chain(0..3).collect();
        let busy: HashSet<u32> = [4, 5].into();
        let mut seen = HashSet::new();
        for _ in 0..200 {
            let picked = pick_peers(&candidates, &busy, 3, &mut rng);
            assert_eq!(picked.len(), 3);
            let distinct: HashSet<u32> = picked.iter().copied().collect();
            assert_eq!(distinct.len(), 3, "{picked:?}");
            assert!(picked.iter().all(|p| !busy.contains(p)), "{picked:?}");
            seen.extend(picked);
        }
        assert_eq!(seen.len(), 8, "every free peer is picked over rounds");
        assert_eq!(
            pick_peers(&[1u32, 2], &HashSet::new(), 5, &mut rng).len(),
            2
        );
        assert!(pick_peers(&[4u32], &busy, 1, &mut rng).is_empty());
    }
}
