//! The data owner's policy of each dataset (who may label it), replicated as the third kind of
//! the replication layer (`crate::replicate`), beside labels and models.
//!
//! The owner signs a new version with `swarmlabel dataset ban|admit|policy` ([`Change`]); every
//! node holding the dataset takes the highest version its owner signed, from gossip or by
//! anti-entropy, stores it (`HOME/policy/<id>`) and puts it in force: the labels service stops
//! taking, and stops counting, the annotations of keys the policy does not admit, so they leave
//! consensus, statistics and exports on every node, retroactively; the merged model leaves out
//! their model updates.

mod replicated;
pub mod store;
pub mod wire;

use std::collections::BTreeSet;
use swarmlabel_ids::PublicKey;

use swarmlabel_crdt::policy::{Admission, Policy, SignedPolicy};
use swarmlabel_crdt::{AnnotatorKey, DatasetId};
use swarmlabel_net::swarm::Node;
use swarmlabel_store::home::Home;
use swarmlabel_store::identity::Identity;
use tokio::sync::watch;

pub use replicated::InForce;

/// The policies among `followed` that changed since they were last taken in, taken in now:
/// what a kind that follows its datasets' policies (labels, models) puts in force before its
/// next event (see [`crate::replicate::Replicated::refresh`]).
pub(crate) fn changed(
    followed: &mut std::collections::HashMap<DatasetId, tokio::sync::watch::Receiver<InForce>>,
) -> Vec<(DatasetId, InForce)> {
    followed
        .iter_mut()
        .filter(|(_, policy)| policy.has_changed().unwrap_or(false))
        .map(|(dataset, policy)| (*dataset, policy.borrow_and_update().clone()))
        .collect()
}
use replicated::{Command, Policies as Kind};

use crate::replicate::{self, Handle, core};

/// Errors of the policy service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The dataset's policy is not open here.
    #[error("the policy of dataset {0} is not open on this node; open the dataset first")]
    NotOpen(DatasetId),
    /// Signed by another key than the dataset's owner (or not for this dataset).
    #[error(
        "only the dataset's owner can change its policy, and this node's key is not the owner's"
    )]
    NotOwner,
    /// Not newer than the policy in force.
    #[error("a newer policy is already in force; run the command again")]
    NotNewer,
    /// The policy is over its bounds.
    #[error(transparent)]
    Invalid(#[from] swarmlabel_crdt::policy::PolicyError),
    /// The owner asked to ban its own key (its labels, gold and consensus would stop counting).
    #[error("the owner's own key cannot be banned; give the keys of others")]
    SelfBan,
    /// The policy file could not be read.
    #[error("cannot read the policy file: {0}")]
    Io(String),
    /// The service could not start.
    #[error("the policy service could not start: {0}")]
    Start(String),
    /// The service has stopped.
    #[error("the policy service has stopped")]
    Stopped,
}

impl From<replicate::Stopped> for PolicyError {
    fn from(_: replicate::Stopped) -> Self {
        PolicyError::Stopped
    }
}

/// A change an owner makes to a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Ban these keys, with a reason.
    Ban(Vec<AnnotatorKey>, String),
    /// Lift the ban of these keys.
    Unban(Vec<AnnotatorKey>),
    /// Admit these keys: the dataset is on an allowlist from now on.
    Admit(Vec<AnnotatorKey>),
    /// Take these keys off the allowlist.
    Unadmit(Vec<AnnotatorKey>),
    /// Anyone not banned may label (the allowlist is dropped).
    Open,
}

/// The next version of `current` (or of the open policy) with `change`, signed by `owner`.
pub fn edit(
    dataset: DatasetId,
    current: Option<&Policy>,
    change: Change,
    owner: &Identity,
    time_ms: u64,
) -> Result<SignedPolicy, PolicyError> {
    let mut next = current.cloned().unwrap_or_else(|| Policy::open(dataset));
    next.version += 1;
    next.time_ms = time_ms;
    let allowlist = |p: &Policy| match &p.admission {
        Admission::Open => BTreeSet::new(),
        Admission::Allowlist(keys) => keys.iter().copied().collect(),
    };
    match change {
        Change::Ban(keys, reason) => {
            if keys.contains(&owner.public_key()) {
                return Err(PolicyError::SelfBan);
            }
            for key in keys {
                next.banned.insert(key, reason.clone());
            }
        }
        Change::Unban(keys) => {
            for key in keys {
                next.banned.remove(&key);
            }
        }
        Change::Admit(keys) => {
            let mut allowed = allowlist(&next);
            allowed.extend(keys);
            next.admission = Admission::Allowlist(allowed.into_iter().collect());
        }
        Change::Unadmit(keys) => {
            let mut allowed = allowlist(&next);
            for key in keys {
                allowed.remove(&key);
            }
            next.admission = Admission::Allowlist(allowed.into_iter().collect());
        }
        Change::Open => next.admission = Admission::Open,
    }
    Ok(SignedPolicy::sign(next, owner.signing_key())?)
}

/// A handle to a node's policy service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Policies {
    handle: Handle<Kind>,
}

impl Policies {
    /// Starts the service for `home`; with a `node`, policies are pulled from peers and pushed
    /// on gossip.
    pub async fn start(
        home: Home,
        node: Option<Node>,
        anti_entropy: core::Config,
    ) -> Result<Policies, PolicyError> {
        let settings = replicate::Settings {
            anti_entropy,
            seed: None,
        };
        let handle = Handle::start(Kind::new(home), node, settings)
            .await
            .map_err(|e| PolicyError::Start(e.to_string()))?;
        Ok(Policies { handle })
    }

    /// Opens the policy of `dataset`, whose manifest `owner` signed (loading the stored one),
    /// subscribes to its topic, and returns a receiver of the policy in force.
    pub async fn open(
        &self,
        dataset: DatasetId,
        owner: PublicKey,
    ) -> Result<watch::Receiver<InForce>, PolicyError> {
        let rx = self
            .handle
            .call(|reply| Command::Open {
                dataset,
                owner,
                reply,
            })
            .await??;
        self.handle
            .subscribe(dataset)
            .await
            .map_err(|e| PolicyError::Start(e.to_string()))?;
        Ok(rx)
    }

    /// Puts a policy signed by the owner in force here and pushes it to peers.
    pub async fn set(&self, signed: SignedPolicy) -> Result<(), PolicyError> {
        self.handle
            .call(|reply| Command::Set { signed, reply })
            .await?
    }

    /// The signed policy in force for `dataset`, if its owner signed one.
    pub async fn get(&self, dataset: DatasetId) -> Result<Option<SignedPolicy>, PolicyError> {
        Ok(self
            .handle
            .call(|reply| Command::Get { dataset, reply })
            .await?)
    }

    /// Stops the service.
    pub async fn shutdown(&self) {
        self.handle.shutdown().await;
    }
}
