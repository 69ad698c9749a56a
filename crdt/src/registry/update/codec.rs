//! The canonical byte encoding of a model update (layout in the crate README).
//!
//! Fixed fields and one length-prefixed name, so there is exactly one encoding per update:
//! decoding refuses unknown versions, a length that does not match the name length, names that
//! [`Architecture::new`] would refuse, and validation figures out of range.

use super::{Architecture, MAX_NAME_LEN, ModelUpdate, Validation, WeightsHash};
use crate::annotation::{AnnotatorKey, DatasetId};
use crate::bytes::array;

const VERSION: u8 = 1;
const NAME_AT: usize = 162;
/// The shortest canonical encoding (a one-byte name).
pub const MIN_ENCODED_LEN: usize = NAME_AT + 1;
/// The longest canonical encoding (a [`MAX_NAME_LEN`]-byte name).
pub const MAX_ENCODED_LEN: usize = NAME_AT + MAX_NAME_LEN;
/// The longest signed record: the longest encoding and a 64-byte signature.
pub const MAX_SIGNED_LEN: usize = MAX_ENCODED_LEN + 64;

/// Errors of decoding a model update record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The record is shorter or longer than any canonical record, or than its name length says.
    #[error("a model update record here must be {min} to {max} bytes, found {found}")]
    Length {
        /// The length given.
        found: usize,
        /// The shortest acceptable length.
        min: usize,
        /// The longest acceptable length.
        max: usize,
    },
    /// The version byte is not one this crate knows.
    #[error("unknown model update version {0}; this node understands version 1 only")]
    Version(u8),
    /// The architecture name is refused by [`Architecture::new`].
    #[error("bad architecture name: {0}")]
    Name(#[from] super::ArchitectureError),
    /// The validation figures are out of range (accuracy above 100 %, or an accuracy without
    /// held-out labels).
    #[error("validation figures out of range: {accuracy_ppm} ppm on {count} labels")]
    Validation {
        /// The accuracy given.
        accuracy_ppm: u32,
        /// The count given.
        count: u32,
    },
}

impl ModelUpdate {
    /// The canonical encoding (the message that is signed): 162 fixed bytes and the name.
    pub fn encode(&self) -> Vec<u8> {
        let name = self.architecture.name().as_bytes();
        let mut out = Vec::with_capacity(NAME_AT + name.len() + 64);
        out.push(VERSION);
        out.extend_from_slice(&self.dataset.0);
        out.extend_from_slice(&self.peer.0);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.labels_trained.to_le_bytes());
        out.extend_from_slice(self.architecture.spec_hash());
        out.extend_from_slice(&self.weights_hash.0);
        out.extend_from_slice(&self.weights_bytes.to_le_bytes());
        out.extend_from_slice(&self.validation.accuracy_ppm.to_le_bytes());
        out.extend_from_slice(&self.validation.count.to_le_bytes());
        // Architecture::new bounds the name to MAX_NAME_LEN (64) bytes, so it fits a byte.
        out.push(name.len() as u8);
        out.extend_from_slice(name);
        debug_assert_eq!(out.len(), NAME_AT + name.len());
        out
    }

    /// Decodes a canonical encoding. Bounded (never reads past [`MAX_ENCODED_LEN`]) and never
    /// panics, whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let length = |found| DecodeError::Length {
            found,
            min: MIN_ENCODED_LEN,
            max: MAX_ENCODED_LEN,
        };
        if !(MIN_ENCODED_LEN..=MAX_ENCODED_LEN).contains(&bytes.len()) {
            return Err(length(bytes.len()));
        }
        if bytes[0] != VERSION {
            return Err(DecodeError::Version(bytes[0]));
        }
        let name_len = usize::from(bytes[NAME_AT - 1]);
        if bytes.len() != NAME_AT + name_len {
            return Err(length(bytes.len()));
        }
        // Architecture::new refuses non-ASCII, so the bytes are valid UTF-8 when it accepts them;
        // a lossy conversion of invalid UTF-8 brings a replacement character that it refuses.
        let name = String::from_utf8_lossy(&bytes[NAME_AT..]);
        let architecture = Architecture::new(array(&bytes[81..113]), &name)?;
        let validation = Validation {
            accuracy_ppm: u32::from_le_bytes(array(&bytes[153..157])),
            count: u32::from_le_bytes(array(&bytes[157..161])),
        };
        if !validation.is_valid() {
            return Err(DecodeError::Validation {
                accuracy_ppm: validation.accuracy_ppm,
                count: validation.count,
            });
        }
        Ok(Self {
            dataset: DatasetId(array(&bytes[1..33])),
            peer: AnnotatorKey(array(&bytes[33..65])),
            version: u64::from_le_bytes(array(&bytes[65..73])),
            labels_trained: u64::from_le_bytes(array(&bytes[73..81])),
            architecture,
            weights_hash: WeightsHash(array(&bytes[113..145])),
            weights_bytes: u64::from_le_bytes(array(&bytes[145..153])),
            validation,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::registry::SignedUpdate;
    use crate::registry::update::PPM;

    fn example() -> ModelUpdate {
        ModelUpdate {
            dataset: DatasetId([0x11; 32]),
            peer: AnnotatorKey([0x22; 32]),
            version: 0x0102_0304_0506_0708,
            labels_trained: 0x1112_1314_1516_1718,
            architecture: Architecture::new([0x33; 32], "mlp").unwrap(),
            weights_hash: WeightsHash([0x44; 32]),
            weights_bytes: 0x2122_2324_2526_2728,
            validation: Validation {
                accuracy_ppm: 0x000f_4240,
                count: 0x0a0b_0c0d,
            },
        }
    }

    #[test]
    fn encoding_is_pinned_byte_for_byte() {
        // The layout of the README: any change here is a protocol change (bump the version).
        let e = example().encode();
        assert_eq!(e.len(), 165);
        assert_eq!(e[0], 1);
        assert_eq!(&e[1..33], &[0x11; 32]);
        assert_eq!(&e[33..65], &[0x22; 32]);
        assert_eq!(&e[65..73], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(
            &e[73..81],
            &[0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11]
        );
        assert_eq!(&e[81..113], &[0x33; 32]);
        assert_eq!(&e[113..145], &[0x44; 32]);
        assert_eq!(
            &e[145..153],
            &[0x28, 0x27, 0x26, 0x25, 0x24, 0x23, 0x22, 0x21]
        );
        assert_eq!(&e[153..161], &[0x40, 0x42, 0x0f, 0, 0x0d, 0x0c, 0x0b, 0x0a]);
        assert_eq!(&e[161..], b"\x03mlp");
    }

    #[test]
    fn decode_refuses_non_canonical_and_unknown_bytes() {
        let good = example().encode();
        let with = |i: usize, v: u8| {
            let mut b = good.clone();
            b[i] = v;
            b
        };
        assert_eq!(ModelUpdate::decode(&good), Ok(example()));
        assert_eq!(
            ModelUpdate::decode(&with(0, 2)),
            Err(DecodeError::Version(2))
        );
        // The name length must match the record's length exactly.
        assert!(matches!(
            ModelUpdate::decode(&with(161, 4)),
            Err(DecodeError::Length { .. })
        ));
        assert!(matches!(
            ModelUpdate::decode(&with(161, 0)),
            Err(DecodeError::Length { .. })
        ));
        assert!(matches!(
            ModelUpdate::decode(&with(162, b' ')),
            Err(DecodeError::Name(_))
        ));
        assert!(matches!(
            ModelUpdate::decode(&with(162, 0xc3)),
            Err(DecodeError::Name(_))
        ));
        // 1,000,001 ppm.
        assert!(matches!(
            ModelUpdate::decode(&with(153, 0x41)),
            Err(DecodeError::Validation { .. })
        ));
        // An accuracy without held-out labels.
        let mut no_count = good.clone();
        no_count[157..161].copy_from_slice(&[0; 4]);
        assert!(matches!(
            ModelUpdate::decode(&no_count),
            Err(DecodeError::Validation { .. })
        ));
        let mut long = good.clone();
        long.resize(MAX_ENCODED_LEN + 1, b'a');
        assert!(matches!(
            ModelUpdate::decode(&long),
            Err(DecodeError::Length { .. })
        ));
        assert!(matches!(
            SignedUpdate::from_bytes(&[0; MAX_SIGNED_LEN + 1]),
            Err(DecodeError::Length { .. })
        ));
    }

    fn any_update() -> impl Strategy<Value = ModelUpdate> {
        (
            any::<[u8; 32]>(),
            any::<[u8; 32]>(),
            any::<(u64, u64, u64)>(),
            any::<[u8; 32]>(),
            "[!-~]{1,64}",
            (0..=PPM, 1..=u32::MAX),
        )
            .prop_map(
                |(dataset, peer, (version, labels, size), hash, name, (ppm, count))| ModelUpdate {
                    dataset: DatasetId(dataset),
                    peer: AnnotatorKey(peer),
                    version,
                    labels_trained: labels,
                    architecture: Architecture::new(hash, &name)
                        .expect("the regex yields 1 to 64 printable ASCII bytes"),
                    weights_hash: WeightsHash(hash),
                    weights_bytes: size,
                    validation: Validation {
                        accuracy_ppm: ppm,
                        count,
                    },
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn decode_inverts_encode(u in any_update(), sig in any::<[u8; 32]>()) {
            prop_assert_eq!(ModelUpdate::decode(&u.encode()), Ok(u.clone()));
            let mut signature = [0u8; 64];
            signature[..32].copy_from_slice(&sig);
            let signed = SignedUpdate::from_parts(u, signature);
            prop_assert_eq!(SignedUpdate::from_bytes(&signed.to_bytes()), Ok(signed));
        }

        /// Fuzz: hostile bytes never panic, and whatever decodes re-encodes to the same bytes
        /// (one encoding per update).
        #[test]
        fn decode_never_panics_and_is_canonical(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(u) = ModelUpdate::decode(&bytes) {
                prop_assert_eq!(u.encode(), bytes.clone());
            }
            if let Ok(s) = SignedUpdate::from_bytes(&bytes) {
                prop_assert_eq!(s.to_bytes(), bytes);
            }
        }

        /// Fuzz near valid records: flip, cut or extend a real record.
        #[test]
        fn mutated_records_never_panic_and_stay_canonical(
            u in any_update(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            cut in 0usize..300,
        ) {
            let mut bytes = SignedUpdate::from_parts(u, [7; 64]).to_bytes();
            let i = at.index(bytes.len());
            bytes[i] = byte;
            for candidate in [bytes.clone(), bytes[..cut.min(bytes.len())].to_vec(), {
                let mut longer = bytes.clone();
                longer.push(byte);
                longer
            }] {
                if let Ok(s) = SignedUpdate::from_bytes(&candidate) {
                    prop_assert_eq!(s.to_bytes(), candidate);
                }
            }
        }
    }
}
