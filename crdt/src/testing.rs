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

pub(crate) fn annotation(seed: u8, sample_index: u32, time_ms: u64, value: Value) -> Annotation {
    Annotation {
        dataset: dataset().id,
        sample: sample(sample_index),
        annotator: annotator(seed),
        time_ms,
        value,
        suggestion: Some(Suggestion::with_probability(1, 0.5)),
    }
}

/// A valid annotation by the key of `seed`.
pub(crate) fn signed(seed: u8, sample_index: u32, time_ms: u64, value: Value) -> SignedAnnotation {
    SignedAnnotation::sign(annotation(seed, sample_index, time_ms, value), &key(seed))
        .expect("the annotation names the signing key")
}

pub(crate) fn replica(actor: u8) -> Replica {
    Replica::new(dataset(), &[actor; 16]).expect("16 bytes is a valid actor id")
}
