//! The node's home directory: its key, its config and its stores.
//!
//! ```text
//! HOME/
//!   format         "swarmlabel-home 1": the layout version (a home without it predates it and
//!                  is the same layout, so opening it writes the file)
//!   key            ed25519 secret, hex, mode 0600 (the libp2p identity, signs everything)
//!   config.toml    listen and bootstrap addresses
//!   lock           advisory lock: imports share it, `gc` takes it alone
//!   blobs/ab/cd…   content-addressed blobs (samples and manifest pages)
//!   datasets/ID    the signed manifest root of each listed dataset
//! ```

use crate::fs::write_atomic;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::identity::{Identity, IdentityError};
use crate::store::BlobStore;

/// The layout version of a home this build writes and reads (`HOME/format`). Files inside carry
/// their own versions (manifest roots and pages, record logs, registries, gold files).
pub const HOME_FORMAT: u32 = 1;
const FORMAT_PREFIX: &str = "swarmlabel-home ";

/// The environment variable that names the home when `--home` is not given.
pub const HOME_ENV: &str = "SWARMLABEL_HOME";

/// Errors of opening or initialising a home.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HomeError {
    /// The home has no key yet.
    #[error("{} is not a swarmlabel home yet; run `swarmlabel init` first (or pass --home)", .0.display())]
    NotInitialised(PathBuf),
    /// `init` would replace an existing key.
    #[error(
        "a key already exists at {}; pass --force to replace it (the node's peer id will change; \
         the old key is kept beside it)",
        .0.display()
    )]
    KeyExists(PathBuf),
    /// No home was given and the platform has no data directory.
    #[error("cannot find a data directory for this user; pass --home DIR or set {HOME_ENV}")]
    NoDefault,
    /// The key could not be loaded or saved.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The config file is not valid.
    #[error("the config file {} is not valid: {message}; fix it or delete it and run `swarmlabel init`", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A file operation failed.
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The home was written by a newer swarmlabel.
    #[error(
        "{} was written by a newer swarmlabel (home format {found}; this one reads {HOME_FORMAT}); \
         upgrade swarmlabel, or use another home with --home",
        .path.display()
    )]
    Newer {
        /// The home.
        path: PathBuf,
        /// The format it says.
        found: u32,
    },
    /// The format file does not say a format.
    #[error(
        "{} does not say a home format (it should read \"swarmlabel-home {HOME_FORMAT}\"); if this \
         home was made by this swarmlabel, write that line into it",
        .0.display()
    )]
    BadFormat(PathBuf),
    /// Another process holds the home's lock in a way that excludes this operation.
    #[error("{} is busy: {what}; try again when it has finished", .path.display())]
    Busy {
        /// The home.
        path: PathBuf,
        /// What holds it.
        what: &'static str,
    },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> HomeError + 'a {
    move |source| HomeError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// The node's configuration file (`config.toml`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Multiaddresses the node listens on.
    pub listen: Vec<String>,
    /// Multiaddresses (with `/p2p/ID`) of bootstrap peers dialled at start.
    pub bootstrap: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: vec![
                "/ip4/0.0.0.0/tcp/0".into(),
                "/ip4/0.0.0.0/udp/0/quic-v1".into(),
            ],
            bootstrap: Vec::new(),
        }
    }
}

/// An initialised home directory.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// The home to use: `explicit` (from `--home` or [`HOME_ENV`]), else the platform's data
    /// directory (`~/.local/share/swarmlabel` on Linux).
    pub fn default_path(explicit: Option<PathBuf>) -> Result<PathBuf, HomeError> {
        match explicit {
            Some(p) => Ok(p),
            None => dirs::data_dir()
                .map(|d| d.join("swarmlabel"))
                .ok_or(HomeError::NoDefault),
        }
    }

    /// Creates the home at `root`: a new key (refused if one exists, unless `force`; a replaced
    /// key is renamed to `key.replaced-N`, never deleted) and a default config if there is none.
    pub fn init(root: &Path, force: bool) -> Result<(Home, Identity), HomeError> {
        fs::create_dir_all(root).map_err(io_err("create", root))?;
        let home = Home {
            root: root.to_owned(),
        };
        let key = home.key_path();
        if key.exists() {
            if !force {
                return Err(HomeError::KeyExists(key));
            }
            let backup = (1..)
                .map(|n| root.join(format!("key.replaced-{n}")))
                .find(|p| !p.exists())
                .expect("invariant: an unbounded range yields a free name");
            fs::rename(&key, &backup).map_err(io_err("back up", &key))?;
        }
        let identity = Identity::generate()?;
        identity.save(&key)?;
        let config = home.config_path();
        if !config.exists() {
            let text = toml::to_string_pretty(&Config::default())
                .expect("invariant: the default config serialises");
            write_atomic(&config, text.as_bytes()).map_err(io_err("write", &config))?;
        }
        for dir in [home.blob_dir(), home.datasets_dir()] {
            fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        }
        home.write_format()?;
        Ok((home, identity))
    }

    /// Opens an initialised home: one of this format, or an older one, which it brings to this
    /// format (a home without a format file has this layout: the file is written). A home of a
    /// newer format is refused with a sentence, and nothing in it is touched.
    pub fn open(root: &Path) -> Result<Home, HomeError> {
        let home = Home {
            root: root.to_owned(),
        };
        if !home.key_path().exists() {
            return Err(HomeError::NotInitialised(root.to_owned()));
        }
        let path = home.format_path();
        match fs::read_to_string(&path) {
            Ok(text) => {
                let found = text
                    .trim()
                    .strip_prefix(FORMAT_PREFIX)
                    .and_then(|n| n.trim().parse::<u32>().ok())
                    .ok_or_else(|| HomeError::BadFormat(path.clone()))?;
                if found > HOME_FORMAT {
                    return Err(HomeError::Newer {
                        path: root.to_owned(),
                        found,
                    });
                }
                if found < HOME_FORMAT {
                    home.write_format()?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Made before homes had a format: the same layout. A read-only home still opens.
                match home.write_format() {
                    Ok(()) | Err(HomeError::Io { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Err(source) => {
                return Err(HomeError::Io {
                    action: "read",
                    path,
                    source,
                });
            }
        }
        Ok(home)
    }

    /// The file that says the home's format.
    pub fn format_path(&self) -> PathBuf {
        self.root.join("format")
    }

    fn write_format(&self) -> Result<(), HomeError> {
        let path = self.format_path();
        write_atomic(&path, format!("{FORMAT_PREFIX}{HOME_FORMAT}\n").as_bytes())
            .map_err(io_err("write", &path))
    }

    /// The home directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The node's key file.
    pub fn key_path(&self) -> PathBuf {
        self.root.join("key")
    }

    /// The config file.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    /// The folder of the dataset listings (`datasets/`).
    pub fn datasets_dir(&self) -> PathBuf {
        self.root.join("datasets")
    }

    /// The node's identity.
    pub fn identity(&self) -> Result<Identity, HomeError> {
        Ok(Identity::load(&self.key_path())?)
    }

    /// The node's config (defaults for a missing file).
    pub fn config(&self) -> Result<Config, HomeError> {
        let path = self.config_path();
        match fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| HomeError::Config {
                path,
                message: e.message().to_owned(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }

    /// The blob store.
    pub fn blobs(&self) -> BlobStore {
        BlobStore::new(self.blob_dir())
    }

    /// Takes the home's lock shared (imports, fetches: they may run side by side).
    pub fn lock_shared(&self) -> Result<HomeLock, HomeError> {
        let file = self.lock_file()?;
        file.lock_shared().map_err(io_err("lock", &self.root))?;
        Ok(HomeLock { _file: file })
    }

    /// Takes the home's lock alone without waiting (`gc`: nothing may add blobs meanwhile).
    pub fn try_lock_exclusive(&self) -> Result<HomeLock, HomeError> {
        let file = self.lock_file()?;
        match file.try_lock() {
            Ok(()) => Ok(HomeLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(HomeError::Busy {
                path: self.root.clone(),
                what: "another swarmlabel process (an import or a running node) is using it",
            }),
            Err(fs::TryLockError::Error(e)) => Err(io_err("lock", &self.root)(e)),
        }
    }

    /// Takes the home's run lock without waiting: one running node per home (two would append to
    /// the same record logs, each cutting back to its own idea of their length on a failed
    /// write, and compact over each other). Held for as long as the node runs.
    pub fn try_lock_run(&self) -> Result<HomeLock, HomeError> {
        let path = self.root.join("run.lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        match file.try_lock() {
            Ok(()) => Ok(HomeLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(HomeError::Busy {
                path: self.root.clone(),
                what: "another `swarmlabel run` (or the demo) runs on this home; stop it first, or give \
                       each node its own --home",
            }),
            Err(fs::TryLockError::Error(e)) => Err(io_err("lock", &path)(e)),
        }
    }

    fn lock_file(&self) -> Result<File, HomeError> {
        let path = self.root.join("lock");
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("open", &path))
    }
}

/// A held home lock; released on drop.
#[derive(Debug)]
pub struct HomeLock {
    _file: File,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_refuses_to_replace_a_key_without_force_and_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let (_, first) = Home::init(dir.path(), false).unwrap();
        let err = Home::init(dir.path(), false).unwrap_err();
        assert!(err.to_string().contains("pass --force"), "{err}");
        let home = Home::open(dir.path()).unwrap();
        assert_eq!(home.identity().unwrap().public_key(), first.public_key());
        let (_, second) = Home::init(dir.path(), true).unwrap();
        assert_ne!(second.public_key(), first.public_key());
        let old = Identity::load(&dir.path().join("key.replaced-1")).unwrap();
        assert_eq!(old.public_key(), first.public_key());
        assert_eq!(home.config().unwrap(), Config::default());
    }

    #[test]
    fn open_names_an_uninitialised_home() {
        let dir = tempfile::tempdir().unwrap();
        let err = Home::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("run `swarmlabel init` first"), "{err}");
    }

    #[test]
    fn a_second_run_on_one_home_is_refused_while_the_first_runs() {
        let dir = tempfile::tempdir().unwrap();
        let (home, _) = Home::init(&dir.path().join("h"), false).unwrap();
        let first = home.try_lock_run().unwrap();
        let err = home.try_lock_run().unwrap_err();
        assert!(
            err.to_string().contains("another `swarmlabel run`"),
            "{err}"
        );
        drop(first);
        home.try_lock_run().unwrap();
    }

    #[test]
    fn gc_lock_is_refused_while_an_import_holds_the_home() {
        let dir = tempfile::tempdir().unwrap();
        let (home, _) = Home::init(dir.path(), false).unwrap();
        let shared = home.lock_shared().unwrap();
        assert!(matches!(
            home.try_lock_exclusive(),
            Err(HomeError::Busy { .. })
        ));
        drop(shared);
        home.try_lock_exclusive().unwrap();
    }
}
