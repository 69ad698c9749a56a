//! Simulated annotators of known accuracy (seeded), against majority vote.

use rand::seq::SliceRandom as _;
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::aggregate::{Outcome, majority};

struct Simulation {
    votes: Votes,
    truth: Vec<u16>,
}

/// `items` items with true labels drawn from `priors`; each is labelled by `per_item` distinct
/// raters drawn at random; rater `j` answers the truth with probability `accuracy[j]`, otherwise
/// the answer given by `wrong(truth, rng)`.
fn simulate(
    seed: u64,
    items: u32,
    priors: &[f64],
    accuracy: &[f64],
    per_item: usize,
    wrong: impl Fn(u16, &mut ChaCha8Rng) -> u16,
) -> Simulation {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let k = priors.len() as u16;
    let mut votes = Votes::new(k).unwrap();
    let mut truth = Vec::new();
    let mut raters: Vec<u32> = (0..accuracy.len() as u32).collect();
    for item in 0..items {
        let mut u: f64 = rng.random();
        let mut t = k - 1;
        for (c, p) in priors.iter().enumerate() {
            if u < *p {
                t = c as u16;
                break;
            }
            u -= p;
        }
        truth.push(t);
        raters.shuffle(&mut rng);
        for &r in &raters[..per_item] {
            let label = if rng.random::<f64>() < accuracy[r as usize] {
                t
            } else {
                wrong(t, &mut rng)
            };
            votes.push(item, r, label).unwrap();
        }
    }
    Simulation { votes, truth }
}

/// A uniformly random wrong label.
fn uniform_wrong(k: u16) -> impl Fn(u16, &mut ChaCha8Rng) -> u16 {
    move |t, rng| {
        let l = rng.random_range(0..k - 1);
        if l >= t { l + 1 } else { l }
    }
}

/// Expected accuracy of majority vote with ties broken uniformly at random.
fn majority_accuracy(sim: &Simulation) -> f64 {
    let out = majority(&sim.votes);
    let credit: f64 = out
        .iter()
        .zip(&sim.truth)
        .map(|(o, &t)| match o {
            Outcome::Winner { label, .. } => f64::from(u8::from(*label == t)),
            Outcome::Tie { labels, .. } if labels.contains(&t) => 1.0 / labels.len() as f64,
            _ => 0.0,
        })
        .sum();
    credit / sim.truth.len() as f64
}

fn ds_accuracy(sim: &Simulation, fit: &Fit, skip: &[u32]) -> f64 {
    let mut right = 0;
    let mut n = 0;
    for (i, &t) in sim.truth.iter().enumerate() {
        if skip.contains(&(i as u32)) {
            continue;
        }
        n += 1;
        right += usize::from(fit.consensus(i as u32).map(|(l, _)| l) == Some(t));
    }
    right as f64 / n as f64
}

#[test]
fn beats_majority_vote_and_ranks_annotators_by_their_true_accuracy() {
    let accuracy = [0.95, 0.85, 0.75, 0.65, 0.55, 0.45, 0.35];
    let sim = simulate(
        7,
        3000,
        &[0.4, 0.3, 0.2, 0.1],
        &accuracy,
        5,
        uniform_wrong(4),
    );
    let fit = dawid_skene(&sim.votes, &[], Config::default());
    assert!(
        fit.converged,
        "EM did not converge in {} iterations",
        fit.iterations
    );
    let mv = majority_accuracy(&sim);
    let ds = ds_accuracy(&sim, &fit, &[]);
    eprintln!(
        "majority vote {mv:.4}, Dawid-Skene {ds:.4}, reliability {:?}",
        (0..7).map(|j| fit.reliability(j)).collect::<Vec<_>>()
    );
    assert!(
        ds > mv + 0.02,
        "Dawid-Skene {ds:.4} is not clearly above majority vote {mv:.4}"
    );

    let reliability: Vec<f64> = (0..accuracy.len() as u32)
        .map(|j| fit.reliability(j))
        .collect();
    for j in 1..accuracy.len() {
        assert!(
            reliability[j - 1] > reliability[j],
            "annotator {} (accuracy {}) is not ranked above annotator {j} (accuracy {}): {reliability:?}",
            j - 1,
            accuracy[j - 1],
            accuracy[j]
        );
    }
    for (r, a) in reliability.iter().zip(accuracy) {
        assert!(
            (r - a).abs() < 0.05,
            "reliability {r:.3} is far from the true accuracy {a}"
        );
    }
    let prior_error: f64 = fit
        .priors
        .iter()
        .zip([0.4, 0.3, 0.2, 0.1])
        .map(|(p, q)| (p - q).abs())
        .sum();
    assert!(prior_error < 0.05, "priors {:?}", fit.priors);
    // The posterior confidence of a consensus is a probability, and higher when right.
    let (l, p) = fit.consensus(0).unwrap();
    assert!(l < 4 && (0.0..=1.0).contains(&p));
}

#[test]
fn gold_labels_anchor_skill_against_a_colluding_majority() {
    // Two labels; three of five annotators answer the opposite label 90% of the time. Without
    // gold both majority vote and EM follow them; 5% gold items pin the truth down.
    let accuracy = [0.9, 0.9, 0.1, 0.1, 0.1];
    let flip = |t: u16, _: &mut ChaCha8Rng| 1 - t;
    let sim = simulate(11, 2000, &[0.5, 0.5], &accuracy, 5, flip);
    let mv = majority_accuracy(&sim);
    assert!(
        mv < 0.3,
        "the colluding majority should fool majority vote, got {mv}"
    );

    let free = dawid_skene(&sim.votes, &[], Config::default());
    assert!(ds_accuracy(&sim, &free, &[]) < 0.2);

    let gold: Vec<(u32, u16)> = (0..100)
        .map(|i| (i * 20, sim.truth[(i * 20) as usize]))
        .collect();
    let gold_items: Vec<u32> = gold.iter().map(|g| g.0).collect();
    let anchored = dawid_skene(&sim.votes, &gold, Config::default());
    let acc = ds_accuracy(&sim, &anchored, &gold_items);
    assert!(
        acc > 0.95,
        "with gold labels the consensus should be right, got {acc}"
    );
    assert!(anchored.reliability(0) > 0.8 && anchored.reliability(2) < 0.2);
    // Gold items keep their gold label at certainty.
    assert_eq!(anchored.consensus(0), Some((sim.truth[0], 1.0)));
}

#[test]
fn items_without_evidence_have_no_consensus() {
    let mut votes = Votes::new(2).unwrap();
    votes.push(0, 0, 1).unwrap();
    votes.push(2, 0, 0).unwrap();
    let fit = dawid_skene(&votes, &[(3, 1)], Config::default());
    assert!(fit.consensus(0).is_some());
    assert_eq!(fit.consensus(1), None);
    // Gold beyond the voted items is ignored (item 3 does not exist in the table).
    assert_eq!(fit.posterior(1).len(), 2);
}

/// Audit 2026-12-04, N5: a matrix per annotator was `raters × K²` numbers, computed at every
/// poll of the labeling page: 2,000 one-vote keys (free to make) on a 1,024-class dataset asked
/// for 16 GiB. Now one-vote annotators share a matrix, and past a budget every annotator gets one
/// accuracy; the fit still finds the truth. Written against the code before, this test could not
/// finish (the allocation aborts the process).
#[test]
fn many_annotators_and_classes_fit_in_bounded_memory() {
    let k = 1024u16;
    let mut votes = Votes::new(k).unwrap();
    // Five careful annotators label 200 items (truth: item % k).
    for item in 0..200u32 {
        let truth = (item % u32::from(k)) as u16;
        for rater in 0..5u32 {
            votes.push(item, rater, truth).unwrap();
        }
    }
    // 2,000 keys with one random-ish vote each.
    for n in 0..2_000u32 {
        votes
            .push(n % 200, 5 + n, ((n * 7919) % u32::from(k)) as u16)
            .unwrap();
    }
    let config = Config::default();
    let fit = dawid_skene(&votes, &[], config);
    assert!(
        fit.rater_cells() <= config.max_cells + 2 * 2_005,
        "{} numbers for the raters",
        fit.rater_cells()
    );
    let right = (0..200u32)
        .filter(|&i| fit.consensus(i).map(|c| c.0) == Some((i % u32::from(k)) as u16))
        .count();
    assert!(right >= 195, "{right} of 200 items");
    // With many careful annotators of their own the budget tips into one accuracy each.
    let mut many = Votes::new(k).unwrap();
    for item in 0..40u32 {
        for rater in 0..10u32 {
            many.push(item, rater, (item % u32::from(k)) as u16)
                .unwrap();
        }
    }
    let tight = Config {
        max_cells: 4 * usize::from(k) * usize::from(k),
        ..config
    };
    let fit = dawid_skene(&many, &[], tight);
    assert!(fit.one_coin());
    assert!((0..40).all(|i| fit.consensus(i).map(|c| c.0) == Some((i % u32::from(k)) as u16)));
    assert!(fit.reliability(0) > 0.9);
}
