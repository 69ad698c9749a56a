#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use ed25519_dalek::SigningKey;
use rand::seq::SliceRandom as _;
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use swarmlabel_crdt::{Annotation, DatasetId, SignedAnnotation};

use std::sync::Arc;

use super::*;
use crate::Memo;

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn key_of(n: u8) -> AnnotatorKey {
    AnnotatorKey(key(n).verifying_key().to_bytes())
}

/// Sample ids sort like their numbers.
fn sample(n: u32) -> SampleId {
    let mut bytes = [0u8; 32];
    bytes[..4].copy_from_slice(&n.to_be_bytes());
    SampleId(bytes)
}

fn sample_of(n: u32) -> SampleId {
    sample(n)
}

fn annotation(annotator: u8, s: u32, value: Value) -> SignedAnnotation {
    let k = key(annotator);
    let a = Annotation {
        dataset: DatasetId([7; 32]),
        sample: sample(s),
        annotator: AnnotatorKey(k.verifying_key().to_bytes()),
        seq: 1,
        time_ms: 1_000,
        value,
        suggestion: None,
    };
    SignedAnnotation::sign(a, &k).unwrap()
}

fn read(annotations: Vec<SignedAnnotation>) -> Annotations {
    Annotations {
        annotations,
        ..Annotations::default()
    }
}

fn labels(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

const CAT: Value = Value::Label(0);
const DOG: Value = Value::Label(1);
const BIRD: Value = Value::Label(2);

/// Three annotators (1, 2, 3) on five samples; worked out by hand below.
fn pets() -> Annotations {
    read(vec![
        annotation(1, 1, CAT),
        annotation(2, 1, CAT),
        annotation(3, 1, DOG),
        annotation(1, 2, DOG),
        annotation(2, 2, DOG),
        annotation(3, 2, DOG),
        annotation(1, 3, CAT),
        annotation(2, 3, DOG),
        annotation(1, 4, Value::Skip),
        annotation(2, 4, Value::Unsure),
        annotation(1, 5, BIRD),
        annotation(3, 5, Value::Skip),
    ])
}

fn row(
    s: u32,
    label: Option<&str>,
    confidence: Option<f64>,
    (votes, skips, unsure): (u32, u32, u32),
    tied: &[&str],
) -> SampleConsensus {
    SampleConsensus {
        sample: sample_of(s),
        label: label.map(Into::into),
        confidence,
        votes,
        skips,
        unsure,
        tied: labels(tied),
    }
}

#[test]
fn majority_counts_ties_skips_and_agreement_match_a_hand_computation() {
    let summary = summarise(
        &pets(),
        &labels(&["cat", "dog", "bird"]),
        &HashMap::new(),
        Method::Majority,
    )
    .unwrap();
    assert_eq!(
        summary.named(),
        [
            row(1, Some("cat"), Some(2.0 / 3.0), (3, 0, 0), &[]),
            row(2, Some("dog"), Some(1.0), (3, 0, 0), &[]),
            row(3, None, None, (2, 0, 0), &["cat", "dog"]),
            row(4, None, None, (0, 1, 1), &[]),
            row(5, Some("bird"), Some(1.0), (1, 1, 0), &[]),
        ]
    );
    let stats = &summary.stats;
    assert_eq!(
        stats.counts,
        Counts {
            samples_annotated: 5,
            samples_labelled: 4,
            samples_with_consensus: 3,
            gold_samples_labelled: 0,
            annotations: 12,
            votes: 9,
            skips: 2,
            unsure: 1,
            annotators: 3,
            rejected: Rejected::default(),
            conflicted_slots: 0,
        }
    );
    // Coincidences of the samples with two or more votes: cat-cat 1, cat-dog 2, dog-cat 2,
    // dog-dog 3; n_cat = 3, n_dog = 5, n = 8. alpha = 1 - (n - 1) * 4 / (2 * 3 * 5) = 1/15.
    let alpha = stats.agreement.krippendorff_alpha.value.unwrap();
    assert!((alpha - 1.0 / 15.0).abs() < 1e-12, "{alpha}");
    let kappa = &stats.agreement.fleiss_kappa;
    assert_eq!(kappa.value, None);
    assert!(
        kappa
            .unavailable
            .as_deref()
            .unwrap()
            .contains("same number of votes on every sample"),
        "{kappa:?}"
    );
    let by_key: HashMap<AnnotatorKey, &AnnotatorStats> =
        stats.annotators.iter().map(|a| (a.annotator, a)).collect();
    let (a, b, c) = (by_key[&key_of(1)], by_key[&key_of(2)], by_key[&key_of(3)]);
    assert_eq!((a.votes, a.skips, a.unsure), (4, 1, 0));
    assert_eq!((b.votes, b.skips, b.unsure), (3, 0, 1));
    assert_eq!((c.votes, c.skips, c.unsure), (2, 1, 0));
    // Consensus exists on samples 1 (cat), 2 (dog) and 5 (bird); 3 is a tie.
    assert_eq!(a.agrees_with_consensus, Some(1.0));
    assert_eq!(b.agrees_with_consensus, Some(1.0));
    assert_eq!(c.agrees_with_consensus, Some(0.5));
    assert_eq!(a.gold_accuracy, None);
    // The one annotator who went against the others is the least reliable, and is listed last.
    assert_eq!(stats.annotators[2].annotator, key_of(3));
    for x in &stats.annotators {
        let r = x.reliability.unwrap();
        assert!(r > 0.0 && r < 1.0, "{x:?}");
    }
    assert!(c.reliability < a.reliability && c.reliability < b.reliability);
}

#[test]
fn fleiss_kappa_is_given_when_every_sample_has_the_same_number_of_votes() {
    // Two annotators on four samples: agree on 1, 2, 3, disagree on 4.
    // p_bar = 3/4; label shares cat 5/8, dog 3/8, so p_e = 34/64 = 17/32 and
    // kappa = (3/4 - 17/32) / (1 - 17/32) = 7/15.
    let read = read(vec![
        annotation(1, 1, CAT),
        annotation(2, 1, CAT),
        annotation(1, 2, DOG),
        annotation(2, 2, DOG),
        annotation(1, 3, CAT),
        annotation(2, 3, CAT),
        annotation(1, 4, DOG),
        annotation(2, 4, CAT),
    ]);
    let stats = summarise(
        &read,
        &labels(&["cat", "dog"]),
        &HashMap::new(),
        Method::DawidSkene,
    )
    .unwrap()
    .stats;
    let kappa = stats.agreement.fleiss_kappa.value.unwrap();
    assert!((kappa - 7.0 / 15.0).abs() < 1e-12, "{kappa}");
    assert_eq!(stats.agreement.fleiss_kappa.unavailable, None);
}

#[test]
fn gold_labels_let_dawid_skene_overrule_a_majority_that_is_always_wrong() {
    let no_yes = labels(&["no", "yes"]);
    let (no, yes) = (Value::Label(0), Value::Label(1));
    let flip = |v: Value| if v == no { yes } else { no };
    let mut annotations = Vec::new();
    let mut gold = HashMap::new();
    // Samples 1..=6 have gold labels: annotator 1 gets them right, 2 and 3 always wrong.
    for s in 1..=6u32 {
        let truth = if s % 2 == 0 { no } else { yes };
        gold.insert(sample(s), truth.label().unwrap());
        annotations.push(annotation(1, s, truth));
        annotations.push(annotation(2, s, flip(truth)));
        annotations.push(annotation(3, s, flip(truth)));
    }
    // Sample 7: 1 says yes, the other two no. Sample 8: the reverse.
    annotations.extend([
        annotation(1, 7, yes),
        annotation(2, 7, no),
        annotation(3, 7, no),
        annotation(1, 8, no),
        annotation(2, 8, yes),
        annotation(3, 8, yes),
    ]);
    let read = read(annotations);

    let majority = summarise(&read, &no_yes, &gold, Method::Majority).unwrap();
    assert_eq!(majority.named()[6].label.as_deref(), Some("no"));
    assert_eq!(majority.named()[7].label.as_deref(), Some("yes"));

    let ds = summarise(&read, &no_yes, &gold, Method::DawidSkene).unwrap();
    assert_eq!(ds.named()[6].label.as_deref(), Some("yes"));
    assert_eq!(ds.named()[7].label.as_deref(), Some("no"));
    assert!(
        ds.samples[6].confidence.unwrap() > 0.9,
        "{:?}",
        ds.samples[6]
    );
    // A gold sample's consensus is its gold label, at certainty.
    assert_eq!(ds.named()[0].label.as_deref(), Some("yes"));
    assert_eq!(ds.samples[0].confidence, Some(1.0));
    let stats = &ds.stats;
    assert_eq!(stats.counts.gold_samples_labelled, 6);
    assert_eq!(stats.annotators[0].annotator, key_of(1));
    assert_eq!(stats.annotators[0].gold_votes, 6);
    assert_eq!(stats.annotators[0].gold_accuracy, Some(1.0));
    assert_eq!(stats.annotators[1].gold_accuracy, Some(0.0));
    assert!(stats.annotators[0].reliability.unwrap() > 0.9);
    assert!(stats.annotators[1].reliability.unwrap() < 0.1);
}

#[test]
fn rejections_are_counted_and_nothing_to_compare_is_said_plainly() {
    let mut read = read(vec![annotation(1, 1, CAT)]);
    read.rejected.bad_signature = 2;
    read.rejected.wrong_slot = 1;
    read.conflicted_slots = 4;
    let stats = summarise(
        &read,
        &labels(&["cat", "dog"]),
        &HashMap::new(),
        Method::DawidSkene,
    )
    .unwrap()
    .stats;
    assert_eq!(
        stats.counts.rejected,
        Rejected {
            total: 3,
            bad_signature: 2,
            wrong_slot: 1,
            ..Rejected::default()
        }
    );
    assert_eq!(stats.counts.conflicted_slots, 4);
    let alpha = &stats.agreement.krippendorff_alpha;
    assert_eq!(alpha.value, None);
    assert_eq!(
        alpha.unavailable.as_deref(),
        Some("no sample has two or more votes, so agreement is undefined")
    );

    let empty = summarise(
        &Annotations::default(),
        &labels(&["cat"]),
        &HashMap::new(),
        Method::DawidSkene,
    )
    .unwrap();
    assert!(empty.samples.is_empty());
    assert!(empty.stats.annotators.is_empty());
    assert_eq!(empty.stats.counts, Counts::default());
}

#[test]
fn method_names_parse_and_unknown_ones_are_refused_with_the_choices() {
    assert_eq!("majority".parse(), Ok(Method::Majority));
    assert_eq!("dawid-skene".parse(), Ok(Method::DawidSkene));
    let err = "mean".parse::<Method>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "'mean' is not a consensus method; use dawid-skene or majority"
    );
}

/// Accuracy of `rows` against `truth`; a majority tie counts as the share of a random pick that
/// would be right (what breaking it by a coin would score on average).
fn accuracy(rows: &[SampleConsensus], truth: &HashMap<SampleId, String>) -> f64 {
    let right: f64 = rows
        .iter()
        .map(|r| {
            let t = &truth[&r.sample];
            match &r.label {
                Some(l) => f64::from(u8::from(l == t)),
                None if r.tied.contains(t) => 1.0 / r.tied.len() as f64,
                None => 0.0,
            }
        })
        .sum();
    right / rows.len() as f64
}

#[test]
fn simulated_annotators_dawid_skene_beats_majority_and_ranks_them_by_true_accuracy() {
    // Five annotators of known, unequal accuracy; three of them label each sample; a wrong
    // answer is any other label, uniformly. Seeded, so a failure reproduces.
    const ACCURACY: [f64; 5] = [0.95, 0.8, 0.65, 0.5, 0.4];
    const SAMPLES: u32 = 600;
    let names = labels(&["a", "b", "c", "d"]);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut annotations = Vec::new();
    let mut truth = HashMap::new();
    let mut raters: Vec<u8> = (0..5).collect();
    for s in 0..SAMPLES {
        let t: u16 = rng.random_range(0..4);
        truth.insert(sample_of(s), names[usize::from(t)].clone());
        raters.shuffle(&mut rng);
        for &r in &raters[..3] {
            let label = if rng.random::<f64>() < ACCURACY[usize::from(r)] {
                t
            } else {
                let wrong = rng.random_range(0..3);
                if wrong >= t { wrong + 1 } else { wrong }
            };
            annotations.push(annotation(r + 1, s, Value::Label(label)));
        }
    }
    let read = read(annotations);
    let ds = summarise(&read, &names, &HashMap::new(), Method::DawidSkene).unwrap();
    let mv = summarise(&read, &names, &HashMap::new(), Method::Majority).unwrap();
    let (ds_acc, mv_acc) = (accuracy(&ds.named(), &truth), accuracy(&mv.named(), &truth));
    eprintln!("accuracy: Dawid–Skene {ds_acc:.3}, majority {mv_acc:.3}");
    assert!(
        ds_acc > mv_acc + 0.03,
        "Dawid–Skene {ds_acc:.3} vs majority {mv_acc:.3}"
    );
    // Ranked most reliable first: exactly the order of true accuracy, with estimates close to it.
    let ranked: Vec<AnnotatorKey> = ds.stats.annotators.iter().map(|a| a.annotator).collect();
    assert_eq!(ranked, (1..=5).map(key_of).collect::<Vec<_>>());
    for (a, want) in ds.stats.annotators.iter().zip(ACCURACY) {
        let got = a.reliability.unwrap();
        eprintln!("reliability: estimated {got:.3}, true {want}");
        assert!((got - want).abs() < 0.08, "estimated {got:.3}, true {want}");
    }
}

#[test]
fn a_lone_annotator_without_gold_gets_majority_and_no_reliability_with_the_reason() {
    // Dawid–Skene on one annotator drifts to a garbage class (its confidence falls to ~0.6 over
    // the iterations), so it must not be used.
    let names = labels(&["a", "b", "c"]);
    let lone = read(vec![
        annotation(1, 1, CAT),
        annotation(1, 2, DOG),
        annotation(1, 3, CAT),
    ]);
    let summary = summarise(&lone, &names, &HashMap::new(), Method::DawidSkene).unwrap();
    assert_eq!(summary.stats.method, Method::Majority);
    assert_eq!(summary.stats.note.as_deref(), Some(UNANCHORED));
    assert_eq!(summary.stats.annotators[0].reliability, None);
    assert_eq!(
        summary.named(),
        [
            row(1, Some("a"), Some(1.0), (1, 0, 0), &[]),
            row(2, Some("b"), Some(1.0), (1, 0, 0), &[]),
            row(3, Some("a"), Some(1.0), (1, 0, 0), &[]),
        ]
    );

    // A gold label anchors it: Dawid–Skene is used, and the gold sample is certain.
    let gold = HashMap::from([(sample(1), 0)]);
    let anchored = summarise(&lone, &names, &gold, Method::DawidSkene).unwrap();
    assert_eq!(anchored.stats.method, Method::DawidSkene);
    assert_eq!(anchored.stats.note, None);
    assert!(anchored.stats.annotators[0].reliability.is_some());
    assert_eq!(anchored.samples[0].confidence, Some(1.0));
}

/// Why 2 of issue 14: every stats read ran Dawid–Skene again over every annotation. The memo
/// computes once per state of the inputs, and again as soon as any of them changes.
#[test]
fn the_consensus_is_computed_once_per_state_of_its_inputs() {
    let mut memo = Memo::default();
    let names = labels(&["cat", "dog", "bird"]);
    let gold = HashMap::new();
    let ds = Method::DawidSkene;
    let first = memo.summarise(&pets(), &names, &gold, ds).unwrap();
    let again = memo.summarise(&pets(), &names, &gold, ds).unwrap();
    assert!(
        Arc::ptr_eq(&first, &again),
        "the same inputs: not computed again"
    );
    assert_eq!(*first, summarise(&pets(), &names, &gold, ds).unwrap());

    let mut more = pets();
    more.annotations.push(annotation(4, 1, BIRD));
    let changed = memo.summarise(&more, &names, &gold, ds).unwrap();
    assert!(!Arc::ptr_eq(&first, &changed));
    assert_eq!(*changed, summarise(&more, &names, &gold, ds).unwrap());
    let gold = HashMap::from([(sample(1), 0)]);
    let anchored = memo.summarise(&more, &names, &gold, ds).unwrap();
    assert!(!Arc::ptr_eq(&changed, &anchored), "gold is an input");
    let majority = memo
        .summarise(&more, &names, &gold, Method::Majority)
        .unwrap();
    assert_eq!(majority.stats.method, Method::Majority);
}

/// Issue 17: the statistics name the annotators the screening flags, with the reason, for a
/// person to decide on; honest annotators carry no flag.
#[test]
fn a_spammer_in_the_statistics_carries_a_flag_with_its_reason() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let names = labels(&["cat", "dog", "bird", "fish"]);
    let mut all = Vec::new();
    for s in 0..60 {
        let truth = rng.random_range(0..4u16);
        for honest in 1..=3 {
            all.push(annotation(honest, s, Value::Label(truth)));
        }
        all.push(annotation(9, s, Value::Label(2)));
    }
    let summary = summarise(&read(all), &names, &HashMap::new(), Method::DawidSkene).unwrap();
    for a in &summary.stats.annotators {
        if a.annotator == key_of(9) {
            let flag = a.flag.as_ref().expect("the spammer is flagged");
            assert_eq!(flag.kind, "fixed");
            assert!(
                flag.reason
                    .starts_with("answers \"bird\" almost whatever the sample"),
                "{}",
                flag.reason
            );
            assert!(flag.p_value < 0.01);
        } else {
            assert_eq!(a.flag, None, "{a:?}");
        }
    }
}
