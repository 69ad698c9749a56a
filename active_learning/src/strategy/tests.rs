use super::*;
use proptest::prelude::{Strategy as _, any, prop_assert, prop_assert_eq, proptest};
use rand::SeedableRng as _;
use rand_chacha::ChaCha8Rng;

/// Four samples where each uncertainty strategy has a different favourite:
/// least confidence -> 1, margin -> 2, entropy -> 0; sample 3 is certain.
fn table() -> Matrix {
    Matrix::from_rows(
        4,
        &[
            [0.45, 0.55 / 3.0, 0.55 / 3.0, 0.55 / 3.0],
            [0.40, 0.30, 0.30, 0.0],
            [0.49, 0.48, 0.02, 0.01],
            [0.97, 0.01, 0.01, 0.01],
        ],
    )
    .unwrap()
}

fn rng() -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(42)
}

fn picks(
    strategy: Strategy,
    probs: &Matrix,
    passes: &[Matrix],
    k: usize,
    exclude: &[usize],
) -> Vec<usize> {
    let pool = Pool {
        probs,
        passes,
        features: None,
    };
    let exclude: HashSet<usize> = exclude.iter().copied().collect();
    select(strategy, &pool, k, &exclude, &mut rng())
        .unwrap()
        .into_iter()
        .map(|p| p.index)
        .collect()
}

#[test]
fn each_uncertainty_strategy_ranks_the_hand_made_table_its_own_way() {
    let t = table();
    assert_eq!(
        picks(Strategy::LeastConfidence, &t, &[], 3, &[]),
        vec![1, 0, 2]
    );
    assert_eq!(picks(Strategy::Margin, &t, &[], 3, &[]), vec![2, 1, 0]);
    assert_eq!(picks(Strategy::Entropy, &t, &[], 3, &[]), vec![0, 1, 2]);
}

#[test]
fn bald_prefers_disagreeing_passes_over_agreeing_uncertain_ones() {
    // Both samples average to (0.5, 0.5); only sample 1's passes disagree.
    let probs = Matrix::from_rows(2, &[[0.5, 0.5], [0.5, 0.5], [0.9, 0.1]]).unwrap();
    let passes = [
        Matrix::from_rows(2, &[[0.5, 0.5], [0.95, 0.05], [0.9, 0.1]]).unwrap(),
        Matrix::from_rows(2, &[[0.5, 0.5], [0.05, 0.95], [0.9, 0.1]]).unwrap(),
    ];
    assert_eq!(picks(Strategy::Bald, &probs, &passes, 1, &[]), vec![1]);
    assert_eq!(picks(Strategy::Entropy, &probs, &passes, 1, &[]), vec![0]);
    let pool = Pool {
        probs: &probs,
        passes: &[],
        features: None,
    };
    assert_eq!(
        select(Strategy::Bald, &pool, 1, &HashSet::new(), &mut rng()),
        Err(SelectError::NeedsPasses)
    );
}

#[test]
fn excluded_samples_are_skipped_and_picks_report_score_and_top_classes() {
    let t = table();
    assert_eq!(picks(Strategy::Margin, &t, &[], 1, &[2]), vec![1]);
    let pool = Pool {
        probs: &t,
        passes: &[],
        features: None,
    };
    let exclude = HashSet::from([2]);
    let pick = &select(Strategy::Margin, &pool, 1, &exclude, &mut rng()).unwrap()[0];
    assert_eq!(pick.index, 1);
    assert!((pick.score - 0.9).abs() < 1e-6);
    assert_eq!(pick.reason, Reason::Uncertain);
    assert_eq!(pick.top.len(), 3);
    assert_eq!(pick.top[0], (0, 0.40));
    assert!(pick.top.windows(2).all(|w| w[0].1 >= w[1].1));
    // Asking for more than is eligible returns what is eligible.
    assert_eq!(picks(Strategy::Entropy, &t, &[], 10, &[0, 1]).len(), 2);
}

#[test]
fn random_picks_distinct_eligible_samples_reproducibly_and_covers_the_pool() {
    let probs = Matrix::new(50, 2, vec![0.5; 100]).unwrap();
    let exclude: Vec<usize> = (0..50).filter(|i| i % 5 == 0).collect();
    let a = picks(Strategy::Random, &probs, &[], 10, &exclude);
    assert_eq!(a, picks(Strategy::Random, &probs, &[], 10, &exclude));
    let mut seen = HashSet::new();
    for seed in 0..200 {
        let pool = Pool {
            probs: &probs,
            passes: &[],
            features: None,
        };
        let ex: HashSet<usize> = exclude.iter().copied().collect();
        let mut r = ChaCha8Rng::seed_from_u64(seed);
        seen.extend(
            select(Strategy::Random, &pool, 3, &ex, &mut r)
                .unwrap()
                .into_iter()
                .map(|p| p.index),
        );
    }
    assert_eq!(
        seen.len(),
        40,
        "every eligible sample is drawn sometimes, no excluded one ever"
    );
    assert!(seen.iter().all(|i| i % 5 != 0));
}

/// Features: samples 0..5 are near-duplicates at the origin, samples 5..10 near-duplicates at
/// (10, 10). Margin scores: the first group slightly more uncertain than the second.
fn two_groups() -> (Matrix, Matrix) {
    let mut feats = Vec::new();
    let mut probs = Vec::new();
    for i in 0..10 {
        let base = if i < 5 { 0.0 } else { 10.0 };
        feats.push([base + i as f32 * 0.01, base - i as f32 * 0.01]);
        let p = if i < 5 {
            0.50 + i as f32 * 0.001
        } else {
            0.55 + i as f32 * 0.001
        };
        probs.push([p, 1.0 - p]);
    }
    (
        Matrix::from_rows(2, &feats).unwrap(),
        Matrix::from_rows(2, &probs).unwrap(),
    )
}

#[test]
fn diversity_step_spreads_a_batch_over_different_regions() {
    let (features, probs) = two_groups();
    let pool = Pool {
        probs: &probs,
        passes: &[],
        features: Some(&features),
    };
    let plain = select(Strategy::Margin, &pool, 2, &HashSet::new(), &mut rng()).unwrap();
    assert!(
        plain.iter().all(|p| p.index < 5),
        "plain margin takes two near-duplicates"
    );
    let query = Query::parse("margin-diverse").unwrap();
    let diverse = query
        .select(&pool, 2, &HashSet::new(), &[], &mut rng())
        .unwrap();
    // One pick per group, each the group's central sample (offsets 0.00..0.04 and 0.05..0.09).
    let mut chosen: Vec<usize> = diverse.iter().map(|p| p.index).collect();
    chosen.sort_unstable();
    assert_eq!(chosen, vec![2, 7], "{diverse:?}");
    assert!(diverse.iter().all(|p| p.reason == Reason::Diverse));
    let no_features = Pool {
        features: None,
        ..pool
    };
    assert!(matches!(
        query.select(&no_features, 2, &HashSet::new(), &[], &mut rng()),
        Err(SelectError::NeedsFeatures(_))
    ));
}

#[test]
fn cold_start_picks_representatives_until_every_class_has_enough_labels() {
    // Three tight clusters of 10 samples and one far outlier that the model finds most uncertain.
    let mut feats = Vec::new();
    let mut probs = Vec::new();
    for c in 0..3 {
        for i in 0..10 {
            let jitter = (i as f32 - 4.5) * 0.02;
            feats.push([c as f32 * 5.0 + jitter, jitter]);
            probs.push([0.9, 0.05, 0.05]);
        }
    }
    feats.push([2.5, 40.0]);
    probs.push([0.34, 0.33, 0.33]);
    let features = Matrix::from_rows(2, &feats).unwrap();
    let probs = Matrix::from_rows(3, &probs).unwrap();
    let pool = Pool {
        probs: &probs,
        passes: &[],
        features: Some(&features),
    };
    let mut query = Query::new(Strategy::Entropy);
    query.cold_start = ColdStart { min_per_class: 2 };
    let cold = query
        .select(&pool, 3, &HashSet::new(), &[2, 1, 5], &mut rng())
        .unwrap();
    let mut clusters: Vec<usize> = cold.iter().map(|p| p.index / 10).collect();
    clusters.sort_unstable();
    assert_eq!(
        clusters,
        vec![0, 1, 2],
        "one representative per cluster, never the outlier: {cold:?}"
    );
    assert!(
        cold.iter()
            .all(|p| p.reason == Reason::ColdStart && matches!(p.index % 10, 4 | 5))
    );
    let warm = query
        .select(&pool, 1, &HashSet::new(), &[2, 2, 5], &mut rng())
        .unwrap();
    assert_eq!((warm[0].index, warm[0].reason), (30, Reason::Uncertain));
}

#[test]
fn strategy_names_parse_back() {
    for s in Strategy::ALL {
        assert_eq!(s.name().parse::<Strategy>(), Ok(s));
        assert_eq!(
            Query::parse(&format!("{s}-diverse")).unwrap().name(),
            format!("{s}-diverse")
        );
    }
    assert!(matches!(Query::parse("smart"), Err(SelectError::UnknownStrategy(s)) if s == "smart"));
}

fn any_query() -> impl proptest::strategy::Strategy<Value = Query> {
    (0..Strategy::ALL.len(), any::<bool>(), 0usize..3).prop_map(|(s, diverse, cold)| {
        let mut q = Query::new(Strategy::ALL[s]);
        if diverse {
            q.diversity = Some(Diversity {
                candidates_per_pick: 3,
            });
        }
        q.cold_start = ColdStart {
            min_per_class: cold,
        };
        q
    })
}

proptest! {
    #[test]
    fn a_batch_is_distinct_eligible_and_as_large_as_possible(
        query in any_query(),
        n in 1usize..60,
        k in 0usize..20,
        exclude in proptest::collection::hash_set(0usize..60, 0..40),
        labelled in proptest::collection::vec(0usize..3, 3),
        seed in any::<u64>(),
    ) {
        let mut values = ChaCha8Rng::seed_from_u64(seed);
        let mut row = |_| {
            let raw: Vec<f32> = (0..3).map(|_| rand::Rng::random_range(&mut values, 0.01f32..1.0)).collect();
            let sum: f32 = raw.iter().sum();
            raw.into_iter().map(|v| v / sum).collect::<Vec<f32>>()
        };
        let probs = Matrix::from_rows(3, &(0..n).map(&mut row).collect::<Vec<_>>()).unwrap();
        let passes: Vec<Matrix> = (0..3).map(|_| Matrix::from_rows(3, &(0..n).map(&mut row).collect::<Vec<_>>()).unwrap()).collect();
        // Few distinct feature values, so clustering meets duplicates and ties.
        let features = Matrix::new(n, 2, (0..2 * n).map(|i| (i % 7) as f32).collect()).unwrap();
        let pool = Pool { probs: &probs, passes: &passes, features: Some(&features) };
        let picks = query.select(&pool, k, &exclude, &labelled, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap();
        let eligible = (0..n).filter(|i| !exclude.contains(i)).count();
        prop_assert_eq!(picks.len(), k.min(eligible));
        let distinct: HashSet<usize> = picks.iter().map(|p| p.index).collect();
        prop_assert_eq!(distinct.len(), picks.len());
        prop_assert!(picks.iter().all(|p| p.index < n && !exclude.contains(&p.index)));
    }
}

#[test]
fn an_explore_share_takes_the_best_then_random_others_never_excluded_ones() {
    // Scores fall with the row index: margin ranks 0, 1, 2, ... best first.
    let rows: Vec<[f32; 2]> = (0..100)
        .map(|i| {
            let p = 0.5 + 0.004 * i as f32;
            [p, 1.0 - p]
        })
        .collect();
    let probs = Matrix::from_rows(2, &rows).unwrap();
    let pool = Pool {
        probs: &probs,
        passes: &[],
        features: None,
    };
    let mut query = Query::new(Strategy::Margin);
    query.explore_percent = 40;
    let exclude: HashSet<usize> = [1, 50, 60].into_iter().collect();
    let picks = query.select(&pool, 10, &exclude, &[], &mut rng()).unwrap();
    let got: Vec<usize> = picks.iter().map(|p| p.index).collect();
    assert_eq!(
        &got[..6],
        &[0, 2, 3, 4, 5, 6],
        "the best six by margin first"
    );
    assert!(picks[..6].iter().all(|p| p.reason == Reason::Uncertain));
    assert!(picks[6..].iter().all(|p| p.reason == Reason::Random));
    let distinct: HashSet<usize> = got.iter().copied().collect();
    assert_eq!(distinct.len(), 10);
    assert!(got.iter().all(|i| !exclude.contains(i)));
    // Drawn from the rest, so (with 90 candidates) not simply the next best four.
    assert_ne!(&got[6..], &[7, 8, 9, 10]);
    assert_eq!(query.explored(10), 4);
    assert_eq!(query.explored(1), 0, "a single pick stays the best one");
}
