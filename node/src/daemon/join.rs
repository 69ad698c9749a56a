//! The join workflow: fetch a dataset from its providers, verify it, serve it, then open it
//! (labels, policy, models, learning loop: [`Datasets::open`]). Its state per dataset is what
//! `status` shows.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use swarmlabel_net::swarm::{Node, fetch};
use swarmlabel_store::dataset::DatasetId;

use super::datasets::Datasets;

/// How a joined dataset is doing.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum JoinState {
    /// Being fetched.
    Fetching,
    /// Not fetched yet (no provider found, or none that could send it all): looked for again
    /// after a pause, until found or the node stops. What was fetched is kept.
    Looking {
        /// Lookups and fetches tried so far.
        attempts: u32,
        /// Why the last one did not finish.
        error: String,
        /// Seconds until the next try.
        retry_in_s: u64,
    },
    /// Fetched, verified and served.
    Done {
        /// What the fetch did.
        report: fetch::Report,
    },
    /// The join cannot succeed as it stands (the owner signed a bad manifest, or the dataset
    /// cannot be served); joining again tries once more.
    Failed {
        /// Why.
        error: String,
    },
}

/// What joining a dataset needs: the node, where join states go, and the datasets' composition
/// root, which opens the dataset everywhere once it is served.
#[derive(Clone)]
pub(super) struct Joiner {
    pub(super) node: Node,
    pub(super) joins: Arc<Mutex<BTreeMap<DatasetId, JoinState>>>,
    pub(super) datasets: Datasets,
}

pub(super) fn spawn_join(joiner: Joiner, id: DatasetId) {
    let Joiner { node, joins, .. } = joiner.clone();
    let set = move |joins: &Mutex<BTreeMap<DatasetId, JoinState>>, state| {
        joins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, state);
    };
    set(&joins, JoinState::Fetching);
    tokio::spawn(async move {
        let mut attempts = 0u32;
        let fetched = loop {
            match node.fetch(id, fetch::Options::default()).await {
                Err(e) if !e.is_permanent() => {
                    attempts += 1;
                    let pause = retry_after(attempts);
                    tracing::info!(dataset = %id, attempts, error = %e, "still looking for the dataset; trying again in {} s", pause.as_secs());
                    let looking = JoinState::Looking {
                        attempts,
                        error: e.to_string(),
                        retry_in_s: pause.as_secs(),
                    };
                    set(&joins, looking);
                    tokio::time::sleep(pause).await;
                    set(&joins, JoinState::Fetching);
                }
                other => break other,
            }
        };
        let state = match fetched {
            Ok(report) => match node.serve(id).await {
                Ok(()) => {
                    // Its labels sync from now on; a failure here leaves the dataset served.
                    if let Err(error) = joiner.datasets.open(node.home(), id).await {
                        tracing::warn!(dataset = %id, %error, "cannot open the dataset");
                    }
                    JoinState::Done { report }
                }
                Err(e) => JoinState::Failed {
                    error: e.to_string(),
                },
            },
            Err(e) => JoinState::Failed {
                error: e.to_string(),
            },
        };
        if let JoinState::Failed { error } = &state {
            tracing::warn!(dataset = %id, %error, "joining failed");
        }
        set(&joins, state);
    });
}

/// The pause before try `attempts + 1` of a join: 1 s after the first failure, doubling, at most
/// 30 s (a provider that comes online is found within half a minute).
fn retry_after(attempts: u32) -> std::time::Duration {
    let secs = 1u64 << attempts.saturating_sub(1).min(5);
    std::time::Duration::from_secs(secs.min(30))
}

#[cfg(test)]
mod tests {
    #[test]
    fn retries_back_off_from_one_second_to_half_a_minute() {
        let secs: Vec<u64> = (1..=8).map(|a| super::retry_after(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
