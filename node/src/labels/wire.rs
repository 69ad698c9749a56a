//! The labels' messages on the replication protocol (kind tag 1, gossip topics
//! `/swarmlabel/labels/1/<dataset>`): automerge's sync protocol per (peer, dataset, shard).
//!
//! One request per stream. A requester first asks for a **summary** (one digest of the automerge
//! heads per shard), compares it with its own, and runs **sync** exchanges only for the shards
//! that differ: each request carries the requester's next sync message for one shard (possibly
//! empty), each response the responder's next message (possibly empty). The exchange for a shard
//! ends when both sides have nothing to say. This module only encodes: what the messages mean
//! is `swarmlabel_crdt::sync`'s business, and every message from a peer is screened there.
//!
//! Layout (integers little-endian), documented for other implementations in `docs/protocol.md`:
//!
//! ```text
//! request  summary: 0x01 ‖ dataset id (32)                                        = 33 bytes
//! request  sync:    0x02 ‖ dataset id (32) ‖ shard u16 ‖ flags u8 ‖ len u32 ‖ message (len)
//! response summary: 0x00 ‖ shard count u16 (1..=256) ‖ count × 32-byte heads digest
//! response sync:    0x01 ‖ len u32 ‖ message (len; 0 = nothing to say)
//! response unknown, refused, busy: 0x02, 0x03, 0x04 (the statuses every kind shares)
//! ```

use std::io;

use swarmlabel_ids::DatasetId;
use swarmlabel_net::swarm::replication::Kind;

use crate::replicate::{Wire, invalid};

/// How labels travel: tag 1 of the replication protocol, a gossip topic per dataset.
pub const KIND: Kind = Kind {
    tag: 1,
    name: "labels",
    topic_prefix: "/swarmlabel/labels/1/",
    max_request: MAX_REQUEST_LEN,
    max_response: MAX_RESPONSE_LEN,
};
/// The largest sync message carried either way: the crdt layer's default limit (16 MiB), which a
/// first sync of a full shard (about 4 MB) stays well below.
pub const MAX_MESSAGE_LEN: usize = 16 << 20;
/// Shards of a dataset at most (the crdt layout has at most 2^8).
pub const MAX_SHARDS: usize = 256;
/// Bytes of a sync request before its message.
pub const SYNC_HEADER_LEN: usize = 1 + 32 + 2 + 1 + 4;
/// Bytes of a request at most.
pub const MAX_REQUEST_LEN: usize = SYNC_HEADER_LEN + MAX_MESSAGE_LEN;
/// Bytes of a response at most.
pub const MAX_RESPONSE_LEN: usize = 1 + 4 + MAX_MESSAGE_LEN;
/// The flag of a sync request that starts an anti-entropy round: the responder forgets what it
/// had in flight to the requester for this shard, so anything lost earlier is sent again.
const FLAG_NEW_ROUND: u8 = 1;

/// A digest of one shard's automerge heads: equal digests mean equal documents.
pub type Digest = [u8; 32];

/// What is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The heads digest of every shard of a dataset.
    Summary {
        /// The dataset.
        dataset: DatasetId,
    },
    /// One step of the sync of one shard.
    Sync {
        /// The dataset.
        dataset: DatasetId,
        /// The shard.
        shard: u16,
        /// Whether this step starts a new anti-entropy round.
        new_round: bool,
        /// The requester's next sync message; empty when it has nothing to say.
        message: Vec<u8>,
    },
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The heads digest of every shard, in shard order.
    Summary(Vec<Digest>),
    /// The responder's next sync message for the shard; empty when it has nothing to say.
    Sync(Vec<u8>),
}

impl Wire for Request {
    /// Encodes a request; a message over [`MAX_MESSAGE_LEN`] is an error (the peer would refuse it).
    fn encode(&self) -> io::Result<Vec<u8>> {
        let req = self;
        match req {
            Request::Summary { dataset } => {
                let mut out = Vec::with_capacity(33);
                out.push(1);
                out.extend_from_slice(&dataset.0);
                Ok(out)
            }
            Request::Sync {
                dataset,
                shard,
                new_round,
                message,
            } => {
                if message.len() > MAX_MESSAGE_LEN {
                    return Err(invalid("a sync message over the size limit"));
                }
                let mut out = Vec::with_capacity(SYNC_HEADER_LEN + message.len());
                out.push(2);
                out.extend_from_slice(&dataset.0);
                out.extend_from_slice(&shard.to_le_bytes());
                out.push(if *new_round { FLAG_NEW_ROUND } else { 0 });
                out.extend_from_slice(&(message.len() as u32).to_le_bytes());
                out.extend_from_slice(message);
                Ok(out)
            }
        }
    }

    /// Decodes a request strictly: exact lengths, known kind and flags, nothing trailing.
    fn decode(buf: &[u8]) -> io::Result<Self> {
        let dataset = |b: &[u8]| -> io::Result<DatasetId> {
            let id: [u8; 32] = b
                .get(1..33)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| invalid("a labels-sync request is cut short"))?;
            Ok(DatasetId(id))
        };
        match buf.first() {
            Some(1) if buf.len() == 33 => Ok(Request::Summary {
                dataset: dataset(buf)?,
            }),
            Some(2) if buf.len() >= SYNC_HEADER_LEN => {
                let shard = u16::from_le_bytes([buf[33], buf[34]]);
                let flags = buf[35];
                if flags & !FLAG_NEW_ROUND != 0 {
                    return Err(invalid("unknown labels-sync request flags"));
                }
                let len = u32::from_le_bytes([buf[36], buf[37], buf[38], buf[39]]) as usize;
                if len > MAX_MESSAGE_LEN || buf.len() != SYNC_HEADER_LEN + len {
                    return Err(invalid("a labels-sync message length that does not match"));
                }
                Ok(Request::Sync {
                    dataset: dataset(buf)?,
                    shard,
                    new_round: flags & FLAG_NEW_ROUND != 0,
                    message: buf[SYNC_HEADER_LEN..].to_vec(),
                })
            }
            _ => Err(invalid("an unknown or malformed labels-sync request")),
        }
    }
}

impl Wire for Response {
    /// Encodes a response.
    fn encode(&self) -> io::Result<Vec<u8>> {
        let res = self;
        Ok(match res {
            Response::Summary(digests) => {
                if digests.is_empty() || digests.len() > MAX_SHARDS {
                    return Err(invalid("a summary names 1 to 256 shards"));
                }
                let mut out = Vec::with_capacity(3 + 32 * digests.len());
                out.push(0);
                out.extend_from_slice(&(digests.len() as u16).to_le_bytes());
                for d in digests {
                    out.extend_from_slice(d);
                }
                out
            }
            Response::Sync(message) => {
                if message.len() > MAX_MESSAGE_LEN {
                    return Err(invalid("a sync message over the size limit"));
                }
                let mut out = Vec::with_capacity(5 + message.len());
                out.push(1);
                out.extend_from_slice(&(message.len() as u32).to_le_bytes());
                out.extend_from_slice(message);
                out
            }
        })
    }

    /// Decodes a response strictly.
    fn decode(buf: &[u8]) -> io::Result<Self> {
        match (buf.first(), buf.len()) {
            (Some(0), n) if n >= 3 => {
                let count = usize::from(u16::from_le_bytes([buf[1], buf[2]]));
                if count == 0 || count > MAX_SHARDS || n != 3 + 32 * count {
                    return Err(invalid("a labels-sync summary of the wrong length"));
                }
                Ok(Response::Summary(
                    buf[3..]
                        .chunks_exact(32)
                        .map(|c| {
                            let mut d = [0u8; 32];
                            d.copy_from_slice(c);
                            d
                        })
                        .collect(),
                ))
            }
            (Some(1), n) if n >= 5 => {
                let len = u32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
                if len > MAX_MESSAGE_LEN || n != 5 + len {
                    return Err(invalid("a labels-sync message length that does not match"));
                }
                Ok(Response::Sync(buf[5..].to_vec()))
            }
            _ => Err(invalid("an unknown or malformed labels-sync response")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> DatasetId {
        DatasetId([b; 32])
    }

    #[test]
    fn requests_round_trip_and_malformed_ones_are_errors() {
        let requests = [
            Request::Summary { dataset: id(1) },
            Request::Sync {
                dataset: id(2),
                shard: 7,
                new_round: true,
                message: vec![1, 2, 3],
            },
            Request::Sync {
                dataset: id(3),
                shard: 255,
                new_round: false,
                message: vec![],
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
        let mut flags = Wire::encode(&Request::Sync {
            dataset: id(2),
            shard: 0,
            new_round: false,
            message: vec![],
        })
        .unwrap();
        flags[35] = 2;
        assert!(Request::decode(&flags).is_err(), "unknown flags");
        assert!(Request::decode(&[9; 33]).is_err(), "unknown kind");
        assert!(Request::decode(&[]).is_err());
        let mut huge = vec![2u8; SYNC_HEADER_LEN];
        huge[35] = 0;
        huge[36..40].copy_from_slice(&(MAX_MESSAGE_LEN as u32 + 1).to_le_bytes());
        assert!(Request::decode(&huge).is_err(), "announced over the limit");
        assert!(
            Wire::encode(&Request::Sync {
                dataset: id(1),
                shard: 0,
                new_round: false,
                message: vec![0; MAX_MESSAGE_LEN + 1],
            })
            .is_err()
        );
    }

    #[test]
    fn responses_round_trip_and_decode_strictly() {
        for r in [
            Response::Summary(vec![[1; 32], [2; 32]]),
            Response::Sync(vec![5; 10]),
            Response::Sync(vec![]),
        ] {
            let bytes = Wire::encode(&r).unwrap();
            assert_eq!(Response::decode(&bytes).unwrap(), r);
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(Response::decode(&longer).is_err(), "trailing bytes: {r:?}");
        }
        assert_eq!(
            Wire::encode(&Response::Sync(vec![9])).unwrap(),
            [1, 1, 0, 0, 0, 9]
        );
        assert!(
            Response::decode(&[0, 0, 0]).is_err(),
            "a summary of no shard"
        );
        assert!(Response::decode(&[0, 1, 0, 1]).is_err(), "a short digest");
        assert!(
            Response::decode(&[1, 5, 0, 0, 0, 1]).is_err(),
            "short message"
        );
        assert!(Response::decode(&[7]).is_err(), "unknown status");
        assert!(Response::decode(&[]).is_err());
        assert!(Wire::encode(&Response::Summary(vec![])).is_err());
    }
}
