//! The one rule every replica applies when reading a value out of a shard document.
//!
//! A shard document is writable by anyone who syncs with us, so nothing in it is trusted: each
//! value is checked by [`check`], a pure function of the dataset's rules, the shard, the map key
//! and the value bytes. Replicas holding the same document therefore accept and reject exactly
//! the same values, and count the rejections alike.

use crate::annotation::{DatasetId, SignedAnnotation};
use crate::layout::{ShardId, ShardLayout, parse_slot_key};

/// What a replica needs to know about its dataset to validate annotations; take it from the
/// signed manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Dataset {
    /// The dataset id every annotation must name.
    pub id: DatasetId,
    /// The size of the label set: label and suggestion indices must be below it.
    pub label_count: u16,
    /// How the dataset's annotations are split into shard documents.
    pub layout: ShardLayout,
}

/// Why a stored value was ignored. Checks run in this order and a value is counted under the
/// first that fails (the signature, the costly check, last).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rejection {
    /// Not a signed annotation record (wrong type or length, unknown codes, non-canonical bytes),
    /// or a key that is not a slot key.
    Malformed,
    /// Signed for another dataset.
    WrongDataset,
    /// Stored under a slot that is not its own: another annotator's slot, another sample's slot,
    /// or a sample of another shard.
    WrongSlot,
    /// A label or suggestion index outside the dataset's label set.
    UnknownLabel,
    /// The signature does not verify under the annotator's key.
    BadSignature,
    /// Names a sample the dataset's manifest does not list (checked by replicas given the
    /// dataset's [`crate::Samples`]).
    UnknownSample,
    /// By an annotator the owner's policy bans or does not admit (checked by replicas given the
    /// policy; see [`crate::policy`]).
    NotAdmitted,
}

/// Counts of ignored values, by [`Rejection`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Rejections {
    /// Values that are not annotation records, or keys that are not slot keys.
    pub malformed: u64,
    /// Annotations of another dataset.
    pub wrong_dataset: u64,
    /// Annotations stored in a slot that is not theirs.
    pub wrong_slot: u64,
    /// Annotations with a label outside the label set.
    pub unknown_label: u64,
    /// Annotations whose signature does not verify.
    pub bad_signature: u64,
    /// Annotations of samples the manifest does not list.
    pub unknown_sample: u64,
    /// Annotations by annotators the owner's policy bans or does not admit.
    pub not_admitted: u64,
}

impl Rejections {
    /// Counts one rejection.
    pub fn add(&mut self, rejection: Rejection) {
        match rejection {
            Rejection::Malformed => self.malformed += 1,
            Rejection::WrongDataset => self.wrong_dataset += 1,
            Rejection::WrongSlot => self.wrong_slot += 1,
            Rejection::UnknownLabel => self.unknown_label += 1,
            Rejection::BadSignature => self.bad_signature += 1,
            Rejection::UnknownSample => self.unknown_sample += 1,
            Rejection::NotAdmitted => self.not_admitted += 1,
        }
    }

    /// Adds all counts of `other`.
    pub fn merge(&mut self, other: &Rejections) {
        self.malformed += other.malformed;
        self.wrong_dataset += other.wrong_dataset;
        self.wrong_slot += other.wrong_slot;
        self.unknown_label += other.unknown_label;
        self.bad_signature += other.bad_signature;
        self.unknown_sample += other.unknown_sample;
        self.not_admitted += other.not_admitted;
    }

    /// The number of rejected values.
    pub fn total(&self) -> u64 {
        self.malformed
            + self.wrong_dataset
            + self.wrong_slot
            + self.unknown_label
            + self.bad_signature
            + self.unknown_sample
            + self.not_admitted
    }
}

/// Checks the value stored under `key` in shard `shard` of `dataset`; returns the annotation when
/// it is valid.
pub fn check(
    dataset: &Dataset,
    shard: ShardId,
    key: &str,
    value: &[u8],
) -> Result<SignedAnnotation, Rejection> {
    check_with(dataset, shard, key, value, SignedAnnotation::verify)
}

/// [`check`], verifying signatures through `verified`: each signed record is verified once.
pub(crate) fn check_cached(
    dataset: &Dataset,
    shard: ShardId,
    key: &str,
    value: &[u8],
    verified: &Verified,
) -> Result<SignedAnnotation, Rejection> {
    check_with(dataset, shard, key, value, |s| verified.verify(s))
}

/// Signed records whose signature verified, by the first 16 bytes of BLAKE3 of the whole record
/// (content and signature, so no other record can share an entry): a replica reading its shards
/// again verifies only what is new, not every signature at every read. Only records a shard
/// holds enter it (those it took, verified on the way in, and those read from its document), so
/// it never outgrows the shard.
#[derive(Debug, Default)]
pub(crate) struct Verified(std::sync::Mutex<std::collections::HashSet<[u8; 16]>>);

impl Verified {
    fn key(signed: &SignedAnnotation) -> [u8; 16] {
        let hash = blake3::hash(&signed.to_bytes());
        let mut key = [0u8; 16];
        key.copy_from_slice(&hash.as_bytes()[..16]);
        key
    }

    /// Remembers a record verified elsewhere (taken into the shard).
    pub(crate) fn remember(&self, signed: &SignedAnnotation) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(Self::key(signed));
    }

    /// Whether `signed`'s signature verifies, from the cache or checked now (and remembered).
    pub(crate) fn verify(&self, signed: &SignedAnnotation) -> bool {
        let key = Self::key(signed);
        let mut known = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if known.contains(&key) {
            return true;
        }
        let ok = signed.verify();
        if ok {
            known.insert(key);
        }
        ok
    }
}

fn check_with(
    dataset: &Dataset,
    shard: ShardId,
    key: &str,
    value: &[u8],
    verify: impl FnOnce(&SignedAnnotation) -> bool,
) -> Result<SignedAnnotation, Rejection> {
    let (sample_prefix, annotator_prefix) = parse_slot_key(key).ok_or(Rejection::Malformed)?;
    let signed = SignedAnnotation::from_bytes(value).map_err(|_| Rejection::Malformed)?;
    let a = signed.annotation();
    if a.dataset != dataset.id {
        return Err(Rejection::WrongDataset);
    }
    if a.sample.0[..sample_prefix.len()] != sample_prefix
        || a.annotator.0[..annotator_prefix.len()] != annotator_prefix
        || dataset.layout.shard_of(&a.sample) != shard
    {
        return Err(Rejection::WrongSlot);
    }
    check_record_with(dataset, &signed, verify)?;
    Ok(signed)
}

/// The checks that do not depend on where the record is stored: dataset, labels, signature.
/// Used before writing our own annotations and by [`check`].
pub fn check_record(dataset: &Dataset, signed: &SignedAnnotation) -> Result<(), Rejection> {
    check_record_with(dataset, signed, SignedAnnotation::verify)
}

fn check_record_with(
    dataset: &Dataset,
    signed: &SignedAnnotation,
    verify: impl FnOnce(&SignedAnnotation) -> bool,
) -> Result<(), Rejection> {
    let a = signed.annotation();
    if a.dataset != dataset.id {
        return Err(Rejection::WrongDataset);
    }
    let label_ok = a.value.label().is_none_or(|l| l < dataset.label_count);
    let suggestion_ok = a.suggestion.is_none_or(|s| s.label < dataset.label_count);
    if !label_ok || !suggestion_ok {
        return Err(Rejection::UnknownLabel);
    }
    if !verify(signed) {
        return Err(Rejection::BadSignature);
    }
    Ok(())
}
