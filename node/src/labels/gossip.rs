//! Label gossip messages: new signed annotations pushed on a dataset's label topic (the labels
//! kind's topic, `wire::KIND`), so that peers hear of a label at once instead of at the next
//! anti-entropy round.
//!
//! A message is `SWLLAB02` (8 bytes) followed by 1 to [`MAX_RECORDS`] signed annotation records
//! of 181 bytes each (the crdt crate's signed record of version 2: canonical encoding and
//! signature). Nothing else: the receiver validates every record against the dataset before it
//! forwards the message.

use swarmlabel_crdt::SignedAnnotation;
use swarmlabel_crdt::annotation::SIGNED_LEN;

/// Records in one message at most (about 2.8 KB). An honest node publishes each label as it is
/// made, one record a message; the bound keeps the work one message costs the labels thread (its
/// signature checks and its fsync) to about a millisecond, so that a local labeler's
/// acknowledgement never waits long behind a peer's message.
pub const MAX_RECORDS: usize = 16;
const MAGIC: &[u8; 8] = b"SWLLAB02";

/// Why a label gossip message does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not starting with the magic, not a whole number of records, none or too many.
    #[error("not a label gossip message (magic, length or record count)")]
    Framing,
    /// A record that is not a signed annotation.
    #[error("record {0} is not a signed annotation")]
    Record(usize),
}

/// Encodes records into one message; `None` for no record or more than [`MAX_RECORDS`].
pub fn encode(records: &[SignedAnnotation]) -> Option<Vec<u8>> {
    if records.is_empty() || records.len() > MAX_RECORDS {
        return None;
    }
    let mut out = Vec::with_capacity(MAGIC.len() + SIGNED_LEN * records.len());
    out.extend_from_slice(MAGIC);
    for r in records {
        // A version-1 record never travels.
        if r.annotation().seq == 0 {
            return None;
        }
        out.extend_from_slice(&r.to_bytes());
    }
    Some(out)
}

/// Decodes a message into its records (signatures are not checked here: the store does).
pub fn decode(bytes: &[u8]) -> Result<Vec<SignedAnnotation>, DecodeError> {
    let body = bytes.strip_prefix(MAGIC).ok_or(DecodeError::Framing)?;
    let n = body.len() / SIGNED_LEN;
    if body.is_empty() || body.len() % SIGNED_LEN != 0 || n > MAX_RECORDS {
        return Err(DecodeError::Framing);
    }
    body.chunks_exact(SIGNED_LEN)
        .enumerate()
        .map(|(i, c)| SignedAnnotation::from_wire(c).map_err(|_| DecodeError::Record(i)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use swarmlabel_crdt::{Annotation, AnnotatorKey, DatasetId, SampleId, Signer as _, Value};

    fn record(i: u8) -> SignedAnnotation {
        let key = SigningKey::from_bytes(&[i; 32]);
        let a = Annotation {
            dataset: DatasetId([1; 32]),
            sample: SampleId([i; 32]),
            annotator: AnnotatorKey(key.public_key()),
            seq: 1,
            time_ms: 5,
            value: Value::Label(1),
            suggestion: None,
        };
        SignedAnnotation::sign(a, &key).unwrap()
    }

    #[test]
    fn messages_round_trip_and_framing_is_strict() {
        let records = vec![record(1), record(2)];
        let bytes = encode(&records).unwrap();
        assert_eq!(bytes.len(), 8 + 2 * 181);
        assert_eq!(decode(&bytes).unwrap(), records);
        assert_eq!(decode(&bytes[..bytes.len() - 1]), Err(DecodeError::Framing));
        assert_eq!(decode(MAGIC), Err(DecodeError::Framing), "no record");
        assert_eq!(decode(&bytes[1..]), Err(DecodeError::Framing), "no magic");
        let mut bad = bytes.clone();
        bad[8] = 9; // an unknown version in the first record
        assert_eq!(decode(&bad), Err(DecodeError::Record(0)));
        assert!(encode(&[]).is_none());
        assert!(encode(&vec![record(1); MAX_RECORDS + 1]).is_none());
        let mut many = MAGIC.to_vec();
        many.extend(std::iter::repeat_n(0u8, 181 * (MAX_RECORDS + 1)));
        assert_eq!(decode(&many), Err(DecodeError::Framing));
    }
}
