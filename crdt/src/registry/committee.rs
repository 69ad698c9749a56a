//! Who publishes a model update and is merged in an epoch: a committee of `s` authors drawn by
//! the work the dataset holds signed by each (`docs/architecture.md`, *Bounded model fan-in*).
//! Plain functions, deterministic: every node that counts the same work draws the same committee.
//!
//! - An epoch is counted in labels ([`epoch`]), so it moves only as work is done and nodes that
//!   lag by a few labels are at most one epoch apart.
//! - An author's weight is `floor(log2(1 + labels))` ([`weight`]): a key that signed no label has
//!   weight 0 and is never drawn, so fresh keys buy no seat; the logarithm bounds what volume
//!   buys, and the buckets keep the draw unchanged while counts differ by a few labels (only an
//!   author whose count crosses a power of two between two nodes can move the draw).
//! - The draw ([`committee`]) is weighted sampling without replacement (Efraimidis–Spirakis): the
//!   `s` largest keys `u^(1/w)`, `u` taken from BLAKE3 of the dataset, the epoch and the author,
//!   so no author keeps a seat from one epoch to the next.

use std::cmp::Ordering;

use crate::annotation::{AnnotatorKey, DatasetId};

/// Labels per epoch.
pub const EPOCH_LABELS: u64 = 50;

/// The domain of the draw's hash.
const DOMAIN: &[u8] = b"swarmlabel/committee/v1\0";

/// The epoch of a dataset holding `labels` valid labels.
pub fn epoch(labels: u64) -> u64 {
    labels / EPOCH_LABELS
}

/// The weight of an author who signed `labels` valid labels: `floor(log2(1 + labels))`.
pub fn weight(labels: u64) -> u32 {
    (labels.saturating_add(1)).ilog2()
}

/// The committee size for `authors` authors with work: `max(3, ceil(log2(authors)) + 2)`, so a
/// trimmed mean always has updates to trim and the fan-in grows with the logarithm of the
/// network.
pub fn fan_in(authors: usize) -> usize {
    let log = if authors <= 1 {
        0
    } else {
        (authors - 1).ilog2() as usize + 1
    };
    (log + 2).max(3)
}

/// The committee of `dataset` in `epoch`: the `s` authors of `work` (author, valid labels
/// signed) with the largest draw keys, in the order drawn. Authors without work are never
/// drawn; with fewer than `s` authors of weight above 0, all of them are. The order of `work`
/// does not matter, nor do repeated authors (their largest count counts).
pub fn committee(
    dataset: DatasetId,
    epoch: u64,
    work: impl IntoIterator<Item = (AnnotatorKey, u64)>,
    s: usize,
) -> Vec<AnnotatorKey> {
    let mut best: std::collections::BTreeMap<AnnotatorKey, u64> = std::collections::BTreeMap::new();
    for (author, labels) in work {
        let entry = best.entry(author).or_default();
        *entry = (*entry).max(labels);
    }
    let mut keyed: Vec<(f64, AnnotatorKey)> = best
        .into_iter()
        .filter_map(|(author, labels)| {
            let w = weight(labels);
            (w > 0).then(|| (draw(dataset, epoch, &author).ln() / f64::from(w), author))
        })
        .collect();
    // Largest key first; equal keys (all but impossible) by author, so the order is total.
    keyed.sort_by(|(ka, a), (kb, b)| kb.partial_cmp(ka).unwrap_or(Ordering::Equal).then(a.cmp(b)));
    keyed
        .into_iter()
        .take(s)
        .map(|(_, author)| author)
        .collect()
}

/// `u` in (0, 1) for `author` in `epoch` of `dataset`, uniform and the same on every node.
fn draw(dataset: DatasetId, epoch: u64, author: &AnnotatorKey) -> f64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(DOMAIN);
    hasher.update(&dataset.0);
    hasher.update(&epoch.to_le_bytes());
    hasher.update(&author.0);
    let mut first = [0u8; 8];
    first.copy_from_slice(&hasher.finalize().as_bytes()[..8]);
    // The top 53 bits, centred in their interval: never 0, never 1.
    ((u64::from_le_bytes(first) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> AnnotatorKey {
        AnnotatorKey(*blake3::hash(&i.to_le_bytes()).as_bytes())
    }

    const DATASET: DatasetId = DatasetId([7; 32]);

    #[test]
    fn weights_epochs_and_fan_in() {
        assert_eq!(
            [0, 1, 2, 3, 7, 40, 45, 62, 63].map(weight),
            [0, 1, 1, 2, 3, 5, 5, 5, 6]
        );
        assert_eq!([0, 49, 50, 149].map(epoch), [0, 0, 1, 2]);
        assert_eq!(
            [0, 1, 2, 10, 100, 1_000, 10_000].map(fan_in),
            [3, 3, 3, 6, 9, 12, 16]
        );
    }

    #[test]
    fn the_draw_is_the_same_whatever_the_order_of_the_work() {
        let work: Vec<(AnnotatorKey, u64)> = (0..40).map(|i| (key(i), u64::from(i % 7))).collect();
        let drawn = committee(DATASET, 3, work.clone(), 6);
        assert_eq!(drawn.len(), 6);
        let mut reversed = work.clone();
        reversed.reverse();
        assert_eq!(committee(DATASET, 3, reversed, 6), drawn);
        // Another epoch or another dataset draws afresh.
        assert_ne!(committee(DATASET, 4, work.clone(), 6), drawn);
        assert_ne!(committee(DatasetId([8; 32]), 3, work, 6), drawn);
    }

    #[test]
    fn keys_without_signed_work_never_sit_however_many() {
        let workers = (0..5).map(|i| (key(i), 30));
        let fresh = (1_000..11_000).map(|i| (key(i), 0));
        for epoch in 0..50 {
            let drawn = committee(DATASET, epoch, workers.clone().chain(fresh.clone()), 3);
            assert_eq!(drawn.len(), 3);
            assert!(
                drawn.iter().all(|a| (0..5).any(|i| key(i) == *a)),
                "{drawn:?}"
            );
        }
        // Fewer workers than seats: all of them, and no one else.
        assert_eq!(committee(DATASET, 0, workers.chain(fresh), 9).len(), 5);
    }

    #[test]
    fn counts_that_differ_by_a_few_labels_draw_the_same_committee() {
        let here: Vec<(AnnotatorKey, u64)> =
            (0..30).map(|i| (key(i), 40 + u64::from(i % 20))).collect();
        // Another node has not yet heard of up to 4 labels of each author.
        let there: Vec<(AnnotatorKey, u64)> = here
            .iter()
            .map(|&(a, n)| (a, n.saturating_sub(u64::from(a.0[0] % 5))))
            .collect();
        let same_buckets = here
            .iter()
            .zip(&there)
            .all(|((_, a), (_, b))| weight(*a) == weight(*b));
        assert!(same_buckets, "the test's counts stay in one bucket");
        for epoch in 0..20 {
            assert_eq!(
                committee(DATASET, epoch, here.clone(), 7),
                committee(DATASET, epoch, there.clone(), 7)
            );
        }
    }

    #[test]
    fn seats_follow_work() {
        // Ten authors of weight 1 and ten of weight 4: over many epochs the heavier hold most
        // seats (about 4 in 5 draws of the first seat; the bound leaves room for chance).
        let work: Vec<(AnnotatorKey, u64)> = (0..20)
            .map(|i| (key(i), if i < 10 { 1 } else { 15 }))
            .collect();
        let heavy_first = (0..2_000)
            .filter(|&epoch| {
                let first = committee(DATASET, epoch, work.clone(), 1)[0];
                (10..20).any(|i| key(i) == first)
            })
            .count();
        assert!(
            (1_500..=1_700).contains(&heavy_first),
            "{heavy_first} of 2000"
        );
    }
}
