//! Content-addressed, signed datasets: the manifest format, the list of datasets in a home
//! (the catalog), and the operations on them (import, verify, export, generate, gc).
//!
//! A dataset is *listed* once its signed root is in `datasets/ID`; that file is written last,
//! atomically and durably, after every sample and page it names is durable. So an import that is
//! interrupted at any point leaves either the whole dataset or nothing listed.

pub mod gold;
pub mod manifest;
pub mod names;
pub mod verify;

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::PathBuf;

use crate::home::Home;
use crate::store::{BlobStore, StoreError};
use manifest::{DecodeError, Page, SignedRoot};

pub use swarmlabel_ids::DatasetId;

/// Errors of catalog operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// No listed dataset matches.
    #[error("no dataset with id '{0}' in this home; `swarmlabel dataset ls` lists them")]
    NotFound(String),
    /// Several listed datasets match a prefix.
    #[error("'{0}' matches several datasets; give more characters of the id")]
    Ambiguous(String),
    /// A listed root does not decode or verify.
    #[error(
        "the listed manifest of dataset {id} is damaged ({source}); fetch it again from peers with \
         `swarmlabel dataset fetch {id}` (the damaged file is kept aside)"
    )]
    BadRoot {
        /// The dataset.
        id: DatasetId,
        /// Why it was refused.
        source: DecodeError,
    },
    /// A listed root of a manifest version this build no longer reads.
    #[error(
        "dataset {id} was listed by an older swarmlabel (manifest version {version}), which this one \
         no longer reads; remove it with `swarmlabel dataset rm {id} --yes`, and ask its owner to \
         create it again with this version (it gets a new id)"
    )]
    Superseded {
        /// The dataset.
        id: DatasetId,
        /// The manifest version of the listing.
        version: u8,
    },
    /// A page is damaged.
    #[error("manifest page {index} of dataset {id} is damaged: {reason}")]
    BadPage {
        /// The dataset.
        id: DatasetId,
        /// The page's position.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The owner's private gold labels are damaged.
    #[error(
        "the private gold labels in {} are damaged; only this home has them (peers cannot send \
         them): restore the file from a backup, or move it away to go on without them",
        path.display()
    )]
    BadGold {
        /// The gold file.
        path: PathBuf,
    },
    /// A file operation failed.
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The blob store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The datasets listed in a home.
#[derive(Debug, Clone)]
pub struct Catalog {
    dir: PathBuf,
    blobs: BlobStore,
}

/// A listed dataset: its id and verified signed root.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The id.
    pub id: DatasetId,
    /// The signed root.
    pub root: SignedRoot,
}

impl Catalog {
    /// The catalog of `home`: its `datasets/` listings over its blob store.
    pub fn of(home: &Home) -> Self {
        Self {
            dir: home.datasets_dir(),
            blobs: home.blobs(),
        }
    }

    /// The blob store behind the catalog.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Lists a dataset whose samples and pages are already durable in the blob store. The listing
    /// is written atomically and durably; listing the same root twice is a no-op.
    pub fn add(&self, root: &SignedRoot) -> Result<DatasetId, CatalogError> {
        let id = root.id();
        fs::create_dir_all(&self.dir).map_err(|source| CatalogError::Io {
            action: "create",
            path: self.dir.clone(),
            source,
        })?;
        let path = self.dir.join(id.to_string());
        crate::fs::write_atomic(&path, root.bytes()).map_err(|source| CatalogError::Io {
            action: "write",
            path,
            source,
        })?;
        Ok(id)
    }

    /// Every listed dataset, sorted by name then id. A damaged listing is an error naming it.
    pub fn list(&self) -> Result<Vec<Listed>, CatalogError> {
        let (out, mut damaged) = self.list_checked()?;
        match damaged.pop() {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Every listed dataset whose listing is whole, and one error per damaged listing: one
    /// damaged file never hides the others.
    pub fn list_checked(&self) -> Result<(Vec<Listed>, Vec<CatalogError>), CatalogError> {
        let mut out = Vec::new();
        let mut damaged = Vec::new();
        for id in self.ids()? {
            match self.get(&id) {
                Ok(listed) => out.push(listed),
                Err(e @ (CatalogError::BadRoot { .. } | CatalogError::Superseded { .. })) => {
                    damaged.push(e);
                }
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| {
            a.root
                .root()
                .name
                .cmp(&b.root.root().name)
                .then(a.id.cmp(&b.id))
        });
        Ok((out, damaged))
    }

    /// Renames the listing of `id` to `<id>.damaged-<unix seconds>` (kept as it is, no longer
    /// listed), so that a fresh copy can be fetched in its place.
    pub fn set_aside(&self, id: &DatasetId) -> Result<PathBuf, CatalogError> {
        let path = self.dir.join(id.to_string());
        let aside = crate::fs::set_aside(&path).map_err(|source| CatalogError::Io {
            action: "set aside",
            path,
            source,
        })?;
        Ok(aside)
    }

    fn ids(&self) -> Result<Vec<DatasetId>, CatalogError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(CatalogError::Io {
                    action: "list",
                    path: self.dir.clone(),
                    source,
                });
            }
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| CatalogError::Io {
                action: "list",
                path: self.dir.clone(),
                source,
            })?;
            if let Ok(id) = entry.file_name().to_string_lossy().parse::<DatasetId>() {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// The listed dataset `id`, its root verified (signature, and hash equal to the id).
    pub fn get(&self, id: &DatasetId) -> Result<Listed, CatalogError> {
        let path = self.dir.join(id.to_string());
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(CatalogError::NotFound(id.to_string()));
            }
            Err(source) => {
                return Err(CatalogError::Io {
                    action: "read",
                    path,
                    source,
                });
            }
        };
        if let Some(version) = superseded_root_version(&bytes) {
            return Err(CatalogError::Superseded { id: *id, version });
        }
        let bad = |source| CatalogError::BadRoot { id: *id, source };
        let root = SignedRoot::decode(&bytes).map_err(bad)?;
        if root.id() != *id {
            return Err(bad(DecodeError::Mismatch(
                "listing name is not the hash of its root",
            )));
        }
        Ok(Listed { id: *id, root })
    }

    /// Finds the one listed dataset whose id starts with `prefix` (hex, at least 4 characters).
    pub fn resolve(&self, prefix: &str) -> Result<DatasetId, CatalogError> {
        let prefix = prefix.trim().to_ascii_lowercase();
        if prefix.len() < 4 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(CatalogError::NotFound(prefix));
        }
        let mut matches = self
            .ids()?
            .into_iter()
            .filter(|id| id.to_string().starts_with(&prefix));
        match (matches.next(), matches.next()) {
            (Some(id), None) => Ok(id),
            (Some(_), Some(_)) => Err(CatalogError::Ambiguous(prefix)),
            (None, _) => Err(CatalogError::NotFound(prefix)),
        }
    }

    /// Reads and checks page `index` of a listed dataset.
    pub fn page(&self, listed: &Listed, index: usize) -> Result<Page, CatalogError> {
        let root = listed.root.root();
        let page_ref = root.pages.get(index).ok_or_else(|| CatalogError::BadPage {
            id: listed.id,
            index,
            reason: "no such page".into(),
        })?;
        let bytes = self
            .blobs
            .get(&page_ref.id)
            .map_err(|e| CatalogError::BadPage {
                id: listed.id,
                index,
                reason: e.to_string(),
            })?;
        Page::decode(&bytes, root, index).map_err(|e| CatalogError::BadPage {
            id: listed.id,
            index,
            reason: e.to_string(),
        })
    }

    /// Removes every blob that no listed dataset references, and leftover temporary files.
    /// The caller must hold the home's exclusive lock (see [`crate::Home::try_lock_exclusive`]).
    pub fn gc(&self) -> Result<GcReport, CatalogError> {
        self.gc_keeping(HashSet::new())
    }

    /// [`Catalog::gc`], keeping `also` (blobs other stores of the home reference: the weights of
    /// the model updates in force).
    pub fn gc_keeping(
        &self,
        also: HashSet<crate::store::BlobId>,
    ) -> Result<GcReport, CatalogError> {
        let mut keep = also;
        keep.extend(self.referenced()?);
        let scan = self.blobs.scan()?;
        let mut report = GcReport::default();
        for (id, len) in scan.blobs {
            if !keep.contains(&id) {
                self.blobs.remove(&id)?;
                report.removed_blobs += 1;
                report.removed_bytes += len;
            } else {
                report.kept_blobs += 1;
            }
        }
        for tmp in scan.temporary {
            let len = fs::metadata(&tmp).map(|m| m.len()).unwrap_or(0);
            if fs::remove_file(&tmp).is_ok() {
                report.removed_temporary += 1;
                report.removed_bytes += len;
            }
        }
        Ok(report)
    }
}

/// The version of a root written by an older swarmlabel that this one no longer reads
/// (`SWLROOT1`: before the redundancy target), if `bytes` is one.
fn superseded_root_version(bytes: &[u8]) -> Option<u8> {
    bytes.starts_with(b"SWLROOT1").then_some(1)
}

impl Catalog {
    /// Every blob a listed dataset names: its pages and their samples. A damaged page keeps what
    /// it names unknown, so it is an error: refuse rather than delete samples that a repaired
    /// page would still need.
    fn referenced(&self) -> Result<HashSet<crate::store::BlobId>, CatalogError> {
        let mut keep = HashSet::new();
        for listed in self.list()? {
            for (index, page_ref) in listed.root.root().pages.iter().enumerate() {
                keep.insert(page_ref.id);
                let page = self.page(&listed, index)?;
                keep.extend(page.samples.iter().map(|s| s.id));
            }
        }
        Ok(keep)
    }

    /// Removes those of `candidates` (blobs another store of the home no longer needs, such as
    /// superseded model weights) that no listed dataset names; returns the bytes freed. Safe
    /// while the home is in use: it touches only the candidates.
    pub fn remove_unlisted(
        &self,
        candidates: &[crate::store::BlobId],
    ) -> Result<u64, CatalogError> {
        if candidates.is_empty() {
            return Ok(0);
        }
        let listed = self.referenced()?;
        let mut freed = 0;
        for id in candidates.iter().filter(|id| !listed.contains(id)) {
            freed += fs::metadata(self.blobs.path(id)).map_or(0, |m| m.len());
            self.blobs.remove(id)?;
        }
        Ok(freed)
    }
}

/// What `gc` removed.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    /// Blobs removed.
    pub removed_blobs: u64,
    /// Leftover temporary files removed.
    pub removed_temporary: u64,
    /// Bytes freed.
    pub removed_bytes: u64,
    /// Blobs kept because a listed dataset references them.
    pub kept_blobs: u64,
}
