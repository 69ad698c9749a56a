//! Private gold labels: the owner's answers kept out of the published pages.
//!
//! A dataset created with private gold publishes pages without gold labels (its root says
//! `gold_count` 0), so a labeler, honest or not, cannot read the answers off the manifest. The
//! owner's own home keeps them in `datasets/ID.gold`, written durably before the listing that
//! names the dataset, and [`Catalog::gold`] merges them with whatever gold the pages carry: the
//! owner's consensus, gold checks, training and exports use them; nobody else ever sees them.
//!
//! File format: `SLGOLD1\n` ‖ count (u32 LE) ‖ count × (sample id 32 B ‖ label index u16 LE) ‖
//! BLAKE3 of everything before it (32 B).

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;

use super::manifest::MAX_PAGE_SAMPLES;
use super::manifest::MAX_PAGES;
use super::{Catalog, CatalogError, DatasetId, Listed};
use crate::store::BlobId;

const MAGIC: &[u8; 8] = b"SLGOLD1\n";
const ENTRY_LEN: usize = 32 + 2;

impl Catalog {
    /// Where the private gold labels of `id` are kept.
    pub fn private_gold_path(&self, id: &DatasetId) -> PathBuf {
        self.dir.join(format!("{id}.gold"))
    }

    /// Writes the private gold labels of `id` atomically and durably. Call it before
    /// [`Catalog::add`] lists the dataset, so a listed dataset never lacks its gold file.
    pub fn put_private_gold(
        &self,
        id: &DatasetId,
        gold: &[(BlobId, u16)],
    ) -> Result<(), CatalogError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| CatalogError::Io {
            action: "create",
            path: self.dir.clone(),
            source,
        })?;
        let path = self.private_gold_path(id);
        crate::fs::write_atomic(&path, &encode(gold)).map_err(|source| CatalogError::Io {
            action: "write",
            path,
            source,
        })
    }

    /// Every gold label of a listed dataset: those its pages publish and, in the owner's home,
    /// the private ones. Labels outside the label set are dropped. Blocking (reads every page
    /// when the root says some carry gold).
    pub fn gold(&self, listed: &Listed) -> Result<HashMap<BlobId, u16>, CatalogError> {
        let root = listed.root.root();
        let mut gold = HashMap::new();
        if root.gold_count > 0 {
            for index in 0..root.pages.len() {
                let page = self.page(listed, index)?;
                gold.extend(
                    page.samples
                        .iter()
                        .filter_map(|e| e.gold.map(|g| (e.id, g))),
                );
            }
        }
        let path = self.private_gold_path(&listed.id);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(gold),
            Err(source) => {
                return Err(CatalogError::Io {
                    action: "read",
                    path,
                    source,
                });
            }
        };
        let private = decode(&bytes).ok_or(CatalogError::BadGold { path })?;
        let labels = root.labels.len();
        gold.extend(
            private
                .into_iter()
                .filter(|&(_, g)| usize::from(g) < labels),
        );
        Ok(gold)
    }
}

fn encode(gold: &[(BlobId, u16)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + gold.len() * ENTRY_LEN + 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(gold.len() as u32).to_le_bytes());
    for (id, label) in gold {
        out.extend_from_slice(&id.0);
        out.extend_from_slice(&label.to_le_bytes());
    }
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    out
}

/// The pairs of a whole gold file; `None` when any byte of it is wrong.
fn decode(bytes: &[u8]) -> Option<Vec<(BlobId, u16)>> {
    let (body, sum) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
    if blake3::hash(body).as_bytes() != sum {
        return None;
    }
    let rest = body.strip_prefix(MAGIC)?;
    let (count, entries) = rest.split_at_checked(4)?;
    let count = u32::from_le_bytes(count.try_into().ok()?) as usize;
    if count > MAX_PAGES * MAX_PAGE_SAMPLES || entries.len() != count * ENTRY_LEN {
        return None;
    }
    Some(
        entries
            .chunks_exact(ENTRY_LEN)
            .map(|e| {
                let id = BlobId(e[..32].try_into().expect("32 bytes"));
                (id, u16::from_le_bytes([e[32], e[33]]))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs() -> Vec<(BlobId, u16)> {
        (0..5u8)
            .map(|i| (BlobId([i; 32]), u16::from(i % 3)))
            .collect()
    }

    #[test]
    fn a_gold_file_round_trips() {
        assert_eq!(decode(&encode(&pairs())), Some(pairs()));
        assert_eq!(decode(&encode(&[])), Some(vec![]));
    }

    #[test]
    fn any_flipped_byte_or_cut_is_refused() {
        let bytes = encode(&pairs());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x20;
            assert_eq!(decode(&bad), None, "byte {i} flipped");
        }
        for len in 0..bytes.len() {
            assert_eq!(decode(&bytes[..len]), None, "cut at {len}");
        }
    }
}
