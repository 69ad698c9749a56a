//! Labels of a home written before author chains (version-1 records, no `seq`).
//!
//! Their records cannot join chains as they are: a chain record carries its place under its
//! annotator's signature, which only the annotator can make. So, the first time such a store
//! opens, its files (`records.log` with `SLr1` entries, the shard files) move to `v1/` beside the
//! new ones, untouched; from then on:
//! - this node's own version-1 labels are signed again into its chains, with the same sample,
//!   answer, suggestion and time (`LabelStore::carry_legacy`), once per slot;
//! - others' are read from `v1/records.log` at every open and counted where no chain record of
//!   the same slot exists, but never given to peers; their authors' nodes carry them into their
//!   own chains when they upgrade, and those records then take their place.
//!
//! Nothing is deleted: `v1/` holds the old files as they were.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use swarmlabel_crdt::{AnnotatorKey, SampleId, SignedAnnotation, slot};

use super::durable;
use super::log::{self, Format};

/// The folder, inside a dataset's label folder, that keeps a version-1 store's files.
pub(crate) const DIR: &str = "v1";

/// Where the version-1 record log is kept after the move.
pub(crate) fn log_path(dir: &Path) -> PathBuf {
    dir.join(DIR).join(log::FILE_NAME)
}

/// Moves a version-1 store's files (a `records.log` of `SLr1` entries and the shard files next
/// to it) into `dir/v1/`, once; returns whether it did. The move is durable before the new files
/// are written.
pub(crate) fn move_aside(dir: &Path) -> io::Result<bool> {
    let current = dir.join(log::FILE_NAME);
    let mut head = [0u8; 4];
    let is_v1 = match File::open(&current) {
        Ok(mut f) => {
            use io::Read as _;
            f.read_exact(&mut head).is_ok() && Format::of(&head) == Some(Format::V1)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    };
    if !is_v1 {
        return Ok(false);
    }
    let aside = dir.join(DIR);
    durable::create_dir(&aside)?;
    let mut moved: Vec<PathBuf> = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name == log::FILE_NAME || name.ends_with(".am") {
            moved.push(path);
        }
    }
    // The shard files first and the log last: until the log has moved, a crash leaves a
    // version-1 log in place and the next open moves the rest.
    moved.sort_by_key(|p| p.ends_with(log::FILE_NAME));
    for path in moved {
        let to = aside.join(path.file_name().unwrap_or_default());
        fs::rename(&path, &to)?;
        durable::renamed(&path, &to);
    }
    durable::sync_dir(&aside)?;
    durable::sync_dir(dir)?;
    Ok(true)
}

/// The version-1 records kept in `dir/v1/`, the latest of each slot by the version-1 rule
/// (greatest time, then bytes), of `dataset` and with a valid signature. Empty when there is
/// no such folder.
pub(crate) fn read(
    dir: &Path,
    dataset: &swarmlabel_crdt::Dataset,
) -> io::Result<Vec<SignedAnnotation>> {
    let file = match File::open(log_path(dir)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut latest: BTreeMap<(SampleId, AnnotatorKey), SignedAnnotation> = BTreeMap::new();
    log::scan_format(file, Format::V1, |signed| {
        let a = signed.annotation();
        let slot = (a.sample, a.annotator);
        match latest.get(&slot) {
            Some(held) if !slot::wins(&signed, held) => {}
            _ => {
                latest.insert(slot, signed);
            }
        }
    })?;
    Ok(latest
        .into_values()
        .filter(|s| swarmlabel_crdt::validate::check_record(dataset, s).is_ok())
        .collect())
}
