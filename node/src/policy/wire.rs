//! The policy's messages on the replication protocol (kind tag 3, gossip topics
//! `/swarmlabel/policy/1/<dataset>`). A requester sends the version it holds; the responder
//! answers with its signed policy when it holds a newer one, with nothing otherwise.
//!
//! ```text
//! request  get:     0x01 ‖ dataset id (32) ‖ version held u64                 = 41 bytes
//! response same:    0x00                                       (nothing newer here)
//! response newer:   0x01 ‖ length u32 ‖ signed policy (length)
//! response unknown, refused, busy: 0x02, 0x03, 0x04 (the statuses every kind shares)
//! ```
//! Gossip: the message is one signed policy, nothing else.

use std::io;

use swarmlabel_crdt::policy::MAX_SIGNED_LEN;
use swarmlabel_ids::DatasetId;
use swarmlabel_net::swarm::replication::Kind;

use crate::replicate::{Wire, invalid};

/// How policies travel: tag 3 of the replication protocol, a gossip topic per dataset.
pub const KIND: Kind = Kind {
    tag: 3,
    name: "policy",
    topic_prefix: "/swarmlabel/policy/1/",
    max_request: REQUEST_LEN,
    max_response: 5 + MAX_SIGNED_LEN,
};
/// Bytes of a request.
pub const REQUEST_LEN: usize = 41;

/// What is asked: a newer policy than `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The dataset.
    pub dataset: DatasetId,
    /// The version the requester holds (0: none).
    pub version: u64,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Nothing newer here.
    Same,
    /// A newer signed policy (unverified until the requester checks it).
    Newer(Vec<u8>),
}

impl Wire for Request {
    fn encode(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(REQUEST_LEN);
        out.push(1);
        out.extend_from_slice(&self.dataset.0);
        out.extend_from_slice(&self.version.to_le_bytes());
        Ok(out)
    }

    fn decode(bytes: &[u8]) -> io::Result<Self> {
        if bytes.len() != REQUEST_LEN || bytes[0] != 1 {
            return Err(invalid("a policy request is 0x01 and 40 bytes"));
        }
        let mut id = [0u8; 32];
        id.copy_from_slice(&bytes[1..33]);
        let mut version = [0u8; 8];
        version.copy_from_slice(&bytes[33..41]);
        Ok(Request {
            dataset: DatasetId(id),
            version: u64::from_le_bytes(version),
        })
    }
}

impl Wire for Response {
    fn encode(&self) -> io::Result<Vec<u8>> {
        match self {
            Response::Same => Ok(vec![0]),
            Response::Newer(signed) => {
                if signed.len() > MAX_SIGNED_LEN {
                    return Err(invalid("a policy over the size limit"));
                }
                let mut out = Vec::with_capacity(5 + signed.len());
                out.push(1);
                out.extend_from_slice(&(signed.len() as u32).to_le_bytes());
                out.extend_from_slice(signed);
                Ok(out)
            }
        }
    }

    fn decode(bytes: &[u8]) -> io::Result<Self> {
        match bytes {
            [0] => Ok(Response::Same),
            [1, rest @ ..] if rest.len() >= 4 => {
                let (len, body) = rest.split_at(4);
                let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
                if len != body.len() || len > MAX_SIGNED_LEN {
                    return Err(invalid("a policy response whose length does not match"));
                }
                Ok(Response::Newer(body.to_vec()))
            }
            _ => Err(invalid("a malformed policy response")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_decode_strictly() {
        let req = Request {
            dataset: DatasetId([3; 32]),
            version: 7,
        };
        assert_eq!(Request::decode(&req.encode().unwrap()).unwrap(), req);
        assert!(Request::decode(&[1; 40]).is_err());
        for r in [Response::Same, Response::Newer(vec![9; 100])] {
            assert_eq!(Response::decode(&r.encode().unwrap()).unwrap(), r);
        }
        assert!(Response::decode(&[1, 5, 0, 0, 0, 1]).is_err());
        assert!(Response::decode(&[0, 0]).is_err());
    }
}
