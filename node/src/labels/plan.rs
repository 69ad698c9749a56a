//! The labels' decisions of a session, without I/O: how shard heads are summarised, and which
//! shards differ from a peer's.

use swarmlabel_crdt::{ChangeHash, ShardId};

use super::wire::Digest;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
