//! The merged model of a registry: a pure function of the updates in force and their weights, so
//! every node that holds the same registry and weights derives bit-identical merged weights.
//!
//! Determinism comes from a fixed order and fixed arithmetic: updates are taken sorted by peer
//! key, tensors sorted by name, the weighted mean accumulates in `f64` in that order, and the
//! robust modes sort each coordinate's values (`f32::total_cmp`) before reducing them, so their
//! result does not depend on the order at all. The result is rounded to `f32` once.
//!
//! Updates that cannot be merged are left out and reported, each with its peer and the reason
//! ([`Excluded`]): another architecture than the expected (or, without one, the most common), no
//! weights, no labels, other tensor names or lengths than the most common layout, or a NaN or
//! infinite value (never propagated).

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;

use super::update::{Architecture, ModelUpdate, WeightsHash};
use crate::annotation::AnnotatorKey;

/// A model's weights: named `f32` tensors, flattened. Tensor shapes are pinned by the
/// architecture's spec hash; here a tensor's "shape" is its length.
pub type Tensors = [(String, Vec<f32>)];

/// How coordinates are combined.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Method {
    /// The mean weighted by each update's labels trained on. Exact and cheap, but a peer can
    /// claim many labels or send huge values: use it among trusted peers or after [`super::screen`].
    WeightedMean,
    /// Per coordinate, drop the `trim` fraction (in `[0, 0.5)`) of smallest and of largest values
    /// (`floor(trim × n)` each side), and average the rest, unweighted. With `n` updates, up to
    /// `floor(trim × n)` peers sending anything cannot move a coordinate outside the range of the
    /// honest values.
    TrimmedMean {
        /// The fraction trimmed from each side.
        trim: f64,
    },
    /// Per coordinate, the median (the mean of the two middle values for an even count),
    /// unweighted: a minority of peers cannot move a coordinate outside the honest range.
    Median,
}

/// What to merge and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// How coordinates are combined.
    pub method: Method,
    /// The architecture to merge; updates of any other are excluded. `None`: the architecture of
    /// the most peers (ties to the smallest `(spec hash, name)`), which sybil peers can sway, so
    /// prefer naming it when the node knows its model spec.
    pub architecture: Option<Architecture>,
}

/// Why an update is left out of the merge.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Reason {
    /// Another architecture than the one merged.
    Architecture {
        /// The architecture merged.
        expected: Architecture,
        /// The update's architecture.
        found: Architecture,
    },
    /// The caller has no weights for the update's hash (not fetched yet, or failed verification).
    MissingWeights(WeightsHash),
    /// Trained on no labels.
    NoLabels,
    /// Two tensors share a name.
    DuplicateTensor(String),
    /// A value is NaN or infinite.
    NonFinite {
        /// The tensor.
        tensor: String,
        /// The index of the first such value in it.
        index: usize,
    },
    /// A tensor of the merged layout is missing.
    MissingTensor(String),
    /// A tensor that the merged layout does not have.
    UnexpectedTensor(String),
    /// A tensor of another length than in the merged layout.
    Shape {
        /// The tensor.
        tensor: String,
        /// Its length in the merged layout.
        expected: usize,
        /// Its length in the update.
        found: usize,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Architecture { expected, found } => {
                write!(f, "its architecture is {found}, not {expected}")
            }
            Reason::MissingWeights(hash) => write!(f, "its weights {hash} are not available"),
            Reason::NoLabels => f.write_str("it was trained on no labels"),
            Reason::DuplicateTensor(name) => write!(f, "it has two tensors named `{name}`"),
            Reason::NonFinite { tensor, index } => write!(
                f,
                "tensor `{tensor}` holds a NaN or infinite value at index {index}"
            ),
            Reason::MissingTensor(name) => write!(f, "it lacks tensor `{name}`"),
            Reason::UnexpectedTensor(name) => write!(f, "it has an unexpected tensor `{name}`"),
            Reason::Shape {
                tensor,
                expected,
                found,
            } => write!(
                f,
                "tensor `{tensor}` has {found} values where the others have {expected}"
            ),
        }
    }
}

/// An update left out of the merge, with its peer and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the model of peer {peer} (version {version}) is left out of the merge: {reason}")]
pub struct Excluded {
    /// The peer whose update it is.
    pub peer: AnnotatorKey,
    /// The update's version.
    pub version: u64,
    /// Why.
    pub reason: Reason,
}

/// Errors of [`merge`]: no merged model can be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MergeError {
    /// No updates were given.
    #[error("there are no model updates to merge")]
    NoUpdates,
    /// The trim fraction is not in `[0, 0.5)`.
    #[error("the trim fraction must be at least 0 and below 0.5, found {0}")]
    InvalidTrim(f64),
    /// The same peer appears twice (a registry holds one update per peer).
    #[error("peer {0} has two updates in the merge; merge the updates in force of a registry")]
    DuplicatePeer(AnnotatorKey),
    /// Every update was excluded.
    #[error("none of the {} model updates can be merged; the first: {}", .0.len(), .0[0])]
    NothingCompatible(Vec<Excluded>),
}

/// The merged model and how it was made.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    /// The architecture merged.
    pub architecture: Architecture,
    /// The merged tensors, sorted by name.
    pub tensors: Vec<(String, Vec<f32>)>,
    /// The peers whose updates went in, sorted.
    pub included: Vec<AnnotatorKey>,
    /// The updates left out, sorted by peer.
    pub excluded: Vec<Excluded>,
}

/// Merges `updates` (normally [`super::Registry::latest`]) with their weights, looked up by
/// weights hash in `weights` (`None` when the node does not have them). The weights must already
/// be verified against the hash (the node does so when it fetches the blob).
///
/// The result is a function of the set of updates, their weights and `config` only: the order of
/// `updates` does not matter, and every node gets bit-identical tensors.
pub fn merge<'u, 'w>(
    updates: impl IntoIterator<Item = &'u ModelUpdate>,
    weights: impl Fn(&WeightsHash) -> Option<&'w Tensors>,
    config: &Config,
) -> Result<Merged, MergeError> {
    if let Method::TrimmedMean { trim } = config.method
        && !(0.0..0.5).contains(&trim)
    {
        return Err(MergeError::InvalidTrim(trim));
    }
    let mut updates: Vec<&ModelUpdate> = updates.into_iter().collect();
    if updates.is_empty() {
        return Err(MergeError::NoUpdates);
    }
    updates.sort_by_key(|u| u.peer);
    if let Some(pair) = updates.windows(2).find(|w| w[0].peer == w[1].peer) {
        return Err(MergeError::DuplicatePeer(pair[0].peer));
    }
    let architecture = match &config.architecture {
        Some(a) => a.clone(),
        None => most_common(updates.iter().map(|u| u.architecture.clone()))
            .ok_or(MergeError::NoUpdates)?,
    };

    // Screen each update on its own, then agree on the layout among those left.
    let mut excluded = Vec::new();
    let mut candidates: Vec<(&ModelUpdate, BTreeMap<&str, &[f32]>)> = Vec::new();
    for u in updates {
        match screen_one(u, &architecture, &weights) {
            Ok(tensors) => candidates.push((u, tensors)),
            Err(reason) => excluded.push(exclude(u, reason)),
        }
    }
    let layout = most_common(candidates.iter().map(|(_, t)| layout_of(t))).unwrap_or_default();
    let mut included = Vec::new();
    for (u, tensors) in candidates {
        match compare_layout(&layout, &tensors) {
            Ok(()) => included.push((u, tensors)),
            Err(reason) => excluded.push(exclude(u, reason)),
        }
    }
    excluded.sort_by_key(|e| e.peer);
    if included.is_empty() {
        return Err(MergeError::NothingCompatible(excluded));
    }

    let mut tensors = Vec::with_capacity(layout.len());
    let mut column = Vec::with_capacity(included.len());
    for (name, len) in &layout {
        let inputs: Vec<(u64, &[f32])> = included
            .iter()
            .map(|(u, t)| (u.labels_trained, t[name.as_str()]))
            .collect();
        let values = (0..*len)
            .map(|i| combine(config.method, &inputs, i, &mut column))
            .collect();
        tensors.push((name.clone(), values));
    }
    Ok(Merged {
        architecture,
        tensors,
        included: included.iter().map(|(u, _)| u.peer).collect(),
        excluded,
    })
}

fn exclude(u: &ModelUpdate, reason: Reason) -> Excluded {
    Excluded {
        peer: u.peer,
        version: u.version,
        reason,
    }
}

/// The value with the most occurrences; ties to the smallest. `None` for no items. Deterministic,
/// so every node picks the same (used for the layout and architecture of a merge).
pub fn most_common<T: Ord>(items: impl Iterator<Item = T>) -> Option<T> {
    let mut counts = BTreeMap::new();
    for item in items {
        *counts.entry(item).or_insert(0usize) += 1;
    }
    let mut best: Option<(T, usize)> = None;
    for (item, count) in counts {
        // Ascending order, so a strict `>` keeps the smallest of equal counts.
        if best.as_ref().is_none_or(|(_, c)| count > *c) {
            best = Some((item, count));
        }
    }
    best.map(|(item, _)| item)
}

/// The checks of one update that need no other update.
fn screen_one<'w>(
    u: &ModelUpdate,
    architecture: &Architecture,
    weights: &impl Fn(&WeightsHash) -> Option<&'w Tensors>,
) -> Result<BTreeMap<&'w str, &'w [f32]>, Reason> {
    if &u.architecture != architecture {
        return Err(Reason::Architecture {
            expected: architecture.clone(),
            found: u.architecture.clone(),
        });
    }
    if u.labels_trained == 0 {
        return Err(Reason::NoLabels);
    }
    let Some(tensors) = weights(&u.weights_hash) else {
        return Err(Reason::MissingWeights(u.weights_hash));
    };
    let mut by_name = BTreeMap::new();
    for (name, values) in tensors {
        if let Some(index) = values.iter().position(|v| !v.is_finite()) {
            return Err(Reason::NonFinite {
                tensor: name.clone(),
                index,
            });
        }
        if by_name.insert(name.as_str(), values.as_slice()).is_some() {
            return Err(Reason::DuplicateTensor(name.clone()));
        }
    }
    Ok(by_name)
}

fn layout_of(tensors: &BTreeMap<&str, &[f32]>) -> Vec<(String, usize)> {
    tensors
        .iter()
        .map(|(name, values)| ((*name).to_owned(), values.len()))
        .collect()
}

fn compare_layout(
    layout: &[(String, usize)],
    tensors: &BTreeMap<&str, &[f32]>,
) -> Result<(), Reason> {
    for (name, len) in layout {
        match tensors.get(name.as_str()) {
            None => return Err(Reason::MissingTensor(name.clone())),
            Some(values) if values.len() != *len => {
                return Err(Reason::Shape {
                    tensor: name.clone(),
                    expected: *len,
                    found: values.len(),
                });
            }
            Some(_) => {}
        }
    }
    if let Some(name) = tensors
        .keys()
        .find(|name| !layout.iter().any(|(n, _)| n == *name))
    {
        return Err(Reason::UnexpectedTensor((*name).to_owned()));
    }
    Ok(())
}

/// Coordinate `i` of the merged tensor. `inputs` are sorted by peer and hold finite values only.
fn combine(method: Method, inputs: &[(u64, &[f32])], i: usize, column: &mut Vec<f32>) -> f32 {
    let merged = match method {
        Method::WeightedMean => {
            // Fixed order (by peer) and f64 accumulation: the same bits on every node.
            let (mut sum, mut total) = (0.0f64, 0.0f64);
            for (labels, values) in inputs {
                let w = *labels as f64;
                sum += w * f64::from(values[i]);
                total += w;
            }
            sum / total
        }
        Method::TrimmedMean { trim } => {
            sorted_column(inputs, i, column);
            let n = column.len();
            // trim < 0.5, so 2k < n and at least one value is left.
            let k = (trim * n as f64).floor() as usize;
            let kept = &column[k..n - k];
            kept.iter().map(|&v| f64::from(v)).sum::<f64>() / kept.len() as f64
        }
        Method::Median => {
            sorted_column(inputs, i, column);
            let n = column.len();
            if n % 2 == 1 {
                f64::from(column[n / 2])
            } else {
                (f64::from(column[n / 2 - 1]) + f64::from(column[n / 2])) / 2.0
            }
        }
    };
    // A mean of finite f32 values lies within their range; the clamp guards the last rounding.
    (merged as f32).clamp(f32::MIN, f32::MAX)
}

fn sorted_column(inputs: &[(u64, &[f32])], i: usize, column: &mut Vec<f32>) {
    column.clear();
    column.extend(inputs.iter().map(|(_, values)| values[i]));
    column.sort_by(f32::total_cmp);
}
