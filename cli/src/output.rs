//! Where an export goes: a file written atomically, or stdout.

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;

/// Runs `write` into `path` when given (a temporary file beside it, flushed, synced, then renamed
/// over `path`, so a crash or an error never leaves half a file), else into stdout. Returns what
/// `write` returned.
pub(crate) fn write_out<T>(
    path: Option<&Path>,
    write: impl FnOnce(&mut dyn Write) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let Some(path) = path else {
        let stdout = std::io::stdout();
        let mut lock = std::io::BufWriter::new(stdout.lock());
        let value = write(&mut lock)?;
        lock.flush()?;
        return Ok(value);
    };
    let cannot = || format!("cannot write {}", path.display());
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    let mut writer = std::io::BufWriter::new(tmp.as_file_mut());
    let value = write(&mut writer).with_context(cannot)?;
    writer.flush().with_context(cannot)?;
    drop(writer);
    tmp.as_file().sync_all().with_context(cannot)?;
    tmp.persist(path).with_context(cannot)?;
    Ok(value)
}
