//! Durable storage of a dataset's policy:
//!
//! ```text
//! HOME/policy/<dataset id>   the signed policy in force (swarmlabel_crdt::policy), written atomically
//! ```
//!
//! Loading verifies the signature against the dataset's owner again: a damaged or edited file is
//! set aside (`<name>.damaged-<secs>`) and the dataset is open until a peer sends the policy.

use std::fs;
use std::io;
use std::path::PathBuf;
use swarmlabel_ids::PublicKey;

use swarmlabel_crdt::DatasetId;
use swarmlabel_crdt::policy::SignedPolicy;
use swarmlabel_store::home::Home;

/// Where the policy of `dataset` lives in `home`.
pub fn path(home: &Home, dataset: &DatasetId) -> PathBuf {
    home.root().join("policy").join(hex::encode(dataset.0))
}

/// The stored policy of `dataset`, verified against `owner`; `Ok(None)` when there is none.
/// A file that does not verify is set aside and reported as `Err` with one sentence.
pub fn load(
    home: &Home,
    dataset: DatasetId,
    owner: &PublicKey,
) -> io::Result<Result<Option<SignedPolicy>, String>> {
    let path = path(home, &dataset);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Ok(None)),
        Err(e) => return Err(e),
    };
    let checked = SignedPolicy::from_bytes(&bytes).and_then(|p| {
        p.verify(dataset, owner)?;
        Ok(p)
    });
    match checked {
        Ok(p) => Ok(Ok(Some(p))),
        Err(e) => {
            let aside = swarmlabel_store::fs::set_aside(&path)?;
            Ok(Err(format!(
                "the policy file {} is damaged ({e}); it is kept as {}, and the dataset is open \
                 until a peer sends its owner's policy again",
                path.display(),
                aside.display()
            )))
        }
    }
}

/// Writes `policy` atomically and durably.
pub fn save(home: &Home, policy: &SignedPolicy) -> io::Result<()> {
    let path = path(home, &policy.policy().dataset);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
        if let Some(parent) = dir.parent() {
            swarmlabel_store::fs::sync_dir(parent)?;
        }
    }
    swarmlabel_store::fs::write_atomic(&path, &policy.to_bytes())
}
