//! Screening of changes that arrive from a peer, before automerge applies them.
//!
//! Reading already ignores invalid values, but in automerge a put *supersedes* the values it
//! names as predecessors: a stranger could otherwise hide an honest label by writing over its
//! slot (with garbage, or with a replay of that annotator's older label). So a peer's change is
//! applied only if every op in it is a put of a valid record (the same [`check`] as reading) on
//! the root map, and no put replaces a valid value of its slot that is as new or newer. Honest
//! replicas never make anything else: [`crate::Replica::record`] enforces the same rules.

use automerge::legacy::{Key, ObjectId, OpType};
use automerge::{Automerge, Change, ScalarValue};

use super::storage::{ChunkKind, split_chunks};
use super::{Shard, inflate};
use crate::annotation::SignedAnnotation;
use crate::samples::Samples;
use crate::sync::Refusal;
use crate::validate::{Dataset, Rejection, check_cached};

/// What screening a message found: every op was a valid put.
#[derive(Debug, Default)]
pub(crate) struct Screened {
    /// Ops checked.
    pub(crate) ops: usize,
    /// The records put that the shard does not already hold (byte for byte, or a newer one).
    pub(crate) records: Vec<SignedAnnotation>,
}

/// Checks all changes in the chunk lists of a sync message. Compressed parts may inflate to
/// `max_inflated` bytes in all, checked before automerge inflates them (`super::inflate`).
pub(crate) fn screen<'a>(
    shard: &Shard,
    dataset: &Dataset,
    samples: Option<&Samples>,
    items: impl Iterator<Item = &'a [u8]>,
    max_inflated: usize,
) -> Result<Screened, Refusal> {
    let mut budget = max_inflated;
    let mut out = Screened::default();
    for item in items {
        // An item is a sequence of chunks (one per change, or a whole document); every one of
        // them is checked, and bytes that do not split into chunks are refused.
        let chunks = split_chunks(item).map_err(|e| Refusal::Undecodable(e.to_string()))?;
        for chunk in chunks {
            let bytes = &item[chunk.range.clone()];
            // Bound what its compressed streams inflate to before automerge parses it; the
            // budget is shared by the whole message.
            let bounded = match chunk.kind {
                ChunkKind::CompressedChange => inflate::compressed_change(bytes, &mut budget),
                ChunkKind::Document => inflate::document(bytes, &mut budget),
                ChunkKind::Change | ChunkKind::Bundle => Ok(()),
            };
            bounded.map_err(|e| match e {
                inflate::InflateError::OverBudget => Refusal::Inflated { max: max_inflated },
                inflate::InflateError::Malformed(why) => Refusal::Undecodable(why.to_owned()),
            })?;
            match chunk.kind {
                ChunkKind::Document => {
                    let doc = Automerge::load(bytes)
                        .map_err(|e| Refusal::Undecodable(format!("document chunk: {e}")))?;
                    for change in doc.get_changes(&[]) {
                        screen_change(shard, dataset, samples, &change, &mut out)?;
                    }
                }
                ChunkKind::Change | ChunkKind::CompressedChange => {
                    let change = Change::try_from(bytes)
                        .map_err(|e| Refusal::Undecodable(format!("change chunk: {e}")))?;
                    if change.hash().0[..4] != bytes[4..8] {
                        return Err(Refusal::Undecodable("change chunk: bad checksum".into()));
                    }
                    screen_change(shard, dataset, samples, &change, &mut out)?;
                }
                ChunkKind::Bundle => {
                    return Err(Refusal::Undecodable(
                        "bundle chunks are not part of the sync protocol".into(),
                    ));
                }
            }
        }
    }
    Ok(out)
}

fn screen_change(
    shard: &Shard,
    dataset: &Dataset,
    samples: Option<&Samples>,
    change: &Change,
    out: &mut Screened,
) -> Result<(), Refusal> {
    let expanded = change.decode();
    for op in &expanded.operations {
        let (ObjectId::Root, Key::Map(key), OpType::Put(ScalarValue::Bytes(value)), false) =
            (&op.obj, &op.key, &op.action, op.insert)
        else {
            return Err(Refusal::NotAnnotationPut);
        };
        let key: &str = key;
        let signed = check_cached(dataset, shard.id, key, value, &shard.verified)
            .map_err(Refusal::Invalid)?;
        if samples.is_some_and(|s| !s.contains(&signed.annotation().sample)) {
            return Err(Refusal::Invalid(Rejection::UnknownSample));
        }
        if !shard.holds(key, &signed) {
            out.records.push(signed);
        }
        if op.pred.is_empty() {
            continue;
        }
        let (visible, _) = shard.slot_values(dataset, key);
        for (old, counter, actor) in visible {
            let superseded = op.pred.iter().any(|p| p.0 == counter && p.1 == actor);
            if superseded && old.annotation().time_ms >= signed.annotation().time_ms {
                return Err(Refusal::Stale {
                    key: key.to_owned(),
                    kept_ms: old.annotation().time_ms,
                    offered_ms: signed.annotation().time_ms,
                });
            }
        }
    }
    out.ops += expanded.operations.len();
    Ok(())
}
