//! Where an annotation lives: which shard document, and which key (slot) inside it.
//!
//! A dataset's annotations are split over `2^bits` automerge documents by the first bits of the
//! sample id (a BLAKE3 hash, so shards fill evenly). Inside a shard, each (sample, annotator) pair
//! owns one slot: a map key made of the first 12 bytes of the sample id and the first 12 bytes
//! of the annotator key, each in unpadded base64url (16 + 16 = 32 characters). Keys of one sample
//! are thus adjacent in the map, and 96-bit prefixes make a collision with another's slot cost
//! about 2^96 key generations.

use crate::annotation::{AnnotatorKey, SampleId};

/// Bytes of the sample id and of the annotator key that name a slot.
pub const SLOT_PREFIX_LEN: usize = 12;
/// Length in characters of a slot key.
pub const SLOT_KEY_LEN: usize = 32;
/// The largest number of shard bits (256 shards).
pub const MAX_SHARD_BITS: u8 = 8;
/// Samples per shard that [`ShardLayout::for_sample_count`] aims at: with 10 annotations per
/// sample a shard holds about 20,000 annotations (about 4 MB saved), which bounds a first sync
/// message and the memory spike of loading one shard.
pub const TARGET_SAMPLES_PER_SHARD: u64 = 2048;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The index of a shard document within a dataset, below [`ShardLayout::shard_count`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub u16);

/// How a dataset's annotations are split into shard documents. Every replica of a dataset must
/// use the same layout (derive it from the signed manifest, e.g. with
/// [`ShardLayout::for_sample_count`]), or their documents will never meet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ShardLayout {
    bits: u8,
}

/// Errors of building a layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// More shard bits than [`MAX_SHARD_BITS`].
    #[error("a layout has at most {MAX_SHARD_BITS} shard bits (256 shards), {0} were asked for")]
    TooManyBits(u8),
}

impl ShardLayout {
    /// A layout of `2^bits` shards, `bits` from 0 (one document) to [`MAX_SHARD_BITS`].
    pub fn new(bits: u8) -> Result<Self, LayoutError> {
        if bits > MAX_SHARD_BITS {
            return Err(LayoutError::TooManyBits(bits));
        }
        Ok(Self { bits })
    }

    /// The smallest layout with at most [`TARGET_SAMPLES_PER_SHARD`] samples per shard (capped at
    /// 256 shards). Deterministic, so every peer derives the same layout from the manifest.
    pub fn for_sample_count(samples: u64) -> Self {
        let mut bits = 0;
        while bits < MAX_SHARD_BITS && samples.div_ceil(1 << bits) > TARGET_SAMPLES_PER_SHARD {
            bits += 1;
        }
        Self { bits }
    }

    /// The number of shard bits.
    pub fn bits(self) -> u8 {
        self.bits
    }

    /// The number of shards, `2^bits`.
    pub fn shard_count(self) -> u16 {
        1 << self.bits
    }

    /// All shard ids in order.
    pub fn shards(self) -> impl Iterator<Item = ShardId> {
        (0..self.shard_count()).map(ShardId)
    }

    /// The shard of a sample: the first `bits` bits of its id.
    pub fn shard_of(self, sample: &SampleId) -> ShardId {
        if self.bits == 0 {
            return ShardId(0);
        }
        ShardId(u16::from(sample.0[0] >> (8 - self.bits)))
    }

    /// Whether `shard` exists in this layout.
    pub fn contains(self, shard: ShardId) -> bool {
        shard.0 < self.shard_count()
    }
}

/// The slot key of `annotator`'s annotation of `sample`.
pub fn slot_key(sample: &SampleId, annotator: &AnnotatorKey) -> String {
    let mut key = String::with_capacity(SLOT_KEY_LEN);
    push_base64url(&mut key, &sample.0[..SLOT_PREFIX_LEN]);
    push_base64url(&mut key, &annotator.0[..SLOT_PREFIX_LEN]);
    key
}

/// The sample and annotator prefixes a slot key names, or `None` when `key` is not a slot key.
pub fn parse_slot_key(key: &str) -> Option<([u8; SLOT_PREFIX_LEN], [u8; SLOT_PREFIX_LEN])> {
    let bytes = key.as_bytes();
    if bytes.len() != SLOT_KEY_LEN {
        return None;
    }
    let (s, a) = bytes.split_at(SLOT_KEY_LEN / 2);
    Some((decode_base64url_12(s)?, decode_base64url_12(a)?))
}

fn push_base64url(out: &mut String, bytes: &[u8]) {
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
        }
    }
}

fn decode_base64url_12(chars: &[u8]) -> Option<[u8; SLOT_PREFIX_LEN]> {
    let mut out = [0u8; SLOT_PREFIX_LEN];
    for (group, quad) in chars.chunks_exact(4).enumerate() {
        let mut n = 0u32;
        for &c in quad {
            let v = ALPHABET.iter().position(|&a| a == c)?;
            // `v` < 64: it indexes a 64-entry table.
            n = n << 6 | v as u32;
        }
        out[group * 3..group * 3 + 3].copy_from_slice(&n.to_be_bytes()[1..]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_keys_are_base64url_of_the_prefixes() {
        // Vectors from Python's base64.urlsafe_b64encode.
        let mut sample = [0u8; 32];
        for (i, b) in sample.iter_mut().enumerate() {
            *b = i as u8;
        }
        let key = slot_key(&SampleId(sample), &AnnotatorKey([0xff; 32]));
        assert_eq!(key, "AAECAwQFBgcICQoL________________");
        let key2 = slot_key(
            &SampleId([0xfb, 0xef, 0xbe].repeat(11)[..32].try_into().unwrap()),
            &AnnotatorKey([0; 32]),
        );
        assert_eq!(&key2[..16], "----------------");
        let (s, a) = parse_slot_key(&key).unwrap();
        assert_eq!(&s[..], &sample[..12]);
        assert_eq!(a, [0xff; 12]);
    }

    #[test]
    fn parse_refuses_what_is_not_a_slot_key() {
        assert_eq!(parse_slot_key(""), None);
        assert_eq!(parse_slot_key("AAECAwQFBgcICQoL_______________"), None);
        assert_eq!(parse_slot_key("AAECAwQFBgcICQoL_______________="), None);
        assert_eq!(parse_slot_key("AAECAwQFBgcICQoL_______________é"), None);
    }

    #[test]
    fn layouts_split_by_the_first_bits() {
        let l = ShardLayout::new(3).unwrap();
        assert_eq!(l.shard_count(), 8);
        let mut s = [0u8; 32];
        s[0] = 0b1010_0000;
        assert_eq!(l.shard_of(&SampleId(s)), ShardId(5));
        assert_eq!(
            ShardLayout::new(0).unwrap().shard_of(&SampleId(s)),
            ShardId(0)
        );
        assert_eq!(
            ShardLayout::new(8).unwrap().shard_of(&SampleId(s)),
            ShardId(160)
        );
        assert!(ShardLayout::new(9).is_err());
    }

    #[test]
    fn layout_for_sample_count_targets_the_shard_size() {
        assert_eq!(ShardLayout::for_sample_count(0).bits(), 0);
        assert_eq!(ShardLayout::for_sample_count(2048).bits(), 0);
        assert_eq!(ShardLayout::for_sample_count(2049).bits(), 1);
        assert_eq!(ShardLayout::for_sample_count(100_000).bits(), 6);
        assert_eq!(ShardLayout::for_sample_count(u64::MAX).bits(), 8);
    }
}
