//! The data owner's policy for a dataset: who may label it. A signed, versioned record, replicated
//! like labels and model updates; the highest version signed by the dataset's owner is in force
//! on every node, and every node applies it to everything it holds, retroactively: the labels of
//! a banned or non-admitted annotator leave consensus, statistics, exports and the merged model.
//!
//! Canonical encoding (integers little-endian), signed with ed25519 by the owner's key over
//! `b"swarmlabel/policy/v1" ‖ 0x00 ‖ encoding`:
//!
//! ```text
//! "SWLPOL01" ‖ dataset id (32) ‖ version u64 ‖ time_ms u64 ‖ admission u8 (0 open, 1 allowlist)
//!   ‖ allowed count u32 ‖ allowed × key (32), strictly ascending
//!   ‖ banned count u32 ‖ banned × (key (32) ‖ reason length u8 ‖ reason, UTF-8), keys strictly ascending
//! ‖ signature (64)
//! ```
//!
//! At most [`MAX_ENTRIES`] keys in all and [`MAX_REASON_BYTES`] per reason, so a signed policy is
//! under 700 KB and fits a gossip message.

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, VerifyingKey};

use crate::annotation::{AnnotatorKey, DatasetId, Signer};
use swarmlabel_ids::domain_message;

/// The signature domain of policies.
pub const DOMAIN: &str = "swarmlabel/policy/v1";
/// Allowed and banned keys in all, at most.
pub const MAX_ENTRIES: usize = 4_096;
/// Bytes of a ban's reason at most.
pub const MAX_REASON_BYTES: usize = 128;
/// Bytes of a signed policy at most.
pub const MAX_SIGNED_LEN: usize =
    8 + 32 + 8 + 8 + 1 + 4 + 4 + MAX_ENTRIES * (32 + 1 + MAX_REASON_BYTES) + 64;
const MAGIC: &[u8; 8] = b"SWLPOL01";

/// Who may label.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Admission {
    /// Anyone not banned.
    #[default]
    Open,
    /// Only these keys (and never a banned one).
    Allowlist(Vec<AnnotatorKey>),
}

/// A dataset owner's policy (unsigned).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The dataset.
    pub dataset: DatasetId,
    /// Higher versions replace lower ones.
    pub version: u64,
    /// When it was made (the owner's clock, milliseconds since 1970): informative.
    pub time_ms: u64,
    /// Who may label.
    pub admission: Admission,
    /// Banned keys, with the owner's reason.
    pub banned: BTreeMap<AnnotatorKey, String>,
}

impl Policy {
    /// The policy in force before the owner signs one: open, nobody banned.
    pub fn open(dataset: DatasetId) -> Self {
        Self {
            dataset,
            version: 0,
            time_ms: 0,
            admission: Admission::Open,
            banned: BTreeMap::new(),
        }
    }

    /// Whether `key`'s annotations count (for a decoded or signed policy, whose allowlist is
    /// sorted).
    pub fn admits(&self, key: &AnnotatorKey) -> bool {
        if self.banned.contains_key(key) {
            return false;
        }
        match &self.admission {
            Admission::Open => true,
            Admission::Allowlist(keys) => keys.binary_search(key).is_ok(),
        }
    }

    /// The canonical encoding (allowed keys sorted and deduplicated first); an error when over
    /// the bounds.
    pub fn encode(&self) -> Result<Vec<u8>, PolicyError> {
        let allowed: Vec<AnnotatorKey> = match &self.admission {
            Admission::Open => Vec::new(),
            Admission::Allowlist(keys) => {
                let mut keys = keys.clone();
                keys.sort_unstable();
                keys.dedup();
                keys
            }
        };
        if allowed.len() + self.banned.len() > MAX_ENTRIES {
            return Err(PolicyError::TooLarge);
        }
        let mut out = Vec::with_capacity(128 + allowed.len() * 32 + self.banned.len() * 64);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.dataset.0);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.time_ms.to_le_bytes());
        out.push(u8::from(matches!(self.admission, Admission::Allowlist(_))));
        out.extend_from_slice(&(allowed.len() as u32).to_le_bytes());
        for key in &allowed {
            out.extend_from_slice(&key.0);
        }
        out.extend_from_slice(&(self.banned.len() as u32).to_le_bytes());
        for (key, reason) in &self.banned {
            if reason.len() > MAX_REASON_BYTES {
                return Err(PolicyError::ReasonTooLong);
            }
            out.extend_from_slice(&key.0);
            out.push(reason.len() as u8);
            out.extend_from_slice(reason.as_bytes());
        }
        Ok(out)
    }

    /// Decodes a canonical encoding strictly (bounds, ascending keys, UTF-8, nothing trailing).
    pub fn decode(bytes: &[u8]) -> Result<Policy, PolicyError> {
        let mut r = Reader(bytes);
        if r.take(8)? != MAGIC {
            return Err(PolicyError::Malformed("not a policy (bad magic)"));
        }
        let dataset = DatasetId(r.array()?);
        let version = u64::from_le_bytes(r.array()?);
        let time_ms = u64::from_le_bytes(r.array()?);
        let kind = r.take(1)?[0];
        let allowed_count = r.count()?;
        let mut allowed = Vec::with_capacity(allowed_count);
        for _ in 0..allowed_count {
            let key = AnnotatorKey(r.array()?);
            if allowed.last().is_some_and(|last| *last >= key) {
                return Err(PolicyError::Malformed(
                    "allowed keys not strictly ascending",
                ));
            }
            allowed.push(key);
        }
        let admission = match kind {
            0 if allowed.is_empty() => Admission::Open,
            1 => Admission::Allowlist(allowed),
            _ => return Err(PolicyError::Malformed("unknown admission")),
        };
        let banned_count = r.count()?;
        let entries = match &admission {
            Admission::Open => 0,
            Admission::Allowlist(keys) => keys.len(),
        };
        if entries + banned_count > MAX_ENTRIES {
            return Err(PolicyError::TooLarge);
        }
        let mut banned = BTreeMap::new();
        let mut last: Option<AnnotatorKey> = None;
        for _ in 0..banned_count {
            let key = AnnotatorKey(r.array()?);
            if last.is_some_and(|l| l >= key) {
                return Err(PolicyError::Malformed("banned keys not strictly ascending"));
            }
            last = Some(key);
            let len = usize::from(r.take(1)?[0]);
            if len > MAX_REASON_BYTES {
                return Err(PolicyError::ReasonTooLong);
            }
            let reason = std::str::from_utf8(r.take(len)?)
                .map_err(|_| PolicyError::Malformed("a reason that is not UTF-8"))?;
            banned.insert(key, reason.to_owned());
        }
        if !r.0.is_empty() {
            return Err(PolicyError::Malformed("trailing bytes"));
        }
        Ok(Policy {
            dataset,
            version,
            time_ms,
            admission,
            banned,
        })
    }
}

/// A policy with its owner's signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedPolicy {
    policy: Policy,
    encoded: Vec<u8>,
    signature: [u8; 64],
}

impl SignedPolicy {
    /// Signs `policy` with the owner's key (its allowlist sorted and deduplicated, as encoded).
    pub fn sign(policy: Policy, owner: &impl Signer) -> Result<Self, PolicyError> {
        let encoded = policy.encode()?;
        let policy = Policy::decode(&encoded)?;
        let signature = owner.sign(DOMAIN, &encoded);
        Ok(Self {
            policy,
            encoded,
            signature,
        })
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The signed record: encoding, then signature.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.encoded.clone();
        out.extend_from_slice(&self.signature);
        out
    }

    /// Decodes a signed record of at most [`MAX_SIGNED_LEN`] bytes (does not verify).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PolicyError> {
        if bytes.len() > MAX_SIGNED_LEN || bytes.len() < 64 {
            return Err(PolicyError::TooLarge);
        }
        let (encoded, signature) = bytes.split_at(bytes.len() - 64);
        let policy = Policy::decode(encoded)?;
        let mut sig = [0u8; 64];
        sig.copy_from_slice(signature);
        Ok(Self {
            policy,
            encoded: encoded.to_vec(),
            signature: sig,
        })
    }

    /// Accepts the policy for `dataset` only if it names that dataset and carries a strict
    /// ed25519 signature by `owner` (the key that signed the dataset's manifest).
    pub fn verify(&self, dataset: DatasetId, owner: &AnnotatorKey) -> Result<(), PolicyError> {
        if self.policy.dataset != dataset {
            return Err(PolicyError::WrongDataset);
        }
        let key = VerifyingKey::from_bytes(&owner.0).map_err(|_| PolicyError::BadSignature)?;
        key.verify_strict(
            &domain_message(DOMAIN, &self.encoded),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| PolicyError::BadSignature)
    }
}

/// Why a policy was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Over [`MAX_ENTRIES`] keys or [`MAX_SIGNED_LEN`] bytes.
    #[error("the policy lists more than {MAX_ENTRIES} keys; ban or admit fewer")]
    TooLarge,
    /// A ban's reason over [`MAX_REASON_BYTES`].
    #[error("a ban's reason is longer than {MAX_REASON_BYTES} bytes; shorten it")]
    ReasonTooLong,
    /// The bytes are not a canonical policy.
    #[error("the policy does not decode: {0}")]
    Malformed(&'static str),
    /// Signed for another dataset.
    #[error("the policy is for another dataset")]
    WrongDataset,
    /// Not signed by the dataset's owner.
    #[error("the policy is not signed by the dataset's owner")]
    BadSignature,
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PolicyError> {
        if self.0.len() < n {
            return Err(PolicyError::Malformed("cut short"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], PolicyError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn count(&mut self) -> Result<usize, PolicyError> {
        let n = u32::from_le_bytes(self.array()?) as usize;
        if n > MAX_ENTRIES {
            return Err(PolicyError::TooLarge);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{annotator, key};

    fn policy() -> Policy {
        let mut p = Policy::open(DatasetId([7; 32]));
        p.version = 3;
        p.time_ms = 1_700_000_000_000;
        p.admission = Admission::Allowlist(vec![annotator(2), annotator(1)]);
        p.banned.insert(annotator(3), "answers at random".into());
        p
    }

    #[test]
    fn round_trips_verifies_and_refuses_every_changed_byte() {
        let owner = key(9);
        let signed = SignedPolicy::sign(policy(), &owner).unwrap();
        let bytes = signed.to_bytes();
        let back = SignedPolicy::from_bytes(&bytes).unwrap();
        assert_eq!(back.policy(), signed.policy());
        let owner_key = AnnotatorKey(owner.verifying_key().to_bytes());
        back.verify(DatasetId([7; 32]), &owner_key).unwrap();
        assert_eq!(
            back.verify(DatasetId([8; 32]), &owner_key),
            Err(PolicyError::WrongDataset)
        );
        assert_eq!(
            back.verify(
                DatasetId([7; 32]),
                &AnnotatorKey(key(1).verifying_key().to_bytes())
            ),
            Err(PolicyError::BadSignature)
        );
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            let accepted = SignedPolicy::from_bytes(&bad)
                .is_ok_and(|p| p.verify(DatasetId([7; 32]), &owner_key).is_ok());
            assert!(!accepted, "flipping byte {i} was accepted");
        }
    }

    #[test]
    fn admits_the_allowlist_minus_the_banned() {
        let signed = SignedPolicy::sign(policy(), &key(9)).unwrap();
        let p = signed.policy();
        assert!(p.admits(&annotator(1)) && p.admits(&annotator(2)));
        assert!(!p.admits(&annotator(3)), "banned");
        assert!(!p.admits(&annotator(4)), "not on the allowlist");
        let mut open = Policy::open(DatasetId([7; 32]));
        assert!(open.admits(&annotator(4)));
        open.banned.insert(annotator(4), String::new());
        assert!(!open.admits(&annotator(4)));
    }
}
