//! The `imagefolder` export: each labelled image under its consensus label's folder, and a
//! `metadata.jsonl` beside them, the layout Hugging Face `datasets` loads with
//! `load_dataset("imagefolder", data_dir=DIR)` (and torchvision's `ImageFolder` reads the folders).
//!
//! `DIR/LABEL/FILE` for every sample with a consensus label (samples without one are left out),
//! FILE the original file name when the home knows it (else `SAMPLE_ID.png` / `.jpg`), made unique
//! within its folder by prefixing the first 8 characters of the sample id, then more. Names are
//! unique ignoring case (a case-insensitive file system would merge them), and a label folder
//! never takes the name `metadata.jsonl`. `metadata.jsonl`: one
//! object per image, `file_name` (`LABEL/FILE`), `label`, `confidence`, `votes`, `sample_id`, and
//! `original_file` when known. Everything is written into a temporary folder beside DIR that is
//! renamed to DIR at the end, so DIR is whole or absent; an existing DIR is never written into.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use swarmlabel_crdt::SampleId;

use crate::summary::SampleConsensus;

/// One image of the export: its bytes come from `read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// PNG.
    Png,
    /// JPEG.
    Jpeg,
}

#[derive(serde::Serialize)]
struct Metadata<'a> {
    file_name: String,
    label: &'a str,
    confidence: Option<f64>,
    votes: u32,
    sample_id: SampleId,
    #[serde(skip_serializing_if = "Option::is_none")]
    original_file: Option<&'a str>,
}

/// A folder or file name from text that may hold separators or be `.`/`..`.
fn safe_name(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if matches!(c, '/' | '\\' | '\0') {
                '_'
            } else {
                c
            }
        })
        .collect();
    match cleaned.as_str() {
        "" | "." | ".." => format!("_{cleaned}"),
        _ => cleaned,
    }
}

/// A folder per label: each label its own, unique ignoring case, never `metadata.jsonl`.
#[derive(Default)]
struct Folders {
    by_label: HashMap<String, String>,
    used: HashSet<String>,
}

impl Folders {
    fn of(&mut self, label: &str) -> String {
        if let Some(folder) = self.by_label.get(label) {
            return folder.clone();
        }
        let base = safe_name(label);
        let mut folder = base.clone();
        let mut n = 1;
        while self.used.contains(&folder.to_lowercase())
            || folder.eq_ignore_ascii_case("metadata.jsonl")
        {
            n += 1;
            folder = format!("{base}-{n}");
        }
        self.used.insert(folder.to_lowercase());
        self.by_label.insert(label.to_owned(), folder.clone());
        folder
    }
}

/// `folder/file`, or with more of `sample`'s id before `file` until no path in `taken` (which
/// holds lowercased paths) is the same ignoring case.
fn unique_path(taken: &HashSet<String>, folder: &str, file: &str, sample: &str) -> PathBuf {
    let free = |p: &PathBuf| !taken.contains(&p.to_string_lossy().to_lowercase());
    let plain = PathBuf::from(folder).join(file);
    if free(&plain) {
        return plain;
    }
    for len in [8, 16, 32, sample.len()] {
        let prefix = sample.get(..len).unwrap_or(sample);
        let candidate = PathBuf::from(folder).join(format!("{prefix}-{file}"));
        if free(&candidate) {
            return candidate;
        }
    }
    // Sample ids are unique: with the whole id, a path is taken only by an original file named
    // after another sample's id and this file; count up past it.
    (2..)
        .map(|n| PathBuf::from(folder).join(format!("{sample}-{n}-{file}")))
        .find(free)
        .unwrap_or_else(|| PathBuf::from(folder).join(file))
}

/// Writes the export of `rows` into `out` (see the module doc); `kinds` gives each sample's
/// image kind, `names` the original file names known, `read` a sample's bytes. Returns the number
/// of images written.
pub fn write(
    out: &Path,
    rows: &[SampleConsensus],
    kinds: &HashMap<SampleId, ImageKind>,
    names: &HashMap<SampleId, String>,
    read: impl Fn(&SampleId) -> io::Result<Vec<u8>>,
) -> io::Result<usize> {
    if out.exists() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists; give --out a new folder (an export never writes into one)",
                out.display()
            ),
        ));
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let temp = tempfile::Builder::new()
        .prefix(".swarmlabel-export-")
        .tempdir_in(parent)?;
    let mut written = 0;
    // Paths written, lowercased: unique on case-insensitive file systems too.
    let mut taken: HashSet<String> = HashSet::new();
    let mut folders = Folders::default();
    let mut metadata =
        io::BufWriter::new(std::fs::File::create(temp.path().join("metadata.jsonl"))?);
    for row in rows {
        let Some(label) = row.label.as_deref() else {
            continue;
        };
        let Some(kind) = kinds.get(&row.sample) else {
            continue;
        };
        let original = names.get(&row.sample).map(String::as_str);
        let ext = match kind {
            ImageKind::Png => "png",
            ImageKind::Jpeg => "jpg",
        };
        let file = original
            .and_then(|o| o.rsplit('/').next())
            .map(safe_name)
            .unwrap_or_else(|| format!("{}.{ext}", row.sample));
        let folder = folders.of(label);
        let relative = unique_path(&taken, &folder, &file, &row.sample.to_hex());
        std::fs::create_dir_all(temp.path().join(&folder))?;
        std::fs::write(temp.path().join(&relative), read(&row.sample)?)?;
        let line = Metadata {
            file_name: format!(
                "{folder}/{}",
                relative.file_name().unwrap_or_default().to_string_lossy()
            ),
            label,
            confidence: row.confidence.map(|c| (c * 10_000.0).round() / 10_000.0),
            votes: row.votes,
            sample_id: row.sample,
            original_file: original,
        };
        serde_json::to_writer(&mut metadata, &line)?;
        metadata.write_all(b"\n")?;
        taken.insert(relative.to_string_lossy().to_lowercase());
        written += 1;
    }
    metadata.flush()?;
    drop(metadata);
    let done = temp.keep();
    std::fs::rename(&done, out).inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&done);
    })?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn row(sample: u8, label: Option<&str>) -> SampleConsensus {
        SampleConsensus {
            sample: SampleId([sample; 32]),
            label: label.map(Into::into),
            confidence: Some(0.9),
            votes: 2,
            skips: 0,
            unsure: 0,
            tied: Vec::new(),
        }
    }

    /// The bytes of sample `s` in these tests: its id, hex.
    fn bytes(s: u8) -> Vec<u8> {
        SampleId([s; 32]).to_hex().into_bytes()
    }

    #[test]
    fn images_go_under_their_label_with_unique_names_and_nothing_is_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("export");
        let rows = vec![
            row(0xaa, Some("cat")),
            row(0xbb, Some("cat")),
            row(0xcc, None),
            row(0xdd, Some("../etc")),
        ];
        let kinds: HashMap<SampleId, ImageKind> = [0xaa, 0xbb, 0xcc, 0xdd]
            .into_iter()
            .map(|s| (SampleId([s; 32]), ImageKind::Png))
            .collect();
        // Two originals with the same file name in different folders.
        let names: HashMap<SampleId, String> = [
            (SampleId([0xaa; 32]), "x/1.png".to_owned()),
            (SampleId([0xbb; 32]), "y/1.png".to_owned()),
        ]
        .into_iter()
        .collect();
        let n = write(&out, &rows, &kinds, &names, |s| Ok(s.to_hex().into_bytes())).unwrap();
        assert_eq!(n, 3, "the sample without a consensus label is left out");
        assert_eq!(std::fs::read(out.join("cat/1.png")).unwrap(), bytes(0xaa));
        assert_eq!(
            std::fs::read(out.join("cat/bbbbbbbb-1.png")).unwrap(),
            bytes(0xbb)
        );
        // A label naming a parent folder stays inside the export.
        let dd = format!(".._etc/{}.png", SampleId([0xdd; 32]));
        assert_eq!(std::fs::read(out.join(dd)).unwrap(), bytes(0xdd));
        let metadata = std::fs::read_to_string(out.join("metadata.jsonl")).unwrap();
        let first: serde_json::Value =
            serde_json::from_str(metadata.lines().next().unwrap()).unwrap();
        assert_eq!(first["file_name"], "cat/1.png");
        assert_eq!(first["original_file"], "x/1.png");
        assert_eq!(metadata.lines().count(), 3);
        // Never into an existing folder; a failed read leaves no folder behind.
        assert_eq!(
            write(&out, &rows, &kinds, &names, |_| Ok(Vec::new()))
                .unwrap_err()
                .kind(),
            io::ErrorKind::AlreadyExists
        );
        let other = dir.path().join("other");
        assert!(
            write(&other, &rows, &kinds, &names, |_| Err(io::Error::other(
                "gone"
            )))
            .is_err()
        );
        assert!(!other.exists());
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "only the first export is there");
    }

    /// Audit 2026-12-04, N15: a prefixed name could collide again and overwrite silently, two
    /// labels differing in case shared a folder on a case-insensitive file system, and a label
    /// named `metadata.jsonl` aborted the export.
    #[test]
    fn names_that_would_collide_get_their_own_paths() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("export");
        // The first three ids share their first 8 hex characters, `abcdef01`.
        let id = |head: [u8; 4], tail: u8| {
            let mut bytes = [tail; 32];
            bytes[..4].copy_from_slice(&head);
            SampleId(bytes)
        };
        let shared = [0xab, 0xcd, 0xef, 0x01];
        let ids = [
            id(shared, 0x11),
            id(shared, 0x22),
            id(shared, 0x33),
            id([0xee; 4], 0x44),
            id([0xdd; 4], 0x55),
        ];
        let row = |s: SampleId, label: &str| SampleConsensus {
            sample: s,
            ..row(0, Some(label))
        };
        let rows = vec![
            row(ids[0], "Cat"),
            row(ids[1], "Cat"),
            row(ids[2], "Cat"),
            row(ids[3], "cat"),
            row(ids[4], "metadata.jsonl"),
        ];
        let kinds: HashMap<SampleId, ImageKind> =
            ids.iter().map(|s| (*s, ImageKind::Png)).collect();
        // The third file is named as the second one's prefixed name would be.
        let names: HashMap<SampleId, String> = [
            (ids[0], "1.PNG".to_owned()),
            (ids[1], "1.png".to_owned()),
            (ids[2], "abcdef01-1.png".to_owned()),
        ]
        .into_iter()
        .collect();
        let n = write(&out, &rows, &kinds, &names, |s| Ok(s.to_hex().into_bytes())).unwrap();
        assert_eq!(n, 5);
        let mut files = Vec::new();
        for entry in walk(&out) {
            files.push(
                entry
                    .strip_prefix(&out)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        files.sort();
        let lower: HashSet<String> = files.iter().map(|f| f.to_lowercase()).collect();
        assert_eq!(
            lower.len(),
            files.len(),
            "two paths differ only in case: {files:?}"
        );
        assert_eq!(files.len(), 6, "five images and the metadata: {files:?}");
        // Every image holds its own sample's bytes, under its label's folder.
        let metadata = std::fs::read_to_string(out.join("metadata.jsonl")).unwrap();
        for line in metadata.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let bytes = std::fs::read(out.join(v["file_name"].as_str().unwrap())).unwrap();
            assert_eq!(bytes, v["sample_id"].as_str().unwrap().as_bytes());
        }
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
        out
    }
}
