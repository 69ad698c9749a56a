//! Re-hashing every blob of a dataset and checking its signature.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use swarmlabel_ids::SampleId;

use crate::progress::Progress;
use crate::store::{BlobId, StoreError};

use super::{Catalog, CatalogError, DatasetId};

/// One thing wrong with a stored dataset.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Problem {
    /// A manifest page is missing or damaged; its samples could not be checked.
    Page {
        /// The page's position.
        index: usize,
        /// Samples it should name.
        samples: u32,
        /// What is wrong.
        reason: String,
    },
    /// A sample's blob is not in the store.
    Missing {
        /// Position of the sample in the dataset, from 0.
        position: u64,
        /// The sample id.
        sample: SampleId,
    },
    /// A sample's stored bytes do not hash to its id.
    Corrupt {
        /// Position of the sample in the dataset, from 0.
        position: u64,
        /// The sample id.
        sample: SampleId,
    },
    /// The blob could not be read.
    Unreadable {
        /// Position of the sample in the dataset, from 0.
        position: u64,
        /// The sample id.
        sample: SampleId,
        /// The error.
        reason: String,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Page {
                index,
                samples,
                reason,
            } => {
                write!(
                    f,
                    "manifest page {index} ({samples} samples not checked): {reason}"
                )
            }
            Problem::Missing { position, sample } => {
                write!(f, "sample {sample} (#{position}) is missing")
            }
            Problem::Corrupt { position, sample } => {
                write!(
                    f,
                    "sample {sample} (#{position}) is corrupt: its bytes do not match its hash"
                )
            }
            Problem::Unreadable {
                position,
                sample,
                reason,
            } => {
                write!(f, "sample {sample} (#{position}) cannot be read: {reason}")
            }
        }
    }
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    /// The dataset.
    pub dataset: DatasetId,
    /// Samples the manifest names.
    pub samples: u64,
    /// Samples whose blobs were found intact.
    pub intact: u64,
    /// Everything wrong, in dataset order.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// Whether the dataset is complete and intact.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the signed root (an error if it is damaged), then every page and sample blob.
pub fn verify(
    catalog: &Catalog,
    id: &DatasetId,
    progress: &dyn Progress,
) -> Result<VerifyReport, CatalogError> {
    let listed = catalog.get(id)?;
    let root = listed.root.root();
    let mut report = VerifyReport {
        dataset: *id,
        samples: root.sample_count,
        intact: 0,
        problems: Vec::new(),
    };
    progress.start("verifying", Some(root.sample_count));
    let mut position = 0u64;
    for (index, page_ref) in root.pages.iter().enumerate() {
        let page = match catalog.page(&listed, index) {
            Ok(p) => p,
            Err(e) => {
                let reason = match e {
                    CatalogError::BadPage { reason, .. } => reason,
                    other => other.to_string(),
                };
                report.problems.push(Problem::Page {
                    index,
                    samples: page_ref.samples,
                    reason,
                });
                position += u64::from(page_ref.samples);
                progress.advance(u64::from(page_ref.samples));
                continue;
            }
        };
        let ids: Vec<BlobId> = page.samples.iter().map(|s| s.id).collect();
        let mut found = check_all(catalog, &ids, position, progress);
        found.sort_by_key(|(p, _)| *p);
        report.intact += ids.len() as u64 - found.len() as u64;
        report.problems.extend(found.into_iter().map(|(_, p)| p));
        position += ids.len() as u64;
    }
    progress.finish();
    Ok(report)
}

/// Hashes `ids` on all cores; returns the problems with their positions.
fn check_all(
    catalog: &Catalog,
    ids: &[BlobId],
    first_position: u64,
    progress: &dyn Progress,
) -> Vec<(u64, Problem)> {
    let next = AtomicUsize::new(0);
    let problems = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(id) = ids.get(i) else { break };
                    let position = first_position + i as u64;
                    let sample = *id;
                    let problem = match catalog.blobs().check(id) {
                        Ok(()) => None,
                        Err(StoreError::Missing(_)) => Some(Problem::Missing { position, sample }),
                        Err(StoreError::Corrupt { .. }) => {
                            Some(Problem::Corrupt { position, sample })
                        }
                        Err(e) => Some(Problem::Unreadable {
                            position,
                            sample,
                            reason: e.to_string(),
                        }),
                    };
                    if let Some(p) = problem {
                        problems
                            .lock()
                            .expect("invariant: no thread panics holding this lock")
                            .push((position, p));
                    }
                }
            });
        }
    });
    progress.advance(ids.len() as u64);
    problems
        .into_inner()
        .expect("invariant: no thread panicked holding this lock")
}
