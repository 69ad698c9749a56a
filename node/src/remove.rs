//! Removing a dataset from a home (`swarmlabel dataset rm`): a dataset this node created, or one
//! it joined and no longer wants.
//!
//! The listing goes first, durably: from then on the dataset is not in the home, and a crash
//! leaves only files no listing names, which running the removal again (or `gc`, for blobs)
//! deletes. Then its labels, model registry, policy, private gold and file names, then every blob no other
//! listed dataset or model names. The caller holds the home's lock alone: no node or import
//! runs meanwhile.

use std::io;
use std::path::{Path, PathBuf};

use swarmlabel_store::dataset::{Catalog, CatalogError, GcReport};
use swarmlabel_store::home::HomeLock;
use swarmlabel_store::{DatasetId, Home};

/// What a removal deleted.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Removed {
    /// The dataset.
    pub dataset: DatasetId,
    /// Whether it was listed (false: only leftovers of an earlier removal were found).
    pub listed: bool,
    /// Signed annotations in its record log (this node's and those it took from peers).
    pub annotations: u64,
    /// Files and folders deleted besides blobs.
    pub paths: Vec<PathBuf>,
    /// The blob collection that followed.
    pub gc: GcReport,
}

/// Why a dataset could not be removed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoveError {
    /// Nothing of the dataset is in the home.
    #[error("dataset {0} is not in this home; `swarmlabel dataset ls` lists what is")]
    NotStored(DatasetId),
    /// Deleting a file failed.
    #[error("cannot delete {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Reading the listings (for the blob collection) failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// Reading the model registries (for the blob collection) failed.
    #[error(transparent)]
    Models(#[from] crate::models::store::ModelStoreError),
}

/// The paths of `dataset` in `home` besides blobs, the listing first.
fn paths_of(home: &Home, dataset: &DatasetId) -> Vec<PathBuf> {
    let hex = dataset.to_string();
    let datasets = home.datasets_dir();
    vec![
        datasets.join(&hex),
        datasets.join(format!("{hex}.gold")),
        datasets.join(format!("{hex}.names")),
        crate::labels::dir_of(home, dataset),
        home.root().join("models").join(&hex),
        crate::policy::store::path(home, dataset),
    ]
}

/// What removing `dataset` would delete (no change made): its paths that exist and the
/// annotations in its record log.
pub fn plan(home: &Home, dataset: &DatasetId) -> Removed {
    let paths: Vec<PathBuf> = paths_of(home, dataset)
        .into_iter()
        .filter(|p| p.exists())
        .collect();
    let log = crate::labels::dir_of(home, dataset).join("records.log");
    Removed {
        dataset: *dataset,
        listed: paths
            .first()
            .is_some_and(|p| *p == home.datasets_dir().join(dataset.to_string())),
        annotations: std::fs::metadata(log).map_or(0, |m| m.len() / crate::labels::LOG_ENTRY_BYTES),
        paths,
        gc: GcReport::default(),
    }
}

/// Removes `dataset` from `home` (see the module doc); `_alone` shows the caller holds the
/// home's lock exclusively.
pub fn remove(home: &Home, dataset: &DatasetId, _alone: &HomeLock) -> Result<Removed, RemoveError> {
    let mut removed = plan(home, dataset);
    if removed.paths.is_empty() {
        return Err(RemoveError::NotStored(*dataset));
    }
    for path in &removed.paths {
        delete(path)?;
        if let Some(parent) = path.parent() {
            swarmlabel_store::fs::sync_dir(parent).map_err(|source| RemoveError::Io {
                path: parent.to_owned(),
                source,
            })?;
        }
    }
    let weights = crate::models::store::referenced_weights(home)?;
    removed.gc = Catalog::of(home).gc_keeping(weights)?;
    Ok(removed)
}

fn delete(path: &Path) -> Result<(), RemoveError> {
    let result = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(RemoveError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}
