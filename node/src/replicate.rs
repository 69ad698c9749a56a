//! One replication layer for every kind of replicated record (labels, models, an owner's policy).
//!
//! A kind implements [`Replicated`]: what it holds, how it answers a peer's request, how one
//! session with a peer goes step by step, and how it judges a gossip message. Everything else is
//! shared and written once:
//! - the wire: one request-response protocol and a gossip topic per dataset
//!   (`swarmlabel_net::swarm::replication`), with per-peer bounds in the swarm;
//! - [`core::AntiEntropy`], the I/O-free anti-entropy core: rounds, peer choice, session slots and
//!   timeouts, backoff, sync on (re)subscription;
//! - [`service`], the actor that runs a kind on its own thread: it feeds the core and the kind
//!   with what the network and the local handle send, carries out their actions, and counts what
//!   happened (`swarmlabel_<kind>_*` metrics).
//!
//! Adding a kind is one more implementation of [`Replicated`] with its own tag and topic prefix.

pub mod context;
pub mod core;
#[cfg(test)]
mod panic_tests;
pub mod service;
pub mod stats;

use std::fmt::Debug;
use std::io;

use libp2p::PeerId;
use swarmlabel_ids::DatasetId;
use swarmlabel_net::swarm::replication::{Kind, Verdict, status};

pub use context::Context;
pub use service::{Handle, Settings, StartError, Stopped};
pub use stats::Stats;

/// A message of a kind's protocol, as bytes.
pub trait Wire: Sized {
    /// Encodes the message; an error when it cannot be carried (over a limit).
    fn encode(&self) -> io::Result<Vec<u8>>;

    /// Decodes a message from a peer strictly: exact lengths, known kinds, nothing trailing.
    fn decode(bytes: &[u8]) -> io::Result<Self>;
}

/// An answer to a request: the kind's response, or one of the statuses every kind shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<R> {
    /// The kind's response.
    Ok(R),
    /// The responder does not hold this kind's records of the dataset.
    Unknown,
    /// The responder refused what the request carried.
    Refused,
    /// The responder is shedding load.
    Busy,
}

impl<R: Wire> Reply<R> {
    /// The response body: the kind's encoding, or a reserved status byte.
    pub fn encode(&self) -> io::Result<Vec<u8>> {
        match self {
            Reply::Ok(r) => {
                let bytes = r.encode()?;
                match bytes.first() {
                    Some(b) if !status::is_reserved(*b) => Ok(bytes),
                    _ => Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a response must not start with a reserved status byte",
                    )),
                }
            }
            Reply::Unknown => Ok(vec![status::UNKNOWN]),
            Reply::Refused => Ok(vec![status::REFUSED]),
            Reply::Busy => Ok(vec![status::BUSY]),
        }
    }

    /// Decodes a response body.
    pub fn decode(bytes: &[u8]) -> io::Result<Self> {
        match bytes {
            [status::UNKNOWN] => Ok(Reply::Unknown),
            [status::REFUSED] => Ok(Reply::Refused),
            [status::BUSY] => Ok(Reply::Busy),
            [b, ..] if status::is_reserved(*b) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a status response with trailing bytes",
            )),
            _ => R::decode(bytes).map(Reply::Ok),
        }
    }
}

/// What a session does after a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<R> {
    /// Send this request next.
    Next(R),
    /// The session is complete.
    Done,
    /// The session failed (the peer is busy, does not hold the dataset, refused us, or answered
    /// out of protocol).
    Failed(String),
    /// We refused what the peer sent (it does not verify): the session failed, and the peer is
    /// faulty or hostile.
    Refused(String),
}

/// A gossip message on one of the kind's topics.
#[derive(Debug, Clone)]
pub struct Gossip {
    /// The peer that forwarded it to us.
    pub peer: PeerId,
    /// The peer that published it (gossipsub's signed source).
    pub author: Option<PeerId>,
    /// The dataset of the topic.
    pub dataset: DatasetId,
    /// The message bytes.
    pub data: Vec<u8>,
}

/// A kind of replicated records: how it is carried, answered, synced and judged. The methods are
/// called on the kind's own thread, one at a time; they may do file I/O (a store making what it
/// received durable), but never wait on the network: what they want sent or started goes through
/// the [`Context`].
pub trait Replicated: Send + 'static {
    /// How the kind travels (tag, topic prefix, limits).
    const KIND: Kind;
    /// A request of the kind's protocol.
    type Request: Wire + Debug + Send + 'static;
    /// A response of the kind's protocol.
    type Response: Wire + Debug + Send + 'static;
    /// The state of one session this node runs with a peer.
    type Session: Send + 'static;
    /// What the kind's handle asks of it (replies travel in oneshots inside).
    type Command: Send + 'static;
    /// Work the kind started beside itself, finished.
    type Event: Send + 'static;

    /// The datasets whose records this node holds now.
    fn held(&self) -> Vec<DatasetId>;

    /// Starts a session with `peer` for `dataset`: its state and first request, or `None` when
    /// there is nothing to sync (the dataset is no longer held).
    fn begin(
        &mut self,
        peer: PeerId,
        dataset: DatasetId,
        cx: &mut Context<Self>,
    ) -> Option<(Self::Session, Self::Request)>
    where
        Self: Sized;

    /// The peer answered the session's last request.
    fn step(
        &mut self,
        peer: PeerId,
        session: &mut Self::Session,
        reply: Reply<Self::Response>,
        cx: &mut Context<Self>,
    ) -> Step<Self::Request>
    where
        Self: Sized;

    /// Answers a peer's request.
    fn answer(
        &mut self,
        peer: PeerId,
        request: Self::Request,
        cx: &mut Context<Self>,
    ) -> Reply<Self::Response>
    where
        Self: Sized;

    /// Judges a gossip message, storing what it carries before it is forwarded.
    fn judge(&mut self, gossip: Gossip, cx: &mut Context<Self>) -> Verdict
    where
        Self: Sized;

    /// Handles a command of the kind's handle.
    fn command(&mut self, command: Self::Command, cx: &mut Context<Self>)
    where
        Self: Sized;

    /// Handles work the kind started beside itself.
    fn event(&mut self, event: Self::Event, cx: &mut Context<Self>)
    where
        Self: Sized,
    {
        let _ = (event, cx);
    }

    /// Takes in what changed beside the kind since its last event: the owner's policy in force,
    /// which the kind follows through the watch handed to it when the dataset opened. Called
    /// before every event the service handles, so nothing is judged, answered or read under a
    /// policy older than the one in force, and no task has to forward policies.
    fn refresh(&mut self, cx: &mut Context<Self>)
    where
        Self: Sized,
    {
        let _ = cx;
    }

    /// An anti-entropy round starts (the kind's own upkeep: retrying downloads).
    fn round(&mut self, cx: &mut Context<Self>)
    where
        Self: Sized,
    {
        let _ = cx;
    }
}

/// An `InvalidData` error naming what is wrong with a peer's bytes.
pub(crate) fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}
