//! Simulated crowds (seeded) with honest annotators of known accuracy beside spammers.

use rand::seq::SliceRandom as _;
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;

use super::exact::ln_factorial;
use super::*;

/// How a simulated annotator answers.
#[derive(Clone, Copy)]
enum Kind {
    /// The truth with this probability, otherwise another label at random.
    Honest(f64),
    /// A label drawn uniformly, whatever the truth.
    Random,
    /// Always this label.
    Fixed(u16),
    /// Honest at this accuracy for its first `n` answers, random after.
    Drifts(f64, usize),
}

/// `items` items with uniform true labels over `classes` (or label 0 with probability
/// `skew`), each answered by `per_item` distinct annotators drawn at random; times increase
/// with the item index.
fn crowd(
    seed: u64,
    items: u32,
    classes: u16,
    skew: Option<f64>,
    kinds: &[Kind],
    per_item: usize,
) -> Vec<Answer> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut raters: Vec<u32> = (0..kinds.len() as u32).collect();
    let mut given = vec![0usize; kinds.len()];
    let mut answers = Vec::new();
    for item in 0..items {
        let truth = match skew {
            Some(p) if rng.random_bool(p) => 0,
            _ => rng.random_range(0..classes),
        };
        raters.shuffle(&mut rng);
        for &rater in &raters[..per_item] {
            let honest = |acc: f64, rng: &mut ChaCha8Rng| {
                if rng.random_bool(acc) {
                    truth
                } else {
                    let other = rng.random_range(0..classes - 1);
                    if other >= truth { other + 1 } else { other }
                }
            };
            let label = match kinds[rater as usize] {
                Kind::Honest(acc) => honest(acc, &mut rng),
                Kind::Random => rng.random_range(0..classes),
                Kind::Fixed(l) => l,
                Kind::Drifts(acc, n) if given[rater as usize] < n => honest(acc, &mut rng),
                Kind::Drifts(..) => rng.random_range(0..classes),
            };
            given[rater as usize] += 1;
            answers.push(Answer {
                item,
                rater,
                label,
                time_ms: u64::from(item) * 1_000,
            });
        }
    }
    answers
}

fn kinds_flagged(screenings: &[Screening]) -> Vec<Option<&'static str>> {
    screenings
        .iter()
        .map(|s| s.flag.as_ref().map(Flag::kind))
        .collect()
}

#[test]
fn exact_tests_match_known_values() {
    // P(X ≤ 2 | 20, 0.4) and P(X ≥ 18 | 20, 0.5), from tables.
    assert!((binomial_lower(2, 20, 0.4) - 0.003_611).abs() < 1e-6);
    assert!((binomial_upper(18, 20, 0.5) - 0.000_201_2).abs() < 1e-7);
    assert!((binomial_lower(20, 20, 0.3) - 1.0).abs() < 1e-12);
    assert_eq!(binomial_upper(21, 20, 0.3), 0.0);
    // All 3 agreements in the earlier of two halves of 3: 1 / C(6, 3).
    assert!((fisher_upper(3, 3, 0, 3) - 0.05).abs() < 1e-12);
    // Nothing unusual: p = 1.
    assert!((fisher_upper(0, 3, 3, 3) - 1.0).abs() < 1e-12);
    // Stirling's series against the exact sum just above the switch.
    let exact: f64 = (2..=300u32).map(|i| f64::from(i).ln()).sum();
    assert!((ln_factorial(300) - exact).abs() / exact < 1e-12);
}

#[test]
fn random_fixed_and_drifting_annotators_are_flagged_and_honest_ones_are_not() {
    let kinds = [
        Kind::Honest(0.9),
        Kind::Honest(0.85),
        Kind::Honest(0.8),
        Kind::Honest(0.75),
        Kind::Honest(0.7),
        Kind::Honest(0.9),
        Kind::Honest(0.65),
        Kind::Random,
        Kind::Fixed(2),
        Kind::Drifts(0.9, 100),
    ];
    for seed in 0..20 {
        let answers = crowd(seed, 600, 4, None, &kinds, 3);
        let screenings = screen(&answers, &[], 4, ScreenConfig::default());
        let mut want = vec![None; 7];
        want.extend([Some("random"), Some("fixed"), Some("drift")]);
        assert_eq!(
            kinds_flagged(&screenings),
            want,
            "seed {seed}: {screenings:#?}"
        );
        let Some(Flag::Fixed { label, .. }) = &screenings[8].flag else {
            panic!("the fixed annotator's flag names its label");
        };
        assert_eq!(*label, 2);
        assert!(screenings[7].flag.as_ref().unwrap().p_value() < 0.01);
    }
}

#[test]
fn spammers_among_pairs_do_not_make_honest_annotators_look_bad() {
    // Two answers per item: a spammer is often the only reference an honest annotator has,
    // until the spammer is left out of the references.
    let kinds = [
        Kind::Honest(0.9),
        Kind::Honest(0.85),
        Kind::Honest(0.9),
        Kind::Honest(0.8),
        Kind::Random,
        Kind::Fixed(0),
    ];
    for seed in 0..20 {
        let answers = crowd(seed, 400, 3, None, &kinds, 2);
        let screenings = screen(&answers, &[], 3, ScreenConfig::default());
        let flagged = kinds_flagged(&screenings);
        assert_eq!(&flagged[..4], &[None; 4], "seed {seed}: {screenings:#?}");
        assert_eq!(flagged[4], Some("random"), "seed {seed}: {screenings:#?}");
        assert_eq!(flagged[5], Some("fixed"), "seed {seed}");
    }
}

#[test]
fn a_newcomer_is_not_flagged_before_the_minimum_however_it_answers() {
    let kinds = [
        Kind::Honest(0.9),
        Kind::Honest(0.9),
        Kind::Honest(0.9),
        Kind::Random,
        Kind::Fixed(1),
    ];
    let answers = crowd(7, 300, 4, None, &kinds, 3);
    // Only the first 11 answers of each spammer are known so far.
    let mut seen = [0u32; 5];
    let early: Vec<Answer> = answers
        .iter()
        .filter(|a| {
            seen[a.rater as usize] += 1;
            a.rater < 3 || seen[a.rater as usize] < 12
        })
        .copied()
        .collect();
    let screenings = screen(&early, &[], 4, ScreenConfig::default());
    assert!(screenings[3].compared < 12 && screenings[4].compared < 12);
    assert_eq!(kinds_flagged(&screenings), vec![None; 5]);
    // With all their answers, both are.
    let screenings = screen(&answers, &[], 4, ScreenConfig::default());
    assert_eq!(
        kinds_flagged(&screenings),
        vec![None, None, None, Some("random"), Some("fixed")]
    );
}

#[test]
fn honest_annotators_of_a_skewed_dataset_are_not_fixed() {
    // 90 % of the items are label 0: answering 0 most of the time is right, not suspicious.
    let kinds = [Kind::Honest(0.9); 6];
    for seed in 0..20 {
        let answers = crowd(seed, 300, 3, Some(0.9), &kinds, 3);
        let screenings = screen(&answers, &[], 3, ScreenConfig::default());
        assert_eq!(
            kinds_flagged(&screenings),
            vec![None; 6],
            "seed {seed}: {screenings:#?}"
        );
    }
}

#[test]
fn gold_labels_are_the_reference_where_nobody_else_answered() {
    // One annotator alone, on gold items: a fixed answerer is seen against the gold.
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let gold: Vec<(u32, u16)> = (0..60).map(|i| (i, rng.random_range(0..3u16))).collect();
    let fixed: Vec<Answer> = (0..60)
        .map(|i| Answer {
            item: i,
            rater: 0,
            label: 1,
            time_ms: u64::from(i),
        })
        .collect();
    let screenings = screen(&fixed, &gold, 3, ScreenConfig::default());
    assert_eq!(screenings[0].compared, 60);
    assert_eq!(kinds_flagged(&screenings), vec![Some("fixed")]);
    let reason = screenings[0].flag.as_ref().unwrap().reason(&[
        "cat".to_owned(),
        "dog".to_owned(),
        "other".to_owned(),
    ]);
    assert!(
        reason.starts_with("answers \"dog\" almost whatever the sample"),
        "{reason}"
    );
    // Without gold there is nothing to compare with, so nothing is flagged.
    let screenings = screen(&fixed, &[], 3, ScreenConfig::default());
    assert_eq!(screenings[0].compared, 0);
    assert_eq!(screenings[0].flag, None);
}

#[test]
fn answers_from_annotations_index_samples_and_annotators_in_order() {
    use swarmlabel_crdt::{Annotation, DatasetId, Signer as _, Value};
    let signed = |seed: u8, sample: u32, time_ms: u64, value: Value| {
        let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        let annotation = Annotation {
            dataset: DatasetId([0xda; 32]),
            sample: SampleId(*blake3::hash(&sample.to_le_bytes()).as_bytes()),
            annotator: AnnotatorKey(key.public_key()),
            seq: 1,
            time_ms,
            value,
            suggestion: None,
        };
        SignedAnnotation::sign(annotation, &key).unwrap()
    };
    let a = signed(9, 1, 5, Value::Label(2));
    let b = signed(3, 2, 7, Value::Label(0));
    let skip = signed(3, 3, 8, Value::Skip);
    let answers = Answers::from_annotations(&[a, b, skip]);
    assert_eq!(answers.answers.len(), 2);
    assert_eq!(answers.samples.len(), 2);
    assert_eq!(answers.annotators.len(), 2);
    let first = answers.answers[0];
    assert_eq!(
        (first.label, first.time_ms),
        (2, 5),
        "the label and time are kept"
    );
    assert_eq!(answers.item(&answers.samples[1]), Some(1));
}
