//! Durable file writes shared by every store of a home.

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically and durably: temporary file in the same directory, fsync,
/// rename, fsync of the directory. A crash leaves the old file or the new one, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// Fsyncs a directory, making the creation and renaming of its entries durable.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// Renames a damaged file to `<name>.damaged-<unix seconds>` beside it (never over another) and
/// makes the rename durable; returns the new path. Its bytes are kept as they were, and nothing
/// that lists the folder by name takes it for a live file again.
pub fn set_aside(path: &Path) -> io::Result<PathBuf> {
    let aside = aside_path(path);
    fs::rename(path, &aside)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    Ok(aside)
}

/// A free name beside `path` for its damaged bytes: `NAME.damaged-<unix seconds>`, with `-2`,
/// `-3`… when taken.
pub fn aside_path(path: &Path) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut aside = dir.join(format!("{name}.damaged-{secs}"));
    let mut n = 1;
    while aside.exists() {
        n += 1;
        aside = dir.join(format!("{name}.damaged-{secs}-{n}"));
    }
    aside
}
