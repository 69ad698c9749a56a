//! Author chains: how a signed annotation becomes one automerge change that is the same, byte
//! for byte, on every replica.
//!
//! Each annotator has one chain per shard: its records there, numbered from 1 by the `seq` they
//! carry under their signature. The record with `seq` n becomes the chain's n-th automerge
//! change, built here from the record alone and the hash of the chain's change n-1:
//!
//! - actor: 16 bytes derived from the annotator key and the shard ([`actor`]);
//! - seq n, start op n (one op per change), time = the record's `time_ms`, no message, no extra
//!   bytes, deps = [the hash of change n-1] (none for n = 1);
//! - one op: a put of the record's bytes at its slot key on the root map, superseding (`pred`)
//!   the chain's previous op on that slot, if it has one.
//!
//! Nothing in that depends on who builds it or when, so a record exists once in every replica:
//! nodes relay records, not changes, and each rebuilds the identical change (the same hash), so
//! equal records mean equal documents and equal heads, whatever order they arrived in and however
//! many peers relayed them. A chain depends on nothing but itself, so one chain can be refused
//! (a banned annotator) without holding any other back. No byte a peer sends is parsed by
//! automerge: peers send signed records, which this crate decodes strictly, and automerge only
//! ever reads changes built here.

use std::num::NonZeroU64;

use automerge::legacy::{Key, ObjectId, Op, OpId, OpType, SortedVec};
use automerge::{ActorId, Change, ChangeHash, ExpandedChange, ScalarValue};

use crate::annotation::{AnnotatorKey, SignedAnnotation};
use crate::layout::{ShardId, slot_key};

/// The key of BLAKE3's key derivation for chain actors.
const ACTOR_CONTEXT: &str = "swarmlabel 2026-12-04 chain actor v1";

/// Bytes of a chain's automerge actor id.
pub const ACTOR_LEN: usize = 16;

/// The automerge actor of `annotator`'s chain in `shard`.
pub fn actor(annotator: &AnnotatorKey, shard: ShardId) -> ActorId {
    let mut input = [0u8; 34];
    input[..32].copy_from_slice(&annotator.0);
    input[32..].copy_from_slice(&shard.0.to_le_bytes());
    let derived = blake3::derive_key(ACTOR_CONTEXT, &input);
    ActorId::from(&derived[..ACTOR_LEN])
}

/// Where a record stands against the end of its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The chain's next record: taken.
    Next,
    /// A place the chain already has (the same record, or another signed for it).
    Held,
    /// Past the chain's next: the records between are missing here.
    Gap,
}

/// Where `seq` stands against a chain whose last record held has `tip` (0: none held). The one
/// rule by which every replica takes a chain's records: in order, each once.
pub fn place(tip: u32, seq: u32) -> Place {
    match seq.checked_sub(tip) {
        Some(1) => Place::Next,
        Some(0) | None => Place::Held,
        Some(_) => Place::Gap,
    }
}

/// The change of `record` (with `seq` ≥ 1) in its chain in `shard`: `prev` is the hash of the
/// chain's change `seq - 1` (`None` for the first), `pred` the counter (the `seq`) of the chain's
/// previous op on the record's slot, if any.
pub(crate) fn change(
    record: &SignedAnnotation,
    shard: ShardId,
    prev: Option<ChangeHash>,
    pred: Option<u32>,
) -> Change {
    let a = record.annotation();
    let actor = actor(&a.annotator, shard);
    let pred = pred
        .map(|counter| vec![OpId::new(u64::from(counter), &actor)])
        .unwrap_or_default();
    let op = Op {
        action: OpType::Put(ScalarValue::Bytes(record.to_bytes().to_vec())),
        obj: ObjectId::Root,
        key: Key::Map(slot_key(&a.sample, &a.annotator).into()),
        pred: SortedVec::from(pred),
        insert: false,
    };
    // `seq` is at least 1 for a chain record (the caller checks), so this is never the fallback.
    let start = NonZeroU64::new(u64::from(a.seq)).unwrap_or(NonZeroU64::MIN);
    Change::from(ExpandedChange {
        operations: vec![op],
        actor_id: actor,
        hash: None,
        seq: u64::from(a.seq),
        start_op: start,
        time: i64::try_from(a.time_ms).unwrap_or(i64::MAX),
        message: None,
        deps: prev.into_iter().collect(),
        extra_bytes: Vec::new(),
        author: None,
    })
}

/// The record a chain change carries: its single op's value, if the change is shaped as
/// [`change`] makes them (anything else is `None`).
pub(crate) fn record_of(change: &Change) -> Option<SignedAnnotation> {
    let expanded = change.decode();
    let [op] = expanded.operations.as_slice() else {
        return None;
    };
    let OpType::Put(ScalarValue::Bytes(value)) = &op.action else {
        return None;
    };
    SignedAnnotation::from_bytes(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotation::Value;
    use crate::testing::{annotator, chain_signed};

    #[test]
    fn the_same_record_makes_the_same_change_and_chains_link() {
        let first = chain_signed(1, 7, 1, 100, Value::Label(1));
        let a = change(&first, ShardId(2), None, None);
        let b = change(&first, ShardId(2), None, None);
        assert_eq!(a.raw_bytes(), b.raw_bytes());
        assert_eq!(a.actor_id(), &actor(&annotator(1), ShardId(2)));
        assert_eq!(a.seq(), 1);
        assert!(a.deps().is_empty());
        assert_eq!(record_of(&a), Some(first));
        // The next record of the chain depends on the first and, on the same slot, supersedes it.
        let second = chain_signed(1, 7, 2, 200, Value::Label(2));
        let c = change(&second, ShardId(2), Some(a.hash()), Some(1));
        assert_eq!(c.deps(), &[a.hash()]);
        assert_eq!(c.seq(), 2);
        let mut doc = automerge::Automerge::new();
        doc.apply_changes([a, c]).unwrap();
        use automerge::ReadDoc as _;
        let values = doc
            .get_all(
                automerge::ROOT,
                slot_key(&second.annotation().sample, &annotator(1)),
            )
            .unwrap();
        assert_eq!(values.len(), 1, "the later record replaced the earlier one");
    }

    #[test]
    fn actors_differ_by_annotator_and_shard() {
        assert_ne!(
            actor(&annotator(1), ShardId(0)),
            actor(&annotator(2), ShardId(0))
        );
        assert_ne!(
            actor(&annotator(1), ShardId(0)),
            actor(&annotator(1), ShardId(1))
        );
    }
}
