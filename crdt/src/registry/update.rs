//! A model-update announcement: "peer P trained version V of a model of dataset D on N labels;
//! the weights are these bytes (by BLAKE3 hash and size); on held-out labels it scored this".
//!
//! The canonical encoding is documented byte for byte in the crate README. The signature is
//! ed25519 by the peer key over `b"swarmlabel/model-update/v1" ‖ 0x00 ‖ canonical encoding`
//! (the [`Signer`] domain scheme), checked with `verify_strict`.

mod codec;

pub use codec::{DecodeError, MAX_ENCODED_LEN, MAX_SIGNED_LEN, MIN_ENCODED_LEN};

use std::fmt;

use ed25519_dalek::{Signature, VerifyingKey};

use crate::annotation::{AnnotatorKey, DatasetId, Signer};
use swarmlabel_ids::domain_message;

/// The signature domain of model updates: a signature made for anything else (an annotation, a
/// manifest) never verifies here.
pub const DOMAIN: &str = "swarmlabel/model-update/v1";

/// The longest architecture name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// The largest weights file an update may announce (1 GiB). A protocol constant rather than a
/// setting, so that every node accepts exactly the same updates and registries converge.
pub const MAX_WEIGHTS_BYTES: u64 = 1 << 30;

/// Validation accuracy is in parts per million: `1_000_000` is 100 %.
pub const PPM: u32 = 1_000_000;

/// The BLAKE3 hash of a model's safetensors weights file: the blob peers fetch and verify.
pub use swarmlabel_ids::WeightsHash;

/// What model the weights belong to: the BLAKE3 hash of the model spec (canonical JSON, computed
/// by the caller) and a short human-readable name. Two updates can be merged only if their
/// architectures are equal.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Architecture {
    spec_hash: [u8; 32],
    name: String,
}

impl fmt::Debug for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Architecture({self})")
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (spec ", self.name)?;
        for b in &self.spec_hash[..8] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…)")
    }
}

/// Errors of building an [`Architecture`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArchitectureError {
    /// The name is empty or longer than [`MAX_NAME_LEN`] bytes.
    #[error("an architecture name is 1 to {MAX_NAME_LEN} bytes, found {0}")]
    NameLength(usize),
    /// The name holds a byte outside printable ASCII without space (`!` to `~`).
    #[error(
        "an architecture name is printable ASCII without spaces; byte {byte:#04x} at {index} is not"
    )]
    NameByte {
        /// The offending byte.
        byte: u8,
        /// Its position in the name.
        index: usize,
    },
}

impl Architecture {
    /// An architecture with the BLAKE3 hash of its spec and a name of 1 to [`MAX_NAME_LEN`]
    /// printable ASCII bytes without spaces (such as `mlp-2x128`), so that it has one encoding and
    /// shows safely in logs.
    pub fn new(spec_hash: [u8; 32], name: &str) -> Result<Self, ArchitectureError> {
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(ArchitectureError::NameLength(name.len()));
        }
        if let Some((index, &byte)) = name
            .as_bytes()
            .iter()
            .enumerate()
            .find(|(_, b)| !b.is_ascii_graphic())
        {
            return Err(ArchitectureError::NameByte { byte, index });
        }
        Ok(Self {
            spec_hash,
            name: name.to_owned(),
        })
    }

    /// The BLAKE3 hash of the model spec.
    pub fn spec_hash(&self) -> &[u8; 32] {
        &self.spec_hash
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Validation figures reported by the peer on its own held-out labels, fixed-point so that the
/// encoding is canonical. Informative only: a node judges updates on its own labels
/// ([`super::screen`]), since these figures are the peer's word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Validation {
    /// Held-out accuracy in parts per million (`0..=1_000_000`); 0 when `count` is 0.
    pub accuracy_ppm: u32,
    /// The number of held-out labels it was measured on.
    pub count: u32,
}

impl Validation {
    /// Whether the figures are in range: accuracy at most [`PPM`], and 0 without held-out labels.
    /// Only such figures have an encoding.
    pub fn is_valid(&self) -> bool {
        self.accuracy_ppm <= PPM && (self.count > 0 || self.accuracy_ppm == 0)
    }

    /// The figures for `correct` right answers out of `count`, rounded to the nearest ppm
    /// (`correct` is capped at `count`).
    pub fn from_counts(correct: u32, count: u32) -> Self {
        if count == 0 {
            return Self {
                accuracy_ppm: 0,
                count: 0,
            };
        }
        let correct = u64::from(correct.min(count));
        let count64 = u64::from(count);
        let ppm = (correct * u64::from(PPM) + count64 / 2) / count64;
        Self {
            // At most PPM since correct <= count.
            accuracy_ppm: u32::try_from(ppm).unwrap_or(PPM),
            count,
        }
    }
}

/// A model-update announcement before signing. Every field is covered by the signature.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ModelUpdate {
    /// The dataset whose labels trained the model.
    pub dataset: DatasetId,
    /// The ed25519 key of the peer (annotator identity) that trained it and signs the update.
    pub peer: AnnotatorKey,
    /// The peer's own counter: a higher version replaces a lower one of the same peer.
    pub version: u64,
    /// How many labels the model was trained on: its weight in the weighted mean.
    pub labels_trained: u64,
    /// What the weights are weights of.
    pub architecture: Architecture,
    /// BLAKE3 of the safetensors weights file.
    pub weights_hash: WeightsHash,
    /// Size of that file in bytes, at most [`MAX_WEIGHTS_BYTES`] to verify.
    pub weights_bytes: u64,
    /// The peer's own validation figures.
    pub validation: Validation,
}

/// Errors of signing an update.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The update names another peer than the signing key, so the signature could never verify.
    #[error(
        "the model update names peer {named} but the signing key is {signer}; build the update \
         with the signer's public key"
    )]
    NotThePeer {
        /// The peer named in the update.
        named: AnnotatorKey,
        /// The public key of the signer.
        signer: AnnotatorKey,
    },
}

/// Why a signed update is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Signed for another dataset than the one being assembled.
    #[error("the model update of peer {peer} is for dataset {found}, not {expected}")]
    WrongDataset {
        /// The announcing peer.
        peer: AnnotatorKey,
        /// The dataset expected.
        expected: DatasetId,
        /// The dataset named in the update.
        found: DatasetId,
    },
    /// The weights are announced larger than [`MAX_WEIGHTS_BYTES`].
    #[error(
        "the model update of peer {peer} announces {bytes} bytes of weights, more than the \
         {MAX_WEIGHTS_BYTES} allowed"
    )]
    WeightsTooLarge {
        /// The announcing peer.
        peer: AnnotatorKey,
        /// The size announced.
        bytes: u64,
    },
    /// The validation figures are out of range (see [`Validation::is_valid`]).
    #[error("the model update of peer {peer} has out-of-range validation figures {validation:?}")]
    BadValidation {
        /// The announcing peer.
        peer: AnnotatorKey,
        /// The figures.
        validation: Validation,
    },
    /// The signature is not a strict ed25519 signature of the update by its peer key.
    #[error("the model update of peer {peer} has a bad signature")]
    BadSignature {
        /// The peer the update claims to be from.
        peer: AnnotatorKey,
    },
}

/// A model update with its signature: the unit announced, stored in a [`super::Registry`] and
/// gossiped.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SignedUpdate {
    update: ModelUpdate,
    signature: [u8; 64],
}

impl fmt::Debug for SignedUpdate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedUpdate")
            .field("update", &self.update)
            .finish_non_exhaustive()
    }
}

impl SignedUpdate {
    /// Signs `update` with `signer`, whose public key must be the update's peer.
    pub fn sign(update: ModelUpdate, signer: &impl Signer) -> Result<Self, SignError> {
        let signer_key = AnnotatorKey(signer.public_key());
        if signer_key != update.peer {
            return Err(SignError::NotThePeer {
                named: update.peer,
                signer: signer_key,
            });
        }
        let signature = signer.sign(DOMAIN, &update.encode());
        Ok(Self { update, signature })
    }

    /// Pairs an update with a signature without checking it (for decoding and for tests of
    /// forgeries); check with [`SignedUpdate::verify`].
    pub fn from_parts(update: ModelUpdate, signature: [u8; 64]) -> Self {
        Self { update, signature }
    }

    /// The update.
    pub fn update(&self) -> &ModelUpdate {
        &self.update
    }

    /// The signature bytes.
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }

    /// Accepts the update for `dataset` only if it names that dataset, announces at most
    /// [`MAX_WEIGHTS_BYTES`], has validation figures in range (so that it has an encoding every
    /// node decodes), and carries a strict ed25519 signature (canonical `S`, no
    /// small-order key) by its peer over [`DOMAIN`] and the canonical encoding. The checks are
    /// pure, so every node accepts exactly the same updates.
    pub fn verify(&self, dataset: DatasetId) -> Result<(), VerifyError> {
        let u = &self.update;
        if u.dataset != dataset {
            return Err(VerifyError::WrongDataset {
                peer: u.peer,
                expected: dataset,
                found: u.dataset,
            });
        }
        if u.weights_bytes > MAX_WEIGHTS_BYTES {
            return Err(VerifyError::WeightsTooLarge {
                peer: u.peer,
                bytes: u.weights_bytes,
            });
        }
        if !u.validation.is_valid() {
            return Err(VerifyError::BadValidation {
                peer: u.peer,
                validation: u.validation,
            });
        }
        let bad = VerifyError::BadSignature { peer: u.peer };
        let key = VerifyingKey::from_bytes(&u.peer.0).map_err(|_| bad.clone())?;
        key.verify_strict(
            &domain_message(DOMAIN, &u.encode()),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| bad)
    }

    /// The signed record: the canonical encoding followed by the 64-byte signature.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.update.encode();
        out.extend_from_slice(&self.signature);
        out
    }

    /// Decodes a signed record of at most [`MAX_SIGNED_LEN`] bytes (does not verify the
    /// signature). Never panics, whatever the bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_SIGNED_LEN || bytes.len() < MIN_ENCODED_LEN + 64 {
            return Err(DecodeError::Length {
                found: bytes.len(),
                min: MIN_ENCODED_LEN + 64,
                max: MAX_SIGNED_LEN,
            });
        }
        let (encoded, signature) = bytes.split_at(bytes.len() - 64);
        let update = ModelUpdate::decode(encoded)?;
        let mut sig = [0u8; 64];
        sig.copy_from_slice(signature);
        Ok(Self {
            update,
            signature: sig,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::testing::{DATASET, update};
    use crate::testing::key;

    #[test]
    fn signs_and_verifies_and_rejects_every_changed_field() {
        let signed = SignedUpdate::sign(update(1, 3, 100), &key(1)).unwrap();
        assert_eq!(signed.verify(DATASET), Ok(()));
        let base = signed.update().clone();
        let arch = Architecture::new([9; 32], "other").unwrap();
        let variants = [
            ModelUpdate {
                version: 4,
                ..base.clone()
            },
            ModelUpdate {
                labels_trained: 101,
                ..base.clone()
            },
            ModelUpdate {
                architecture: arch,
                ..base.clone()
            },
            ModelUpdate {
                weights_hash: WeightsHash([0xee; 32]),
                ..base.clone()
            },
            ModelUpdate {
                weights_bytes: base.weights_bytes + 1,
                ..base.clone()
            },
            ModelUpdate {
                validation: Validation::from_counts(1, 2),
                ..base.clone()
            },
        ];
        for changed in variants {
            let forged = SignedUpdate::from_parts(changed.clone(), *signed.signature());
            assert!(
                matches!(
                    forged.verify(DATASET),
                    Err(VerifyError::BadSignature { .. })
                ),
                "{changed:?} verified with the old signature"
            );
        }
    }

    #[test]
    fn signature_uses_its_own_domain() {
        let k = key(2);
        let u = update(2, 1, 10);
        let mut msg = b"swarmlabel/model-update/v1".to_vec();
        msg.push(0);
        msg.extend_from_slice(&u.encode());
        let sig = ed25519_dalek::Signer::sign(&k, &msg).to_bytes();
        assert_eq!(
            SignedUpdate::from_parts(u.clone(), sig).verify(DATASET),
            Ok(())
        );
        // The same bytes signed as an annotation do not make a model update.
        let other = Signer::sign(&k, crate::annotation::DOMAIN, &u.encode());
        assert_eq!(
            SignedUpdate::from_parts(u.clone(), other).verify(DATASET),
            Err(VerifyError::BadSignature { peer: u.peer })
        );
    }

    #[test]
    fn refuses_wrong_dataset_oversized_weights_and_other_signers() {
        let k = key(3);
        let signed = SignedUpdate::sign(update(3, 1, 10), &k).unwrap();
        let other = DatasetId([0x01; 32]);
        assert!(matches!(
            signed.verify(other),
            Err(VerifyError::WrongDataset { found, .. }) if found == DATASET
        ));
        let huge = ModelUpdate {
            weights_bytes: MAX_WEIGHTS_BYTES + 1,
            ..update(3, 1, 10)
        };
        let signed_huge = SignedUpdate::sign(huge, &k).unwrap();
        assert!(matches!(
            signed_huge.verify(DATASET),
            Err(VerifyError::WeightsTooLarge { bytes, .. }) if bytes == MAX_WEIGHTS_BYTES + 1
        ));
        let out_of_range = ModelUpdate {
            validation: Validation {
                accuracy_ppm: PPM + 1,
                count: 10,
            },
            ..update(3, 1, 10)
        };
        assert!(matches!(
            SignedUpdate::sign(out_of_range, &k)
                .unwrap()
                .verify(DATASET),
            Err(VerifyError::BadValidation { .. })
        ));
        let at_limit = ModelUpdate {
            weights_bytes: MAX_WEIGHTS_BYTES,
            ..update(3, 1, 10)
        };
        assert_eq!(
            SignedUpdate::sign(at_limit, &k).unwrap().verify(DATASET),
            Ok(())
        );
        assert!(matches!(
            SignedUpdate::sign(update(3, 1, 10), &key(4)),
            Err(SignError::NotThePeer { .. })
        ));
    }

    #[test]
    fn architecture_names_are_bounded_printable_ascii() {
        assert!(Architecture::new([0; 32], "mlp-2x128").is_ok());
        assert_eq!(
            Architecture::new([0; 32], ""),
            Err(ArchitectureError::NameLength(0))
        );
        assert_eq!(
            Architecture::new([0; 32], &"a".repeat(MAX_NAME_LEN + 1)),
            Err(ArchitectureError::NameLength(MAX_NAME_LEN + 1))
        );
        assert!(Architecture::new([0; 32], &"a".repeat(MAX_NAME_LEN)).is_ok());
        assert_eq!(
            Architecture::new([0; 32], "a b"),
            Err(ArchitectureError::NameByte {
                byte: b' ',
                index: 1
            })
        );
        assert!(Architecture::new([0; 32], "é").is_err());
    }

    #[test]
    fn validation_rounds_to_the_nearest_ppm() {
        assert_eq!(Validation::from_counts(1, 3).accuracy_ppm, 333_333);
        assert_eq!(Validation::from_counts(2, 3).accuracy_ppm, 666_667);
        assert_eq!(Validation::from_counts(5, 3).accuracy_ppm, PPM);
        assert_eq!(
            Validation::from_counts(0, 0),
            Validation {
                accuracy_ppm: 0,
                count: 0
            }
        );
    }
}
