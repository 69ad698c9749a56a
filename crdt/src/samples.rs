//! The samples of a dataset: which sample ids an annotation may name.
//!
//! Taken from the signed manifest's pages. A replica given its dataset's samples refuses, and
//! readers ignore, annotations of samples the manifest does not list: a flood of labels for
//! samples that do not exist costs a peer nothing to make, and would otherwise fill the shards,
//! the statistics and the exports.

use crate::annotation::SampleId;

/// A set of sample ids, sorted (32 bytes per sample).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Samples(Box<[SampleId]>);

impl Samples {
    /// Whether `sample` is one of the set.
    pub fn contains(&self, sample: &SampleId) -> bool {
        self.0.binary_search(sample).is_ok()
    }

    /// The number of samples.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<SampleId> for Samples {
    fn from_iter<I: IntoIterator<Item = SampleId>>(ids: I) -> Self {
        let mut ids: Vec<SampleId> = ids.into_iter().collect();
        ids.sort_unstable();
        ids.dedup();
        Samples(ids.into_boxed_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_exactly_the_ids_given() {
        let set: Samples = [3u8, 1, 2, 3].iter().map(|&b| SampleId([b; 32])).collect();
        assert_eq!(set.len(), 3);
        assert!(set.contains(&SampleId([2; 32])));
        assert!(!set.contains(&SampleId([4; 32])));
    }
}
