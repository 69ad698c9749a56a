//! The composition root of the datasets a node serves: one owner opens a dataset's labels, its
//! owner's policy, its models and its learning loop together, and hands the labels and the
//! models the policy they follow (a watch the policy kind keeps in force: no task forwards
//! policies, and no result is dropped). They close together when the node stops.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use swarmlabel_store::dataset::{CatalogError, DatasetId};
use swarmlabel_store::home::Home;

use super::learning::Learners;
use crate::labels::{LabelStore, Labels, LabelsError};
use crate::models::{Models, ModelsError};
use crate::policy::{Policies, PolicyError};

/// Why a dataset could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Its listing or manifest pages could not be read.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// Its labels could not be opened.
    #[error(transparent)]
    Labels(#[from] LabelsError),
    /// Its owner's policy could not be opened.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// Its models could not follow the policy.
    #[error(transparent)]
    Models(#[from] ModelsError),
    /// Reading the manifest on the blocking pool failed (it panicked or was cancelled).
    #[error("reading the dataset's manifest failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The services every dataset of the node lives in, and the one place that opens a dataset in
/// all of them.
#[derive(Clone)]
pub(super) struct Datasets {
    pub(super) labels: Labels,
    pub(super) policies: Policies,
    pub(super) models: Models,
    /// The learning loops, when this node learns.
    pub(super) learners: Option<Learners>,
    /// The datasets opened so far.
    pub(super) opened: Arc<Mutex<HashSet<DatasetId>>>,
}

impl Datasets {
    /// Opens listed dataset `id`: its labels (taking only annotations of the manifest's
    /// samples), its owner's policy, followed from now on by the labels and the models, and its
    /// learning loop. Opening an open dataset again changes nothing.
    pub(super) async fn open(&self, home: &Home, id: DatasetId) -> Result<(), OpenError> {
        if self.is_open(id) {
            return Ok(());
        }
        let catalog = swarmlabel_store::Catalog::of(home);
        let (listed, samples) = tokio::task::spawn_blocking(move || {
            let listed = catalog.get(&id)?;
            let samples = crate::labels::samples_of(&catalog, &listed)?;
            Ok::<_, CatalogError>((listed, samples))
        })
        .await??;
        let root = listed.root.root();
        let dataset = LabelStore::crdt_dataset(&id, root.labels.len(), root.sample_count);
        self.labels
            .open_with(dataset, Some(Arc::new(samples)))
            .await?;
        let policy = self.policies.open(id, root.owner).await?;
        self.labels.follow_policy(id, policy.clone()).await?;
        self.models.follow_policy(id, policy).await?;
        if let Some(learners) = &self.learners {
            learners.start(id);
        }
        self.opened
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id);
        Ok(())
    }

    /// Whether dataset `id` is open.
    fn is_open(&self, id: DatasetId) -> bool {
        self.opened
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&id)
    }
}
