//! The merged model of a dataset, computed from the registry and the weights the node holds, as
//! a plain function (no I/O, no clocks): every node holding the same registry and weights, with
//! the same settings and no screen, derives the same bytes and so the same hash.
//!
//! Steps, each leaving out updates with a reason ([`Exclusion`]):
//! 1. The architecture merged is the configured one, or the most common among the updates in
//!    force (ties to the smallest); others are refused (`swarmlabel_crdt::registry::merge`).
//! 2. Weights that are not float32 safetensors are left out; among the rest of that
//!    architecture, the most common [`Form`] (shapes and header metadata) wins, so that the
//!    merged file has the shapes every honest peer's model loads.
//! 3. With a screen set, the updates scoring badly on the node's own held-out labels are left
//!    out (this step depends on the node's labels, so nodes with a screen may differ).
//! 4. The coordinates are combined by the configured method and encoded as safetensors.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use swarmlabel_crdt::AnnotatorKey;
use swarmlabel_crdt::policy::Policy;
use swarmlabel_crdt::registry::merge::{self, Method};
use swarmlabel_crdt::registry::{
    Architecture, ModelUpdate, Registry, Validation, WeightsHash, screen,
};

use super::weights::{self, Decoded, Form};

/// Scores a model on the node's own held-out labels: given the weights (safetensors bytes),
/// returns `(correct, count)`, or `None` when it cannot score them (then the update is kept).
/// Runs on a blocking thread, once per update in force at each recomputation.
pub type Scorer = Arc<dyn Fn(&[u8]) -> Option<(u32, u32)> + Send + Sync>;

/// An outlier screen on the node's own labels: the scorer and when to leave an update out.
#[derive(Clone)]
pub struct Screen {
    /// Runs a model on the held-out labels.
    pub score: Scorer,
    /// Below which score (or how far below the best) an update is left out.
    pub config: screen::Config,
}

impl std::fmt::Debug for Screen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Screen")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// An update left out of the merged model, and why (one sentence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exclusion {
    /// The peer whose update it is.
    pub peer: AnnotatorKey,
    /// The update's version.
    pub version: u64,
    /// Why it was left out.
    pub reason: String,
}

/// The merged model of a dataset, as of one registry.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedModel {
    /// BLAKE3 of [`MergedModel::weights`].
    pub hash: WeightsHash,
    /// The merged weights as a safetensors file (float32, with the header metadata of the
    /// updates merged, so the learning side loads it as it loads a peer's model).
    pub weights: Arc<Vec<u8>>,
    /// The digest of the registry it was computed from.
    pub registry_digest: [u8; 32],
    /// The architecture merged.
    pub architecture: Architecture,
    /// The peers whose updates went in, sorted.
    pub included: Vec<AnnotatorKey>,
    /// The most labels any included update was trained on.
    pub labels_trained: u64,
    /// The updates left out, sorted by peer.
    pub excluded: Vec<Exclusion>,
}

/// Why no merged model can be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MergedError {
    /// The registry holds no update.
    #[error("no model update has been announced for this dataset yet")]
    NoUpdates,
    /// Every update was left out.
    #[error("none of the {} model updates can be merged; the first reason: {}", .0.len(),
        .0.first().map_or("", |e| e.reason.as_str()))]
    NothingMergeable(Vec<Exclusion>),
    /// The merged weights could not be encoded (a bug, not a peer's doing).
    #[error(transparent)]
    Encode(#[from] weights::WeightsError),
}

/// Computes the merged model of `registry` with `method`, the weights bytes the node holds (by
/// hash, verified), an optional fixed `architecture`, an optional `screen`, and the owner's
/// `policy` (updates of keys it does not admit are left out before anything else, the
/// architecture vote included).
pub fn compute(
    registry: &Registry,
    held: &HashMap<WeightsHash, Arc<Vec<u8>>>,
    method: Method,
    architecture: Option<&Architecture>,
    screen: Option<&Screen>,
    policy: Option<&Policy>,
) -> Result<MergedModel, MergedError> {
    let (updates, not_admitted): (Vec<&ModelUpdate>, Vec<&ModelUpdate>) = registry
        .latest()
        .partition(|u| policy.is_none_or(|p| p.admits(&u.peer)));
    let architecture = match architecture {
        Some(a) => a.clone(),
        None => merge::most_common(updates.iter().map(|u| &u.architecture))
            .cloned()
            .ok_or(MergedError::NoUpdates)?,
    };
    let mut excluded: Vec<Exclusion> = not_admitted
        .into_iter()
        .map(|u| exclude(u, "the dataset's owner does not admit this peer's key"))
        .collect();
    let mut candidates = Candidates::decode(&updates, held, &architecture, &mut excluded);
    if let Some(screen) = screen {
        candidates.screen(held, &architecture, screen, &mut excluded);
    }
    let config = merge::Config {
        method,
        architecture: Some(architecture),
    };
    let result = merge::merge(
        candidates.updates.iter().copied(),
        |hash| candidates.decoded.get(hash).map(|d| d.tensors.as_slice()),
        &config,
    );
    let merged = match result {
        Ok(m) => m,
        Err(e) => return Err(nothing_merged(e, &updates, excluded)),
    };
    excluded.extend(merged.excluded.iter().map(|e| Exclusion {
        peer: e.peer,
        version: e.version,
        reason: e.reason.to_string(),
    }));
    excluded.sort_by_key(|e| e.peer);
    // Every included update had decoded weights of the winning form.
    let form = candidates.form.unwrap_or_default();
    let bytes = weights::encode(&merged.tensors, &form)?;
    let labels_trained = candidates
        .updates
        .iter()
        .filter(|u| merged.included.contains(&u.peer))
        .map(|u| u.labels_trained)
        .max()
        .unwrap_or(0);
    Ok(MergedModel {
        hash: WeightsHash(*blake3::hash(&bytes).as_bytes()),
        weights: Arc::new(bytes),
        registry_digest: registry.digest(),
        architecture: merged.architecture,
        included: merged.included,
        labels_trained,
        excluded,
    })
}

/// An update left out, and why.
fn exclude(u: &ModelUpdate, reason: impl Into<String>) -> Exclusion {
    Exclusion {
        peer: u.peer,
        version: u.version,
        reason: reason.into(),
    }
}

/// The updates that go to the merge, with the weights decoded and the form they agree on.
struct Candidates<'a> {
    updates: Vec<&'a ModelUpdate>,
    decoded: HashMap<WeightsHash, Decoded>,
    form: Option<Form>,
}

impl<'a> Candidates<'a> {
    /// Decodes what is held; the updates of `architecture` agree on one form (tensor shapes
    /// and header metadata), and those of another form are left out.
    fn decode(
        updates: &[&'a ModelUpdate],
        held: &HashMap<WeightsHash, Arc<Vec<u8>>>,
        architecture: &Architecture,
        excluded: &mut Vec<Exclusion>,
    ) -> Self {
        let mut decoded: HashMap<WeightsHash, Decoded> = HashMap::new();
        let mut candidates = Vec::new();
        for u in updates {
            match held.get(&u.weights_hash).map(|b| weights::decode(b)) {
                Some(Err(e)) => excluded.push(exclude(u, e.to_string())),
                Some(Ok(d)) => {
                    decoded.insert(u.weights_hash, d);
                    candidates.push(*u);
                }
                // Missing weights and other architectures: the crdt merge says so.
                None => candidates.push(*u),
            }
        }
        let form: Option<Form> = merge::most_common(
            candidates
                .iter()
                .filter(|u| &u.architecture == architecture)
                .filter_map(|u| decoded.get(&u.weights_hash))
                .map(|d| &d.form),
        )
        .cloned();
        candidates.retain(|u| {
            let odd = &u.architecture == architecture
                && decoded
                    .get(&u.weights_hash)
                    .is_some_and(|d| Some(&d.form) != form.as_ref());
            if odd {
                excluded.push(exclude(
                    u,
                    "its tensor shapes or header metadata differ from those of the other models \
                     of its architecture",
                ));
            }
            !odd
        });
        Candidates {
            updates: candidates,
            decoded,
            form,
        }
    }

    /// Leaves out the updates that score badly on this node's held-out labels.
    fn screen(
        &mut self,
        held: &HashMap<WeightsHash, Arc<Vec<u8>>>,
        architecture: &Architecture,
        screen: &Screen,
        excluded: &mut Vec<Exclusion>,
    ) {
        let scores: Vec<(AnnotatorKey, u32)> = self
            .updates
            .iter()
            .filter(|u| {
                &u.architecture == architecture && self.decoded.contains_key(&u.weights_hash)
            })
            .filter_map(|u| {
                let bytes = held.get(&u.weights_hash)?;
                let (correct, count) = (screen.score)(bytes)?;
                Some((u.peer, Validation::from_counts(correct, count).accuracy_ppm))
            })
            .collect();
        let outcome = screen::screen(scores, &screen.config);
        let reasons: BTreeMap<AnnotatorKey, screen::Reason> =
            outcome.excluded.into_iter().collect();
        self.updates.retain(|u| match reasons.get(&u.peer) {
            Some(reason) => {
                excluded.push(exclude(u, reason.to_string()));
                false
            }
            None => true,
        });
    }
}

/// The error when the merge made nothing, with every update left out and why.
fn nothing_merged(
    error: merge::MergeError,
    updates: &[&ModelUpdate],
    mut excluded: Vec<Exclusion>,
) -> MergedError {
    match error {
        merge::MergeError::NothingCompatible(more) => {
            excluded.extend(more.into_iter().map(|e| Exclusion {
                peer: e.peer,
                version: e.version,
                reason: e.reason.to_string(),
            }));
            excluded.sort_by_key(|e| e.peer);
            MergedError::NothingMergeable(excluded)
        }
        merge::MergeError::NoUpdates => {
            excluded.sort_by_key(|e| e.peer);
            if excluded.is_empty() {
                MergedError::NoUpdates
            } else {
                MergedError::NothingMergeable(excluded)
            }
        }
        // Invalid trim or duplicate peers: settings or a registry bug; say so as a reason.
        e => MergedError::NothingMergeable(vec![Exclusion {
            peer: updates[0].peer,
            version: updates[0].version,
            reason: e.to_string(),
        }]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmlabel_crdt::registry::SignedUpdate;

    use swarmlabel_store::identity::Identity;

    const DATASET: swarmlabel_crdt::DatasetId = swarmlabel_crdt::DatasetId([3; 32]);

    fn arch(name: &str) -> Architecture {
        Architecture::new([1; 32], name).unwrap()
    }

    fn file(values: &[f32], shape: Vec<usize>) -> Vec<u8> {
        let form = Form {
            shapes: BTreeMap::from([("w".to_owned(), shape)]),
            metadata: BTreeMap::from([("spec".to_owned(), "x".to_owned())]),
        };
        weights::encode(&[("w".to_owned(), values.to_vec())], &form).unwrap()
    }

    fn publish(
        registry: &mut Registry,
        held: &mut HashMap<WeightsHash, Arc<Vec<u8>>>,
        id: &Identity,
        bytes: Vec<u8>,
        architecture: Architecture,
        labels: u64,
    ) {
        let update = ModelUpdate {
            dataset: DATASET,
            peer: id.public_key(),
            version: 1,
            labels_trained: labels,
            architecture,
            weights_hash: WeightsHash(*blake3::hash(&bytes).as_bytes()),
            weights_bytes: bytes.len() as u64,
            validation: Validation::from_counts(0, 0),
        };
        held.insert(update.weights_hash, Arc::new(bytes));
        registry
            .insert(SignedUpdate::sign(update, id.signing_key()).unwrap())
            .unwrap();
    }

    #[test]
    fn merges_the_median_refusing_other_architectures_forms_and_bad_files_with_reasons() {
        let ids: Vec<Identity> = (0..6).map(|_| Identity::generate().unwrap()).collect();
        let mut registry = Registry::new(DATASET);
        let mut held = HashMap::new();
        for (i, v) in [1.0f32, 2.0, 1000.0].iter().enumerate() {
            publish(
                &mut registry,
                &mut held,
                &ids[i],
                file(&[*v, -*v], vec![2]),
                arch("a"),
                10,
            );
        }
        publish(
            &mut registry,
            &mut held,
            &ids[3],
            file(&[5.0, 5.0], vec![2]),
            arch("b"),
            99,
        );
        publish(
            &mut registry,
            &mut held,
            &ids[4],
            file(&[1.0, 1.0], vec![1, 2]),
            arch("a"),
            99,
        );
        publish(
            &mut registry,
            &mut held,
            &ids[5],
            b"junk".to_vec(),
            arch("a"),
            99,
        );
        let merged = compute(&registry, &held, Method::Median, None, None, None).unwrap();
        let decoded = weights::decode(&merged.weights).unwrap();
        assert_eq!(decoded.tensors, vec![("w".to_owned(), vec![2.0, -2.0])]);
        assert_eq!(decoded.form.shapes["w"], [2]);
        assert_eq!(merged.included.len(), 3);
        assert_eq!(
            merged.labels_trained, 10,
            "only included updates count (the refused ones say 99)"
        );
        assert_eq!(merged.excluded.len(), 3);
        let reasons: Vec<&str> = merged.excluded.iter().map(|e| e.reason.as_str()).collect();
        assert!(
            reasons.iter().any(|r| r.contains("architecture is b")),
            "{reasons:?}"
        );
        assert!(reasons.iter().any(|r| r.contains("shapes")), "{reasons:?}");
        assert!(
            reasons.iter().any(|r| r.contains("not a safetensors")),
            "{reasons:?}"
        );
        // The same inputs give the same bytes; a screen leaves out the worst scorer.
        let again = compute(&registry, &held, Method::Median, None, None, None).unwrap();
        assert_eq!(again.hash, merged.hash);
        let huge = held
            .iter()
            .find(|(_, b)| weights::decode(b).is_ok_and(|d| d.tensors[0].1[0] == 1000.0))
            .map(|(_, b)| b.clone())
            .unwrap();
        let screen = Screen {
            score: Arc::new(move |b: &[u8]| {
                Some(if b == huge.as_slice() {
                    (1, 10)
                } else {
                    (9, 10)
                })
            }),
            config: screen::Config {
                max_below_best_ppm: 100_000,
                floor_ppm: 0,
            },
        };
        let screened = compute(
            &registry,
            &held,
            Method::WeightedMean,
            None,
            Some(&screen),
            None,
        )
        .unwrap();
        let decoded = weights::decode(&screened.weights).unwrap();
        assert_eq!(decoded.tensors[0].1, [1.5, -1.5]);
        assert!(
            screened
                .excluded
                .iter()
                .any(|e| e.reason.contains("held-out"))
        );
    }

    #[test]
    fn says_why_nothing_can_be_merged() {
        let registry = Registry::new(DATASET);
        assert_eq!(
            compute(&registry, &HashMap::new(), Method::Median, None, None, None),
            Err(MergedError::NoUpdates)
        );
        let mut registry = Registry::new(DATASET);
        let mut held = HashMap::new();
        let id = Identity::generate().unwrap();
        publish(
            &mut registry,
            &mut held,
            &id,
            file(&[1.0, 1.0], vec![2]),
            arch("a"),
            10,
        );
        let err =
            compute(&registry, &HashMap::new(), Method::Median, None, None, None).unwrap_err();
        assert!(err.to_string().contains("not available"), "{err}");
    }
}
