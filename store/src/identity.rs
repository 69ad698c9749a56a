//! The node's ed25519 identity.
//!
//! One key is the node's libp2p identity (its peer id) and signs dataset manifests and
//! annotations. Every signature is made over a domain tag followed by the message, so that a
//! signature made for one purpose can never be replayed as another.

use std::fmt;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer as _, SigningKey};
use swarmlabel_ids::domain_message;

pub use swarmlabel_ids::{PublicKey, SIGNATURE_LEN};

/// Errors of loading, creating or saving an identity.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The operating system's random source failed.
    #[error("could not read random bytes from the operating system to make a key: {0}")]
    Random(String),
    /// The key file could not be read or written.
    #[error("could not {action} the key file {}: {source}", path.display())]
    Io {
        /// What was being done: "read" or "write".
        action: &'static str,
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The key file does not hold a key in our format.
    #[error(
        "the key file {} is not a swarmlabel key (expected 64 hex characters); restore it from a \
         backup or make a new one with `swarmlabel init --force`",
        path.display()
    )]
    Malformed {
        /// The key file.
        path: PathBuf,
    },
}

/// The node's secret key. `Debug` shows only the public half.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("public", &self.public_key())
            .finish()
    }
}

impl Identity {
    /// Makes a new key from the operating system's random source.
    pub fn generate() -> Result<Self, IdentityError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| IdentityError::Random(e.to_string()))?;
        Ok(Self::from_secret_bytes(secret))
    }

    /// The identity of a 32-byte ed25519 secret (seed). Deterministic: tests and benchmarks use it
    /// to make reproducible identities.
    pub fn from_secret_bytes(secret: [u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(&secret),
        }
    }

    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.key.verifying_key().to_bytes())
    }

    /// The libp2p keypair of this same key.
    pub fn to_libp2p_keypair(&self) -> libp2p_identity::Keypair {
        let secret = libp2p_identity::ed25519::SecretKey::try_from_bytes(self.key.to_bytes())
            .expect("invariant: a 32-byte ed25519 seed is always a valid libp2p secret key");
        libp2p_identity::Keypair::from(libp2p_identity::ed25519::Keypair::from(secret))
    }

    /// The libp2p peer id of this key.
    pub fn peer_id(&self) -> libp2p_identity::PeerId {
        self.to_libp2p_keypair().public().to_peer_id()
    }

    /// Signs `message` under `domain` (see the module docs).
    pub fn sign(&self, domain: &str, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.key.sign(&domain_message(domain, message)).to_bytes()
    }

    /// The ed25519 signing key itself, for signers that take one (annotations and model updates
    /// sign with the same `domain ‖ 0x00 ‖ message` scheme as [`Identity::sign`]).
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// Loads a key file written by [`Identity::save`].
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let text = fs::read_to_string(path).map_err(|source| IdentityError::Io {
            action: "read",
            path: path.to_owned(),
            source,
        })?;
        let malformed = || IdentityError::Malformed {
            path: path.to_owned(),
        };
        let bytes = hex::decode(text.trim()).map_err(|_| malformed())?;
        let secret: [u8; 32] = bytes.try_into().map_err(|_| malformed())?;
        Ok(Self::from_secret_bytes(secret))
    }

    /// Writes the key to `path` atomically (temporary file, fsync, rename), readable by the
    /// owner only (mode 0600).
    pub fn save(&self, path: &Path) -> Result<(), IdentityError> {
        let io = |source| IdentityError::Io {
            action: "write",
            path: path.to_owned(),
            source,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        // tempfile creates files with mode 0600 on Unix.
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        writeln!(tmp, "{}", hex::encode(self.key.to_bytes())).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        crate::fs::sync_dir(dir).map_err(io)?;
        Ok(())
    }
}

/// The libp2p peer id of `key`, or `None` when the bytes are not a valid ed25519 point (no
/// peer can own such a key).
pub fn peer_id_of(key: &PublicKey) -> Option<libp2p_identity::PeerId> {
    let key = libp2p_identity::ed25519::PublicKey::try_from_bytes(&key.0).ok()?;
    Some(libp2p_identity::PublicKey::from(key).to_peer_id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_checks_domain_and_message() {
        let id = Identity::from_secret_bytes([7; 32]);
        let sig = id.sign("a", b"hello");
        assert!(id.public_key().verify("a", b"hello", &sig));
        assert!(!id.public_key().verify("b", b"hello", &sig));
        assert!(!id.public_key().verify("a", b"hellp", &sig));
        let other = Identity::from_secret_bytes([8; 32]);
        assert!(!other.public_key().verify("a", b"hello", &sig));
    }

    #[test]
    fn libp2p_identity_is_the_same_key() {
        let id = Identity::from_secret_bytes([9; 32]);
        assert_eq!(peer_id_of(&id.public_key()), Some(id.peer_id()));
    }

    #[test]
    fn save_and_load_round_trip_with_owner_only_mode() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let id = Identity::generate().unwrap();
        id.save(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(Identity::load(&path).unwrap().public_key(), id.public_key());
        fs::write(&path, "not a key").unwrap();
        let err = Identity::load(&path).unwrap_err().to_string();
        assert!(err.contains("is not a swarmlabel key"), "{err}");
    }
}
