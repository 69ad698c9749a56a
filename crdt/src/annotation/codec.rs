//! The canonical byte encoding of an annotation (layout in the crate README).
//!
//! Fixed length, so there is exactly one encoding per annotation: decoding refuses unknown
//! versions and codes and any non-zero byte in a field that the value does not use.

use super::{Annotation, AnnotatorKey, DatasetId, SampleId, Suggestion, Value};
use crate::bytes::array;

/// Length of the canonical encoding of an annotation.
pub const ENCODED_LEN: usize = 113;
/// Length of a signed record: the canonical encoding and a 64-byte signature.
pub const SIGNED_LEN: usize = ENCODED_LEN + 64;

const VERSION: u8 = 1;
const KIND_LABEL: u8 = 1;
const KIND_SKIP: u8 = 2;
const KIND_UNSURE: u8 = 3;

/// Errors of decoding an annotation record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The record does not have the fixed length.
    #[error("an annotation record is {expected} bytes, found {found}")]
    Length {
        /// The length required.
        expected: usize,
        /// The length given.
        found: usize,
    },
    /// The version byte is not one this crate knows.
    #[error("unknown annotation version {0}; this node understands version 1 only")]
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
}

impl Annotation {
    /// The canonical encoding (the message that is signed).
    pub fn encode(&self) -> [u8; ENCODED_LEN] {
        let mut out = [0u8; ENCODED_LEN];
        out[0] = VERSION;
        out[1..33].copy_from_slice(&self.dataset.0);
        out[33..65].copy_from_slice(&self.sample.0);
        out[65..97].copy_from_slice(&self.annotator.0);
        out[97..105].copy_from_slice(&self.time_ms.to_le_bytes());
        let (kind, label) = match self.value {
            Value::Label(l) => (KIND_LABEL, l),
            Value::Skip => (KIND_SKIP, 0),
            Value::Unsure => (KIND_UNSURE, 0),
        };
        out[105] = kind;
        out[106..108].copy_from_slice(&label.to_le_bytes());
        if let Some(s) = self.suggestion {
            out[108] = 1;
            out[109..111].copy_from_slice(&s.label.to_le_bytes());
            out[111..113].copy_from_slice(&s.confidence.to_le_bytes());
        }
        out
    }

    /// Decodes a canonical encoding.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let b: &[u8; ENCODED_LEN] = bytes.try_into().map_err(|_| DecodeError::Length {
            expected: ENCODED_LEN,
            found: bytes.len(),
        })?;
        if b[0] != VERSION {
            return Err(DecodeError::Version(b[0]));
        }
        let label = u16::from_le_bytes([b[106], b[107]]);
        let value = match b[105] {
            KIND_LABEL => Value::Label(label),
            KIND_SKIP | KIND_UNSURE if label != 0 => {
                return Err(DecodeError::NonCanonical("label"));
            }
            KIND_SKIP => Value::Skip,
            KIND_UNSURE => Value::Unsure,
            other => return Err(DecodeError::ValueKind(other)),
        };
        let suggestion = match b[108] {
            0 if b[109..113].iter().any(|&x| x != 0) => {
                return Err(DecodeError::NonCanonical("suggestion"));
            }
            0 => None,
            1 => Some(Suggestion {
                label: u16::from_le_bytes([b[109], b[110]]),
                confidence: u16::from_le_bytes([b[111], b[112]]),
            }),
            other => return Err(DecodeError::SuggestionFlag(other)),
        };
        Ok(Self {
            dataset: DatasetId(array(&b[1..33])),
            sample: SampleId(array(&b[33..65])),
            annotator: AnnotatorKey(array(&b[65..97])),
            time_ms: u64::from_le_bytes(array(&b[97..105])),
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
        assert_eq!(e[0], 1);
        assert_eq!(&e[1..33], &[0x11; 32]);
        assert_eq!(&e[33..65], &[0x22; 32]);
        assert_eq!(&e[65..97], &[0x33; 32]);
        assert_eq!(&e[97..105], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(&e[105..], &[1, 0x0b, 0x0a, 1, 0x0d, 0x0c, 0xfe, 0xff]);
        let skip = Annotation {
            value: Value::Unsure,
            suggestion: None,
            ..example()
        }
        .encode();
        assert_eq!(&skip[105..], &[3, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn decode_inverts_encode() {
        for value in [
            Value::Label(0),
            Value::Label(u16::MAX),
            Value::Skip,
            Value::Unsure,
        ] {
            for suggestion in [None, example().suggestion] {
                let a = Annotation {
                    value,
                    suggestion,
                    ..example()
                };
                assert_eq!(Annotation::decode(&a.encode()), Ok(a));
            }
        }
    }

    #[test]
    fn decode_refuses_non_canonical_and_unknown_bytes() {
        let good = example().encode();
        let with = |i: usize, v: u8| {
            let mut b = good;
            b[i] = v;
            b
        };
        assert_eq!(
            Annotation::decode(&with(0, 2)),
            Err(DecodeError::Version(2))
        );
        assert_eq!(
            Annotation::decode(&with(105, 4)),
            Err(DecodeError::ValueKind(4))
        );
        assert_eq!(
            Annotation::decode(&with(108, 2)),
            Err(DecodeError::SuggestionFlag(2))
        );
        // A skip that still carries a label index, a missing suggestion with leftover bytes.
        assert_eq!(
            Annotation::decode(&with(105, 2)),
            Err(DecodeError::NonCanonical("label"))
        );
        assert_eq!(
            Annotation::decode(&with(108, 0)),
            Err(DecodeError::NonCanonical("suggestion"))
        );
        assert!(matches!(
            Annotation::decode(&good[..ENCODED_LEN - 1]),
            Err(DecodeError::Length { .. })
        ));
    }
}
