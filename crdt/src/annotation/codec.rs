//! The canonical byte encodings of an annotation (layouts in the crate README).
//!
//! Two versions, each of fixed length, so there is exactly one encoding per annotation: decoding
//! refuses unknown versions and codes and any non-zero byte in a field that the value does not
//! use.
//! - **Version 2** (117 bytes), the only one made and accepted from peers: it carries the
//!   record's place in its author's chain ([`Annotation::seq`], from 1).
//! - **Version 1** (113 bytes), written before chains existed: it has no `seq` and decodes with
//!   `seq` 0. A home written then still reads its version-1 records; they never travel.

use super::{Annotation, AnnotatorKey, DatasetId, SampleId, Suggestion, Value};
use crate::bytes::array;

/// Length of the canonical encoding of an annotation (version 2).
pub const ENCODED_LEN: usize = 117;
/// Length of a signed record (version 2): the canonical encoding and a 64-byte signature.
pub const SIGNED_LEN: usize = ENCODED_LEN + 64;
/// Length of the version-1 encoding (no `seq`).
pub const ENCODED_LEN_V1: usize = 113;
/// Length of a version-1 signed record.
pub const SIGNED_LEN_V1: usize = ENCODED_LEN_V1 + 64;

const VERSION: u8 = 2;
const VERSION_1: u8 = 1;
const KIND_LABEL: u8 = 1;
const KIND_SKIP: u8 = 2;
const KIND_UNSURE: u8 = 3;

/// Errors of decoding an annotation record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The record does not have the length of its version.
    #[error("an annotation record is {expected} bytes, found {found}")]
    Length {
        /// The length required.
        expected: usize,
        /// The length given.
        found: usize,
    },
    /// The version byte is not one this crate knows.
    #[error("unknown annotation version {0}; this node understands versions 1 and 2")]
    Version(u8),
    /// The value kind is not label, skip or unsure.
    #[error("unknown annotation value kind {0}")]
    ValueKind(u8),
    /// The suggestion flag is neither 0 nor 1.
    #[error("unknown suggestion flag {0}")]
    SuggestionFlag(u8),
    /// A field the value does not use holds non-zero bytes, so the encoding is not canonical.
    #[error("the unused field `{0}` is not zero")]
    NonCanonical(&'static str),
    /// A version-2 record with `seq` 0 (chains count from 1).
    #[error("a version-2 annotation with seq 0; chains count from 1")]
    SeqZero,
}

/// The canonical encoding of an annotation: version 2, or version 1 for `seq` 0.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Encoded {
    bytes: [u8; ENCODED_LEN],
    len: u8,
}

impl std::ops::Deref for Encoded {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for Encoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Encoded({} bytes)", self.len)
    }
}

/// Encodes the value and suggestion (8 bytes, the tail of both versions).
fn encode_value(a: &Annotation, out: &mut [u8]) {
    let (kind, label) = match a.value {
        Value::Label(l) => (KIND_LABEL, l),
        Value::Skip => (KIND_SKIP, 0),
        Value::Unsure => (KIND_UNSURE, 0),
    };
    out[0] = kind;
    out[1..3].copy_from_slice(&label.to_le_bytes());
    if let Some(s) = a.suggestion {
        out[3] = 1;
        out[4..6].copy_from_slice(&s.label.to_le_bytes());
        out[6..8].copy_from_slice(&s.confidence.to_le_bytes());
    }
}

fn decode_value(b: &[u8]) -> Result<(Value, Option<Suggestion>), DecodeError> {
    let label = u16::from_le_bytes([b[1], b[2]]);
    let value = match b[0] {
        KIND_LABEL => Value::Label(label),
        KIND_SKIP | KIND_UNSURE if label != 0 => {
            return Err(DecodeError::NonCanonical("label"));
        }
        KIND_SKIP => Value::Skip,
        KIND_UNSURE => Value::Unsure,
        other => return Err(DecodeError::ValueKind(other)),
    };
    let suggestion = match b[3] {
        0 if b[4..8].iter().any(|&x| x != 0) => {
            return Err(DecodeError::NonCanonical("suggestion"));
        }
        0 => None,
        1 => Some(Suggestion {
            label: u16::from_le_bytes([b[4], b[5]]),
            confidence: u16::from_le_bytes([b[6], b[7]]),
        }),
        other => return Err(DecodeError::SuggestionFlag(other)),
    };
    Ok((value, suggestion))
}

impl Annotation {
    /// The canonical encoding (the message that is signed): version 2, or version 1 when `seq`
    /// is 0 (a record written before chains).
    pub fn encode(&self) -> Encoded {
        let mut out = [0u8; ENCODED_LEN];
        out[1..33].copy_from_slice(&self.dataset.0);
        out[33..65].copy_from_slice(&self.sample.0);
        out[65..97].copy_from_slice(&self.annotator.0);
        if self.seq == 0 {
            out[0] = VERSION_1;
            out[97..105].copy_from_slice(&self.time_ms.to_le_bytes());
            encode_value(self, &mut out[105..113]);
            return Encoded {
                bytes: out,
                len: ENCODED_LEN_V1 as u8,
            };
        }
        out[0] = VERSION;
        out[97..101].copy_from_slice(&self.seq.to_le_bytes());
        out[101..109].copy_from_slice(&self.time_ms.to_le_bytes());
        encode_value(self, &mut out[109..117]);
        Encoded {
            bytes: out,
            len: ENCODED_LEN as u8,
        }
    }

    /// Decodes a canonical encoding of either version (its length must be its version's).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (version, expected) = match bytes.first() {
            Some(&VERSION) => (VERSION, ENCODED_LEN),
            Some(&VERSION_1) => (VERSION_1, ENCODED_LEN_V1),
            Some(&other) => return Err(DecodeError::Version(other)),
            None => {
                return Err(DecodeError::Length {
                    expected: ENCODED_LEN,
                    found: 0,
                });
            }
        };
        if bytes.len() != expected {
            return Err(DecodeError::Length {
                expected,
                found: bytes.len(),
            });
        }
        let b = bytes;
        let (seq, time_at, value_at) = if version == VERSION {
            let seq = u32::from_le_bytes(array(&b[97..101]));
            if seq == 0 {
                return Err(DecodeError::SeqZero);
            }
            (seq, 101, 109)
        } else {
            (0, 97, 105)
        };
        let (value, suggestion) = decode_value(&b[value_at..value_at + 8])?;
        Ok(Self {
            dataset: DatasetId(array(&b[1..33])),
            sample: SampleId(array(&b[33..65])),
            annotator: AnnotatorKey(array(&b[65..97])),
            seq,
            time_ms: u64::from_le_bytes(array(&b[time_at..time_at + 8])),
            value,
            suggestion,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Annotation {
        Annotation {
            dataset: DatasetId([0x11; 32]),
            sample: SampleId([0x22; 32]),
            annotator: AnnotatorKey([0x33; 32]),
            seq: 0x0d0c_0b0a,
            time_ms: 0x0102_0304_0506_0708,
            value: Value::Label(0x0a0b),
            suggestion: Some(Suggestion {
                label: 0x0c0d,
                confidence: 0xfffe,
            }),
        }
    }

    #[test]
    fn encoding_is_pinned_byte_for_byte() {
        // The layout of the README: any change here is a protocol change (bump the version).
        let e = example().encode();
        assert_eq!(e.len(), ENCODED_LEN);
        assert_eq!(e[0], 2);
        assert_eq!(&e[1..33], &[0x11; 32]);
        assert_eq!(&e[33..65], &[0x22; 32]);
        assert_eq!(&e[65..97], &[0x33; 32]);
        assert_eq!(&e[97..101], &[0x0a, 0x0b, 0x0c, 0x0d]);
        assert_eq!(&e[101..109], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(&e[109..], &[1, 0x0b, 0x0a, 1, 0x0d, 0x0c, 0xfe, 0xff]);
        let skip = Annotation {
            value: Value::Unsure,
            suggestion: None,
            ..example()
        }
        .encode();
        assert_eq!(&skip[109..], &[3, 0, 0, 0, 0, 0, 0, 0]);
        // Version 1, as homes written before chains hold it.
        let v1 = Annotation {
            seq: 0,
            ..example()
        }
        .encode();
        assert_eq!(v1.len(), ENCODED_LEN_V1);
        assert_eq!(v1[0], 1);
        assert_eq!(&v1[97..105], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(&v1[105..], &[1, 0x0b, 0x0a, 1, 0x0d, 0x0c, 0xfe, 0xff]);
    }

    #[test]
    fn decode_inverts_encode() {
        for seq in [0, 1, u32::MAX] {
            for value in [
                Value::Label(0),
                Value::Label(u16::MAX),
                Value::Skip,
                Value::Unsure,
            ] {
                for suggestion in [None, example().suggestion] {
                    let a = Annotation {
                        seq,
                        value,
                        suggestion,
                        ..example()
                    };
                    assert_eq!(Annotation::decode(&a.encode()), Ok(a));
                }
            }
        }
    }

    #[test]
    fn decode_refuses_non_canonical_and_unknown_bytes() {
        let good = example().encode();
        let with = |i: usize, v: u8| {
            let mut b = good.to_vec();
            b[i] = v;
            b
        };
        assert_eq!(
            Annotation::decode(&with(0, 3)),
            Err(DecodeError::Version(3))
        );
        assert!(matches!(
            Annotation::decode(&with(0, 1)),
            Err(DecodeError::Length { .. })
        ));
        assert_eq!(
            Annotation::decode(&with(109, 4)),
            Err(DecodeError::ValueKind(4))
        );
        assert_eq!(
            Annotation::decode(&with(112, 2)),
            Err(DecodeError::SuggestionFlag(2))
        );
        // A skip that still carries a label index, a missing suggestion with leftover bytes.
        assert_eq!(
            Annotation::decode(&with(109, 2)),
            Err(DecodeError::NonCanonical("label"))
        );
        assert_eq!(
            Annotation::decode(&with(112, 0)),
            Err(DecodeError::NonCanonical("suggestion"))
        );
        let mut zero = good.to_vec();
        zero[97..101].copy_from_slice(&[0; 4]);
        assert_eq!(Annotation::decode(&zero), Err(DecodeError::SeqZero));
        assert!(matches!(
            Annotation::decode(&good[..ENCODED_LEN - 1]),
            Err(DecodeError::Length { .. })
        ));
    }
}
