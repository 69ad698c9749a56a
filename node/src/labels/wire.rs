//! The labels' messages on the replication protocol (kind tag 1, gossip topics
//! `/swarmlabel/labels/2/<dataset>`): signed records, pulled by where the asker's chains end.
//!
//! One request per stream. A requester first asks for a **summary** (one digest of the admitted
//! chains' ends per shard), compares it with its own, and **pulls** only the shards that differ:
//! it sends where its chains end in a range of annotator keys of one shard, and gets the records
//! after them, in chain order, a page at a time (`more` when the range has more). Records travel
//! only in responses to the peer that asked for them, so what a node takes by sync is what it
//! chose to pull, within its own quotas. No automerge bytes cross the wire.
//!
//! Layout (integers little-endian), documented for other implementations in `docs/protocol.md`:
//!
//! ```text
//! request  summary: 0x01 ‖ dataset id (32)                                          = 33 bytes
//! request  pull:    0x03 ‖ dataset id (32) ‖ shard u16 ‖ from (32) ‖ to flag u8 ‖ [to (32)]
//!                   ‖ count u32 ‖ count × (annotator key (32) ‖ seq u32)
//! response summary: 0x00 ‖ shard count u16 (1..=256) ‖ count × 32-byte digest
//! response records: 0x05 ‖ more u8 (0 or 1) ‖ count u32 ‖ count × 181-byte signed record
//! response unknown, refused, busy: 0x02, 0x03, 0x04 (the statuses every kind shares)
//! ```
//!
//! In a pull, the range is the annotator keys `from ≤ key < to` (`to` absent: to the end), the
//! tips are the asker's chains in that range, sorted by key, each once, with `seq` ≥ 1.

use std::io;

use swarmlabel_crdt::annotation::SIGNED_LEN;
use swarmlabel_crdt::{AnnotatorKey, SignedAnnotation, Tip};
use swarmlabel_ids::DatasetId;
use swarmlabel_ids::wire::{Reader, Writer, invalid};
use swarmlabel_net::swarm::replication::Kind;

use crate::replicate::Wire;

/// How labels travel: tag 1 of the replication protocol, a gossip topic per dataset.
pub const KIND: Kind = Kind {
    tag: 1,
    name: "labels",
    topic_prefix: "/swarmlabel/labels/2/",
    max_request: MAX_REQUEST_LEN,
    max_response: MAX_RESPONSE_LEN,
};
/// Shards of a dataset at most (the crdt layout has at most 2^8).
pub const MAX_SHARDS: usize = 256;
/// Tips in one pull at most: a shard with more annotators is pulled range by range.
pub const MAX_TIPS: usize = 4096;
/// Records in one response at most (about 740 KB): what a decoder accepts.
pub const MAX_RECORDS: usize = 4096;
/// Records a node puts in the page it answers, and takes of any page it gets: a page is taken
/// in one turn of the labels thread (each new record's signature verified, then applied and made
/// durable), and a page of [`MAX_RECORDS`] new records held that thread for 240–300 ms while the
/// labeler's own labels waited (`docs/benchmarks.md`, *flood*); 128 verify in about 7 ms. The
/// rest of a longer page comes with the next pull, which starts where the taken records end.
pub const PAGE_RECORDS: usize = 128;
/// Bytes of a tip on the wire.
const TIP_LEN: usize = 36;
/// Bytes of a request at most (a pull with [`MAX_TIPS`] tips).
pub const MAX_REQUEST_LEN: usize = 1 + 32 + 2 + 32 + 1 + 32 + 4 + MAX_TIPS * TIP_LEN;
/// Bytes of a response at most (a page of [`MAX_RECORDS`] records).
pub const MAX_RESPONSE_LEN: usize = 1 + 1 + 4 + MAX_RECORDS * SIGNED_LEN;

/// A digest of one shard's admitted chains: equal digests mean equal records.
pub type Digest = [u8; 32];

/// A range of annotator keys, `from ≤ key < to` (`to: None`: to the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// The first key of the range.
    pub from: AnnotatorKey,
    /// The first key past it, if any.
    pub to: Option<AnnotatorKey>,
}

impl Range {
    /// Every key.
    pub const ALL: Range = Range {
        from: AnnotatorKey([0; 32]),
        to: None,
    };

    /// Whether `key` is in the range.
    pub fn contains(&self, key: &AnnotatorKey) -> bool {
        *key >= self.from && self.to.is_none_or(|to| *key < to)
    }
}

/// What is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The digest of every shard of a dataset.
    Summary {
        /// The dataset.
        dataset: DatasetId,
    },
    /// The records of a range of chains of one shard after where the asker's end.
    Pull {
        /// The dataset.
        dataset: DatasetId,
        /// The shard.
        shard: u16,
        /// The annotator keys whose chains are asked for.
        range: Range,
        /// Where the asker's chains in the range end (sorted by key, `seq` ≥ 1).
        tips: Vec<Tip>,
    },
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The digest of every shard, in shard order.
    Summary(Vec<Digest>),
    /// Records the asker lacks, in chain order; `more` when the range has more past the page.
    Records {
        /// The records.
        records: Vec<SignedAnnotation>,
        /// Whether the range has more.
        more: bool,
    },
}

impl Wire for Request {
    fn encode(&self) -> io::Result<Vec<u8>> {
        let mut w = Writer::new(MAX_REQUEST_LEN, "a labels request");
        match self {
            Request::Summary { dataset } => {
                w.u8(1)?.put(&dataset.0)?;
            }
            Request::Pull {
                dataset,
                shard,
                range,
                tips,
            } => {
                w.u8(3)?.put(&dataset.0)?.u16(*shard)?.put(&range.from.0)?;
                match range.to {
                    Some(to) => w.u8(1)?.put(&to.0)?,
                    None => w.u8(0)?,
                };
                w.count(tips.len(), MAX_TIPS)?;
                for tip in tips {
                    w.put(&tip.annotator.0)?.u32(tip.seq)?;
                }
            }
        }
        Ok(w.into_bytes())
    }

    /// Decodes a request strictly: known kind, exact lengths, sorted tips in the range.
    fn decode(bytes: &[u8]) -> io::Result<Self> {
        let mut r = Reader::new(bytes, "a labels request");
        let request = match r.u8()? {
            1 => Request::Summary {
                dataset: DatasetId(r.array()?),
            },
            3 => {
                let dataset = DatasetId(r.array()?);
                let shard = r.u16()?;
                let from = AnnotatorKey(r.array()?);
                let to = match r.u8()? {
                    0 => None,
                    1 => Some(AnnotatorKey(r.array()?)),
                    _ => return Err(invalid("a labels pull with an unknown range flag")),
                };
                let range = Range { from, to };
                let n = r.count(MAX_TIPS, TIP_LEN)?;
                let mut tips = Vec::with_capacity(n);
                for _ in 0..n {
                    let tip = Tip {
                        annotator: AnnotatorKey(r.array()?),
                        seq: r.u32()?,
                    };
                    let sorted = tips
                        .last()
                        .is_none_or(|last: &Tip| last.annotator < tip.annotator);
                    if tip.seq == 0 || !sorted || !range.contains(&tip.annotator) {
                        return Err(invalid(
                            "a labels pull whose tips are not sorted, unique, in its range and \
                             from seq 1",
                        ));
                    }
                    tips.push(tip);
                }
                Request::Pull {
                    dataset,
                    shard,
                    range,
                    tips,
                }
            }
            _ => return Err(invalid("an unknown labels request")),
        };
        r.finish()?;
        Ok(request)
    }
}

impl Wire for Response {
    fn encode(&self) -> io::Result<Vec<u8>> {
        let mut w = Writer::new(MAX_RESPONSE_LEN, "a labels response");
        match self {
            Response::Summary(digests) => {
                if digests.is_empty() || digests.len() > MAX_SHARDS {
                    return Err(invalid("a summary names 1 to 256 shards"));
                }
                w.u8(0)?.u16(digests.len() as u16)?;
                for d in digests {
                    w.put(d)?;
                }
            }
            Response::Records { records, more } => {
                w.u8(5)?
                    .u8(u8::from(*more))?
                    .count(records.len(), MAX_RECORDS)?;
                for record in records {
                    if record.annotation().seq == 0 {
                        return Err(invalid("a version-1 record never travels"));
                    }
                    w.put(&record.to_bytes())?;
                }
            }
        }
        Ok(w.into_bytes())
    }

    /// Decodes a response strictly (signatures are checked by the store).
    fn decode(bytes: &[u8]) -> io::Result<Self> {
        let mut r = Reader::new(bytes, "a labels response");
        let response = match r.u8()? {
            0 => {
                let n = usize::from(r.u16()?);
                if n == 0 || n > MAX_SHARDS {
                    return Err(invalid("a labels summary names 1 to 256 shards"));
                }
                let mut digests = Vec::with_capacity(n);
                for _ in 0..n {
                    digests.push(r.array()?);
                }
                Response::Summary(digests)
            }
            5 => {
                let more = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(invalid("a labels page with an unknown flag")),
                };
                let n = r.count(MAX_RECORDS, SIGNED_LEN)?;
                let mut records = Vec::with_capacity(n);
                for _ in 0..n {
                    let record = SignedAnnotation::from_wire(r.take(SIGNED_LEN)?)
                        .map_err(|e| invalid(format!("a labels page holds a bad record: {e}")))?;
                    records.push(record);
                }
                Response::Records { records, more }
            }
            _ => return Err(invalid("an unknown labels response")),
        };
        r.finish()?;
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmlabel_crdt::{Annotation, SampleId, Signer as _, Value};

    fn id(b: u8) -> DatasetId {
        DatasetId([b; 32])
    }

    fn tip(b: u8, seq: u32) -> Tip {
        Tip {
            annotator: AnnotatorKey([b; 32]),
            seq,
        }
    }

    fn record(seq: u32) -> SignedAnnotation {
        let key = ed25519_dalek::SigningKey::from_bytes(&[seq as u8; 32]);
        let a = Annotation {
            dataset: id(1),
            sample: SampleId([2; 32]),
            annotator: AnnotatorKey(key.public_key()),
            seq,
            time_ms: 5,
            value: Value::Label(1),
            suggestion: None,
        };
        SignedAnnotation::sign(a, &key).unwrap()
    }

    #[test]
    fn requests_round_trip_and_malformed_ones_are_errors() {
        let requests = [
            Request::Summary { dataset: id(1) },
            Request::Pull {
                dataset: id(2),
                shard: 7,
                range: Range::ALL,
                tips: vec![tip(1, 3), tip(2, 1)],
            },
            Request::Pull {
                dataset: id(3),
                shard: 255,
                range: Range {
                    from: AnnotatorKey([5; 32]),
                    to: Some(AnnotatorKey([9; 32])),
                },
                tips: vec![],
            },
        ];
        for r in requests {
            let bytes = Wire::encode(&r).unwrap();
            assert_eq!(Request::decode(&bytes).unwrap(), r);
            // Cut short or lengthened: never accepted.
            assert!(Request::decode(&bytes[..bytes.len() - 1]).is_err());
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(Request::decode(&longer).is_err());
        }
        let bad = |tips: Vec<Tip>, range: Range| {
            let bytes = Wire::encode(&Request::Pull {
                dataset: id(1),
                shard: 0,
                range,
                tips,
            })
            .unwrap();
            Request::decode(&bytes).is_err()
        };
        assert!(bad(vec![tip(2, 1), tip(1, 1)], Range::ALL), "unsorted");
        assert!(bad(vec![tip(1, 1), tip(1, 2)], Range::ALL), "twice");
        assert!(bad(vec![tip(1, 0)], Range::ALL), "seq 0");
        let narrow = Range {
            from: AnnotatorKey([2; 32]),
            to: Some(AnnotatorKey([3; 32])),
        };
        assert!(bad(vec![tip(3, 1)], narrow), "outside the range");
        assert!(Request::decode(&[9; 33]).is_err(), "unknown kind");
        assert!(Request::decode(&[]).is_err());
        // A count the bytes cannot back is refused before anything is allocated for it.
        let mut huge = Wire::encode(&Request::Pull {
            dataset: id(1),
            shard: 0,
            range: Range::ALL,
            tips: vec![],
        })
        .unwrap();
        let at = huge.len() - 4;
        huge[at..].copy_from_slice(&(MAX_TIPS as u32).to_le_bytes());
        assert!(Request::decode(&huge).is_err());
        assert!(
            Wire::encode(&Request::Pull {
                dataset: id(1),
                shard: 0,
                range: Range::ALL,
                tips: vec![tip(1, 1); MAX_TIPS + 1],
            })
            .is_err()
        );
    }

    #[test]
    fn responses_round_trip_and_decode_strictly() {
        for r in [
            Response::Summary(vec![[1; 32], [2; 32]]),
            Response::Records {
                records: vec![record(1), record(2)],
                more: true,
            },
            Response::Records {
                records: vec![],
                more: false,
            },
        ] {
            let bytes = Wire::encode(&r).unwrap();
            assert_eq!(Response::decode(&bytes).unwrap(), r);
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(Response::decode(&longer).is_err(), "trailing bytes: {r:?}");
        }
        assert!(
            Response::decode(&[0, 0, 0]).is_err(),
            "a summary of no shard"
        );
        assert!(Response::decode(&[0, 1, 0, 1]).is_err(), "a short digest");
        assert!(Response::decode(&[5, 2, 0, 0, 0, 0]).is_err(), "bad flag");
        assert!(Response::decode(&[5, 0, 1, 0, 0, 0]).is_err(), "short page");
        assert!(Response::decode(&[7]).is_err(), "unknown kind");
        assert!(Response::decode(&[]).is_err());
        assert!(Wire::encode(&Response::Summary(vec![])).is_err());
        // A version-1 record never travels, either way.
        let legacy = {
            let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
            let a = Annotation {
                seq: 0,
                ..*record(1).annotation()
            };
            SignedAnnotation::sign(
                Annotation {
                    annotator: AnnotatorKey(key.public_key()),
                    ..a
                },
                &key,
            )
            .unwrap()
        };
        assert!(
            Wire::encode(&Response::Records {
                records: vec![legacy],
                more: false
            })
            .is_err()
        );
    }
}
