//! The `imagefolder` export: each labelled image under its consensus label's folder, and a
//! `metadata.jsonl` beside them, the layout Hugging Face `datasets` loads with
//! `load_dataset("imagefolder", data_dir=DIR)` (and torchvision's `ImageFolder` reads the folders).
//!
//! `DIR/LABEL/FILE` for every sample with a consensus label (samples without one are left out),
//! FILE the original file name when the home knows it (else `SAMPLE_ID.png` / `.jpg`), made unique
//! within its folder by prefixing the first 8 characters of the sample id. `metadata.jsonl`: one
//! object per image, `file_name` (`LABEL/FILE`), `label`, `confidence`, `votes`, `sample_id`, and
//! `original_file` when known. Everything is written into a temporary folder beside DIR that is
//! renamed to DIR at the end, so DIR is whole or absent; an existing DIR is never written into.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use super::SampleConsensus;

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
    sample_id: &'a str,
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

/// Writes the export of `rows` into `out` (see the module doc); `kinds` gives each sample's
/// image kind, `names` the original file names known, `read` a sample's bytes. Returns the number
/// of images written.
pub fn write(
    out: &Path,
    rows: &[SampleConsensus],
    kinds: &HashMap<String, ImageKind>,
    names: &HashMap<String, String>,
    read: impl Fn(&str) -> io::Result<Vec<u8>>,
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
    let mut taken: HashSet<PathBuf> = HashSet::new();
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
        let folder = safe_name(label);
        let mut relative = PathBuf::from(&folder).join(&file);
        if taken.contains(&relative) {
            let prefix = row.sample.get(..8).unwrap_or(&row.sample);
            relative = PathBuf::from(&folder).join(format!("{prefix}-{file}"));
        }
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
            sample_id: &row.sample,
            original_file: original,
        };
        serde_json::to_writer(&mut metadata, &line)?;
        metadata.write_all(b"\n")?;
        taken.insert(relative);
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

    fn row(sample: &str, label: Option<&str>) -> SampleConsensus {
        SampleConsensus {
            sample: sample.into(),
            label: label.map(Into::into),
            confidence: Some(0.9),
            votes: 2,
            skips: 0,
            unsure: 0,
            tied: Vec::new(),
        }
    }

    #[test]
    fn images_go_under_their_label_with_unique_names_and_nothing_is_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("export");
        let rows = vec![
            row("aaaaaaaaaa", Some("cat")),
            row("bbbbbbbbbb", Some("cat")),
            row("cccccccccc", None),
            row("dddddddddd", Some("../etc")),
        ];
        let kinds: HashMap<String, ImageKind> =
            ["aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc", "dddddddddd"]
                .into_iter()
                .map(|s| (s.to_owned(), ImageKind::Png))
                .collect();
        // Two originals with the same file name in different folders.
        let names: HashMap<String, String> = [
            ("aaaaaaaaaa".to_owned(), "x/1.png".to_owned()),
            ("bbbbbbbbbb".to_owned(), "y/1.png".to_owned()),
        ]
        .into_iter()
        .collect();
        let n = write(&out, &rows, &kinds, &names, |s| Ok(s.as_bytes().to_vec())).unwrap();
        assert_eq!(n, 3, "the sample without a consensus label is left out");
        assert_eq!(std::fs::read(out.join("cat/1.png")).unwrap(), b"aaaaaaaaaa");
        assert_eq!(
            std::fs::read(out.join("cat/bbbbbbbb-1.png")).unwrap(),
            b"bbbbbbbbbb"
        );
        // A label naming a parent folder stays inside the export.
        assert_eq!(
            std::fs::read(out.join(".._etc/dddddddddd.png")).unwrap(),
            b"dddddddddd"
        );
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
}
