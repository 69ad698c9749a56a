use std::collections::BTreeMap;

use rand::{Rng, SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::registry::Registry;
use crate::registry::testing::{DATASET, mlp, signed, update};
use crate::testing::annotator;

type Store = BTreeMap<WeightsHash, Vec<(String, Vec<f32>)>>;

fn config(method: Method) -> Config {
    Config {
        method,
        architecture: None,
    }
}

/// Peers `seeds` (version 1), with `labels` and one tensor `w` each.
fn peers(specs: &[(u8, u64, Vec<f32>)]) -> (Vec<ModelUpdate>, Store) {
    let mut updates = Vec::new();
    let mut store = Store::new();
    for (seed, labels, values) in specs {
        let u = update(*seed, 1, *labels);
        store.insert(u.weights_hash, vec![("w".to_owned(), values.clone())]);
        updates.push(u);
    }
    (updates, store)
}

fn run(updates: &[ModelUpdate], store: &Store, method: Method) -> Result<Merged, MergeError> {
    merge(
        updates,
        |h| store.get(h).map(Vec::as_slice),
        &config(method),
    )
}

fn bits(m: &Merged) -> Vec<(String, Vec<u32>)> {
    m.tensors
        .iter()
        .map(|(n, v)| (n.clone(), v.iter().map(|x| x.to_bits()).collect()))
        .collect()
}

const METHODS: [Method; 3] = [
    Method::WeightedMean,
    Method::TrimmedMean { trim: 0.2 },
    Method::Median,
];

#[test]
fn bit_identical_weights_from_registries_built_in_different_orders() {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let mut records = Vec::new();
    let mut store = Store::new();
    for seed in 1..=7u8 {
        for version in 1..=2 {
            let labels = rng.random_range(1..=2);
            let r = signed(seed, version, labels);
            // Huge values that cancel and small ones they swallow: with these, the order of
            // summation changes the result even after rounding to f32.
            let tensors = ["a.weight", "a.bias", "b.weight"]
                .iter()
                .map(|name| {
                    let values = (0..64)
                        .map(|_| match rng.random_range(0..4) {
                            0 => 1e20,
                            1 => -1e20,
                            _ => rng.random_range(-10.0f32..10.0),
                        })
                        .collect();
                    ((*name).to_owned(), values)
                })
                .collect();
            store.insert(r.update().weights_hash, tensors);
            records.push(r);
        }
    }
    let build = |records: &[crate::registry::SignedUpdate]| {
        let mut reg = Registry::new(DATASET);
        for r in records {
            reg.insert(r.clone()).unwrap();
        }
        reg
    };
    let first = build(&records);
    let mut shuffled: Vec<_> = records.iter().chain(&records[..4]).cloned().collect();
    shuffled.shuffle(&mut rng);
    let second = build(&shuffled);
    assert_eq!(first.digest(), second.digest());
    for method in METHODS {
        let cfg = config(method);
        let lookup = |h: &WeightsHash| store.get(h).map(Vec::as_slice);
        let a = merge(first.latest(), lookup, &cfg).unwrap();
        // Another node lists the same updates in another order.
        let mut listed: Vec<_> = second.latest().collect();
        listed.reverse();
        let b = merge(listed, lookup, &cfg).unwrap();
        assert_eq!(bits(&a), bits(&b), "{method:?}");
        assert_eq!(a.included.len(), 7);
        assert!(a.excluded.is_empty());
    }
    // The test can fail: accumulating in the listed order instead of by peer changes the bits.
    let sum = |order: &[&ModelUpdate]| -> Vec<u32> {
        (0..64)
            .map(|i| {
                let (mut s, mut t) = (0.0f64, 0.0f64);
                for u in order {
                    let w = u.labels_trained as f64;
                    s += w * f64::from(store[&u.weights_hash][0].1[i]);
                    t += w;
                }
                ((s / t) as f32).to_bits()
            })
            .collect()
    };
    let forward: Vec<_> = first.latest().collect();
    let mut backward = forward.clone();
    backward.reverse();
    assert_ne!(sum(&forward), sum(&backward));
}

#[test]
fn weighted_mean_is_exact_on_hand_made_numbers() {
    let (updates, store) = peers(&[
        (1, 1, vec![1.0, 2.0, 0.5]),
        (2, 3, vec![5.0, -2.0, 1.5]),
        (3, 4, vec![0.0, 0.0, 3.0]),
    ]);
    let m = run(&updates, &store, Method::WeightedMean).unwrap();
    // (1·1 + 3·5 + 4·0) / 8 = 2, (1·2 − 3·2) / 8 = −0.5, (0.5 + 4.5 + 12) / 8 = 2.125.
    assert_eq!(m.tensors, vec![("w".to_owned(), vec![2.0, -0.5, 2.125])]);
    assert_eq!(m.architecture, mlp());
}

#[test]
fn trimmed_mean_and_median_are_exact_on_hand_made_numbers() {
    let (updates, store) = peers(&[
        (1, 1, vec![1.0, 4.0]),
        (2, 1, vec![2.0, 1.0]),
        (3, 1, vec![3.0, 3.0]),
        (4, 1, vec![4.0, 2.0]),
        (5, 1, vec![100.0, -50.0]),
    ]);
    let trimmed = run(&updates, &store, Method::TrimmedMean { trim: 0.2 }).unwrap();
    // One value cut each side: mean(2, 3, 4) = 3 and mean(1, 2, 3) = 2.
    assert_eq!(trimmed.tensors[0].1, vec![3.0, 2.0]);
    let median = run(&updates, &store, Method::Median).unwrap();
    assert_eq!(median.tensors[0].1, vec![3.0, 2.0]);
    let even = run(&updates[..4], &store, Method::Median).unwrap();
    assert_eq!(even.tensors[0].1, vec![2.5, 2.5]);
    let untrimmed = run(&updates, &store, Method::TrimmedMean { trim: 0.0 }).unwrap();
    assert_eq!(untrimmed.tensors[0].1, vec![22.0, -8.0]);
}

#[test]
fn robust_modes_bound_one_peer_sending_huge_values() {
    let honest = [0.9f32, 1.0, 1.1, 1.05];
    let mut specs: Vec<_> = honest
        .iter()
        .enumerate()
        .map(|(i, &v)| (i as u8 + 1, 10, vec![v, -v]))
        .collect();
    // Peer 5 claims many labels and sends huge values.
    specs.push((5, 1_000_000, vec![1e30, -f32::MAX]));
    let (updates, store) = peers(&specs);
    for method in [Method::TrimmedMean { trim: 0.2 }, Method::Median] {
        let m = run(&updates, &store, method).unwrap();
        let w = &m.tensors[0].1;
        assert!((0.9..=1.1).contains(&w[0]), "{method:?}: {w:?}");
        assert!((-1.1..=-0.9).contains(&w[1]), "{method:?}: {w:?}");
    }
    // The weighted mean is not robust: that is what the robust modes are for.
    let mean = run(&updates, &store, Method::WeightedMean).unwrap();
    assert!(mean.tensors[0].1[0] > 1e29);
    assert!(mean.tensors[0].1.iter().all(|v| v.is_finite()));
}

#[test]
fn nan_and_infinite_weights_are_rejected_with_a_reason_never_propagated() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let (updates, store) = peers(&[
            (1, 10, vec![1.0, 2.0]),
            (2, 10, vec![3.0, bad]),
            (3, 10, vec![2.0, 4.0]),
        ]);
        for method in METHODS {
            let m = run(&updates, &store, method).unwrap();
            assert_eq!(
                m.excluded,
                vec![Excluded {
                    peer: annotator(2),
                    version: 1,
                    reason: Reason::NonFinite {
                        tensor: "w".to_owned(),
                        index: 1
                    },
                }],
                "{method:?}"
            );
            assert_eq!(m.tensors[0].1, vec![1.5, 3.0], "{method:?}");
            let mut included = vec![annotator(1), annotator(3)];
            included.sort();
            assert_eq!(m.included, included);
        }
    }
}

#[test]
fn incompatible_shapes_and_names_are_refused_with_the_peer_named() {
    let (mut updates, mut store) = peers(&[
        (1, 10, vec![1.0, 2.0]),
        (2, 10, vec![3.0, 4.0]),
        (3, 10, vec![5.0, 6.0, 7.0]),
    ]);
    let m = run(&updates, &store, Method::WeightedMean).unwrap();
    assert_eq!(m.tensors[0].1, vec![2.0, 3.0]);
    assert_eq!(m.excluded.len(), 1);
    let e = &m.excluded[0];
    assert_eq!(e.peer, annotator(3));
    assert_eq!(
        e.reason,
        Reason::Shape {
            tensor: "w".to_owned(),
            expected: 2,
            found: 3
        }
    );
    let message = e.to_string();
    assert!(message.contains(&annotator(3).to_string()), "{message}");
    assert!(message.contains("tensor `w` has 3 values"), "{message}");

    // Renamed, extra and duplicate tensors.
    let h = |i: usize, updates: &[ModelUpdate]| updates[i].weights_hash;
    store.insert(h(2, &updates), vec![("v".to_owned(), vec![5.0, 6.0])]);
    let m = run(&updates, &store, Method::Median).unwrap();
    assert_eq!(m.excluded[0].reason, Reason::MissingTensor("w".to_owned()));
    store.insert(
        h(2, &updates),
        vec![
            ("w".to_owned(), vec![5.0, 6.0]),
            ("x".to_owned(), vec![0.0]),
        ],
    );
    let m = run(&updates, &store, Method::Median).unwrap();
    assert_eq!(
        m.excluded[0].reason,
        Reason::UnexpectedTensor("x".to_owned())
    );
    store.insert(
        h(2, &updates),
        vec![
            ("w".to_owned(), vec![5.0, 6.0]),
            ("w".to_owned(), vec![5.0, 6.0]),
        ],
    );
    let m = run(&updates, &store, Method::Median).unwrap();
    assert_eq!(
        m.excluded[0].reason,
        Reason::DuplicateTensor("w".to_owned())
    );

    // No weights, no labels.
    store.remove(&h(2, &updates));
    updates[1].labels_trained = 0;
    let m = run(&updates, &store, Method::Median).unwrap();
    let mut expected = vec![
        (annotator(2), Reason::NoLabels),
        (annotator(3), Reason::MissingWeights(h(2, &updates))),
    ];
    expected.sort_by_key(|e| e.0);
    let found: Vec<_> = m
        .excluded
        .iter()
        .map(|e| (e.peer, e.reason.clone()))
        .collect();
    assert_eq!(found, expected);
    assert_eq!(m.included, vec![annotator(1)]);
}

#[test]
fn other_architectures_are_excluded_and_reported() {
    let (mut updates, store) =
        peers(&[(1, 10, vec![1.0]), (2, 10, vec![3.0]), (3, 10, vec![100.0])]);
    let cnn = Architecture::new([0xc0; 32], "cnn").unwrap();
    updates[2].architecture = cnn.clone();
    // Without an expected architecture, the majority's.
    let m = run(&updates, &store, Method::WeightedMean).unwrap();
    assert_eq!(m.tensors[0].1, vec![2.0]);
    assert_eq!(
        m.excluded,
        vec![Excluded {
            peer: annotator(3),
            version: 1,
            reason: Reason::Architecture {
                expected: mlp(),
                found: cnn.clone()
            }
        }]
    );
    // With one, the expected one even against the majority.
    let expect_cnn = Config {
        method: Method::WeightedMean,
        architecture: Some(cnn.clone()),
    };
    let m = merge(&updates, |h| store.get(h).map(Vec::as_slice), &expect_cnn).unwrap();
    assert_eq!(m.tensors[0].1, vec![100.0]);
    assert_eq!(m.excluded.len(), 2);
    // Nothing of the expected architecture: an error that lists every exclusion.
    let expect_other = Config {
        method: Method::Median,
        architecture: Some(Architecture::new([0; 32], "none").unwrap()),
    };
    match merge(&updates, |h| store.get(h).map(Vec::as_slice), &expect_other) {
        Err(MergeError::NothingCompatible(excluded)) => assert_eq!(excluded.len(), 3),
        other => panic!("expected NothingCompatible, got {other:?}"),
    }
}

#[test]
fn refuses_bad_trim_duplicates_and_nothing() {
    let (updates, store) = peers(&[(1, 10, vec![1.0])]);
    for trim in [-0.1, 0.5, f64::NAN] {
        assert!(matches!(
            run(&updates, &store, Method::TrimmedMean { trim }),
            Err(MergeError::InvalidTrim(_))
        ));
    }
    let twice = [updates[0].clone(), updates[0].clone()];
    assert_eq!(
        run(&twice, &store, Method::Median),
        Err(MergeError::DuplicatePeer(annotator(1)))
    );
    assert_eq!(run(&[], &store, Method::Median), Err(MergeError::NoUpdates));
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Finite values over the whole f32 range, with many exact cancellations.
    fn value() -> impl Strategy<Value = f32> {
        prop_oneof![
            -10.0f32..10.0,
            Just(1e30f32),
            Just(-1e30f32),
            Just(f32::MAX),
            Just(-f32::MAX),
            any::<f32>().prop_filter("finite", |v| v.is_finite()),
        ]
    }

    fn peers_strategy() -> impl Strategy<Value = Vec<(u64, Vec<f32>)>> {
        prop::collection::vec((1u64..5, prop::collection::vec(value(), 3)), 1..8)
    }

    proptest! {
        /// Any listing order gives the same bits, and every coordinate lies within the range of
        /// the values merged (no overflow to infinity, no NaN).
        #[test]
        fn merge_is_order_free_and_within_the_input_range(
            specs in peers_strategy(),
            order in any::<u64>(),
        ) {
            let specs: Vec<_> = specs
                .into_iter()
                .enumerate()
                .map(|(i, (labels, values))| (i as u8 + 1, labels, values))
                .collect();
            let (updates, store) = peers(&specs);
            let mut shuffled = updates.clone();
            shuffled.shuffle(&mut ChaCha8Rng::seed_from_u64(order));
            for method in METHODS {
                let a = run(&updates, &store, method).unwrap();
                let b = run(&shuffled, &store, method).unwrap();
                prop_assert_eq!(bits(&a), bits(&b));
                for (i, merged) in a.tensors[0].1.iter().enumerate() {
                    let column = specs.iter().map(|(_, _, v)| v[i]);
                    let lo = column.clone().fold(f32::INFINITY, f32::min);
                    let hi = column.fold(f32::NEG_INFINITY, f32::max);
                    prop_assert!(
                        (lo..=hi).contains(merged),
                        "{:?}: {} outside [{}, {}]", method, merged, lo, hi
                    );
                }
            }
        }
    }
}
