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

/// 32 bytes that print as 64 lowercase hex characters, parse from them, serialize as them
/// (in JSON and every other serde format) and show a short prefix in `Debug`.
macro_rules! hex32 {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The id as 64 lowercase hex characters.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), &self.to_hex()[..12])
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse32(s).map(Self)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex32!(
    /// The BLAKE3 hash of a blob's bytes: a sample ([`SampleId`]), a manifest page, model weights
    /// ([`WeightsHash`]).
    BlobId
);

/// A sample's id is the [`BlobId`] of its bytes: the same type, so fetching, storing and
/// labelling a sample never convert between two.
pub use BlobId as SampleId;

/// A model's weights are named by the [`BlobId`] of their safetensors bytes: peers fetch and
/// verify them as any blob.
pub use BlobId as WeightsHash;

impl BlobId {
    /// The id of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
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

hex32!(
    /// A dataset's id: the BLAKE3 hash of its signed manifest root, which is stored as a blob
    /// under the same hash ([`DatasetId::blob`]).
    DatasetId
);

impl DatasetId {
    /// The id of the signed root `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(BlobId::of(bytes).0)
    }

    /// The blob holding the signed root (the same 32 bytes).
    pub fn blob(&self) -> BlobId {
        BlobId(self.0)
    }
}

impl From<BlobId> for DatasetId {
    fn from(id: BlobId) -> Self {
        Self(id.0)
    }
}

hex32!(
    /// An ed25519 public key: a node (its libp2p identity), a data owner, an annotator
    /// ([`AnnotatorKey`]), a model's author.
    PublicKey
);

/// An annotator is the [`PublicKey`] that signs their annotations.
pub use PublicKey as AnnotatorKey;

/// Length of an ed25519 signature in bytes.
pub const SIGNATURE_LEN: usize = 64;

impl PublicKey {
    /// Whether `signature` is a valid signature of `message` under `domain` by this key (see
    /// [`domain_message`]). Uses strict verification (rejects small-order keys and
    /// non-canonical signatures).
    pub fn verify(&self, domain: &str, message: &[u8], signature: &[u8; SIGNATURE_LEN]) -> bool {
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        key.verify_strict(
            &domain_message(domain, message),
            &ed25519_dalek::Signature::from_bytes(signature),
        )
        .is_ok()
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

    #[test]
    fn ids_serialize_as_their_hex() {
        let id = BlobId::of(b"x");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<SampleId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<PublicKey>("\"00\"").is_err());
    }
}
