//! One shard: an automerge document whose root map holds one slot per (sample, annotator).
//!
//! Writes are staged and committed as one automerge change per shard per batch (a change per
//! label would cost a change-graph entry and a hash per label). Reading validates every stored
//! value with [`crate::validate::check`]; among the values of a slot that automerge keeps as
//! concurrent conflicts, the valid one with the greatest `(time_ms, record bytes)` wins, so every
//! replica picks the same winner whatever order it received them in.

mod inflate;
pub(crate) mod screen;
pub(crate) mod storage;

use std::collections::BTreeMap;

use automerge::transaction::{CommitOptions, Transactable as _};
use automerge::{ActorId, Automerge, ChangeHash, ROOT, ReadDoc as _, ScalarValue, Value, ValueRef};

use crate::annotation::SignedAnnotation;
use crate::layout::ShardId;
use crate::validate::{Dataset, Rejection, Rejections, Verified, check_cached};

/// The validated contents of one or more shards.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Annotations {
    /// The winning valid annotation of every slot, sorted by (sample, annotator).
    pub annotations: Vec<SignedAnnotation>,
    /// Stored values that were ignored, by reason (losing but valid conflict values are not
    /// counted here).
    pub rejected: Rejections,
    /// Slots that held more than one value (concurrent writes), resolved by the rule above.
    pub conflicted_slots: u64,
}

impl Annotations {
    pub(crate) fn extend(&mut self, other: Annotations) {
        self.annotations.extend(other.annotations);
        self.rejected.merge(&other.rejected);
        self.conflicted_slots += other.conflicted_slots;
    }

    pub(crate) fn sort(&mut self) {
        self.annotations.sort_unstable_by(|a, b| {
            let (a, b) = (a.annotation(), b.annotation());
            (a.sample, a.annotator).cmp(&(b.sample, b.annotator))
        });
    }
}

#[derive(Debug)]
pub(crate) struct Shard {
    pub(crate) id: ShardId,
    pub(crate) doc: Automerge,
    /// Staged writes: slot key to record. A later write to the same slot replaces the staged one.
    pending: BTreeMap<String, SignedAnnotation>,
    /// Heads at the last save or load, for incremental saves.
    pub(crate) saved_heads: Option<Vec<ChangeHash>>,
    /// Whether changes were applied in bulk since the last [`Shard::defragment`].
    fragile: bool,
    /// Records whose signature verified already: reading and screening verify each once.
    pub(crate) verified: Verified,
}

/// Keys between the splits made by [`Shard::defragment`]: about 32 × 177 bytes ≈ 5.7 KB of values
/// per piece.
const DEFRAG_STRIDE: usize = 32;

pub(crate) use crate::slot::wins;

/// The bytes of a scalar bytes value, or `None` for anything else.
fn value_bytes<'v>(value: &'v Value<'_>) -> Option<&'v [u8]> {
    match value {
        Value::Scalar(s) => match s.as_ref() {
            ScalarValue::Bytes(b) => Some(b),
            _ => None,
        },
        Value::Object(_) => None,
    }
}

impl Shard {
    pub(crate) fn new(id: ShardId, actor: ActorId) -> Self {
        Self {
            id,
            doc: Automerge::new().with_actor(actor),
            pending: BTreeMap::new(),
            saved_heads: None,
            fragile: false,
            verified: Verified::default(),
        }
    }

    /// Works around a memory blowup in automerge 0.12.0 (its column store, hexane
    /// 1.0.0-alpha.5): after a load or a bulk apply, the column of values can sit in one oversize
    /// slab, and applying changes at scattered keys (a merge, a sync message) then splits it again
    /// and again, each piece keeping the whole old capacity: about `ops × column bytes / 2`. It
    /// was measured at 1.3 GB and 1.1 s for 1,500 ops into a loaded 15,600-op shard, and 0 MB
    /// and 25 ms after this, which costs about 40 ms. Putting a 1-byte value at every
    /// [`DEFRAG_STRIDE`]th key in a transaction that is then rolled back splits the column into
    /// small pieces and leaves the document as it was: no op, no change, the same heads and the
    /// same saved bytes (tested).
    fn defragment(&mut self) {
        let keys: Vec<String> = self
            .doc
            .map_range(ROOT, ..)
            .step_by(DEFRAG_STRIDE)
            .map(|item| item.key.into_owned())
            .collect();
        self.fragile = false;
        if keys.len() < 2 {
            return;
        }
        let mut tx = self.doc.transaction();
        for key in keys.iter().rev() {
            // A put on the root map with a string key cannot fail.
            if tx
                .put(ROOT, key.as_str(), ScalarValue::Bytes(vec![0]))
                .is_err()
            {
                break;
            }
        }
        tx.rollback();
    }

    /// Notes that the document was just loaded (its columns are in one piece each).
    pub(crate) fn mark_loaded(&mut self) {
        self.fragile = true;
    }

    /// Applies changes in bulk through `apply` (a merge, a sync message, a loaded chunk): splits
    /// the value column first if an earlier bulk apply may have left it in one piece, and notes
    /// that this one may have.
    pub(crate) fn bulk_apply<T>(&mut self, apply: impl FnOnce(&mut Automerge) -> T) -> T {
        if self.fragile {
            self.defragment();
        }
        let before = self.doc.get_heads();
        let out = apply(&mut self.doc);
        if self.doc.get_heads() != before {
            self.fragile = true;
        }
        out
    }

    pub(crate) fn stage(&mut self, key: String, signed: SignedAnnotation) {
        self.pending.insert(key, signed);
    }

    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn staged(&self, key: &str) -> Option<&SignedAnnotation> {
        self.pending.get(key)
    }

    /// Commits the staged writes as one change; returns whether a change was made. The change's
    /// timestamp is the latest annotation time of the batch (in ms), so no clock is read.
    pub(crate) fn commit(&mut self) -> bool {
        if self.pending.is_empty() {
            return false;
        }
        let pending = std::mem::take(&mut self.pending);
        let time = pending
            .values()
            .map(|s| s.annotation().time_ms)
            .max()
            .unwrap_or(0);
        let mut tx = self.doc.transaction();
        for (key, signed) in pending {
            // A put on the root map with a string key and a scalar cannot fail: the root always
            // exists and is a map.
            if let Err(e) = tx.put(ROOT, key, ScalarValue::Bytes(signed.to_bytes().to_vec())) {
                debug_assert!(false, "put on the root map failed: {e}");
            }
        }
        let time = i64::try_from(time).unwrap_or(i64::MAX);
        tx.commit_with(CommitOptions::default().with_time(time));
        true
    }

    pub(crate) fn heads(&self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    /// The valid values currently visible in slot `key`, with their automerge op ids
    /// (counter, actor), and the number of rejected ones.
    pub(crate) fn slot_values(
        &self,
        dataset: &Dataset,
        key: &str,
    ) -> (Vec<(SignedAnnotation, u64, ActorId)>, Rejections) {
        let mut valid = Vec::new();
        let mut rejected = Rejections::default();
        let Ok(values) = self.doc.get_all(ROOT, key) else {
            return (valid, rejected);
        };
        for (value, id) in values {
            let checked = value_bytes(&value)
                .ok_or(Rejection::Malformed)
                .and_then(|b| check_cached(dataset, self.id, key, b, &self.verified));
            match (checked, id) {
                (Ok(signed), automerge::ObjId::Id(counter, actor, _)) => {
                    valid.push((signed, counter, actor))
                }
                (Ok(_), automerge::ObjId::Root) => rejected.add(Rejection::Malformed),
                (Err(r), _) => rejected.add(r),
            }
        }
        (valid, rejected)
    }

    /// Whether slot `key` already holds `signed` (byte for byte: no signature check) or a newer
    /// valid annotation of its annotator.
    pub(crate) fn holds(&self, key: &str, signed: &SignedAnnotation) -> bool {
        let bytes = signed.to_bytes();
        // A newer value counts only if its signature holds: damaged bytes that happen to decode
        // must not hide a record.
        let newer_or_same = |b: &[u8]| {
            b == bytes.as_slice()
                || SignedAnnotation::from_bytes(b).is_ok_and(|s| {
                    s.annotation().time_ms > signed.annotation().time_ms && s.verify()
                })
        };
        if self
            .pending
            .get(key)
            .is_some_and(|s| newer_or_same(&s.to_bytes()))
        {
            return true;
        }
        let Ok(values) = self.doc.get_all(ROOT, key) else {
            return false;
        };
        values
            .iter()
            .any(|(value, _)| value_bytes(value).is_some_and(newer_or_same))
    }

    /// Drops the staged writes (nothing of them was committed).
    pub(crate) fn discard_staged(&mut self) {
        self.pending.clear();
    }

    /// The winning valid annotation of slot `key`, if any.
    pub(crate) fn get(&self, dataset: &Dataset, key: &str) -> Option<SignedAnnotation> {
        let (valid, _) = self.slot_values(dataset, key);
        valid
            .into_iter()
            .map(|(s, _, _)| s)
            .reduce(|best, s| if wins(&s, &best) { s } else { best })
    }

    /// Validates every committed value (staged writes are not visible until committed); each
    /// record's signature is verified at its first read only.
    pub(crate) fn read(&mut self, dataset: &Dataset) -> Annotations {
        let mut out = Annotations::default();
        for item in self.doc.map_range(ROOT, ..) {
            if item.conflict {
                out.conflicted_slots += 1;
                let (valid, rejected) = self.slot_values(dataset, &item.key);
                out.rejected.merge(&rejected);
                if let Some(best) = valid
                    .into_iter()
                    .map(|(s, _, _)| s)
                    .reduce(|best, s| if wins(&s, &best) { s } else { best })
                {
                    out.annotations.push(best);
                }
                continue;
            }
            let checked = match &item.value {
                ValueRef::Scalar(automerge::ScalarValueRef::Bytes(b)) => {
                    check_cached(dataset, self.id, &item.key, b, &self.verified)
                }
                _ => Err(Rejection::Malformed),
            };
            match checked {
                Ok(signed) => out.annotations.push(signed),
                Err(r) => out.rejected.add(r),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotation::Value;
    use crate::layout::slot_key;
    use crate::testing::{annotator, sample, signed};

    #[test]
    fn defragment_leaves_the_document_exactly_as_it_was() {
        let mut shard = Shard::new(ShardId(0), ActorId::from(&b"defrag"[..]));
        for i in 0..200 {
            let s = signed(1, i, 100, Value::Label(1));
            shard.stage(slot_key(&sample(i), &annotator(1)), s);
        }
        shard.commit();
        let heads = shard.heads();
        let saved = shard.doc.save();
        shard.defragment();
        assert_eq!(shard.heads(), heads);
        assert_eq!(shard.doc.save(), saved);
        assert!(
            shard
                .doc
                .get_last_local_change()
                .is_some_and(|c| c.len() == 200)
        );
        // Writing after a defragmentation makes the same change as without it.
        let mut twin = Shard::new(ShardId(0), ActorId::from(&b"defrag"[..]));
        twin.doc = Automerge::load(&saved)
            .unwrap()
            .with_actor(ActorId::from(&b"defrag"[..]));
        for s in [&mut shard, &mut twin] {
            s.stage(
                slot_key(&sample(999), &annotator(2)),
                signed(2, 999, 100, Value::Skip),
            );
            s.commit();
        }
        assert_eq!(shard.heads(), twin.heads());
    }
}
