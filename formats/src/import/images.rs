//! Image folders: PNG and JPEG files found recursively, in sorted path order; the first folder
//! below the root gives a gold label when its name is in the label set (the ImageFolder layout).

use std::collections::BTreeSet;
use std::io::{Cursor, Read as _};
use std::path::{Path, PathBuf};

use super::{Feed, FeedOutcome, ImportError, Job, MAX_EXAMPLES, MAX_SAMPLE_BYTES};
use swarmlabel_store::dataset::manifest::{MediaType, Task};

const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";
const JPEG_MAGIC: &[u8] = b"\xFF\xD8\xFF";
/// Largest image side accepted; bounds the memory a hostile file can make the decoder use.
const MAX_SIDE: u32 = 16_384;

pub(super) fn feed(
    root: &Path,
    labels: &[String],
    strict: bool,
    feed: &mut Feed<'_>,
) -> FeedOutcome {
    let mut outcome = FeedOutcome {
        task: Some(Task::ImageClassification),
        ..Default::default()
    };
    let mut unlabelled_folders = BTreeSet::new();
    let walk = walkdir::WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
    for entry in walk {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let path = e.path().unwrap_or(root).to_owned();
                let source = e.into_io_error().unwrap_or_else(|| {
                    std::io::Error::other("a symbolic link loops back to a parent folder")
                });
                feed.send(Err(ImportError::Unreadable { path, source }));
                return outcome;
            }
        };
        if !entry.file_type().is_file() {
            continue;
        }
        let path = entry.path();
        if !has_image_extension(path) {
            if strict {
                feed.send(Err(ImportError::Unsupported(path.to_owned())));
                return outcome;
            }
            outcome.skipped += 1;
            if outcome.warnings.len() < MAX_EXAMPLES {
                outcome.warnings.push(format!(
                    "skipped {}: not a PNG or JPEG file",
                    path.display()
                ));
            }
            continue;
        }
        let rel = path.strip_prefix(root).unwrap_or(path);
        let mut components = rel.components();
        let folder = components.next().filter(|_| components.next().is_some());
        let gold = match folder.map(|c| c.as_os_str().to_string_lossy()) {
            Some(name) => match labels.iter().position(|l| *l == name) {
                Some(i) => Some(i as u16),
                None => {
                    unlabelled_folders.insert(name.into_owned());
                    None
                }
            },
            None => None,
        };
        if !feed.send(Ok(Job::ImageFile {
            path: path.to_owned(),
            gold,
        })) {
            return outcome;
        }
    }
    for folder in unlabelled_folders.into_iter().take(MAX_EXAMPLES) {
        outcome.warnings.push(format!(
            "folder '{folder}' is not a label name, so its images have no gold label"
        ));
    }
    outcome
}

fn has_image_extension(path: &Path) -> bool {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg"))
}

/// Reads an image file and decodes it once to validate it. The media type comes from the bytes,
/// not the file name.
pub(super) fn load(path: &PathBuf) -> Result<(Vec<u8>, MediaType), ImportError> {
    let unreadable = |source| ImportError::Unreadable {
        path: path.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let size = file.metadata().map_err(unreadable)?.len();
    if size > MAX_SAMPLE_BYTES {
        return Err(ImportError::TooLarge {
            path: path.clone(),
            size,
        });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(MAX_SAMPLE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    let (media_type, format) = if bytes.starts_with(PNG_MAGIC) {
        (MediaType::Png, image::ImageFormat::Png)
    } else if bytes.starts_with(JPEG_MAGIC) {
        (MediaType::Jpeg, image::ImageFormat::Jpeg)
    } else {
        return Err(ImportError::CorruptImage {
            path: path.clone(),
            reason: "its bytes are neither PNG nor JPEG".into(),
        });
    };
    validate(&bytes, format).map_err(|reason| ImportError::CorruptImage {
        path: path.clone(),
        reason,
    })?;
    Ok((bytes, media_type))
}

/// Decodes `bytes` fully under memory limits.
pub(crate) fn validate(bytes: &[u8], format: image::ImageFormat) -> Result<(), String> {
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(1024 * 1024 * 1024);
    reader.limits(limits);
    reader.decode().map(drop).map_err(|e| e.to_string())
}
