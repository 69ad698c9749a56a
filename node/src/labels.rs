//! Durable storage of a dataset's signed annotations: the node side of `swarmlabel-crdt`.
//!
//! ```text
//! HOME/labels/<dataset id>/<shard, 4 hex digits>.am   a full save, then appended incremental saves
//! ```
//!
//! A label is acknowledged only after the bytes that hold it are appended to its shard file and
//! fsynced. A crash during an append leaves at worst a cut-off last chunk: loading keeps every
//! whole chunk before it and reports what was lost (the label was not acknowledged, so nothing
//! acknowledged is lost). Shard files are compacted (rewritten as one full save, atomically) once
//! they carry many incremental chunks.
//!
//! The stores of a running node belong to the labels [`service`]: one actor that both the local
//! API and the network (sync, gossip) feed, so that every label, local or from a peer, is made
//! durable the same way.

pub mod gossip;
pub mod plan;
mod replicated;
pub mod service;
pub mod wire;

pub use service::{Config, Counters, Labels, LabelsError};

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::path::PathBuf;

use swarmlabel_crdt::{Annotations, Replica, ShardId, ShardLayout, SignedAnnotation};

use swarmlabel_net::dataset::DatasetId;
use swarmlabel_net::home::Home;

/// Appended chunks after which a shard file is rewritten as one full save.
const COMPACT_AFTER_CHUNKS: u32 = 256;

/// Errors of the label store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabelStoreError {
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
    /// The annotation was refused.
    #[error(transparent)]
    Record(#[from] swarmlabel_crdt::RecordError),
    /// The replica could not be created.
    #[error(transparent)]
    Replica(#[from] swarmlabel_crdt::ReplicaError),
    /// The operating system's random source failed.
    #[error("no random source for the replica's actor id: {0}")]
    Random(String),
}

/// What opening a store found wrong with its files (everything else loaded).
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    /// One sentence per damaged shard file, saying what was kept and what was lost.
    pub damaged: Vec<String>,
}

/// The annotations of one dataset, loaded from and appended to the home.
#[derive(Debug)]
pub struct LabelStore {
    dir: PathBuf,
    replica: Replica,
    appended: BTreeMap<u16, u32>,
}

impl LabelStore {
    /// The crdt view of a dataset: its id, label count and shard layout (derived from the sample
    /// count, so every peer derives the same).
    pub fn crdt_dataset(
        id: &DatasetId,
        label_count: usize,
        samples: u64,
    ) -> swarmlabel_crdt::Dataset {
        swarmlabel_crdt::Dataset {
            id: *id,
            label_count: label_count.min(usize::from(u16::MAX)) as u16,
            layout: ShardLayout::for_sample_count(samples),
        }
    }

    /// Opens (or creates) the store of `dataset` in `home`, loading every shard file. Damaged
    /// files load as far as they are whole, and are reported.
    pub fn open(
        home: &Home,
        dataset: swarmlabel_crdt::Dataset,
    ) -> Result<(LabelStore, Recovery), LabelStoreError> {
        let dir = home.root().join("labels").join(hex::encode(dataset.id.0));
        fs::create_dir_all(&dir).map_err(|source| LabelStoreError::Io {
            action: "create",
            path: dir.clone(),
            source,
        })?;
        // A fresh actor id per process run: reusing one across concurrent writers corrupts.
        let mut actor = [0u8; 16];
        getrandom::fill(&mut actor).map_err(|e| LabelStoreError::Random(e.to_string()))?;
        let mut replica = Replica::new(dataset, &actor)?;
        let mut recovery = Recovery::default();
        let mut damaged = Vec::new();
        for shard in dataset.layout.shards() {
            let path = shard_path(&dir, shard);
            let bytes = match fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(LabelStoreError::Io {
                        action: "read",
                        path,
                        source,
                    });
                }
            };
            if let Err(e) = replica.load_shard(shard, &bytes) {
                recovery.damaged.push(format!("{}: {e}", path.display()));
                damaged.push(shard);
            }
        }
        let mut store = LabelStore {
            dir,
            replica,
            appended: BTreeMap::new(),
        };
        // Appends after a damaged tail would be lost at the next load: rewrite what was
        // recovered as a clean file first.
        for shard in damaged {
            store.compact(shard)?;
        }
        Ok((store, recovery))
    }

    /// Records a signed annotation and returns once it is durable.
    pub fn record(&mut self, signed: &SignedAnnotation) -> Result<(), LabelStoreError> {
        let shard = self.replica.record(signed)?;
        self.replica.commit();
        self.persist(shard)
    }

    /// Appends what changed in `shard` since its last save to its file and fsyncs it.
    pub fn persist(&mut self, shard: ShardId) -> Result<(), LabelStoreError> {
        let chunk = self.replica.save_shard_incremental(shard);
        if chunk.is_empty() {
            return Ok(());
        }
        let path = shard_path(&self.dir, shard);
        let io = |action, source| LabelStoreError::Io {
            action,
            path: path.clone(),
            source,
        };
        let new = !path.exists();
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io("open", e))?;
        file.write_all(&chunk).map_err(|e| io("append to", e))?;
        file.sync_data().map_err(|e| io("sync", e))?;
        if new {
            swarmlabel_net::fs::sync_dir(&self.dir).map_err(|e| io("sync the folder of", e))?;
        }
        let count = self.appended.entry(shard.0).or_default();
        *count += 1;
        if *count >= COMPACT_AFTER_CHUNKS {
            self.compact(shard)?;
        }
        Ok(())
    }

    /// Rewrites a shard file as one full save (atomically).
    pub fn compact(&mut self, shard: ShardId) -> Result<(), LabelStoreError> {
        let bytes = self.replica.save_shard(shard);
        let path = shard_path(&self.dir, shard);
        swarmlabel_net::fs::write_atomic(&path, &bytes).map_err(|source| LabelStoreError::Io {
            action: "compact",
            path,
            source,
        })?;
        self.appended.insert(shard.0, 0);
        Ok(())
    }

    /// Every valid annotation, with counts of what was ignored and why.
    pub fn read(&mut self) -> Annotations {
        self.replica.read()
    }

    /// The replica, for sync.
    pub fn replica_mut(&mut self) -> &mut Replica {
        &mut self.replica
    }
}

fn shard_path(dir: &std::path::Path, shard: ShardId) -> PathBuf {
    dir.join(format!("{:04x}.am", shard.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmlabel_crdt::{Annotation, AnnotatorKey, SampleId, Value};
    use swarmlabel_net::identity::Identity;

    fn label(
        id: &Identity,
        dataset: &swarmlabel_crdt::Dataset,
        sample: u8,
        value: u16,
    ) -> SignedAnnotation {
        let annotation = Annotation {
            dataset: dataset.id,
            sample: SampleId([sample; 32]),
            annotator: AnnotatorKey(id.public_key().0),
            time_ms: 1_000 + u64::from(sample),
            value: Value::Label(value),
            suggestion: None,
        };
        SignedAnnotation::sign(annotation, id.signing_key()).unwrap()
    }

    #[test]
    fn labels_survive_reopening_and_a_torn_last_append_loses_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let (home, id) = Home::init(&dir.path().join("home"), false).unwrap();
        let dataset = LabelStore::crdt_dataset(&DatasetId([7; 32]), 3, 10);
        let (mut store, recovery) = LabelStore::open(&home, dataset).unwrap();
        assert!(recovery.damaged.is_empty());
        for sample in 0..5 {
            store
                .record(&label(&id, &dataset, sample, u16::from(sample % 3)))
                .unwrap();
        }
        drop(store);
        let (mut store, recovery) = LabelStore::open(&home, dataset).unwrap();
        assert!(recovery.damaged.is_empty(), "{:?}", recovery.damaged);
        assert_eq!(store.read().annotations.len(), 5);

        // A crash in the middle of appending the sixth label: its chunk is cut short.
        store.record(&label(&id, &dataset, 5, 2)).unwrap();
        drop(store);
        let file = fs::read_dir(home.root().join("labels").join(hex::encode(dataset.id.0)))
            .unwrap()
            .map(|e| e.unwrap().path())
            .next()
            .unwrap();
        let bytes = fs::read(&file).unwrap();
        fs::write(&file, &bytes[..bytes.len() - 7]).unwrap();
        let (mut store, recovery) = LabelStore::open(&home, dataset).unwrap();
        assert_eq!(recovery.damaged.len(), 1, "the damage is reported");
        assert!(
            recovery.damaged[0].contains("lost"),
            "{:?}",
            recovery.damaged
        );
        let kept: Vec<u8> = store
            .read()
            .annotations
            .iter()
            .map(|a| a.annotation().sample.0[0])
            .collect();
        assert_eq!(kept, [0, 1, 2, 3, 4], "every earlier label is kept");
        // The store keeps working after recovery, and what it writes next loads cleanly.
        store.record(&label(&id, &dataset, 5, 1)).unwrap();
        assert_eq!(store.read().annotations.len(), 6);
        drop(store);
        let (mut store, recovery) = LabelStore::open(&home, dataset).unwrap();
        assert!(recovery.damaged.is_empty(), "{:?}", recovery.damaged);
        assert_eq!(store.read().annotations.len(), 6);
    }
}
