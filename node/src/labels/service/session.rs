//! One anti-entropy session with one peer for one dataset: compare shard summaries, then run
//! automerge's sync exchange for each shard that differs. Runs beside the actor and asks it for
//! every message, so the stores stay the actor's alone.

use libp2p::PeerId;
use swarmlabel_crdt::{DatasetId, ShardId};
use tokio::sync::{mpsc, oneshot};

use super::actor::{Message, ReceiveError};
use crate::labels::plan;
use crate::net::{Node, RequestError, sync};

/// What a completed session did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Report {
    /// Shards whose digests differed.
    pub(super) shards: usize,
    /// Sync requests sent.
    pub(super) requests: usize,
}

pub(super) type Outcome = Result<Report, Error>;

/// Why a session ended early.
#[derive(Debug, thiserror::Error)]
pub(super) enum Error {
    #[error("the peer does not hold this dataset's labels")]
    NotShared,
    #[error("the peer is busy")]
    Busy,
    #[error("the peer refused our sync message")]
    RefusedByPeer,
    #[error("we refused the peer's sync message: {0}")]
    Refused(ReceiveError),
    #[error("the peer answered out of protocol")]
    Protocol,
    #[error(transparent)]
    Layout(#[from] plan::LayoutMismatch),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("the session took too long")]
    Timeout,
    #[error("the labels service stopped")]
    Stopped,
}

impl From<ReceiveError> for Error {
    fn from(e: ReceiveError) -> Self {
        Error::Refused(e)
    }
}

async fn ask<T>(
    actor: &mpsc::WeakSender<Message>,
    make: impl FnOnce(oneshot::Sender<T>) -> Message,
) -> Result<T, Error> {
    let actor = actor.upgrade().ok_or(Error::Stopped)?;
    let (reply, rx) = oneshot::channel();
    actor.send(make(reply)).await.map_err(|_| Error::Stopped)?;
    rx.await.map_err(|_| Error::Stopped)
}

/// Runs the session; each request is bounded by the node's sync request timeout, the whole by
/// the caller.
pub(super) async fn run(
    node: Node,
    actor: mpsc::WeakSender<Message>,
    peer: PeerId,
    dataset: DatasetId,
    max_steps_per_shard: usize,
) -> Outcome {
    let net_id = super::node_id(&dataset);
    let theirs = match node
        .sync_request(peer, sync::Request::Summary { dataset: net_id })
        .await?
    {
        sync::Response::Summary(d) => d,
        sync::Response::Unknown => return Err(Error::NotShared),
        sync::Response::Busy => return Err(Error::Busy),
        _ => return Err(Error::Protocol),
    };
    let mine = ask(&actor, |reply| Message::Summary { dataset, reply })
        .await?
        .ok_or(Error::Stopped)?;
    let shards = plan::differing_shards(&mine, &theirs)?;
    let mut report = Report {
        shards: shards.len(),
        requests: 1,
    };
    for shard in shards {
        report.requests +=
            sync_shard(&node, &actor, peer, dataset, shard, max_steps_per_shard).await?;
    }
    Ok(report)
}

/// Alternates messages for one shard until neither side has anything to say (or the step bound
/// is reached: the next round continues). Returns the requests sent.
async fn sync_shard(
    node: &Node,
    actor: &mpsc::WeakSender<Message>,
    peer: PeerId,
    dataset: DatasetId,
    shard: ShardId,
    max_steps: usize,
) -> Result<usize, Error> {
    let mut they_were_done = false;
    for step in 0..max_steps {
        let new_round = step == 0;
        let mine = ask(actor, |reply| Message::Generate {
            peer,
            dataset,
            shard,
            new_round,
            reply,
        })
        .await?;
        if mine.is_none() && they_were_done && !new_round {
            return Ok(step);
        }
        let request = sync::Request::Sync {
            dataset: super::node_id(&dataset),
            shard: shard.0,
            new_round,
            message: mine.unwrap_or_default(),
        };
        match node.sync_request(peer, request).await? {
            sync::Response::Sync(theirs) if theirs.is_empty() => they_were_done = true,
            sync::Response::Sync(message) => {
                they_were_done = false;
                ask(actor, |reply| Message::Receive {
                    peer,
                    dataset,
                    shard,
                    message,
                    reply,
                })
                .await??;
            }
            sync::Response::Refused => return Err(Error::RefusedByPeer),
            sync::Response::Unknown => return Err(Error::NotShared),
            sync::Response::Busy => return Err(Error::Busy),
            sync::Response::Summary(_) => return Err(Error::Protocol),
        }
    }
    Ok(max_steps)
}
