//! The models' messages on the replication protocol (kind tag 2, gossip topics
//! `/swarmlabel/models/1/<dataset>` carrying one signed model update each): registry
//! anti-entropy.
//!
//! One request per stream. A requester **pulls** by sending the digest of its registry; the
//! responder answers `same` when its digest is equal, or with every signed record it holds (the
//! update in force of each peer and any equivocation evidence). If the requester, after merging
//! them, still holds something the responder lacks, it **pushes** its records. Layout (integers
//! little-endian), also in `docs/formats.md`:
//!
//! ```text
//! request  pull:    0x01 ‖ dataset id (32) ‖ registry digest (32)                  = 65 bytes
//! request  push:    0x02 ‖ dataset id (32) ‖ count u16 ‖ count × (len u16 ‖ record)
//! response same:    0x00   (digests equal; to a push: taken)
//! response records: 0x01 ‖ count u16 ‖ count × (len u16 ‖ record)
//! response unknown, refused, busy: 0x02, 0x03, 0x04 (the statuses every kind shares)
//! ```
//!
//! Records are at most [`MAX_RECORD_LEN`] bytes and a message carries at most [`MAX_RECORDS`]
//! of them, so a frame is at most about 1.2 MiB.

use std::io;

use swarmlabel_ids::DatasetId;
use swarmlabel_net::swarm::replication::Kind;

use crate::replicate::{Wire, invalid};

/// How models travel: tag 2 of the replication protocol, a gossip topic per dataset.
pub const KIND: Kind = Kind {
    tag: 2,
    name: "models",
    topic_prefix: "/swarmlabel/models/1/",
    max_request: MAX_FRAME_LEN,
    max_response: MAX_FRAME_LEN,
};
/// The longest signed record carried (the crdt crate's longest signed model update is 290 bytes).
pub const MAX_RECORD_LEN: usize = 512;
/// Records in one message at most: two per peer (the update in force and equivocation evidence),
/// so registries of up to 2,048 peers travel whole. Past that a responder sends the first
/// `MAX_RECORDS` in peer order (documented limit).
pub const MAX_RECORDS: usize = 4_096;
/// The largest gossip announcement: one signed record.
pub const MAX_ANNOUNCEMENT_LEN: usize = MAX_RECORD_LEN;
/// Bytes of a frame at most.
pub const MAX_FRAME_LEN: usize = 1 + 32 + 2 + MAX_RECORDS * (2 + MAX_RECORD_LEN);

/// What is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// "Here is my registry's digest; send your records if yours differs."
    Pull {
        /// The dataset.
        dataset: DatasetId,
        /// The requester's registry digest.
        digest: [u8; 32],
    },
    /// "Here are my records; take what you lack."
    Push {
        /// The dataset.
        dataset: DatasetId,
        /// Signed records (each at most [`MAX_RECORD_LEN`] bytes).
        records: Vec<Vec<u8>>,
    },
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The digests are equal (to a pull), or the records were taken (to a push).
    Same,
    /// The responder's signed records.
    Records(Vec<Vec<u8>>),
}

fn encode_records(out: &mut Vec<u8>, records: &[Vec<u8>]) -> io::Result<()> {
    if records.len() > MAX_RECORDS {
        return Err(invalid("more model records than a message carries"));
    }
    out.extend_from_slice(&(records.len() as u16).to_le_bytes());
    for r in records {
        if r.is_empty() || r.len() > MAX_RECORD_LEN {
            return Err(invalid("a model record of a length out of bounds"));
        }
        out.extend_from_slice(&(r.len() as u16).to_le_bytes());
        out.extend_from_slice(r);
    }
    Ok(())
}

/// Decodes `count u16 ‖ count × (len u16 ‖ record)`, which must fill `buf` exactly.
fn decode_records(buf: &[u8]) -> io::Result<Vec<Vec<u8>>> {
    let short = || invalid("a models-sync record list is cut short");
    let count = buf.get(..2).ok_or_else(short)?;
    let count = usize::from(u16::from_le_bytes([count[0], count[1]]));
    if count > MAX_RECORDS {
        return Err(invalid("more model records than a message carries"));
    }
    let mut rest = &buf[2..];
    let mut records = Vec::with_capacity(count);
    for _ in 0..count {
        let len = rest.get(..2).ok_or_else(short)?;
        let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
        if len == 0 || len > MAX_RECORD_LEN {
            return Err(invalid("a model record of a length out of bounds"));
        }
        let record = rest.get(2..2 + len).ok_or_else(short)?;
        records.push(record.to_vec());
        rest = &rest[2 + len..];
    }
    if !rest.is_empty() {
        return Err(invalid("trailing bytes after a models-sync record list"));
    }
    Ok(records)
}

impl Wire for Request {
    /// Encodes a request; too many or oversized records are an error (the peer would refuse them).
    fn encode(&self) -> io::Result<Vec<u8>> {
        let req = self;
        let mut out = Vec::new();
        match req {
            Request::Pull { dataset, digest } => {
                out.push(1);
                out.extend_from_slice(&dataset.0);
                out.extend_from_slice(digest);
            }
            Request::Push { dataset, records } => {
                out.push(2);
                out.extend_from_slice(&dataset.0);
                encode_records(&mut out, records)?;
            }
        }
        Ok(out)
    }

    /// Decodes a request strictly: exact lengths, known kind, nothing trailing.
    fn decode(buf: &[u8]) -> io::Result<Self> {
        let dataset = buf
            .get(1..33)
            .and_then(|s| <[u8; 32]>::try_from(s).ok())
            .map(DatasetId)
            .ok_or_else(|| invalid("a models-sync request is cut short"))?;
        match buf[0] {
            1 if buf.len() == 65 => {
                let mut digest = [0u8; 32];
                digest.copy_from_slice(&buf[33..]);
                Ok(Request::Pull { dataset, digest })
            }
            2 => Ok(Request::Push {
                dataset,
                records: decode_records(&buf[33..])?,
            }),
            _ => Err(invalid("an unknown or malformed models-sync request")),
        }
    }
}

impl Wire for Response {
    /// Encodes a response.
    fn encode(&self) -> io::Result<Vec<u8>> {
        let res = self;
        Ok(match res {
            Response::Same => vec![0],
            Response::Records(records) => {
                let mut out = vec![1];
                encode_records(&mut out, records)?;
                out
            }
        })
    }

    /// Decodes a response strictly.
    fn decode(buf: &[u8]) -> io::Result<Self> {
        match (buf.first(), buf.len()) {
            (Some(0), 1) => Ok(Response::Same),
            (Some(1), _) => Ok(Response::Records(decode_records(&buf[1..])?)),
            _ => Err(invalid("an unknown or malformed models-sync response")),
        }
    }
}

/// Parses and verifies records from a peer into a registry of `dataset`; the first bad record
/// refuses them all (an honest peer never sends one).
pub(crate) fn registry_of(
    dataset: swarmlabel_crdt::DatasetId,
    records: &[Vec<u8>],
) -> Result<swarmlabel_crdt::registry::Registry, String> {
    let mut registry = swarmlabel_crdt::registry::Registry::new(dataset);
    for (i, bytes) in records.iter().enumerate() {
        let update = swarmlabel_crdt::registry::SignedUpdate::from_bytes(bytes)
            .map_err(|e| format!("record {i}: {e}"))?;
        registry
            .insert(update)
            .map_err(|e| format!("record {i}: {e}"))?;
    }
    Ok(registry)
}

/// Our records as the protocol carries them (at most [`MAX_RECORDS`]).
pub(crate) fn records_of(registry: &swarmlabel_crdt::registry::Registry) -> Vec<Vec<u8>> {
    registry
        .records()
        .iter()
        .take(MAX_RECORDS)
        .map(swarmlabel_crdt::registry::SignedUpdate::to_bytes)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> DatasetId {
        DatasetId([b; 32])
    }

    #[test]
    fn messages_round_trip_and_malformed_ones_are_errors() {
        let requests = [
            Request::Pull {
                dataset: id(1),
                digest: [7; 32],
            },
            Request::Push {
                dataset: id(2),
                records: vec![vec![1; 290], vec![2; 3]],
            },
            Request::Push {
                dataset: id(3),
                records: vec![],
            },
        ];
        for r in requests {
            let bytes = Wire::encode(&r).unwrap();
            assert_eq!(Request::decode(&bytes).unwrap(), r);
            assert!(Request::decode(&bytes[..bytes.len() - 1]).is_err(), "{r:?}");
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(Request::decode(&longer).is_err(), "{r:?}");
        }
        for r in [
            Response::Same,
            Response::Records(vec![vec![9; 10]]),
            Response::Records(vec![]),
        ] {
            let bytes = Wire::encode(&r).unwrap();
            assert_eq!(Response::decode(&bytes).unwrap(), r);
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(Response::decode(&longer).is_err(), "trailing bytes: {r:?}");
        }
        assert!(Request::decode(&[]).is_err());
        assert!(Request::decode(&[9; 65]).is_err(), "unknown kind");
        assert!(Response::decode(&[]).is_err());
        assert!(Response::decode(&[7]).is_err());
        // A record longer than allowed, or empty, is refused both ways.
        assert!(Wire::encode(&Response::Records(vec![vec![0; MAX_RECORD_LEN + 1]])).is_err());
        assert!(Wire::encode(&Response::Records(vec![vec![]])).is_err());
        let mut big = vec![1u8, 1, 0];
        big.extend_from_slice(&((MAX_RECORD_LEN + 1) as u16).to_le_bytes());
        big.extend(std::iter::repeat_n(0, MAX_RECORD_LEN + 1));
        assert!(Response::decode(&big).is_err());
        let mut many = vec![1u8];
        many.extend_from_slice(&((MAX_RECORDS + 1) as u16).to_le_bytes());
        assert!(Response::decode(&many).is_err(), "too many records");
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(0u8.., 0..2048)) {
            let _ = Request::decode(&bytes);
            let _ = Response::decode(&bytes);
        }
    }
}
