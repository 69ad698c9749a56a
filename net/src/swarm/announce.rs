//! Dataset announcements on the gossip topic [`TOPIC`]: a data owner's (or any provider's) signed
//! manifest root, so that peers learn which datasets exist and who serves them.
//!
//! Encoding: `SWLANN01` (8 bytes), a `u64` little-endian sequence number (the sender's clock in
//! milliseconds: gossipsub drops a message identical to one it has seen, so each re-announcement
//! must differ), then the signed root bytes (`docs/formats.md`). The gossip message itself is
//! signed by the sender's libp2p key (strict validation), which names the provider.

use swarmlabel_store::dataset::DatasetId;
use swarmlabel_store::dataset::manifest::{DecodeError, SignedRoot};

/// The gossipsub topic of dataset announcements.
pub const TOPIC: &str = "/swarmlabel/datasets/1";
/// Bytes of an announcement at most (also the gossipsub message limit every peer sets).
pub const MAX_LEN: usize = 1024 * 1024;
const MAGIC: &[u8; 8] = b"SWLANN01";

/// A decoded, signature-checked announcement.
#[derive(Debug, Clone)]
pub struct Announcement {
    /// The sender's sequence number.
    pub sequence: u64,
    /// The dataset's signed root (signature verified).
    pub root: SignedRoot,
}

impl Announcement {
    /// The announced dataset.
    pub fn dataset(&self) -> DatasetId {
        self.root.id()
    }

    /// Encodes the announcement.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.root.bytes().len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.sequence.to_le_bytes());
        out.extend_from_slice(self.root.bytes());
        out
    }

    /// The announcement of `root` now: its sequence number is the clock in milliseconds, so that
    /// each re-announcement differs from the last.
    pub fn now(root: &SignedRoot) -> Announcement {
        let sequence = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Announcement {
            sequence,
            root: root.clone(),
        }
    }

    /// Decodes an announcement from a peer and verifies the root's signature.
    pub fn decode(bytes: &[u8]) -> Result<Announcement, DecodeError> {
        if bytes.len() > MAX_LEN {
            return Err(DecodeError::Bounds("announcement size"));
        }
        if bytes.len() < 16 || &bytes[..8] != MAGIC {
            return Err(DecodeError::Magic("announcement"));
        }
        let sequence = u64::from_le_bytes(
            bytes[8..16]
                .try_into()
                .map_err(|_| DecodeError::Truncated)?,
        );
        let root = SignedRoot::decode(&bytes[16..])?;
        Ok(Announcement { sequence, root })
    }
}
