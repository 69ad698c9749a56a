//! Original file names: where each sample of an image dataset came from, in the owner's home.
//!
//! The manifest names samples by hash only (file names can say more than an owner means to
//! publish), so the owner's home keeps `datasets/ID.names`, written at import before the listing:
//! one JSON object per line, `{"sample": HEX, "file": PATH}`, PATH relative to the imported
//! folder with `/` between folders. Exports join labels back onto files with it. A home that
//! fetched the dataset has no such file, and exports name samples by id.

use std::collections::HashMap;
use std::io::{self, BufRead as _};
use std::path::PathBuf;

use super::{Catalog, CatalogError, DatasetId};
use crate::store::BlobId;

#[derive(serde::Serialize, serde::Deserialize)]
struct Line {
    sample: String,
    file: String,
}

impl Catalog {
    /// Where the original file names of `id` are kept.
    pub fn names_path(&self, id: &DatasetId) -> PathBuf {
        self.dir.join(format!("{id}.names"))
    }

    /// Writes the original file names of `id` atomically and durably (before the listing).
    pub fn put_names(
        &self,
        id: &DatasetId,
        names: &[(BlobId, String)],
    ) -> Result<(), CatalogError> {
        let mut text = String::new();
        for (sample, file) in names {
            let line = Line {
                sample: sample.to_string(),
                file: file.clone(),
            };
            text.push_str(&serde_json::to_string(&line).expect("invariant: a line serialises"));
            text.push('\n');
        }
        std::fs::create_dir_all(&self.dir).map_err(|source| CatalogError::Io {
            action: "create",
            path: self.dir.clone(),
            source,
        })?;
        let path = self.names_path(id);
        crate::fs::write_atomic(&path, text.as_bytes()).map_err(|source| CatalogError::Io {
            action: "write",
            path,
            source,
        })
    }

    /// The original file names of `id` by sample, empty when this home did not import it. Lines
    /// that do not parse are skipped (the file is this home's own, not a peer's).
    pub fn names(&self, id: &DatasetId) -> Result<HashMap<BlobId, String>, CatalogError> {
        let path = self.names_path(id);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HashMap::new()),
            Err(source) => {
                return Err(CatalogError::Io {
                    action: "read",
                    path,
                    source,
                });
            }
        };
        let mut out = HashMap::new();
        for line in io::BufReader::new(file).lines() {
            let line = line.map_err(|source| CatalogError::Io {
                action: "read",
                path: path.clone(),
                source,
            })?;
            if let Ok(l) = serde_json::from_str::<Line>(&line)
                && let Ok(sample) = l.sample.parse::<BlobId>()
            {
                out.insert(sample, l.file);
            }
        }
        Ok(out)
    }
}
