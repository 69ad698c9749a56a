//! Replicated kinds on the wire: what the swarm needs to know of a kind of replicated records
//! (labels, models, an owner's policy) to carry it, and nothing of what the records mean.
//!
//! Every kind travels the same two ways:
//! - a **gossip topic per dataset** (`<topic prefix><dataset id in lowercase hex>`), whose messages
//!   are handed to the kind's service to judge before gossipsub forwards them ([`Verdict`]);
//! - **one request-response protocol for all kinds**, `/swarmlabel/replicate/1.0.0`: a request is
//!   `kind tag u8 ‖ body`, a response is the body the kind's service answered. Response bodies
//!   never start with the reserved [`status`] bytes except to say `unknown`, `refused` or `busy`,
//!   which the swarm itself answers when the kind's service is absent or overloaded.
//!
//! A service registers its kind with [`crate::swarm::Node::attach`] and receives [`Inbound`]s on a
//! bounded queue. Per kind and peer, at most [`MAX_INBOUND_PER_PEER`] requests are being answered,
//! requests are answered at a rate (`Limits::replication_requests`, a token bucket), and at most
//! [`MAX_PENDING_VERDICTS_PER_PEER`] gossip messages await a verdict, so one peer cannot crowd out
//! the others: past these the swarm answers `busy` or ignores the message, and anti-entropy makes
//! up for it later.

use std::io;

use libp2p::{PeerId, StreamProtocol};
use tokio::sync::oneshot;

use super::codec::Frame;
use swarmlabel_store::dataset::DatasetId;

/// The protocol id shared by every replicated kind.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/swarmlabel/replicate/1.0.0");
/// The largest frame any kind may use either way (a kind's own limits are at most this: the
/// models kind's 2.06 MiB is the largest). The codec refuses a longer frame before reading more,
/// so what one stream can make a node buffer is bounded by it.
pub const MAX_FRAME_LEN: usize = (2 << 20) + 256 * 1024;
/// Bytes of request bodies of one kind queued for its service or being answered, from all
/// peers together, at most; past it requests are answered `busy`.
pub const MAX_QUEUED_BYTES: usize = 32 << 20;
/// Requests of one kind from one peer being answered at most; more are answered `busy`.
pub const MAX_INBOUND_PER_PEER: usize = 4;
/// Gossip messages of one kind from one peer awaiting a verdict at most; more are ignored.
pub const MAX_PENDING_VERDICTS_PER_PEER: usize = 64;
/// Gossip messages of one kind awaiting a verdict at most, from all peers together.
pub const MAX_PENDING_VERDICTS: usize = 1_024;

/// The first bytes of a response that the replication layer reserves; a kind's own responses
/// start with any other byte.
pub mod status {
    /// The responder does not hold this kind's records of the dataset (or no service runs).
    pub const UNKNOWN: u8 = 2;
    /// The responder refused what the request carried; stop this session.
    pub const REFUSED: u8 = 3;
    /// The responder is shedding load; try later.
    pub const BUSY: u8 = 4;

    /// Whether `byte` is one of the reserved status bytes.
    pub fn is_reserved(byte: u8) -> bool {
        (UNKNOWN..=BUSY).contains(&byte)
    }
}

/// What the swarm knows of a replicated kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// Its tag on the replication protocol (unique per kind).
    pub tag: u8,
    /// A short name for logs and errors ("labels").
    pub name: &'static str,
    /// The prefix of its gossip topics, e.g. `/swarmlabel/labels/1/`.
    pub topic_prefix: &'static str,
    /// The largest request body it accepts, in bytes.
    pub max_request: usize,
    /// The largest response body it accepts, in bytes.
    pub max_response: usize,
}

impl Kind {
    /// The gossip topic of `dataset`.
    pub fn topic(&self, dataset: &DatasetId) -> String {
        format!("{}{dataset}", self.topic_prefix)
    }

    /// The dataset of one of this kind's topics, or `None` for any other topic (one spelling per
    /// dataset: lowercase hex).
    pub fn dataset_of_topic(&self, topic: &str) -> Option<DatasetId> {
        let hex = topic.strip_prefix(self.topic_prefix)?;
        if hex.len() != 64 || hex.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        hex.parse().ok()
    }
}

/// What a kind's service says about a gossip message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid and new: forward it.
    Accept,
    /// Valid but not worth forwarding (already known, older than what is held, not held).
    Ignore,
    /// Invalid: drop it; gossipsub's peer score penalises the peer that sent it.
    Reject,
}

/// Something from the network for a kind's service; each carries where the answer goes.
#[derive(Debug)]
pub enum Inbound {
    /// A request from `peer`.
    Request {
        /// The requester.
        peer: PeerId,
        /// The request body (the kind tag removed), at most the kind's `max_request` bytes.
        body: Vec<u8>,
        /// Where the response body goes (dropping it answers `busy`).
        reply: oneshot::Sender<Vec<u8>>,
    },
    /// A gossip message on the kind's topic of `dataset`.
    Gossip {
        /// The peer that forwarded it to us.
        peer: PeerId,
        /// The peer that published it (gossipsub's signed source).
        author: Option<PeerId>,
        /// The dataset of the topic.
        dataset: DatasetId,
        /// The message bytes.
        data: Vec<u8>,
        /// Where the verdict goes (dropping it ignores the message).
        reply: oneshot::Sender<Verdict>,
    },
    /// `peer` subscribed to the kind's topic of `dataset` (a new or reconnected peer): a moment
    /// to sync with it.
    Subscribed {
        /// The peer.
        peer: PeerId,
        /// The dataset.
        dataset: DatasetId,
    },
}

/// A request on the replication protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The kind's tag.
    pub kind: u8,
    /// The kind's request.
    pub body: Vec<u8>,
}

/// A response on the replication protocol: the body the kind's service answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response(pub Vec<u8>);

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl Frame for Request {
    fn to_frame(&self) -> io::Result<Vec<u8>> {
        if self.body.len() >= MAX_FRAME_LEN {
            return Err(invalid("a replication request over the size limit"));
        }
        let mut out = Vec::with_capacity(1 + self.body.len());
        out.push(self.kind);
        out.extend_from_slice(&self.body);
        Ok(out)
    }

    fn from_frame(mut frame: Vec<u8>) -> io::Result<Self> {
        let Some(&kind) = frame.first() else {
            return Err(invalid("an empty replication request"));
        };
        frame.remove(0);
        Ok(Request { kind, body: frame })
    }
}

impl Frame for Response {
    fn to_frame(&self) -> io::Result<Vec<u8>> {
        if self.0.len() > MAX_FRAME_LEN {
            return Err(invalid("a replication response over the size limit"));
        }
        Ok(self.0.clone())
    }

    fn from_frame(frame: Vec<u8>) -> io::Result<Self> {
        if frame.is_empty() {
            return Err(invalid("an empty replication response"));
        }
        Ok(Response(frame))
    }
}

/// The codec of the replication protocol.
pub type Codec = super::codec::Codec<Request, Response>;

/// The replication protocol's codec with its limits.
pub fn codec() -> Codec {
    Codec::new(MAX_FRAME_LEN, MAX_FRAME_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIND: Kind = Kind {
        tag: 7,
        name: "test",
        topic_prefix: "/swarmlabel/test/1/",
        max_request: 10,
        max_response: 10,
    };

    #[test]
    fn topics_name_their_dataset_and_nothing_else_parses() {
        let id = DatasetId([0xab; 32]);
        assert_eq!(KIND.dataset_of_topic(&KIND.topic(&id)), Some(id));
        assert_eq!(KIND.dataset_of_topic("/swarmlabel/datasets/1"), None);
        assert_eq!(KIND.dataset_of_topic(&KIND.topic(&id).to_uppercase()), None);
        assert_eq!(KIND.dataset_of_topic("/swarmlabel/test/1/abcd"), None);
        let upper = format!("/swarmlabel/test/1/{}", "AB".repeat(32));
        assert_eq!(
            KIND.dataset_of_topic(&upper),
            None,
            "one spelling per dataset"
        );
    }

    #[test]
    fn frames_carry_the_kind_tag_and_are_never_empty() {
        let r = Request {
            kind: 3,
            body: vec![9, 8],
        };
        let frame = r.to_frame().unwrap();
        assert_eq!(frame, [3, 9, 8]);
        assert_eq!(Request::from_frame(frame).unwrap(), r);
        assert!(Request::from_frame(vec![]).is_err());
        assert!(Response::from_frame(vec![]).is_err());
        assert!(status::is_reserved(status::BUSY) && !status::is_reserved(0));
    }
}
