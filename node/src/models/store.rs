//! Durable storage of a dataset's model registry:
//!
//! ```text
//! HOME/models/<dataset id>/registry   "SWLREG01" ‖ count u32 ‖ count × (len u16 ‖ signed record)
//! ```
//!
//! The records are each peer's update in force and any equivocation evidence; loading inserts
//! them into an empty registry, which verifies every signature again, so a damaged or edited file
//! can lose entries but never smuggle one in. The file is rewritten whole at each change,
//! atomically (temporary file, fsync, rename, fsync of the folder): registries are small (a few
//! hundred bytes per peer). The weights themselves are blobs in the home's blob store.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use swarmlabel_crdt::registry::{Registry, SignedUpdate};

use swarmlabel_store::home::Home;

const MAGIC: &[u8; 8] = b"SWLREG01";

/// Errors of the model store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelStoreError {
    /// A file operation failed.
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// Where the registry of `dataset` lives in `home`.
pub fn path(home: &Home, dataset: &swarmlabel_crdt::DatasetId) -> PathBuf {
    home.root()
        .join("models")
        .join(hex::encode(dataset.0))
        .join("registry")
}

/// The file's bytes for `registry`.
pub fn encode(registry: &Registry) -> Vec<u8> {
    let records = registry.records();
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for r in records {
        let bytes = r.to_bytes();
        // A signed record is at most MAX_SIGNED_LEN (290) bytes.
        out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
        out.extend_from_slice(&bytes);
    }
    out
}

/// The registry of `dataset` held in `bytes`, and one sentence per problem found (records that
/// do not decode or verify are left out; a cut-off file keeps what precedes the cut).
pub fn decode(dataset: swarmlabel_crdt::DatasetId, bytes: &[u8]) -> (Registry, Vec<String>) {
    let mut registry = Registry::new(dataset);
    let mut problems = Vec::new();
    for (i, record) in records(bytes) {
        let inserted = record.and_then(|r| {
            SignedUpdate::from_bytes(r)
                .map_err(|e| e.to_string())
                .and_then(|u| registry.insert(u).map_err(|e| e.to_string()))
        });
        match inserted {
            Ok(_) => {}
            Err(e) if i == usize::MAX => problems.push(e),
            Err(e) => problems.push(format!("record {i} left out: {e}")),
        }
    }
    (registry, problems)
}

/// The records of a registry file, numbered, without decoding them: a file-level problem (bad
/// magic, a cut) comes as an error numbered `usize::MAX`, after which nothing follows.
fn records(bytes: &[u8]) -> impl Iterator<Item = (usize, Result<&[u8], String>)> {
    let mut state = match bytes.strip_prefix(MAGIC) {
        None => Err("not a model registry file (bad magic); starting empty".to_owned()),
        Some(rest) => match rest.split_first_chunk::<4>() {
            None => Err("the registry file is cut short; starting empty".to_owned()),
            Some((count, rest)) => Ok((u32::from_le_bytes(*count) as usize, rest)),
        },
    };
    let mut i = 0;
    std::iter::from_fn(move || {
        let (count, rest) = match &mut state {
            Err(e) => {
                let e = std::mem::take(e);
                return (!e.is_empty()).then_some((usize::MAX, Err(e)));
            }
            Ok((count, rest)) => (*count, rest),
        };
        if i >= count {
            return None;
        }
        let cut = format!("the registry file is cut short at record {i}");
        let Some((len, tail)) = rest.split_first_chunk::<2>() else {
            state = Err(String::new());
            return Some((usize::MAX, Err(cut)));
        };
        let len = usize::from(u16::from_le_bytes(*len));
        let Some(record) = tail.get(..len) else {
            state = Err(String::new());
            return Some((usize::MAX, Err(cut)));
        };
        *rest = &tail[len..];
        i += 1;
        Some((i - 1, Ok(record)))
    })
}

/// Loads the registry of `dataset` from `home` (empty when there is no file yet).
pub fn load(
    home: &Home,
    dataset: swarmlabel_crdt::DatasetId,
) -> Result<(Registry, Vec<String>), ModelStoreError> {
    let path = path(home, &dataset);
    match fs::read(&path) {
        Ok(bytes) => Ok(decode(dataset, &bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((Registry::new(dataset), Vec::new())),
        Err(source) => Err(ModelStoreError::Io {
            action: "read",
            path,
            source,
        }),
    }
}

/// Writes the registry to `home` atomically and durably.
pub fn save(home: &Home, registry: &Registry) -> Result<(), ModelStoreError> {
    let path = path(home, &registry.dataset());
    let io = |action, source| ModelStoreError::Io {
        action,
        path: path.clone(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| io("create the folder of", e))?;
    swarmlabel_store::fs::write_atomic(&path, &encode(registry)).map_err(|e| io("write", e))
}

/// The weights named by the updates in force of every registry in `home`: what `gc` keeps.
/// Superseded weights (an update replaced by its peer's newer one) are not named, so `gc`
/// removes them.
pub fn referenced_weights(
    home: &Home,
) -> Result<std::collections::HashSet<swarmlabel_store::store::BlobId>, ModelStoreError> {
    let dir = home.root().join("models");
    let mut out = std::collections::HashSet::new();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(source) => {
            return Err(ModelStoreError::Io {
                action: "list",
                path: dir,
                source,
            });
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(id) = hex::decode(name.to_string_lossy().as_bytes())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
        else {
            continue;
        };
        // The weights every record of the file names, signatures unchecked: the file is ours
        // (its records were verified when they came), and naming too much only keeps a blob.
        let path = path(home, &swarmlabel_crdt::DatasetId(id));
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(ModelStoreError::Io {
                    action: "read",
                    path,
                    source,
                });
            }
        };
        out.extend(records(&bytes).filter_map(|(_, r)| {
            let update = SignedUpdate::from_bytes(r.ok()?).ok()?;
            Some(swarmlabel_store::store::BlobId(
                update.update().weights_hash.0,
            ))
        }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use swarmlabel_crdt::registry::{Architecture, ModelUpdate, Validation, WeightsHash};

    fn signed(id: &swarmlabel_store::identity::Identity, version: u64, hash: u8) -> SignedUpdate {
        let update = ModelUpdate {
            dataset: swarmlabel_crdt::DatasetId([4; 32]),
            peer: id.public_key(),
            version,
            labels_trained: 5,
            architecture: Architecture::new([2; 32], "linear").unwrap(),
            weights_hash: WeightsHash([hash; 32]),
            weights_bytes: 100,
            validation: Validation::from_counts(1, 2),
        };
        SignedUpdate::sign(update, id.signing_key()).unwrap()
    }

    fn store_records_len(registry: &Registry) -> usize {
        registry.records().len()
    }

    #[test]
    fn the_registry_survives_a_restart_with_its_evidence_and_damage_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (home, id) = Home::init(&dir.path().join("home"), false).unwrap();
        let other = swarmlabel_store::identity::Identity::generate().unwrap();
        let dataset = swarmlabel_crdt::DatasetId([4; 32]);
        let mut registry = Registry::new(dataset);
        registry.insert(signed(&id, 3, 1)).unwrap();
        registry.insert(signed(&other, 1, 2)).unwrap();
        registry.insert(signed(&other, 1, 3)).unwrap(); // equivocation
        save(&home, &registry).unwrap();
        let (loaded, problems) = load(&home, dataset).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(loaded, registry);
        assert_eq!(loaded.digest(), registry.digest());

        let bytes = encode(&registry);
        let (cut, problems) = decode(dataset, &bytes[..bytes.len() - 3]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        // Three records; the last one is cut, the two before it are kept.
        assert_eq!(
            store_records_len(&cut),
            2,
            "the records before the cut are kept"
        );
        let mut forged = bytes.clone();
        let first_len = usize::from(u16::from_le_bytes([bytes[12], bytes[13]]));
        forged[14 + first_len - 1] ^= 1; // the first record's signature
        let (kept, problems) = decode(dataset, &forged);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("bad signature"), "{problems:?}");
        assert_ne!(kept, registry, "the forged record is left out");
        let (empty, problems) = decode(dataset, b"garbage");
        assert!(empty.is_empty() && problems.len() == 1);
        assert!(
            load(&home, swarmlabel_crdt::DatasetId([5; 32]))
                .unwrap()
                .0
                .is_empty()
        );
    }
}
