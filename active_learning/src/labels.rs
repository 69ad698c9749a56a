//! The label set of a dataset: class names in a fixed order, and the class index of each.

use std::collections::BTreeSet;

/// A label that is not in the dataset's label set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("label {label:?} is not one of the dataset's {count} classes")]
pub struct UnknownLabel {
    /// The label that was given.
    pub label: String,
    /// How many classes the label set has.
    pub count: usize,
}

/// Class names, sorted and distinct; a class's index is its position.
///
/// Every node that builds the label set from the same names gets the same indices, so models
/// and probability tables agree on what column `i` means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSet {
    names: Vec<String>,
}

impl LabelSet {
    /// The label set of `names` (duplicates are merged, order does not matter).
    pub fn new<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let names: BTreeSet<String> = names.into_iter().map(Into::into).collect();
        Self {
            names: names.into_iter().collect(),
        }
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are no classes.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The class names in index order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The name of class `index`, if it exists.
    pub fn name(&self, index: usize) -> Option<&str> {
        self.names.get(index).map(String::as_str)
    }

    /// The index of `label`, or an error naming it when it is not in the set.
    pub fn index(&self, label: &str) -> Result<usize, UnknownLabel> {
        self.names
            .binary_search_by(|n| n.as_str().cmp(label))
            .map_err(|_| UnknownLabel {
                label: label.to_owned(),
                count: self.names.len(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_sorted_positions_and_unknown_labels_are_errors() {
        let set = LabelSet::new(["dog", "cat", "dog", "bird"]);
        assert_eq!(set.names(), ["bird", "cat", "dog"]);
        assert_eq!(set.index("cat"), Ok(1));
        assert_eq!(set.name(2), Some("dog"));
        let err = set.index("cow").unwrap_err();
        assert_eq!(err.label, "cow");
        assert!(err.to_string().contains("\"cow\""));
    }
}
