//! Opening a dataset's label store: the shard files are loaded, the record log replayed over
//! them, a damaged file set aside and rebuilt from what the log holds, and a home of version 1
//! migrated. What was wrong is reported, never silently dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::Path;
use std::sync::Arc;

use swarmlabel_crdt::{LoadError, Replica, Samples, ShardId};
use swarmlabel_store::home::Home;

use super::log::{self, RecordLog};
use super::{LabelStore, LabelStoreError, Recovery, dir_of, durable, legacy, shard_path};

impl LabelStore {
    /// [`LabelStore::open`], taking only annotations of `samples` (the manifest's) when given:
    /// others are refused, and ignored where they were stored before.
    pub fn open_with(
        home: &Home,
        dataset: swarmlabel_crdt::Dataset,
        samples: Option<Arc<Samples>>,
    ) -> Result<(LabelStore, Recovery), LabelStoreError> {
        let dir = dir_of(home, &dataset.id);
        durable::create_dir(&dir).map_err(|source| LabelStoreError::Io {
            action: "create",
            path: dir.clone(),
            source,
        })?;
        // A home written before chains: its files go to `v1/` once, and its records are read
        // from there (see legacy.rs).
        legacy::move_aside(&dir).map_err(|source| LabelStoreError::Io {
            action: "move aside the version-1 files in",
            path: dir.clone(),
            source,
        })?;
        let legacy_records =
            legacy::read(&dir, &dataset).map_err(|source| LabelStoreError::Io {
                action: "read",
                path: legacy::log_path(&dir),
                source,
            })?;
        let mut replica = Replica::new(dataset);
        if let Some(samples) = samples {
            replica = replica.with_samples(samples);
        }
        let mut recovery = Recovery::default();
        // Shards to rewrite from memory once the log is replayed, with what was wrong.
        let (rewrite, had_shard_files) = load_shard_files(&dir, &mut replica)?;
        let replayed = replay_log(&dir, &mut replica, &mut recovery)?;
        let mut store = LabelStore {
            dir,
            replica,
            log: replayed.log,
            appended: BTreeMap::new(),
            stale: BTreeSet::new(),
            legacy: Vec::new(),
        };
        // Shard files without a log are only a cache of a log that was lost: the log starts
        // again from what they hold.
        if replayed.created && had_shard_files {
            let all = store.replica.read().annotations;
            store
                .log
                .append(&all)
                .map_err(|source| LabelStoreError::Io {
                    action: "write",
                    path: store.log.path().to_owned(),
                    source,
                })?;
        }
        if !legacy_records.is_empty() {
            let me = home.identity()?.public_key();
            recovery.migrated = store.carry_legacy(home, &me, &legacy_records)?;
            store.legacy = legacy_records
                .into_iter()
                .filter(|r| r.annotation().annotator != me)
                .collect();
        }
        store.rewrite_shards(rewrite, &replayed.restored, &mut recovery);
        Ok((store, recovery))
    }

    /// Writes again from memory the shards that were damaged or that the log added to, and
    /// reports what each damaged one got back.
    fn rewrite_shards(
        &mut self,
        mut rewrite: BTreeMap<u16, Option<String>>,
        restored: &BTreeMap<u16, u64>,
        recovery: &mut Recovery,
    ) {
        for &shard in restored.keys() {
            rewrite.entry(shard).or_insert(None);
        }
        for (shard, damage) in rewrite {
            // On a full disk the shard file catches up at its next save: the log holds it all.
            if let Err(e) = self.compact(ShardId(shard)) {
                tracing::warn!("{e}; the record log holds the labels");
            }
            if let Some(damage) = damage {
                let n = restored.get(&shard).copied().unwrap_or(0);
                recovery.damaged.push(format!(
                    "{damage}; {n} records it lacked were restored from the record log, nothing \
                     acknowledged was lost"
                ));
            }
        }
    }
}

/// What replaying the record log did.
struct Replayed {
    log: RecordLog,
    /// The log did not exist.
    created: bool,
    /// Records the shard files lacked, by shard.
    restored: BTreeMap<u16, u64>,
}

/// Replays the record log over `replica` (what the shard files lacked is recorded and
/// committed); a damaged log is rewritten with its damaged bytes kept aside.
fn replay_log(
    dir: &Path,
    replica: &mut Replica,
    recovery: &mut Recovery,
) -> Result<Replayed, LabelStoreError> {
    let mut restored: BTreeMap<u16, u64> = BTreeMap::new();
    let mut refused = 0u64;
    let opened = RecordLog::open(dir, |signed| {
        if replica.holds(&signed) {
            return;
        }
        match replica.record(&signed) {
            Ok(recorded) => *restored.entry(recorded.shard.0).or_default() += 1,
            Err(_) => refused += 1,
        }
    });
    let (mut log, scan, created) = opened.map_err(|source| LabelStoreError::Io {
        action: "read",
        path: dir.join(log::FILE_NAME),
        source,
    })?;
    replica.commit();
    recovery.restored = restored.values().sum();
    if refused > 0 {
        let dataset = replica.dataset().id;
        tracing::warn!(%dataset, refused, "record log entries refused on replay");
    }
    if scan.damaged_bytes() > 0 {
        let path = log.path().to_owned();
        let aside = log.rewrite_aside().map_err(|source| LabelStoreError::Io {
            action: "rewrite",
            path: path.clone(),
            source,
        })?;
        recovery.damaged.push(format!(
            "{} was damaged: {} bytes in {} places could not be read, about {} records; its \
             bytes are kept as {}; those records are still in the shard files if they are \
             whole, and peers that hold them give them back at the next sync",
            path.display(),
            scan.damaged_bytes(),
            scan.damaged.len(),
            scan.damaged_bytes().div_ceil(log::ENTRY_LEN as u64),
            aside.display()
        ));
    }
    Ok(Replayed {
        log,
        created,
        restored,
    })
}

/// Loads every shard file of `dir` into `replica`: returns the shards to rewrite once the record
/// log is replayed (a damaged file is set aside, with what was wrong) and whether any file was
/// there.
fn load_shard_files(
    dir: &Path,
    replica: &mut Replica,
) -> Result<(BTreeMap<u16, Option<String>>, bool), LabelStoreError> {
    let mut rewrite: BTreeMap<u16, Option<String>> = BTreeMap::new();
    let mut had_shard_files = false;
    let dataset = *replica.dataset();
    for shard in dataset.layout.shards() {
        let path = shard_path(dir, shard);
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
        had_shard_files = true;
        match replica.load_shard(shard, &bytes) {
            Ok(_) => {}
            // Loaded; what is missing stays queued for peers. The file is whole.
            Err(e @ LoadError::MissingDependencies { .. }) => {
                tracing::info!(dataset = %dataset.id, "{e}");
            }
            Err(e) => {
                let aside = swarmlabel_store::fs::set_aside(&path).map_err(|source| {
                    LabelStoreError::Io {
                        action: "set aside",
                        path: path.clone(),
                        source,
                    }
                })?;
                rewrite.insert(
                    shard.0,
                    Some(format!(
                        "{} was damaged ({e}); its bytes are kept as {}",
                        path.display(),
                        aside.display()
                    )),
                );
            }
        }
    }
    Ok((rewrite, had_shard_files))
}
