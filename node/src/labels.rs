//! Durable storage of a dataset's signed annotations: the node side of `swarmlabel-crdt`.
//!
//! ```text
//! HOME/labels/<dataset id>/records.log        every record taken, in checksummed entries (log.rs)
//! HOME/labels/<dataset id>/<shard, 4 hex>.am  automerge: a full save, then appended incremental saves
//! HOME/labels/<dataset id>/*.damaged-<secs>   a damaged file, set aside as it was found
//! HOME/labels/<dataset id>/v1/                the files of a home written before chains (legacy.rs)
//! ```
//!
//! A label is acknowledged once its entry is appended to the record log and fsynced; records
//! from peers are appended in batches, one fsync per batch. The log holds each record taken
//! once (a record whose place its chain already has is not taken again), so it grows with the
//! records held, not with how often peers send them; when the owner's policy bans annotators,
//! their records leave the log and the shard files ([`LabelStore::drop_not_admitted`]). The shard
//! files hold the same records as automerge documents (what loads fast). When one is damaged it is
//! set aside (never written over), what loads of it is kept, and every record the log has that
//! the documents lack is recorded again, so a damaged shard file costs no record the log holds,
//! and a damaged log entry costs that entry only (the shard files still hold its record). A write
//! that fails (a full disk) takes back what it staged and cuts its file back to where it was;
//! nothing acknowledged depends on it. New files and folders are made durable with their parent.
//!
//! The stores of a running node belong to the labels [`service`]: one actor that both the local
//! API and the network (sync, gossip) feed, so that every label, local or from a peer, is made
//! durable the same way.

mod durable;
pub mod gossip;
pub mod intake;
mod legacy;
mod log;
mod open;
pub mod plan;
mod replicated;
pub mod service;
mod stats;
mod waiting;
pub mod wire;

pub use service::{Config, Counters, Labels, LabelsError, Own};

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use swarmlabel_crdt::{
    Annotation, Annotations, AnnotatorKey, RecordError, Replica, SampleId, Samples, ShardId,
    ShardLayout, SignedAnnotation, Signer, Suggestion, Value,
};

use swarmlabel_store::Catalog;
use swarmlabel_store::dataset::{CatalogError, DatasetId, Listed};
use swarmlabel_store::home::Home;

use log::RecordLog;

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
    /// Signing an annotation failed (the signer is not the annotator).
    #[error(transparent)]
    Sign(#[from] swarmlabel_crdt::SignError),
    /// The home's key could not be read (needed to carry a home's own labels into chains).
    #[error(transparent)]
    Home(#[from] swarmlabel_store::home::HomeError),
}

/// What opening a store found wrong with its files (everything else loaded).
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    /// One sentence per damaged file, saying where its bytes were kept, what was restored and
    /// what was lost.
    pub damaged: Vec<String>,
    /// Records the shard files lacked and the record log gave back.
    pub restored: u64,
    /// Version-1 labels of this node's key, written before chains, carried into its chains now
    /// (signed again with the same answers and times).
    pub migrated: u64,
}

/// The annotations of one dataset, loaded from and appended to the home.
#[derive(Debug)]
pub struct LabelStore {
    dir: PathBuf,
    replica: Replica,
    log: RecordLog,
    appended: BTreeMap<u16, u32>,
    /// Shards whose file is behind memory after a failed write: the next save is a full one.
    stale: BTreeSet<u16>,
    /// Others' version-1 labels of a home written before chains: read here (where no chain
    /// record of the same slot exists), never given to peers.
    legacy: Vec<SignedAnnotation>,
}

/// How a batch of records went, record by record (see [`LabelStore::record_batch`]).
pub type Outcomes = Vec<Result<bool, RecordError>>;

/// Where the labels of `dataset` live in `home`: the record log and the shard files.
pub fn dir_of(home: &Home, dataset: &DatasetId) -> PathBuf {
    home.root().join("labels").join(hex::encode(dataset.0))
}

/// Bytes of one entry of a record log (`records.log`).
pub const LOG_ENTRY_BYTES: u64 = log::ENTRY_LEN as u64;

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

    /// Opens (or creates) the store of `dataset` in `home`: loads every shard file, sets damaged
    /// ones aside, and records again what the record log holds and the shard files lack. Takes
    /// annotations of any sample: a node opens its stores with [`LabelStore::open_with`].
    pub fn open(
        home: &Home,
        dataset: swarmlabel_crdt::Dataset,
    ) -> Result<(LabelStore, Recovery), LabelStoreError> {
        Self::open_with(home, dataset, None)
    }

    /// Signs `value` for `sample` with `signer` at the next place of its chain and records it;
    /// returns the record once it is durable.
    pub fn record_own(
        &mut self,
        signer: &impl Signer,
        sample: SampleId,
        value: Value,
        suggestion: Option<Suggestion>,
        time_ms: u64,
    ) -> Result<SignedAnnotation, LabelStoreError> {
        let annotator = AnnotatorKey(signer.public_key());
        let annotation = Annotation {
            dataset: self.replica.dataset().id,
            sample,
            annotator,
            seq: self.replica.next_seq(&annotator, &sample),
            time_ms,
            value,
            suggestion,
        };
        let signed = SignedAnnotation::sign(annotation, signer)?;
        self.record(&signed)?;
        Ok(signed)
    }

    /// Carries this node's version-1 labels into its chains (signed again: same sample,
    /// answer, suggestion and time), each slot once: a slot its chain already holds is left
    /// alone, so a crash half-way only leaves the rest for the next open. Returns how many.
    fn carry_legacy(
        &mut self,
        home: &Home,
        me: &AnnotatorKey,
        legacy: &[SignedAnnotation],
    ) -> Result<u64, LabelStoreError> {
        let own: Vec<&Annotation> = legacy
            .iter()
            .map(SignedAnnotation::annotation)
            .filter(|a| a.annotator == *me && self.replica.get(&a.sample, me).is_none())
            .collect();
        if own.is_empty() {
            return Ok(0);
        }
        let identity = home.identity()?;
        let mut carried = 0;
        for a in own {
            self.record_own(
                identity.signing_key(),
                a.sample,
                a.value,
                a.suggestion,
                a.time_ms,
            )?;
            carried += 1;
        }
        Ok(carried)
    }

    /// Records a signed annotation and returns once it is durable.
    pub fn record(&mut self, signed: &SignedAnnotation) -> Result<(), LabelStoreError> {
        match self.record_batch(std::slice::from_ref(signed))?.pop() {
            Some(Err(e)) => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Records a batch of signed annotations (of this dataset) and returns once the new ones are
    /// durable: appended to the record log with one fsync, then to their shard files. Per record:
    /// `Ok(true)` new, `Ok(false)` already held, `Err` refused (invalid, not its chain's next, or
    /// signed twice for one place). A batch holding an invalid record keeps nothing (it is a
    /// forgery), and when the log cannot be written (a full disk), nothing of the batch is kept
    /// and the error says so.
    pub fn record_batch(
        &mut self,
        batch: &[SignedAnnotation],
    ) -> Result<Outcomes, LabelStoreError> {
        // A forgery that the cheap checks see costs no signature verification.
        let prechecked: Outcomes = batch
            .iter()
            .map(|s| self.replica.precheck(s).map(|()| false))
            .collect();
        if prechecked.iter().any(is_forged) {
            return Ok(prechecked);
        }
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut fresh = Vec::new();
        let mut touched = BTreeSet::new();
        for signed in batch {
            outcomes.push(self.replica.record(signed).map(|recorded| {
                if recorded.new {
                    fresh.push(*signed);
                    touched.insert(recorded.shard);
                }
                recorded.new
            }));
        }
        // A batch with an invalid record (one no honest peer makes: a bad signature, a sample
        // the manifest does not list) is a forgery: nothing of it is kept.
        if outcomes.iter().any(is_forged) {
            self.replica.discard_staged();
            return Ok(outcomes);
        }
        if fresh.is_empty() {
            return Ok(outcomes);
        }
        if let Err(source) = self.log.append(&fresh) {
            self.replica.discard_staged();
            return Err(LabelStoreError::Io {
                action: "append to",
                path: self.log.path().to_owned(),
                source,
            });
        }
        self.replica.commit();
        for shard in touched {
            // The records are durable in the log; a shard file that cannot follow now is
            // rewritten whole at its next save.
            if let Err(e) = self.persist(shard) {
                tracing::warn!("{e}; the record log holds the labels");
            }
        }
        Ok(outcomes)
    }

    /// Appends what changed in `shard` since its last save to its file and fsyncs it; a shard
    /// whose earlier write failed is rewritten whole instead.
    pub fn persist(&mut self, shard: ShardId) -> Result<(), LabelStoreError> {
        if self.stale.contains(&shard.0) {
            return self.compact(shard);
        }
        let chunk = self.replica.save_shard_incremental(shard);
        if chunk.is_empty() {
            return Ok(());
        }
        let path = shard_path(&self.dir, shard);
        let new = !path.exists();
        let appended = append(&path, &chunk, new);
        if let Err((action, source)) = appended {
            // The shard's saved heads have moved past what the file holds.
            self.stale.insert(shard.0);
            return Err(LabelStoreError::Io {
                action,
                path,
                source,
            });
        }
        if new {
            durable::sync_dir(&self.dir).map_err(|source| LabelStoreError::Io {
                action: "sync the folder of",
                path: path.clone(),
                source,
            })?;
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
        if let Err(source) = swarmlabel_store::fs::write_atomic(&path, &bytes) {
            self.stale.insert(shard.0);
            return Err(LabelStoreError::Io {
                action: "compact",
                path,
                source,
            });
        }
        self.stale.remove(&shard.0);
        self.appended.insert(shard.0, 0);
        Ok(())
    }

    /// Every valid annotation, with counts of what was ignored and why: the chains', and the
    /// version-1 labels of others kept from before chains where no chain record of the same
    /// slot exists.
    pub fn read(&mut self) -> Annotations {
        let mut read = self.replica.read();
        if self.legacy.is_empty() {
            return read;
        }
        let held: std::collections::HashSet<(SampleId, AnnotatorKey)> = read
            .annotations
            .iter()
            .map(|a| (a.annotation().sample, a.annotation().annotator))
            .collect();
        for old in &self.legacy {
            let a = old.annotation();
            if held.contains(&(a.sample, a.annotator)) {
                continue;
            }
            match self.replica.counts(old) {
                Ok(()) => read.annotations.push(*old),
                Err(r) => read.rejected.add(r),
            }
        }
        read.annotations.sort_unstable_by(|a, b| {
            let (a, b) = (a.annotation(), b.annotation());
            (a.sample, a.annotator).cmp(&(b.sample, b.annotator))
        });
        read
    }

    /// Drops the records of annotators the policy in force does not admit from the record log
    /// and the shard files (their chains depend on no other, so everyone else's stay as they
    /// are): what a flood by keys the owner then banned cost on disk is given back. Returns how
    /// many records left. A later policy that admits them again gets them from peers.
    pub fn drop_not_admitted(&mut self) -> Result<u64, LabelStoreError> {
        let mut kept = Vec::new();
        let mut dropped = 0u64;
        log::scan(
            fs::File::open(self.log.path()).map_err(|source| LabelStoreError::Io {
                action: "read",
                path: self.log.path().to_owned(),
                source,
            })?,
            |signed| match self.replica.counts(&signed) {
                Err(swarmlabel_crdt::Rejection::NotAdmitted) => dropped += 1,
                _ => kept.push(signed),
            },
        )
        .map_err(|source| LabelStoreError::Io {
            action: "read",
            path: self.log.path().to_owned(),
            source,
        })?;
        if dropped == 0 {
            return Ok(0);
        }
        let dataset = *self.replica.dataset();
        let mut replica = self.replica.fresh();
        for signed in &kept {
            // Records of the log are in chain order: each is its chain's next.
            let _ = replica.record(signed);
        }
        replica.commit();
        let path = self.log.path().to_owned();
        self.log
            .replace_with(&kept)
            .map_err(|source| LabelStoreError::Io {
                action: "rewrite",
                path,
                source,
            })?;
        self.replica = replica;
        for shard in dataset.layout.shards() {
            self.compact(shard)?;
        }
        Ok(dropped)
    }

    /// The replica, for sync.
    pub fn replica_mut(&mut self) -> &mut Replica {
        &mut self.replica
    }
}

/// Appends `chunk` to the shard file at `path`; on failure cuts the file back to its length
/// before, so that no partial chunk sits in front of later appends.
fn append(path: &Path, chunk: &[u8], new: bool) -> Result<(), (&'static str, io::Error)> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| ("open", e))?;
    if new {
        durable::created(path);
    }
    let before = file
        .metadata()
        .map_err(|e| ("read the length of", e))?
        .len();
    // No fsync: a shard file is a cache of the record log, which is fsynced before anything is
    // acknowledged and replayed at every open; a shard file that a power cut left torn is set
    // aside there and rebuilt from the log. One fsync per batch, not one per shard it touches.
    let written = (&file).write_all(chunk).map_err(|e| ("append to", e));
    if written.is_err() {
        let _ = file.set_len(before);
    }
    written
}

/// Whether an outcome is a refusal no honest peer causes (anything invalid but a key the policy
/// does not admit, which a peer without the policy yet may send in good faith).
fn is_forged(outcome: &Result<bool, RecordError>) -> bool {
    matches!(outcome, Err(RecordError::Invalid(r)) if *r != swarmlabel_crdt::Rejection::NotAdmitted)
}

fn shard_path(dir: &Path, shard: ShardId) -> PathBuf {
    dir.join(format!("{:04x}.am", shard.0))
}

/// The samples a listed dataset's manifest names (read from its pages in the catalog).
pub fn samples_of(catalog: &Catalog, listed: &Listed) -> Result<Samples, CatalogError> {
    let mut ids = Vec::with_capacity(usize::try_from(listed.root.root().sample_count).unwrap_or(0));
    for index in 0..listed.root.root().pages.len() {
        let page = catalog.page(listed, index)?;
        ids.extend(page.samples.iter().map(|e| e.id));
    }
    Ok(ids.into_iter().collect())
}

/// Whether a store error means the disk is full (the API answers 507).
pub fn is_disk_full(e: &LabelStoreError) -> bool {
    matches!(e, LabelStoreError::Io { source, .. } if source.kind() == io::ErrorKind::StorageFull)
}

#[cfg(test)]
mod tests;
