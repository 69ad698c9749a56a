//! Content-addressed blob store: `blobs/ab/cdef…`, one file per blob, named by its BLAKE3 hash.
//!
//! Writes go to a temporary file in the blob's own directory and are renamed into place, so a
//! blob file either is complete or does not exist under its name. Writes are not synced one by one
//! (an fsync per file costs far more than hashing it): a caller that needs durability writes a
//! batch and then calls [`BlobStore::sync`] once.

use std::fs::{self, File};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

pub use swarmlabel_ids::{BlobId, ParseIdError};

/// Errors of the blob store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The blob is not in the store.
    #[error("blob {0} is missing from the store")]
    Missing(BlobId),
    /// The blob's bytes do not hash to its id.
    #[error("blob {id} is corrupt: its bytes hash to {actual}")]
    Corrupt {
        /// The blob's id.
        id: BlobId,
        /// What its stored bytes hash to.
        actual: BlobId,
    },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Whether a put wrote a new file or found the blob already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// The blob was written.
    New,
    /// A verified copy was already stored.
    Existing,
}

/// A content-addressed blob store rooted at a directory.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    /// A store in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where blob `id` lives.
    pub fn path(&self, id: &BlobId) -> PathBuf {
        let hex = id.to_hex();
        self.dir.join(&hex[..2]).join(&hex[2..])
    }

    /// Stores `bytes` and returns their id. Not durable until [`BlobStore::sync`].
    pub fn put(&self, bytes: &[u8]) -> Result<(BlobId, Put), StoreError> {
        let id = BlobId::of(bytes);
        Ok((id, self.put_hashed(id, bytes)?))
    }

    /// Stores `bytes` whose id the caller has already computed as `id`.
    ///
    /// An existing file under that name is re-hashed: a previous run that crashed before its sync
    /// may have left a truncated file, and trusting it would corrupt every dataset that uses it.
    pub fn put_hashed(&self, id: BlobId, bytes: &[u8]) -> Result<Put, StoreError> {
        self.write(id, bytes, false)
    }

    /// Stores `bytes`, whose id the caller has computed as `id`, durably on its own: the file is
    /// fsynced before the rename and its directory after, with no `syncfs` of the whole file
    /// system. For blobs that arrive one at a time (model weights), where a `syncfs` each would
    /// also flush every other process's writes.
    pub fn put_durable(&self, id: BlobId, bytes: &[u8]) -> Result<Put, StoreError> {
        self.write(id, bytes, true)
    }

    fn write(&self, id: BlobId, bytes: &[u8], durable: bool) -> Result<Put, StoreError> {
        debug_assert_eq!(id, BlobId::of(bytes));
        let path = self.path(&id);
        if let Ok(meta) = fs::metadata(&path)
            && meta.len() == bytes.len() as u64
            && self.hash_file(&path).ok() == Some(id)
        {
            return Ok(Put::Existing);
        }
        let dir = path
            .parent()
            .expect("invariant: a blob path has a shard directory");
        fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(dir)
            .map_err(io_err("create a temporary file in", dir))?;
        tmp.write_all(bytes).map_err(io_err("write", tmp.path()))?;
        if durable {
            tmp.as_file()
                .sync_all()
                .map_err(io_err("sync", tmp.path()))?;
        }
        tmp.persist(&path).map_err(|e| StoreError::Io {
            action: "rename into place",
            path: path.clone(),
            source: e.error,
        })?;
        if durable {
            crate::fs::sync_dir(dir).map_err(io_err("sync directory", dir))?;
        }
        Ok(Put::New)
    }

    /// Reads blob `id` and checks that its bytes hash to `id`.
    pub fn get(&self, id: &BlobId) -> Result<Vec<u8>, StoreError> {
        let path = self.path(id);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::Missing(*id)),
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        let actual = BlobId::of(&bytes);
        if actual != *id {
            return Err(StoreError::Corrupt { id: *id, actual });
        }
        Ok(bytes)
    }

    /// Re-hashes blob `id` from disk with bounded memory.
    pub fn check(&self, id: &BlobId) -> Result<(), StoreError> {
        let path = self.path(id);
        match self.hash_file(&path) {
            Ok(actual) if actual == *id => Ok(()),
            Ok(actual) => Err(StoreError::Corrupt { id: *id, actual }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::Missing(*id)),
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }

    fn hash_file(&self, path: &Path) -> io::Result<BlobId> {
        let mut file = File::open(path)?;
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(BlobId(*hasher.finalize().as_bytes()))
    }

    /// Makes every blob written so far durable with one `syncfs` of the store's file system
    /// (file data, the renames and the shard directories alike).
    pub fn sync(&self) -> Result<(), StoreError> {
        fs::create_dir_all(&self.dir).map_err(io_err("create directory", &self.dir))?;
        sync_filesystem(&self.dir).map_err(io_err("sync the file system of", &self.dir))
    }

    /// Every blob id in the store, and every leftover temporary file (from an interrupted
    /// write). Files that are neither are ignored.
    pub fn scan(&self) -> Result<Scan, StoreError> {
        let mut scan = Scan::default();
        let shards = match fs::read_dir(&self.dir) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(scan),
            Err(e) => return Err(io_err("list", &self.dir)(e)),
        };
        for shard in shards {
            let shard = shard.map_err(io_err("list", &self.dir))?;
            let shard_name = shard.file_name().to_string_lossy().into_owned();
            if shard_name.len() != 2 || !shard.path().is_dir() {
                continue;
            }
            let shard_path = shard.path();
            for entry in fs::read_dir(&shard_path).map_err(io_err("list", &shard_path))? {
                let entry = entry.map_err(io_err("list", &shard_path))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(".tmp-") {
                    scan.temporary.push(entry.path());
                } else if let Ok(id) = format!("{shard_name}{name}").parse::<BlobId>() {
                    let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
                    scan.blobs.push((id, len));
                }
            }
        }
        Ok(scan)
    }

    /// Removes blob `id` (no error if it is already gone).
    pub fn remove(&self, id: &BlobId) -> Result<(), StoreError> {
        let path = self.path(id);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", &path)(e)),
            _ => Ok(()),
        }
    }
}

/// What [`BlobStore::scan`] found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Blob ids with their file sizes.
    pub blobs: Vec<(BlobId, u64)>,
    /// Leftover temporary files.
    pub temporary: Vec<PathBuf>,
}

/// Flushes the whole file system that holds `path` (Linux `syncfs`; `fsync` of `path` elsewhere).
pub fn sync_filesystem(path: &Path) -> io::Result<()> {
    let dir = File::open(path)?;
    #[cfg(target_os = "linux")]
    {
        rustix::fs::syncfs(&dir)?;
    }
    #[cfg(not(target_os = "linux"))]
    {
        dir.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_and_dedup() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path());
        let (id, put) = store.put(b"hello").unwrap();
        assert_eq!(put, Put::New);
        assert_eq!(store.put(b"hello").unwrap(), (id, Put::Existing));
        assert_eq!(store.get(&id).unwrap(), b"hello");
        store.sync().unwrap();
        assert_eq!(store.scan().unwrap().blobs, vec![(id, 5)]);
        let weights = BlobId::of(b"weights");
        assert_eq!(store.put_durable(weights, b"weights").unwrap(), Put::New);
        assert_eq!(
            store.put_durable(weights, b"weights").unwrap(),
            Put::Existing
        );
        assert_eq!(store.get(&weights).unwrap(), b"weights");
    }

    #[test]
    fn truncated_existing_blob_is_rewritten_and_corruption_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path());
        let (id, _) = store.put(b"hello").unwrap();
        fs::write(store.path(&id), b"").unwrap();
        assert!(matches!(store.check(&id), Err(StoreError::Corrupt { .. })));
        assert_eq!(store.put(b"hello").unwrap().1, Put::New);
        store.check(&id).unwrap();
        fs::write(store.path(&id), b"hellp").unwrap();
        assert!(matches!(store.get(&id), Err(StoreError::Corrupt { .. })));
        store.remove(&id).unwrap();
        assert!(matches!(store.get(&id), Err(StoreError::Missing(_))));
    }
}
