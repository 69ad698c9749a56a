//! One signed annotation: what a volunteer said about one sample, bound to their key and to its
//! place in their chain.
//!
//! The canonical encoding is fixed-length (117 bytes) and documented byte for byte in the crate
//! README; the signed record appends the 64-byte ed25519 signature (181 bytes). The signature is
//! made over `b"swarmlabel/annotation/v2" ‖ 0x00 ‖ canonical encoding`, the same domain scheme as
//! the node's `Identity::sign`, and checked with `verify_strict`. Records of version 1 (113 and
//! 177 bytes, domain `…/v1`, no `seq`) still decode and verify, with `seq` 0, so that a home
//! written before chains keeps its labels; they are never accepted into a chain.

mod codec;

pub use codec::{DecodeError, ENCODED_LEN, ENCODED_LEN_V1, Encoded, SIGNED_LEN, SIGNED_LEN_V1};

use std::fmt;

use ed25519_dalek::{Signature, VerifyingKey};
use swarmlabel_ids::domain_message;

/// The signature domain of annotations: a signature made for anything else never verifies here.
pub const DOMAIN: &str = "swarmlabel/annotation/v2";
/// The signature domain of version-1 annotations (`seq` 0).
pub const DOMAIN_V1: &str = "swarmlabel/annotation/v1";

/// A dataset id: the BLAKE3 hash of the dataset's signed manifest root; a sample id: the BLAKE3
/// hash of the sample's bytes (shards are chosen by its first byte); an annotator: the ed25519
/// public key that signs the annotation. One type each for every crate (`swarmlabel-ids`).
pub use swarmlabel_ids::{AnnotatorKey, DatasetId, SampleId};

/// What the annotator said.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Value {
    /// An index into the dataset's label set.
    Label(u16),
    /// The annotator chose not to label this sample.
    Skip,
    /// The annotator could not decide.
    Unsure,
}

impl Value {
    /// The label index when this is a label.
    pub fn label(self) -> Option<u16> {
        match self {
            Value::Label(l) => Some(l),
            Value::Skip | Value::Unsure => None,
        }
    }
}

/// The model's suggestion shown to the human when they labelled, kept so that aggregation and
/// audits can see whether people just accepted the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Suggestion {
    /// The suggested label index.
    pub label: u16,
    /// The model's confidence in units of 1/65535 (0 = 0.0, 65535 = 1.0); see
    /// [`Suggestion::with_probability`].
    pub confidence: u16,
}

impl Suggestion {
    /// A suggestion with `probability` in `[0, 1]` (clamped; NaN counts as 0), rounded to the
    /// nearest 1/65535.
    pub fn with_probability(label: u16, probability: f64) -> Self {
        let p = if probability.is_nan() {
            0.0
        } else {
            probability.clamp(0.0, 1.0)
        };
        // In range by the clamp above, so the cast neither wraps nor saturates.
        let confidence = (p * f64::from(u16::MAX)).round() as u16;
        Self { label, confidence }
    }

    /// The confidence as a probability in `[0, 1]`.
    pub fn probability(self) -> f64 {
        f64::from(self.confidence) / f64::from(u16::MAX)
    }
}

/// An annotation before signing. Every field is covered by the signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Annotation {
    /// The dataset the sample belongs to.
    pub dataset: DatasetId,
    /// The sample labelled.
    pub sample: SampleId,
    /// The key that signs it; also the owner of the slot it is stored in.
    pub annotator: AnnotatorKey,
    /// The record's place in its author's chain for the sample's shard: 1 for the author's first
    /// record there, then one more for each. A replica takes a chain's records in this order
    /// only, so a chain is the same everywhere; 0 marks a version-1 record (made before chains),
    /// which no replica takes into a chain. [`crate::Replica::next_seq`] gives the next one.
    pub seq: u32,
    /// When the human answered, in milliseconds since the Unix epoch, as given by the caller (the
    /// crate never reads a clock).
    pub time_ms: u64,
    /// The answer.
    pub value: Value,
    /// The model suggestion shown to the human, if any.
    pub suggestion: Option<Suggestion>,
}

/// Something that signs with an ed25519 key under a domain: the message signed is
/// `domain ‖ 0x00 ‖ message`. The node implements it for its `Identity`; it is implemented here
/// for [`ed25519_dalek::SigningKey`].
pub trait Signer {
    /// The ed25519 public key of the signing key.
    fn public_key(&self) -> [u8; 32];
    /// Signs `domain ‖ 0x00 ‖ message`.
    fn sign(&self, domain: &str, message: &[u8]) -> [u8; 64];
}

impl Signer for ed25519_dalek::SigningKey {
    fn public_key(&self) -> [u8; 32] {
        self.verifying_key().to_bytes()
    }

    fn sign(&self, domain: &str, message: &[u8]) -> [u8; 64] {
        ed25519_dalek::Signer::sign(self, &domain_message(domain, message)).to_bytes()
    }
}

/// Errors of signing an annotation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The annotation names another annotator than the signing key, so the signature could never
    /// verify.
    #[error(
        "the annotation names annotator {named} but the signing key is {signer}; build the \
         annotation with the signer's public key"
    )]
    NotTheAnnotator {
        /// The annotator named in the annotation.
        named: AnnotatorKey,
        /// The public key of the signer.
        signer: AnnotatorKey,
    },
}

#[cfg(test)]
thread_local! {
    /// Signatures this thread has verified (tests count the cost of reading and syncing).
    pub(crate) static VERIFICATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// An annotation with its signature: the unit stored, synced and aggregated.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignedAnnotation {
    annotation: Annotation,
    signature: [u8; 64],
}

/// The bytes of a signed record: its canonical encoding, then its signature (181 bytes; 177 for
/// a version-1 record).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordBytes {
    bytes: [u8; SIGNED_LEN],
    len: u8,
}

impl std::ops::Deref for RecordBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl fmt::Debug for RecordBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordBytes({} bytes)", self.len)
    }
}

impl fmt::Debug for SignedAnnotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedAnnotation")
            .field("annotation", &self.annotation)
            .finish_non_exhaustive()
    }
}

impl SignedAnnotation {
    /// Signs `annotation` with `signer`, whose public key must be the annotation's annotator.
    pub fn sign(annotation: Annotation, signer: &impl Signer) -> Result<Self, SignError> {
        let signer_key = AnnotatorKey(signer.public_key());
        if signer_key != annotation.annotator {
            return Err(SignError::NotTheAnnotator {
                named: annotation.annotator,
                signer: signer_key,
            });
        }
        let signature = signer.sign(domain_of(&annotation), &annotation.encode());
        Ok(Self {
            annotation,
            signature,
        })
    }

    /// Pairs an annotation with a signature without checking it (for decoding and for tests of
    /// forgeries); check with [`SignedAnnotation::verify`].
    pub fn from_parts(annotation: Annotation, signature: [u8; 64]) -> Self {
        Self {
            annotation,
            signature,
        }
    }

    /// The annotation.
    pub fn annotation(&self) -> &Annotation {
        &self.annotation
    }

    /// The signature bytes.
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }

    /// Whether the signature is a valid strict ed25519 signature (canonical `S`, no small-order
    /// key) by the annotator over [`DOMAIN`] and the canonical encoding.
    pub fn verify(&self) -> bool {
        #[cfg(test)]
        VERIFICATIONS.with(|n| n.set(n.get() + 1));
        let Ok(key) = VerifyingKey::from_bytes(&self.annotation.annotator.0) else {
            return false;
        };
        key.verify_strict(
            &domain_message(domain_of(&self.annotation), &self.annotation.encode()),
            &Signature::from_bytes(&self.signature),
        )
        .is_ok()
    }

    /// The signed record: the canonical encoding followed by the signature.
    pub fn to_bytes(&self) -> RecordBytes {
        let encoded = self.annotation.encode();
        let mut bytes = [0u8; SIGNED_LEN];
        bytes[..encoded.len()].copy_from_slice(&encoded);
        bytes[encoded.len()..encoded.len() + 64].copy_from_slice(&self.signature);
        RecordBytes {
            bytes,
            // At most 181: fits.
            len: (encoded.len() + 64) as u8,
        }
    }

    /// Decodes a signed record of either version (does not verify the signature).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let len = match bytes.first() {
            Some(1) => SIGNED_LEN_V1,
            _ => SIGNED_LEN,
        };
        if bytes.len() != len {
            return Err(DecodeError::Length {
                expected: len,
                found: bytes.len(),
            });
        }
        let annotation = Annotation::decode(&bytes[..len - 64])?;
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&bytes[len - 64..]);
        Ok(Self {
            annotation,
            signature,
        })
    }

    /// Decodes a signed record of version 2 only: what peers may send (version-1 records never
    /// travel).
    pub fn from_wire(bytes: &[u8]) -> Result<Self, DecodeError> {
        match bytes.first() {
            Some(1) => Err(DecodeError::Version(1)),
            _ => Self::from_bytes(bytes),
        }
    }
}

fn domain_of(annotation: &Annotation) -> &'static str {
    if annotation.seq == 0 {
        DOMAIN_V1
    } else {
        DOMAIN
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn sample_annotation(key: &SigningKey) -> Annotation {
        Annotation {
            dataset: DatasetId([1; 32]),
            sample: SampleId([2; 32]),
            annotator: AnnotatorKey(key.public_key()),
            seq: 1,
            time_ms: 1_700_000_000_000,
            value: Value::Label(3),
            suggestion: Some(Suggestion::with_probability(4, 0.75)),
        }
    }

    #[test]
    fn signs_and_verifies_and_rejects_every_changed_field() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let signed = SignedAnnotation::sign(sample_annotation(&key), &key).unwrap();
        assert!(signed.verify());
        let base = *signed.annotation();
        let variants = [
            Annotation {
                dataset: DatasetId([9; 32]),
                ..base
            },
            Annotation {
                sample: SampleId([9; 32]),
                ..base
            },
            Annotation {
                time_ms: base.time_ms + 1,
                ..base
            },
            Annotation {
                seq: base.seq + 1,
                ..base
            },
            Annotation {
                value: Value::Skip,
                ..base
            },
            Annotation {
                suggestion: None,
                ..base
            },
            Annotation {
                suggestion: Some(Suggestion::with_probability(4, 0.5)),
                ..base
            },
        ];
        for changed in variants {
            let forged = SignedAnnotation::from_parts(changed, *signed.signature());
            assert!(
                !forged.verify(),
                "{changed:?} verified with the old signature"
            );
        }
    }

    #[test]
    fn signature_uses_the_node_domain_scheme() {
        // The node signs `domain ‖ 0 ‖ message` with plain ed25519; check against that directly.
        let key = SigningKey::from_bytes(&[5; 32]);
        let a = sample_annotation(&key);
        let mut msg = b"swarmlabel/annotation/v2".to_vec();
        msg.push(0);
        msg.extend_from_slice(&a.encode());
        let sig = ed25519_dalek::Signer::sign(&key, &msg).to_bytes();
        assert!(SignedAnnotation::from_parts(a, sig).verify());
        // A version-1 record verifies under the version-1 domain only.
        let v1 = Annotation { seq: 0, ..a };
        let mut msg = b"swarmlabel/annotation/v1".to_vec();
        msg.push(0);
        msg.extend_from_slice(&v1.encode());
        let sig = ed25519_dalek::Signer::sign(&key, &msg).to_bytes();
        let legacy = SignedAnnotation::from_parts(v1, sig);
        assert!(legacy.verify());
        assert_eq!(legacy.to_bytes().len(), SIGNED_LEN_V1);
        assert_eq!(SignedAnnotation::from_bytes(&legacy.to_bytes()), Ok(legacy));
        assert!(SignedAnnotation::from_wire(&legacy.to_bytes()).is_err());
        let other_domain = Signer::sign(&key, "swarmlabel/manifest-root/v1", &a.encode());
        assert!(!SignedAnnotation::from_parts(a, other_domain).verify());
    }

    #[test]
    fn refuses_to_sign_for_another_annotator() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let err = SignedAnnotation::sign(sample_annotation(&key), &other).unwrap_err();
        assert!(matches!(err, SignError::NotTheAnnotator { .. }));
    }

    #[test]
    fn suggestion_probability_round_trips_to_the_nearest_step() {
        assert_eq!(Suggestion::with_probability(0, 1.5).confidence, u16::MAX);
        assert_eq!(Suggestion::with_probability(0, f64::NAN).confidence, 0);
        let s = Suggestion::with_probability(0, 0.3);
        assert!((s.probability() - 0.3).abs() <= 0.5 / 65535.0);
    }
}
