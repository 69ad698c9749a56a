//! The queue without a model: the samples in an order seeded by the node's key and the dataset,
//! so that volunteers without a model spread over the dataset instead of all labelling the same
//! first samples. Samples the human labelled (or marked unsure) and samples with
//! [`Fallback::enough`] votes already are left out; samples the human skipped come after all
//! others.

use std::collections::{HashMap, HashSet};

use rand::SeedableRng as _;
use rand::seq::SliceRandom as _;
use swarmlabel_crdt::{SampleId, Value};

use super::{AccuracyPoint, Pick, Source, SourceFuture, View};
use swarmlabel_store::dataset::DatasetId;
use swarmlabel_store::store::BlobId;

/// What the page says of a pick made without a model.
pub const WHY: &str = "no model yet: samples come in a random order of this node's own";

/// The queue source that needs no model.
#[derive(Debug, Clone, Copy)]
pub struct Fallback {
    /// Votes (labels, from anyone) after which a sample is labelled enough and left out.
    pub enough: usize,
}

impl Default for Fallback {
    fn default() -> Self {
        Self { enough: 3 }
    }
}

impl Fallback {
    /// The picks, computed without I/O: see the module's documentation.
    pub fn picks(&self, view: View<'_>, n: usize, exclude: &HashSet<BlobId>) -> Vec<Pick> {
        let mut votes: HashMap<SampleId, usize> = HashMap::new();
        let mut mine: HashMap<SampleId, Value> = HashMap::new();
        for signed in &view.annotations.annotations {
            let a = signed.annotation();
            if a.value.label().is_some() {
                *votes.entry(a.sample).or_default() += 1;
            }
            if a.annotator == view.me {
                mine.insert(a.sample, a.value);
            }
        }
        let mut seed = blake3::Hasher::new();
        seed.update(b"swarmlabel/fallback-queue/v1");
        seed.update(&view.me.0);
        seed.update(&view.dataset.0);
        let mut rng = rand_chacha::ChaCha8Rng::from_seed(*seed.finalize().as_bytes());
        let mut order: Vec<usize> = (0..view.samples.len()).collect();
        order.shuffle(&mut rng);

        let mut first = Vec::new();
        let mut skipped = Vec::new();
        for index in order {
            let sample = view.samples[index];
            if exclude.contains(&sample) {
                continue;
            }
            let id = sample;
            if votes.get(&id).copied().unwrap_or(0) >= self.enough {
                continue;
            }
            match mine.get(&id) {
                Some(Value::Label(_) | Value::Unsure) => continue,
                Some(Value::Skip) => skipped.push(sample),
                None => {
                    first.push(sample);
                    if first.len() == n {
                        break;
                    }
                }
            }
        }
        first
            .into_iter()
            .chain(skipped)
            .take(n)
            .map(|sample| Pick {
                sample,
                strategy: "fallback".into(),
                score: None,
                why: WHY.into(),
                guesses: Vec::new(),
            })
            .collect()
    }
}

impl Source for Fallback {
    fn next<'a>(
        &'a self,
        view: View<'a>,
        n: usize,
        exclude: &'a HashSet<BlobId>,
    ) -> SourceFuture<'a, Vec<Pick>> {
        Box::pin(async move { self.picks(view, n, exclude) })
    }

    fn accuracy(&self, _: DatasetId) -> SourceFuture<'_, Vec<AccuracyPoint>> {
        Box::pin(async { Vec::new() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmlabel_crdt::{Annotation, Annotations, AnnotatorKey, SignedAnnotation};

    fn annotation(
        dataset: DatasetId,
        sample: BlobId,
        key: &ed25519_dalek::SigningKey,
        value: Value,
    ) -> SignedAnnotation {
        let a = Annotation {
            dataset,
            sample,
            annotator: AnnotatorKey(key.verifying_key().to_bytes()),
            seq: 1,
            time_ms: 1,
            value,
            suggestion: None,
        };
        SignedAnnotation::sign(a, key).unwrap()
    }

    fn key(b: u8) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[b; 32])
    }

    #[test]
    fn leaves_out_what_is_labelled_and_puts_skips_last() {
        let dataset = DatasetId([5; 32]);
        let samples: Vec<BlobId> = (0..20u8).map(|i| BlobId([i; 32])).collect();
        let me = key(1);
        let me_key = AnnotatorKey(me.verifying_key().to_bytes());
        let mut annotations = Annotations::default();
        annotations
            .annotations
            .push(annotation(dataset, samples[0], &me, Value::Label(0)));
        annotations
            .annotations
            .push(annotation(dataset, samples[1], &me, Value::Unsure));
        annotations
            .annotations
            .push(annotation(dataset, samples[2], &me, Value::Skip));
        // Sample 3 has three votes from others: labelled enough.
        for k in 2..5 {
            annotations
                .annotations
                .push(annotation(dataset, samples[3], &key(k), Value::Label(1)));
        }
        // Sample 4 has two: still wanted.
        for k in 2..4 {
            annotations
                .annotations
                .push(annotation(dataset, samples[4], &key(k), Value::Label(1)));
        }
        let view = View {
            dataset,
            samples: &samples,
            annotations: &annotations,
            me: me_key,
        };
        let exclude: HashSet<BlobId> = [samples[5]].into();
        let picks = Fallback::default().picks(view, 100, &exclude);
        let got: Vec<BlobId> = picks.iter().map(|p| p.sample).collect();
        assert_eq!(
            got.len(),
            20 - 4,
            "0, 1, 3 and 5 are left out; 2 comes last"
        );
        assert_eq!(
            *got.last().unwrap(),
            samples[2],
            "the skipped sample comes last"
        );
        for left_out in [0, 1, 3, 5] {
            assert!(!got.contains(&samples[left_out]), "sample {left_out}");
        }
        assert!(got.contains(&samples[4]));
        assert!(picks.iter().all(|p| p.why == WHY && p.guesses.is_empty()));

        // The order is this node's own: the same for the same key, another for another key.
        let again = Fallback::default().picks(view, 100, &exclude);
        assert_eq!(picks, again);
        let other = View {
            me: AnnotatorKey([9; 32]),
            ..view
        };
        let theirs: Vec<BlobId> = Fallback::default()
            .picks(other, 100, &exclude)
            .iter()
            .map(|p| p.sample)
            .collect();
        assert_ne!(theirs[..10], got[..10]);
        assert_eq!(Fallback::default().picks(view, 3, &exclude).len(), 3);
    }
}
