//! The policy's messages on the replication protocol (kind tag 3, gossip topics
//! `/swarmlabel/policy/1/<dataset>`). A requester sends the version it holds and a digest of its
//! signed bytes; the responder answers with its signed policy when it holds a newer version, or
//! the same version with other bytes (the requester keeps the greater `(version, bytes)`, so two
//! policies signed for one version converge instead of staying apart), with nothing otherwise.
//!
//! ```text
//! request  get:     0x02 ‖ dataset id (32) ‖ version held u64 ‖ BLAKE3 of the signed policy held
//!                   (32; zeros when none)                                      = 73 bytes
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
pub const REQUEST_LEN: usize = 73;

/// What is asked: a policy other than the one held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The dataset.
    pub dataset: DatasetId,
    /// The version the requester holds (0: none).
    pub version: u64,
    /// BLAKE3 of the signed policy the requester holds (zeros: none).
    pub held: [u8; 32],
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
        let mut w = swarmlabel_ids::wire::Writer::new(REQUEST_LEN, "a policy request");
        w.u8(2)?
            .put(&self.dataset.0)?
            .u64(self.version)?
            .put(&self.held)?;
        Ok(w.into_bytes())
    }

    fn decode(bytes: &[u8]) -> io::Result<Self> {
        let mut r = swarmlabel_ids::wire::Reader::new(bytes, "a policy request");
        if r.u8()? != 2 {
            return Err(invalid("an unknown policy request"));
        }
        let request = Request {
            dataset: DatasetId(r.array()?),
            version: r.u64()?,
            held: r.array()?,
        };
        r.finish()?;
        Ok(request)
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
            held: [5; 32],
        };
        let bytes = req.encode().unwrap();
        assert_eq!(bytes.len(), REQUEST_LEN);
        assert_eq!(Request::decode(&bytes).unwrap(), req);
        assert!(Request::decode(&bytes[..72]).is_err());
        assert!(Request::decode(&[1; 73]).is_err(), "an unknown kind");
        for r in [Response::Same, Response::Newer(vec![9; 100])] {
            assert_eq!(Response::decode(&r.encode().unwrap()).unwrap(), r);
        }
        assert!(Response::decode(&[1, 5, 0, 0, 0, 1]).is_err());
        assert!(Response::decode(&[0, 0]).is_err());
    }
}
