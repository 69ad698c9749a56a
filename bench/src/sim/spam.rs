//! Spammers in the simulated network (`--spammers`, `--fixed`): how they answer, whether the
//! screening (`swarmlabel_consensus::aggregate::screen`) flags them from the network's annotations,
//! and what the labels are worth with and without the flagged annotators.

use std::collections::{BTreeMap, HashMap, HashSet};

use rand::Rng as _;
use rand_chacha::ChaCha8Rng;
use swarmlabel_active_learning::{Matrix, Model};
use swarmlabel_consensus::aggregate::{Answers, ScreenConfig, screen};
use swarmlabel_crdt::{AnnotatorKey, SignedAnnotation};
use swarmlabel_node::learn::features::PoolFeatures;
use swarmlabel_node::learn::train::config_for;

/// How a simulated labeler answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// The truth, wrong with probability `--noise`.
    Honest,
    /// A label drawn uniformly, whatever the sample.
    Random,
    /// Always this label.
    Fixed(u16),
}

impl Kind {
    /// The kinds of `nodes` volunteers: the last `fixed` answer one label each (volunteer `i`
    /// label `i % classes`), the `random` before them at random, the others honestly.
    pub(super) fn assign(nodes: usize, random: usize, fixed: usize, classes: usize) -> Vec<Kind> {
        (0..nodes)
            .map(|i| {
                if i + fixed >= nodes {
                    Kind::Fixed((i % classes) as u16)
                } else if i + fixed + random >= nodes {
                    Kind::Random
                } else {
                    Kind::Honest
                }
            })
            .collect()
    }

    /// This labeler's answer to a sample whose true class is `truth`.
    pub(super) fn answer(
        self,
        truth: usize,
        classes: usize,
        noise: f64,
        rng: &mut ChaCha8Rng,
    ) -> usize {
        match self {
            Kind::Honest => super::network::answer(truth, classes, noise, rng),
            Kind::Random => rng.random_range(0..classes),
            Kind::Fixed(label) => usize::from(label),
        }
    }
}

/// The volunteers (by index) whose annotator key the screening flags among `annotations`.
pub(super) fn flagged(
    annotations: &[SignedAnnotation],
    classes: usize,
    members: &[AnnotatorKey],
) -> Vec<usize> {
    let answers = Answers::from_annotations(annotations);
    let screenings = screen(
        &answers.answers,
        &[],
        classes as u16,
        ScreenConfig::default(),
    );
    let line: Vec<String> = members
        .iter()
        .map(|m| {
            let Some(s) = answers
                .annotators
                .iter()
                .position(|a| a == m)
                .and_then(|r| screenings.get(r))
            else {
                return "-".to_owned();
            };
            let flag = s.flag.as_ref().map_or("", |f| f.kind());
            format!("{}/{}/{}{flag}", s.agreed, s.compared, s.answers)
        })
        .collect();
    eprintln!(
        "sim: screening (agreed/compared/answers per volunteer): {}",
        line.join(" ")
    );
    let keys: HashSet<AnnotatorKey> = screenings
        .iter()
        .filter(|s| s.flag.is_some())
        .map(|s| answers.annotators[s.rater as usize])
        .collect();
    members
        .iter()
        .enumerate()
        .filter(|(_, k)| keys.contains(k))
        .map(|(i, _)| i)
        .collect()
}

/// Test accuracy of a model (the nodes' spec and initial weights) trained on the majority label
/// of each sample among `annotations`, leaving out the annotators in `banned`. Ties go to the
/// lowest label.
pub(super) fn consensus_accuracy(
    annotations: &[SignedAnnotation],
    banned: &HashSet<AnnotatorKey>,
    pool: &PoolFeatures,
    seed: u64,
    test_x: &Matrix,
    test_y: &[usize],
) -> anyhow::Result<f64> {
    let mut votes: BTreeMap<usize, HashMap<u16, u32>> = BTreeMap::new();
    for a in annotations.iter().map(SignedAnnotation::annotation) {
        if banned.contains(&a.annotator) {
            continue;
        }
        if let (Some(label), Some(&row)) = (a.value.label(), pool.index.get(&a.sample)) {
            *votes.entry(row).or_default().entry(label).or_default() += 1;
        }
    }
    let rows: Vec<usize> = votes.keys().copied().collect();
    let y: Vec<usize> = votes
        .values()
        .map(|counts| {
            let best = counts
                .iter()
                .max_by_key(|&(l, c)| (*c, std::cmp::Reverse(*l)))
                .map_or(0, |(l, _)| *l);
            usize::from(best)
        })
        .collect();
    let x = pool.features.select_rows(&rows);
    let mut train = config_for(&pool.spec);
    train.seed = seed;
    let mut model = Model::new(pool.spec.clone(), seed)?;
    model.train(&x, &y, &train)?;
    Ok(model.accuracy(test_x, test_y)?)
}
