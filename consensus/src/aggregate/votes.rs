//! The input of aggregation: who voted which label on which sample, as dense indices.

use std::collections::BTreeMap;

use swarmlabel_crdt::{AnnotatorKey, SampleId, SignedAnnotation};

/// One vote: rater `rater` gave label `label` to item `item` (dense indices).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vote {
    /// The item (sample) index.
    pub item: u32,
    /// The rater (annotator) index.
    pub rater: u32,
    /// The label index, below the table's class count.
    pub label: u16,
}

/// Errors of building a vote table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VoteError {
    /// A label index not below the class count.
    #[error("label {label} is outside the label set of {classes} labels")]
    UnknownLabel {
        /// The label given.
        label: u16,
        /// The class count.
        classes: u16,
    },
    /// A table needs at least one class.
    #[error("a vote table needs at least one label")]
    NoClasses,
}

/// A table of votes over `classes` labels. Items and raters are dense indices; when built from
/// annotations, [`Votes::samples`] and [`Votes::annotators`] map them back to ids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Votes {
    classes: u16,
    items: u32,
    raters: u32,
    votes: Vec<Vote>,
    samples: Vec<SampleId>,
    annotators: Vec<AnnotatorKey>,
}

impl Votes {
    /// An empty table over `classes` labels.
    pub fn new(classes: u16) -> Result<Self, VoteError> {
        if classes == 0 {
            return Err(VoteError::NoClasses);
        }
        Ok(Self {
            classes,
            ..Self::default()
        })
    }

    /// Adds a vote. A rater should vote at most once per item (the CRDT guarantees that for
    /// tables built from annotations).
    pub fn push(&mut self, item: u32, rater: u32, label: u16) -> Result<(), VoteError> {
        if label >= self.classes {
            return Err(VoteError::UnknownLabel {
                label,
                classes: self.classes,
            });
        }
        self.items = self.items.max(item + 1);
        self.raters = self.raters.max(rater + 1);
        self.votes.push(Vote { item, rater, label });
        Ok(())
    }

    /// The label votes among `annotations` (skips and unsure answers are left out). Items are
    /// the samples in sorted order, raters the annotators in sorted order. Labels must be below
    /// `classes` (true of validated annotations of a dataset with `classes` labels).
    pub fn from_annotations(
        annotations: &[SignedAnnotation],
        classes: u16,
    ) -> Result<Self, VoteError> {
        let mut table = Self::new(classes)?;
        let mut samples = BTreeMap::new();
        let mut annotators = BTreeMap::new();
        for a in annotations {
            let a = a.annotation();
            if a.value.label().is_some() {
                samples.entry(a.sample).or_insert(0u32);
                annotators.entry(a.annotator).or_insert(0u32);
            }
        }
        for (i, v) in samples.values_mut().enumerate() {
            *v = u32::try_from(i).unwrap_or(u32::MAX);
        }
        for (i, v) in annotators.values_mut().enumerate() {
            *v = u32::try_from(i).unwrap_or(u32::MAX);
        }
        for a in annotations {
            let a = a.annotation();
            if let Some(label) = a.value.label() {
                table.push(samples[&a.sample], annotators[&a.annotator], label)?;
            }
        }
        table.samples = samples.into_keys().collect();
        table.annotators = annotators.into_keys().collect();
        Ok(table)
    }

    /// The number of labels.
    pub fn classes(&self) -> u16 {
        self.classes
    }

    /// The number of items (one more than the largest item index).
    pub fn items(&self) -> u32 {
        self.items
    }

    /// The number of raters (one more than the largest rater index).
    pub fn raters(&self) -> u32 {
        self.raters
    }

    /// All votes, in insertion order.
    pub fn votes(&self) -> &[Vote] {
        &self.votes
    }

    /// Sample ids by item index (empty unless built by [`Votes::from_annotations`]).
    pub fn samples(&self) -> &[SampleId] {
        &self.samples
    }

    /// Annotator keys by rater index (empty unless built by [`Votes::from_annotations`]).
    pub fn annotators(&self) -> &[AnnotatorKey] {
        &self.annotators
    }

    /// Votes per label for every item: `items × classes` counts, row-major.
    pub fn counts(&self) -> Vec<u32> {
        let k = usize::from(self.classes);
        let mut counts = vec![0u32; self.items as usize * k];
        for v in &self.votes {
            counts[v.item as usize * k + usize::from(v.label)] += 1;
        }
        counts
    }

    /// The votes grouped by item: `(offsets, votes)` where the votes of item `i` are
    /// `votes[offsets[i]..offsets[i + 1]]`.
    pub(crate) fn by_item(&self) -> (Vec<usize>, Vec<Vote>) {
        let mut sorted = self.votes.clone();
        sorted.sort_unstable();
        let mut offsets = vec![0usize; self.items as usize + 1];
        for v in &sorted {
            offsets[v.item as usize + 1] += 1;
        }
        for i in 0..self.items as usize {
            offsets[i + 1] += offsets[i];
        }
        (offsets, sorted)
    }
}
