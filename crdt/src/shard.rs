//! One shard: an automerge document whose root map holds one slot per (sample, annotator),
//! written only through author chains (`crate::chain`).
//!
//! Records are staged and applied as one batch of chain changes per commit (automerge's apply
//! walks the whole map once per call, so one call per batch, not per record). Reading validates
//! every stored value with [`crate::validate::check`]; a slot holds one value (its chain's
//! latest), and among values that a damaged or foreign document could still hold side by side,
//! the one [`wins`] picks is read, so every replica reads the same.

pub(crate) mod storage;

use std::collections::{BTreeMap, HashMap};

use automerge::transaction::Transactable as _;
use automerge::{
    ActorId, Automerge, Change, ChangeHash, ROOT, ReadDoc as _, ScalarValue, Value, ValueRef,
};

use crate::annotation::{AnnotatorKey, SignedAnnotation};
use crate::chain;
use crate::layout::{ShardId, slot_key};
use crate::replica::RecordError;
use crate::validate::{Dataset, Rejection, Rejections, Verified, check_cached};

/// The validated contents of one or more shards.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Annotations {
    /// The winning valid annotation of every slot, sorted by (sample, annotator).
    pub annotations: Vec<SignedAnnotation>,
    /// Stored values that were ignored, by reason (losing but valid conflict values are not
    /// counted here).
    pub rejected: Rejections,
    /// Slots that held more than one value (never made by chains; a damaged or foreign
    /// document), resolved by the rule above.
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

/// The end of one chain: its last record's `seq` and the hash of its change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tip {
    pub(crate) seq: u32,
    pub(crate) hash: ChangeHash,
}

#[derive(Debug)]
pub(crate) struct Shard {
    pub(crate) id: ShardId,
    pub(crate) doc: Automerge,
    /// The end of every chain the document holds.
    tips: HashMap<AnnotatorKey, Tip>,
    /// Records staged for the next commit, in order, with their changes.
    staged: Vec<(SignedAnnotation, Change)>,
    /// The ends of the chains the staged records extend, after them.
    staged_tips: HashMap<AnnotatorKey, Tip>,
    /// The latest staged record of each slot.
    staged_slots: BTreeMap<String, SignedAnnotation>,
    /// Heads at the last save or load, for incremental saves.
    pub(crate) saved_heads: Option<Vec<ChangeHash>>,
    /// The change chunks committed since the last save or load, in commit order: what an
    /// incremental save appends. Every change enters the document through [`Shard::commit`]
    /// (built here, `crate::chain`) or a load, so these are exactly the changes after
    /// `saved_heads`, without asking automerge to find them (its `save_after` walks the whole
    /// change graph, a cost that grew with every record the shard holds and that every
    /// labeler's own label paid).
    pub(crate) unsaved: Vec<u8>,
    /// Whether changes were applied in bulk since the last [`Shard::defragment`].
    fragile: bool,
    /// Records whose signature verified already: reading verifies each once.
    pub(crate) verified: Verified,
    /// The shard's digest under a policy generation, until the chains' ends change: a summary
    /// asked for again and again (every peer's anti-entropy, a peer flooding requests) costs a
    /// lookup, not a sort and a hash of every chain's end.
    pub(crate) digest: Option<(u64, [u8; 32])>,
}

/// Keys between the splits made by [`Shard::defragment`]: about 32 × 181 bytes ≈ 5.8 KB of values
/// per piece.
const DEFRAG_STRIDE: usize = 32;
/// Changes applied at once from which the value column may be left in one oversize piece.
const FRAGILE_BATCH: usize = 64;

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
    pub(crate) fn new(id: ShardId) -> Self {
        Self {
            id,
            doc: Automerge::new(),
            tips: HashMap::new(),
            staged: Vec::new(),
            staged_tips: HashMap::new(),
            staged_slots: BTreeMap::new(),
            saved_heads: None,
            unsaved: Vec::new(),
            fragile: false,
            verified: Verified::default(),
            digest: None,
        }
    }

    /// Works around a memory blowup in automerge 0.12.0 (its column store, hexane
    /// 1.0.0-alpha.5): after a load or a bulk apply, the column of values can sit in one oversize
    /// slab, and applying changes at scattered keys then splits it again and again, each piece
    /// keeping the whole old capacity: about `ops × column bytes / 2`. It was measured at 1.3 GB
    /// and 1.1 s for 1,500 ops into a loaded 15,600-op shard, and 0 MB and 25 ms after this,
    /// which costs about 40 ms. Putting a 1-byte value at every [`DEFRAG_STRIDE`]th key in a
    /// transaction that is then rolled back splits the column into small pieces and leaves the
    /// document as it was: no op, no change, the same heads and the same saved bytes (tested).
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

    /// Applies `changes` changes in bulk through `apply` (a batch of chain changes, a loaded
    /// chunk): splits the value column first if an earlier bulk apply may have left it in one
    /// piece, and notes that this one may have. A batch of fewer than [`FRAGILE_BATCH`] changes
    /// (a gossip message, a labeler's own label) adds a small piece, not an oversize one, so it
    /// does not make the next write pay for a defragmentation.
    pub(crate) fn bulk_apply<T>(
        &mut self,
        changes: usize,
        apply: impl FnOnce(&mut Automerge) -> T,
    ) -> T {
        if self.fragile {
            self.defragment();
        }
        let before = self.doc.get_heads();
        let out = apply(&mut self.doc);
        if changes >= FRAGILE_BATCH && self.doc.get_heads() != before {
            self.fragile = true;
        }
        out
    }

    /// The end of `annotator`'s chain, staged records included.
    pub(crate) fn tip(&self, annotator: &AnnotatorKey) -> Option<Tip> {
        self.staged_tips
            .get(annotator)
            .or_else(|| self.tips.get(annotator))
            .copied()
    }

    /// The ends of the committed chains.
    pub(crate) fn tips(&self) -> impl Iterator<Item = (&AnnotatorKey, &Tip)> {
        self.tips.iter()
    }

    /// The `seq` (the op counter) of the chain's op that slot `key` shows now, if any.
    fn chain_op(&self, key: &str, actor: &ActorId) -> Option<u32> {
        if let Some(staged) = self.staged_slots.get(key) {
            return Some(staged.annotation().seq);
        }
        let values = self.doc.get_all(ROOT, key).ok()?;
        values.iter().find_map(|(_, id)| match id {
            automerge::ObjId::Id(counter, a, _) if a == actor => u32::try_from(*counter).ok(),
            _ => None,
        })
    }

    /// Stages a record whose dataset, sample and policy the caller has checked: `Ok(true)` when
    /// it is its chain's next, `Ok(false)` when the chain already has its `seq`. `verify` (the
    /// record's own checks: labels, signature) runs only for a record staged or found to differ
    /// from the one held at its place.
    pub(crate) fn stage(
        &mut self,
        signed: &SignedAnnotation,
        verify: impl FnOnce() -> Result<(), Rejection>,
    ) -> Result<bool, RecordError> {
        let a = signed.annotation();
        if a.seq == 0 {
            return Err(RecordError::Invalid(Rejection::Malformed));
        }
        let tip = self.tip(&a.annotator);
        let next = tip.map_or(1, |t| t.seq.saturating_add(1));
        let key = slot_key(&a.sample, &a.annotator);
        let place = chain::place(tip.map_or(0, |t| t.seq), a.seq);
        if place == chain::Place::Held {
            // Held, unless the slot shows another record of the same `seq`: the annotator
            // signed two (a key used by two nodes, or a hostile one).
            return match self.get_raw(&key) {
                Some(held) if held.annotation().seq == a.seq && held != *signed => {
                    verify().map_err(RecordError::Invalid)?;
                    Err(RecordError::Conflict { seq: a.seq })
                }
                _ => Ok(false),
            };
        }
        if place == chain::Place::Gap {
            return Err(RecordError::Gap {
                next,
                offered: a.seq,
            });
        }
        verify().map_err(RecordError::Invalid)?;
        let actor = chain::actor(&a.annotator, self.id);
        let pred = self.chain_op(&key, &actor);
        let change = chain::change(signed, self.id, tip.map(|t| t.hash), pred);
        self.staged_tips.insert(
            a.annotator,
            Tip {
                seq: a.seq,
                hash: change.hash(),
            },
        );
        self.staged_slots.insert(key, *signed);
        self.staged.push((*signed, change));
        Ok(true)
    }

    pub(crate) fn pending(&self) -> usize {
        self.staged.len()
    }

    pub(crate) fn staged(&self, key: &str) -> Option<&SignedAnnotation> {
        self.staged_slots.get(key)
    }

    /// Applies the staged records as one batch of changes; returns whether there were any.
    pub(crate) fn commit(&mut self) -> bool {
        if self.staged.is_empty() {
            return false;
        }
        let staged = std::mem::take(&mut self.staged);
        self.staged_slots.clear();
        let tips = std::mem::take(&mut self.staged_tips);
        let changes: Vec<Change> = staged.iter().map(|(_, c)| c.clone()).collect();
        match self.bulk_apply(changes.len(), |d| d.apply_changes(changes)) {
            Ok(()) => {
                self.tips.extend(tips);
                self.digest = None;
                // Never saved: the next incremental save is a full one, nothing to keep.
                let saving = self.saved_heads.is_some();
                for (signed, change) in &staged {
                    self.verified.remember(signed);
                    if saving {
                        self.unsaved.extend_from_slice(change.raw_bytes());
                    }
                }
                true
            }
            Err(e) => {
                // Chain changes are built here in order, each on the last: automerge takes them.
                debug_assert!(false, "a batch of chain changes was refused: {e}");
                false
            }
        }
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

    /// The record slot `key` shows (staged first), decoded but not checked.
    fn get_raw(&self, key: &str) -> Option<SignedAnnotation> {
        if let Some(s) = self.staged_slots.get(key) {
            return Some(*s);
        }
        let values = self.doc.get_all(ROOT, key).ok()?;
        values
            .iter()
            .filter_map(|(v, _)| value_bytes(v).and_then(|b| SignedAnnotation::from_bytes(b).ok()))
            .reduce(|best, s| if wins(&s, &best) { s } else { best })
    }

    /// Whether this shard holds `signed`'s place in its chain (it, or a later record of the
    /// chain; staged ones included). Costs no signature check.
    pub(crate) fn holds(&self, signed: &SignedAnnotation) -> bool {
        let a = signed.annotation();
        a.seq != 0 && self.tip(&a.annotator).is_some_and(|t| t.seq >= a.seq)
    }

    /// Drops the staged writes (nothing of them was applied).
    pub(crate) fn discard_staged(&mut self) {
        self.staged.clear();
        self.staged_tips.clear();
        self.staged_slots.clear();
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

    /// The records of the chains in `wanted` past the `seq` given for each (0: the whole chain),
    /// in chain order. Chains not in `wanted` are left out.
    pub(crate) fn records_after(
        &self,
        wanted: &HashMap<AnnotatorKey, u32>,
    ) -> Vec<SignedAnnotation> {
        // What the asker holds, as hashes: automerge gives every change past them at once.
        let mut have = Vec::new();
        for (annotator, tip) in &self.tips {
            match wanted.get(annotator) {
                None => have.push(tip.hash),
                Some(&after) if after >= tip.seq => have.push(tip.hash),
                Some(&0) => {}
                Some(&after) => {
                    if let Some(hash) = self.hash_at(tip, after) {
                        have.push(hash);
                    }
                }
            }
        }
        self.doc
            .get_changes(&have)
            .iter()
            .filter_map(chain::record_of)
            .collect()
    }

    /// The hash of the change `seq` of the chain ending at `tip`, walking back from it.
    fn hash_at(&self, tip: &Tip, seq: u32) -> Option<ChangeHash> {
        let mut at = (tip.seq, tip.hash);
        while at.0 > seq {
            let meta = self.doc.get_change_meta_by_hash(&at.1)?;
            let prev = *meta.deps.first()?;
            at = (at.0 - 1, prev);
        }
        Some(at.1)
    }

    /// Rebuilds the chain ends from the document (after a load): every change's actor, seq and
    /// hash from automerge's metadata, and each actor's annotator from the records the slots
    /// show. Fails when the document is not made of chains.
    pub(crate) fn rebuild_tips(&mut self) -> Result<(), String> {
        let mut ends: HashMap<ActorId, Tip> = HashMap::new();
        for meta in self.doc.get_changes_meta(&[]) {
            let seq = u32::try_from(meta.seq).map_err(|_| "a change seq past u32")?;
            let end = ends.entry(meta.actor.into_owned()).or_insert(Tip {
                seq: 0,
                hash: meta.hash,
            });
            if seq > end.seq {
                *end = Tip {
                    seq,
                    hash: meta.hash,
                };
            }
        }
        let mut tips = HashMap::with_capacity(ends.len());
        for item in self.doc.map_range(ROOT, ..) {
            let ValueRef::Scalar(automerge::ScalarValueRef::Bytes(b)) = &item.value else {
                return Err(format!(
                    "slot {} holds something else than a record",
                    item.key
                ));
            };
            let Ok(signed) = SignedAnnotation::from_bytes(b) else {
                return Err(format!(
                    "slot {} holds a record that does not decode",
                    item.key
                ));
            };
            let annotator = signed.annotation().annotator;
            let actor = chain::actor(&annotator, self.id);
            if let automerge::ObjId::Id(_, a, _) = item.id()
                && a != actor
            {
                return Err(format!("slot {} was written outside its chain", item.key));
            }
            if let Some(tip) = ends.get(&actor) {
                tips.insert(annotator, *tip);
            }
        }
        if tips.len() != ends.len() {
            return Err("a chain shows no record in any slot".into());
        }
        self.tips = tips;
        self.digest = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotation::Value;
    use crate::testing::{chain_signed, dataset};

    #[test]
    fn defragment_leaves_the_document_exactly_as_it_was() {
        let layout = dataset().layout;
        let mut shard = Shard::new(ShardId(0));
        let mut seq = 0;
        for i in 0..800u32 {
            let s = chain_signed(1, i, seq + 1, 100, Value::Label(1));
            if layout.shard_of(&s.annotation().sample) != ShardId(0) {
                continue;
            }
            seq += 1;
            assert!(shard.stage(&s, || Ok(())).unwrap());
        }
        assert!(seq > 100);
        shard.commit();
        let heads = shard.heads();
        let saved = shard.doc.save();
        shard.defragment();
        assert_eq!(shard.heads(), heads);
        assert_eq!(shard.doc.save(), saved);
        // Writing after a defragmentation makes the same document as without it.
        let mut twin = Shard::new(ShardId(0));
        twin.doc = Automerge::load(&saved).unwrap();
        twin.rebuild_tips().unwrap();
        let extra = (800..2000u32)
            .map(|i| chain_signed(2, i, 1, 100, Value::Skip))
            .find(|s| layout.shard_of(&s.annotation().sample) == ShardId(0))
            .unwrap();
        for s in [&mut shard, &mut twin] {
            s.stage(&extra, || Ok(())).unwrap();
            s.commit();
        }
        assert_eq!(shard.heads(), twin.heads());
    }
}
