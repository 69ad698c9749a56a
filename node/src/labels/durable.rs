//! The file-system calls that make label files durable: fsync of a file's data, fsync of a
//! directory, and creation of directories whose entries are themselves made durable.
//!
//! In tests every call is also written to a per-thread journal, from which
//! [`crash_image`] rebuilds what a disk would hold after a power cut: appended files cut back to
//! their last synced length, and files or folders whose creation was never made durable (no sync
//! of their parent after they appeared) gone. A store that forgets one fsync loses an
//! acknowledged label in that image, which a page-cache-surviving process kill cannot show.

use std::fs::{self, File};
use std::io;
use std::path::Path;

/// Fsyncs the data of `file` (at `path`, for the test journal).
pub(crate) fn sync_data(file: &File, path: &Path) -> io::Result<()> {
    file.sync_data()?;
    #[cfg(test)]
    journal::note(journal::Call::File(path.to_owned(), file.metadata()?.len()));
    #[cfg(not(test))]
    let _ = path;
    Ok(())
}

/// Fsyncs a directory, making the creation and renaming of its entries durable.
pub(crate) fn sync_dir(path: &Path) -> io::Result<()> {
    swarmlabel_store::fs::sync_dir(path)?;
    #[cfg(test)]
    journal::note(journal::Call::Dir(path.to_owned()));
    Ok(())
}

/// Notes that a file was just created (only the test journal cares).
pub(crate) fn created(path: &Path) {
    #[cfg(test)]
    journal::note(journal::Call::Created(path.to_owned()));
    #[cfg(not(test))]
    let _ = path;
}

/// Notes that `from` was renamed to `to` (only the test journal cares).
pub(crate) fn renamed(from: &Path, to: &Path) {
    #[cfg(test)]
    journal::note(journal::Call::Renamed(from.to_owned(), to.to_owned()));
    #[cfg(not(test))]
    let _ = (from, to);
}

/// Creates `dir` and any missing parent, fsyncing the parent of each folder created, so that the
/// folder survives a power cut as surely as the files written into it.
pub(crate) fn create_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    created(dir);
    sync_dir(dir.parent().unwrap_or(Path::new(".")))
}

#[cfg(test)]
pub(crate) use journal::{crash_image, data_syncs};

#[cfg(test)]
mod journal {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::fs;
    use std::path::{Path, PathBuf};

    #[derive(Debug, Clone)]
    pub(super) enum Call {
        File(PathBuf, u64),
        Dir(PathBuf),
        Created(PathBuf),
        /// A rename over the target (the caller syncs the folder next).
        Renamed(PathBuf, PathBuf),
    }

    thread_local! {
        static JOURNAL: RefCell<Vec<Call>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn note(call: Call) {
        JOURNAL.with(|j| j.borrow_mut().push(call));
    }

    /// How many file data syncs this thread made since the journal was last cleared.
    pub(crate) fn data_syncs() -> usize {
        JOURNAL.with(|j| {
            j.borrow()
                .iter()
                .filter(|c| matches!(c, Call::File(..)))
                .count()
        })
    }

    /// Turns the files under `root` into what a disk would hold after a power cut now, given
    /// the sync calls this thread made: every file under `root` is cut to the length it had at
    /// its last data sync (removed if never synced), and every file or folder created is removed
    /// unless its parent was synced after it was created. Clears the journal.
    pub(crate) fn crash_image(root: &Path) {
        let calls = JOURNAL.with(|j| std::mem::take(&mut *j.borrow_mut()));
        let mut synced_len: HashMap<PathBuf, u64> = HashMap::new();
        let mut created_at: HashMap<PathBuf, usize> = HashMap::new();
        let mut dir_synced_at: HashMap<PathBuf, usize> = HashMap::new();
        for (i, call) in calls.iter().enumerate() {
            match call {
                Call::File(path, len) => {
                    synced_len.insert(path.clone(), *len);
                }
                Call::Dir(path) => {
                    dir_synced_at.insert(path.clone(), i);
                }
                Call::Created(path) => {
                    created_at.entry(path.clone()).or_insert(i);
                }
                Call::Renamed(from, to) => {
                    match synced_len.remove(from) {
                        Some(len) => synced_len.insert(to.clone(), len),
                        None => synced_len.remove(to),
                    };
                    created_at.remove(from);
                }
            }
        }
        // Creations first, outermost first: a folder that was never made durable takes all it
        // holds with it.
        let mut created: Vec<(&PathBuf, &usize)> = created_at.iter().collect();
        created.sort_by_key(|(p, _)| p.components().count());
        for (path, at) in created {
            let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
            let durable = dir_synced_at.get(&parent).is_some_and(|s| s > at);
            if !durable && path.starts_with(root) {
                let _ = fs::remove_dir_all(path).or_else(|_| fs::remove_file(path));
            }
        }
        for entry in walk(root) {
            match synced_len.get(&entry) {
                Some(&len) => {
                    let file = fs::OpenOptions::new().write(true).open(&entry);
                    if let Ok(file) = file
                        && file.metadata().is_ok_and(|m| m.len() > len)
                    {
                        let _ = file.set_len(len);
                    }
                }
                None => {
                    let _ = fs::remove_file(&entry);
                }
            }
        }
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let Ok(entries) = fs::read_dir(dir) else {
            return out;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
        out
    }
}
