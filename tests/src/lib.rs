#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod labels;
pub mod models;
pub mod network;
pub mod raw;

use std::path::{Path, PathBuf};

use swarmlabel_store::{Home, Identity};

/// A file of the repository's test data (`testdata/`, with its sources and licences).
pub fn test_data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata")
        .join(name)
}

/// A node home in a temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempHome {
    /// The temporary directory (holds the home and any scratch files).
    pub dir: tempfile::TempDir,
    /// The initialised home.
    pub home: Home,
    /// Its identity.
    pub identity: Identity,
}

impl TempHome {
    /// Initialises a fresh home.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory can be created");
        let (home, identity) =
            Home::init(&dir.path().join("home"), false).expect("a fresh home initialises");
        Self {
            dir,
            home,
            identity,
        }
    }
}

impl Default for TempHome {
    fn default() -> Self {
        Self::new()
    }
}
