//! Where output goes: [`out!`] for lines on stdout, [`write_out`] for an export (a file written
//! atomically, or stdout).

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

/// `println!` that does not panic when stdout is gone: `swarmlabel dataset create ... --json |
/// head` closes the pipe early, which is no error (the process ends quietly with status 0, as
/// ripgrep does); any other failure to write is reported in one sentence, status 2.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            $crate::output::stdout_failed(&e)
        }
    }};
}
pub(crate) use out;

/// Ends the process after a failed write to stdout (see [`out!`]).
pub(crate) fn stdout_failed(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: cannot write to standard output: {e}");
    std::process::exit(2)
}
