//! Sync of shard documents with peers: automerge's sync protocol, one [`State`] per peer and
//! shard, driven by explicit calls (no I/O here).
//!
//! The caller moves the bytes: [`crate::Replica::generate_sync_message`] gives the next message
//! for a peer (or `None` when there is nothing to say), [`crate::Replica::receive_sync_message`]
//! applies one. A session ends when neither side generates a message. Messages may be lost: at
//! the start of every anti-entropy round (a timer, a reconnect) call [`State::new_round`], which
//! keeps what both sides are known to share and forgets what was in flight, so the next exchange
//! resends whatever was lost.
//!
//! Incoming messages are bounded by [`Limits::max_message_bytes`] and screened before automerge
//! applies them (see `shard/screen.rs`): a message carrying anything but valid, fresh annotation
//! puts is refused whole, so the peer that sent it can be told apart.

use crate::layout::ShardId;
use crate::validate::Rejection;

/// The sync state with one peer for one shard.
#[derive(Debug, Clone, Default)]
pub struct State(pub(crate) automerge::sync::State);

impl State {
    /// A state for a peer we know nothing about.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a new anti-entropy round: keeps the heads both sides are known to share, forgets
    /// messages in flight and what was sent, so that anything lost is sent again.
    pub fn new_round(&mut self) {
        // The persisted form of automerge's state is exactly the part that survives a session.
        let shared = std::mem::take(&mut self.0.shared_heads);
        self.0 = automerge::sync::State::new();
        self.0.shared_heads = shared;
    }

    /// The part of the state worth keeping across restarts (the shared heads), as bytes.
    pub fn encode(&self) -> Vec<u8> {
        self.0.encode()
    }

    /// Restores a state from [`State::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeStateError> {
        automerge::sync::State::decode(bytes)
            .map(Self)
            .map_err(|e| DecodeStateError(e.to_string()))
    }
}

/// Saved sync state that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("saved sync state does not decode ({0}); start with State::new()")]
pub struct DecodeStateError(String);

/// Bounds on sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest incoming message accepted, in bytes. A first sync can carry a whole shard
    /// document; shards of [`crate::ShardLayout::for_sample_count`] stay near 4 MB at 10
    /// annotations per sample.
    pub max_message_bytes: usize,
    /// The most the compressed parts of one incoming message (compressed change chunks, DEFLATE
    /// columns of document chunks) may inflate to, in bytes, checked before automerge inflates
    /// them (it would into an unbounded buffer).
    pub max_inflated_bytes: usize,
}

impl Default for Limits {
    /// 16 MiB a message, 64 MiB inflated.
    fn default() -> Self {
        Self {
            max_message_bytes: 16 << 20,
            max_inflated_bytes: 64 << 20,
        }
    }
}

/// Why a peer's message was refused without applying any of it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// A chunk does not parse or fails its checksum.
    Undecodable(String),
    /// Its compressed parts inflate to more than [`Limits::max_inflated_bytes`].
    Inflated {
        /// The limit, in bytes.
        max: usize,
    },
    /// An op that is not a put of bytes on the root map (deletes, objects, counters, lists).
    NotAnnotationPut,
    /// A put whose value fails validation.
    Invalid(Rejection),
    /// A put that would replace a value of its slot that is as new or newer (a replay).
    Stale {
        /// The slot key.
        key: String,
        /// Time of the value it would replace.
        kept_ms: u64,
        /// Time of the value offered.
        offered_ms: u64,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Undecodable(r) => write!(f, "undecodable changes ({r})"),
            Refusal::Inflated { max } => {
                write!(
                    f,
                    "compressed changes that inflate to more than {max} bytes"
                )
            }
            Refusal::NotAnnotationPut => f.write_str("an op that is not an annotation put"),
            Refusal::Invalid(r) => write!(f, "an invalid annotation ({r:?})"),
            Refusal::Stale {
                key,
                kept_ms,
                offered_ms,
            } => write!(
                f,
                "slot {key} would go back from time {kept_ms} to {offered_ms} (a replay)"
            ),
        }
    }
}

/// Errors of receiving a sync message. The document is unchanged after any of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The shard does not exist in this dataset's layout.
    #[error("shard {} does not exist in this dataset's layout", .0.0)]
    UnknownShard(ShardId),
    /// The message is larger than [`Limits::max_message_bytes`].
    #[error(
        "a sync message for shard {} is {len} bytes, over the limit of {max}; the peer's shard \
         is larger than this node accepts",
        shard.0
    )]
    TooLarge {
        /// The shard.
        shard: ShardId,
        /// The message length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not an automerge sync message.
    #[error("the sync message for shard {} does not decode: {reason}", shard.0)]
    Malformed {
        /// The shard.
        shard: ShardId,
        /// The decoder's complaint.
        reason: String,
    },
    /// The message carries changes this node refuses (see [`Refusal`]); the peer is faulty or
    /// hostile.
    #[error("refused a sync message for shard {}: it carries {refusal}", shard.0)]
    Refused {
        /// The shard.
        shard: ShardId,
        /// What was wrong.
        refusal: Refusal,
    },
    /// automerge could not apply the message.
    #[error("could not apply the sync message for shard {}: {reason}", shard.0)]
    Apply {
        /// The shard.
        shard: ShardId,
        /// automerge's error.
        reason: String,
    },
}

/// What receiving a message did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// The shard.
    pub shard: ShardId,
    /// Whether the shard's heads changed (new annotations may be readable).
    pub changed: bool,
    /// Ops screened in the message.
    pub ops: usize,
    /// The screened (valid, signed) records of the message that the shard did not hold as they
    /// are: what a store must make durable on its own terms (its record log) once the message is
    /// applied.
    pub records: Vec<crate::SignedAnnotation>,
}
