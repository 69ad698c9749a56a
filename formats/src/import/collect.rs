//! The collector of an import: results back in source order, duplicates dropped, pages cut
//! and stored, gold labels kept private when asked, file names of images kept.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use swarmlabel_store::dataset::manifest::{MAX_PAGE_SAMPLES, Page, PageRef, SampleEntry};
use swarmlabel_store::progress::Progress;
use swarmlabel_store::store::{BlobId, BlobStore, Put};

use super::{Done, ImportError, MAX_EXAMPLES};

/// Results in source order, cut into pages.
#[derive(Default)]
pub(super) struct Collected {
    pub(super) seen: HashMap<BlobId, Option<u16>>,
    pub(super) page: Vec<SampleEntry>,
    pub(super) pages: Vec<PageRef>,
    pub(super) sample_count: u64,
    pub(super) gold_count: u64,
    pub(super) total_bytes: u64,
    pub(super) existing_blobs: u64,
    pub(super) duplicates: u64,
    pub(super) duplicate_examples: Vec<String>,
    pub(super) warnings: Vec<String>,
    /// With private gold: the gold labels kept out of the pages.
    pub(super) private: Option<Vec<(BlobId, u16)>>,
    /// Images: the imported folder, and each sample's file relative to it (see [`swarmlabel_store::dataset::names`]).
    pub(super) folder: Option<PathBuf>,
    pub(super) names: Vec<(BlobId, String)>,
}

impl Collected {
    fn push(&mut self, done: Done, store: &BlobStore) -> Result<(), ImportError> {
        if let Some(first_gold) = self.seen.get(&done.id) {
            self.duplicates += 1;
            if self.duplicate_examples.len() < MAX_EXAMPLES {
                self.duplicate_examples
                    .push(format!("{} (same as sample {})", done.origin, done.id));
            }
            if *first_gold != done.gold && self.warnings.len() < MAX_EXAMPLES {
                self.warnings.push(format!(
                    "{} has the same bytes as an earlier sample with a different gold label; the \
                     first label is kept",
                    done.origin
                ));
            }
            return Ok(());
        }
        self.seen.insert(done.id, done.gold);
        if let Some(folder) = &self.folder {
            let path = Path::new(&done.origin);
            let relative = path.strip_prefix(folder).unwrap_or(path);
            let parts: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            self.names.push((done.id, parts.join("/")));
        }
        if done.put == Put::Existing {
            self.existing_blobs += 1;
        }
        self.sample_count += 1;
        self.total_bytes += done.size;
        let gold = match (&mut self.private, done.gold) {
            (Some(private), Some(g)) => {
                private.push((done.id, g));
                None
            }
            (_, gold) => gold,
        };
        self.gold_count += u64::from(gold.is_some());
        self.page.push(SampleEntry {
            id: done.id,
            size: done.size,
            media_type: done.media_type,
            gold,
        });
        if self.page.len() == MAX_PAGE_SAMPLES {
            self.flush_page(store)?;
        }
        Ok(())
    }

    pub(super) fn flush_page(&mut self, store: &BlobStore) -> Result<(), ImportError> {
        if self.page.is_empty() {
            return Ok(());
        }
        let page = Page {
            index: self.pages.len() as u32,
            samples: std::mem::take(&mut self.page),
        };
        let (id, _) = store.put(&page.encode())?;
        self.pages.push(PageRef {
            id,
            samples: page.samples.len() as u32,
        });
        Ok(())
    }
}

/// Receives worker results, puts them back in order and collects them. On the first error (in
/// source order) it tells everyone to stop and drains the queue so no thread stays blocked.
pub(super) fn collect(
    rx: &mpsc::Receiver<(u64, Result<Done, ImportError>)>,
    store: &BlobStore,
    stop: &AtomicBool,
    private_gold: bool,
    folder: Option<PathBuf>,
    progress: &dyn Progress,
) -> Result<Collected, ImportError> {
    let mut collected = Collected {
        private: private_gold.then(Vec::new),
        folder,
        ..Collected::default()
    };
    let mut pending = BTreeMap::new();
    let mut next = 0u64;
    let mut error = None;
    for (seq, result) in rx {
        if error.is_some() {
            continue;
        }
        pending.insert(seq, result);
        while let Some(result) = pending.remove(&next) {
            next += 1;
            progress.advance(1);
            if let Err(e) = result.and_then(|done| collected.push(done, store)) {
                stop.store(true, Ordering::Relaxed);
                error = Some(e);
                break;
            }
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok(collected),
    }
}
