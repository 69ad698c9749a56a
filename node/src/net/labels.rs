//! The network's side of labels: the gossip topic of a dataset's labels, and what the swarm actor
//! hands to the labels service (sync requests to answer, gossip messages to judge).
//!
//! The swarm actor never looks inside: it forwards bytes over a bounded queue and sends back what
//! the service answers. When the queue is full, sync requests are answered
//! [`sync::Response::Busy`](super::sync::Response::Busy) and gossip messages are ignored (not
//! forwarded); anti-entropy makes up for both later.

use libp2p::PeerId;
use tokio::sync::oneshot;

use super::sync;
use crate::dataset::DatasetId;
use crate::store::BlobId;

/// The prefix of the label topics; the topic of a dataset appends its id in lowercase hex.
pub const TOPIC_PREFIX: &str = "/swarmlabel/labels/1/";

/// The gossipsub topic of `dataset`'s labels.
pub fn topic(dataset: &DatasetId) -> String {
    format!("{TOPIC_PREFIX}{dataset}")
}

/// The dataset of a label topic, or `None` for any other topic.
pub fn dataset_of_topic(topic: &str) -> Option<DatasetId> {
    let hex = topic.strip_prefix(TOPIC_PREFIX)?;
    if hex.len() != 64 || hex.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut id = [0u8; 32];
    hex::decode_to_slice(hex, &mut id).ok()?;
    Some(DatasetId(BlobId(id)))
}

/// What the labels service says about a gossip message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid and new: forward it.
    Accept,
    /// Valid but not worth forwarding (already known, or older than what is held).
    Ignore,
    /// Invalid: drop it and penalise the peer that sent it.
    Reject,
}

/// Something from the network for the labels service; each carries where to send the answer.
#[derive(Debug)]
pub enum Inbound {
    /// A label sync request from `peer`.
    Sync {
        /// The requester.
        peer: PeerId,
        /// The request.
        request: sync::Request,
        /// Where the response goes (dropping it answers `Busy`).
        reply: oneshot::Sender<sync::Response>,
    },
    /// A gossip message on the label topic of `dataset`.
    Gossip {
        /// The peer that forwarded it to us.
        peer: PeerId,
        /// The dataset of the topic.
        dataset: DatasetId,
        /// The message bytes.
        data: Vec<u8>,
        /// Where the verdict goes (dropping it ignores the message).
        reply: oneshot::Sender<Verdict>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_name_their_dataset_and_nothing_else_parses() {
        let id = DatasetId(BlobId([0xab; 32]));
        assert_eq!(dataset_of_topic(&topic(&id)), Some(id));
        assert_eq!(dataset_of_topic("/swarmlabel/datasets/1"), None);
        assert_eq!(dataset_of_topic(&topic(&id).to_uppercase()), None);
        assert_eq!(dataset_of_topic(&format!("{TOPIC_PREFIX}abcd")), None);
        let upper = format!("{TOPIC_PREFIX}{}", "AB".repeat(32));
        assert_eq!(dataset_of_topic(&upper), None, "one spelling per dataset");
    }
}
