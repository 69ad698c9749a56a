//! The bootstrap peer's key file: the same peer id across restarts.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use libp2p::identity::Keypair;

/// Why the key file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The file exists but holds no key.
    #[error("{} is not a key file (64 hex characters); restore it from its backup", .0.display())]
    Malformed(PathBuf),
    /// The file could not be read or created.
    #[error("cannot {action} the key file {}: {source}", path.display())]
    Io {
        /// "read" or "create".
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Loads the hex ed25519 secret in `path`, or creates one there (mode 0600, never overwriting an
/// existing file).
pub fn load_or_create(path: &Path) -> Result<Keypair, KeyError> {
    let io = |action, source| KeyError::Io {
        action,
        path: path.to_owned(),
        source,
    };
    let secret: Vec<u8> = match std::fs::read_to_string(path) {
        Ok(text) => hex::decode(text.trim())
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or_else(|| KeyError::Malformed(path.to_owned()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret)
                .map_err(|e| io("create", std::io::Error::other(e.to_string())))?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| io("create", e))?;
            writeln!(file, "{}", hex::encode(secret)).map_err(|e| io("create", e))?;
            file.sync_all().map_err(|e| io("create", e))?;
            secret.to_vec()
        }
        Err(e) => return Err(io("read", e)),
    };
    let secret = libp2p::identity::ed25519::SecretKey::try_from_bytes(secret)
        .map_err(|_| KeyError::Malformed(path.to_owned()))?;
    Ok(Keypair::from(libp2p::identity::ed25519::Keypair::from(
        secret,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_file_gives_the_same_peer_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let a = load_or_create(&path).unwrap().public().to_peer_id();
        let b = load_or_create(&path).unwrap().public().to_peer_id();
        assert_eq!(a, b);
        std::fs::write(&path, "garbage").unwrap();
        assert!(
            load_or_create(&path)
                .unwrap_err()
                .to_string()
                .contains("not a key file")
        );
    }
}
