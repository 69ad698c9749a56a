//! Helpers shared by the unit and property tests.

use ed25519_dalek::SigningKey;

use crate::Replica;
use crate::annotation::{
    Annotation, AnnotatorKey, DatasetId, SampleId, SignedAnnotation, Signer as _, Suggestion, Value,
};
use crate::layout::ShardLayout;
use crate::validate::Dataset;

/// A deterministic key.
pub(crate) fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub(crate) fn annotator(seed: u8) -> AnnotatorKey {
    AnnotatorKey(key(seed).public_key())
}

/// A dataset with 4 labels in 4 shards.
pub(crate) fn dataset() -> Dataset {
    Dataset {
        id: DatasetId([0xda; 32]),
        label_count: 4,
        layout: ShardLayout::new(2).expect("2 bits is a valid layout"),
    }
}

/// The id of sample `i`: a hash, like real sample ids.
pub(crate) fn sample(i: u32) -> SampleId {
    SampleId(*blake3::hash(&i.to_le_bytes()).as_bytes())
}

/// An annotation with `seq` 1 (the first of its chain).
pub(crate) fn annotation(seed: u8, sample_index: u32, time_ms: u64, value: Value) -> Annotation {
    Annotation {
        dataset: dataset().id,
        sample: sample(sample_index),
        annotator: annotator(seed),
        seq: 1,
        time_ms,
        value,
        suggestion: Some(Suggestion::with_probability(1, 0.5)),
    }
}

/// A valid annotation by the key of `seed`, the first of its chain.
pub(crate) fn signed(seed: u8, sample_index: u32, time_ms: u64, value: Value) -> SignedAnnotation {
    chain_signed(seed, sample_index, 1, time_ms, value)
}

/// A valid annotation by the key of `seed` at place `seq` of its chain.
pub(crate) fn chain_signed(
    seed: u8,
    sample_index: u32,
    seq: u32,
    time_ms: u64,
    value: Value,
) -> SignedAnnotation {
    let a = Annotation {
        seq,
        ..annotation(seed, sample_index, time_ms, value)
    };
    SignedAnnotation::sign(a, &key(seed)).expect("the annotation names the signing key")
}

/// The next record of annotator `seed` for `sample_index` in `replica`'s chains.
pub(crate) fn next(
    replica: &Replica,
    seed: u8,
    sample_index: u32,
    time_ms: u64,
    value: Value,
) -> SignedAnnotation {
    let seq = replica.next_seq(&annotator(seed), &sample(sample_index));
    chain_signed(seed, sample_index, seq, time_ms, value)
}

pub(crate) fn replica() -> Replica {
    Replica::new(dataset())
}
