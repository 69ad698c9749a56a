#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

use std::fmt;
use std::str::FromStr;

pub mod wire;

/// The bytes an ed25519 signature of `message` covers: `domain`, a zero byte, then `message`.
/// Every signed noun names its own domain, so a signature made for one kind of record never
/// verifies as another.
pub fn domain_message(domain: &str, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(domain.len() + 1 + message.len());
    out.extend_from_slice(domain.as_bytes());
    out.push(0);
    out.extend_from_slice(message);
    out
}

/// The BLAKE3 hash of a blob's bytes: a sample id, a page id, a weights hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId(pub [u8; 32]);

impl BlobId {
    /// The id of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// The id as 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({})", &self.to_hex()[..12])
    }
}

/// A string that is not 64 hex characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a 64-character hex hash")]
pub struct ParseIdError(pub String);

fn parse32(s: &str) -> Result<[u8; 32], ParseIdError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|_| ParseIdError(s.to_owned()))?;
    Ok(out)
}

impl FromStr for BlobId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse32(s).map(Self)
    }
}

/// A dataset's id: the BLAKE3 hash of its signed manifest root, which is stored as a blob under
/// the same hash ([`DatasetId::blob`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DatasetId(pub [u8; 32]);

impl DatasetId {
    /// The id of the signed root `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(BlobId::of(bytes).0)
    }

    /// The blob holding the signed root (the same 32 bytes).
    pub fn blob(&self) -> BlobId {
        BlobId(self.0)
    }

    /// The id as 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl From<BlobId> for DatasetId {
    fn from(id: BlobId) -> Self {
        Self(id.0)
    }
}

impl fmt::Display for DatasetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for DatasetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatasetId({})", &self.to_hex()[..12])
    }
}

impl FromStr for DatasetId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse32(s).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_as_hex_and_parse_back() {
        let id = BlobId::of(b"x");
        assert_eq!(id.to_string().len(), 64);
        assert_eq!(id.to_string().parse::<BlobId>(), Ok(id));
        assert!(id.to_string()[..63].parse::<BlobId>().is_err(), "short");
        assert!(format!("{id}0").parse::<BlobId>().is_err(), "long");
        assert!("zz".repeat(32).parse::<DatasetId>().is_err(), "not hex");
        assert_eq!(
            format!("{:?}", DatasetId(id.0)),
            format!("DatasetId({})", &id.to_hex()[..12])
        );
    }
}
