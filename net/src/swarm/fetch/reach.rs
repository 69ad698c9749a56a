//! Reaching a dataset's providers directly, all at once. Blobs travel only over direct
//! connections, so each provider found is dialled (or its relayed connection upgraded by hole
//! punching) in the background; fetching starts with the first one reached and widens as the
//! others come, and those no direct path reaches are reported with why.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt as _;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use libp2p::PeerId;

use crate::swarm::Node;

/// A backstop over the node's own wait for a direct connection (which gives up after
/// [`crate::swarm::DIRECT_WAIT`]), should its answer never come.
const BACKSTOP: Duration = Duration::from_secs(60);

/// Providers being reached.
pub(super) struct Reach {
    node: Node,
    pending: HashSet<PeerId>,
    reaching: FuturesUnordered<BoxFuture<'static, (PeerId, Result<(), String>)>>,
}

impl Reach {
    pub(super) fn new(node: &Node) -> Self {
        Self {
            node: node.clone(),
            pending: HashSet::new(),
            reaching: FuturesUnordered::new(),
        }
    }

    /// Starts reaching each of `peers` not already being reached.
    pub(super) fn add(&mut self, peers: impl IntoIterator<Item = PeerId>) {
        for peer in peers {
            if !self.pending.insert(peer) {
                continue;
            }
            let node = self.node.clone();
            self.reaching.push(Box::pin(async move {
                let reached = match tokio::time::timeout(BACKSTOP, node.connect_direct(peer)).await
                {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!(
                        "peer {peer} is out of direct reach (no answer within {} s)",
                        BACKSTOP.as_secs()
                    )),
                };
                (peer, reached)
            }));
        }
    }

    /// Whether nobody is being reached.
    pub(super) fn is_empty(&self) -> bool {
        self.reaching.is_empty()
    }

    /// The next provider reached (`Ok`) or given up on (`Err` with why); `None` when nobody is
    /// being reached.
    pub(super) async fn next(&mut self) -> Option<(PeerId, Result<(), String>)> {
        let (peer, reached) = self.reaching.next().await?;
        self.pending.remove(&peer);
        Some((peer, reached))
    }
}
