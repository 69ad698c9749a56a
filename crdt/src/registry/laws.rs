//! Property tests of the registry's CRDT laws: merge is commutative, associative and idempotent,
//! and registries fed the same updates in any order, with duplicates, are equal (same entries,
//! same equivocation evidence, same digest).

use proptest::prelude::*;

use super::testing::{DATASET, signed_as, update};
use super::{ModelUpdate, Registry, SignedUpdate, WeightsHash};

/// A signed update of few peers, versions and contents, so that versions collide and peers
/// equivocate.
fn record() -> impl Strategy<Value = SignedUpdate> {
    (1u8..4, 0u64..3, 0u8..3, 0u64..3).prop_map(|(seed, version, content, labels)| {
        signed_as(
            seed,
            ModelUpdate {
                weights_hash: WeightsHash([content; 32]),
                ..update(seed, version, labels)
            },
        )
    })
}

fn registry() -> impl Strategy<Value = Registry> {
    prop::collection::vec(record(), 0..8).prop_map(|records| build(&records))
}

fn build(records: &[SignedUpdate]) -> Registry {
    let mut r = Registry::new(DATASET);
    for u in records {
        r.insert(u.clone()).expect("test records verify");
    }
    r
}

fn merged(a: &Registry, b: &Registry) -> Registry {
    let mut out = a.clone();
    out.merge(b).expect("same dataset");
    out
}

proptest! {
    #[test]
    fn merge_is_commutative(a in registry(), b in registry()) {
        let (ab, ba) = (merged(&a, &b), merged(&b, &a));
        prop_assert_eq!(ab.digest(), ba.digest());
        prop_assert_eq!(ab, ba);
    }

    #[test]
    fn merge_is_associative(a in registry(), b in registry(), c in registry()) {
        let left = merged(&merged(&a, &b), &c);
        let right = merged(&a, &merged(&b, &c));
        prop_assert_eq!(left.digest(), right.digest());
        prop_assert_eq!(left, right);
    }

    #[test]
    fn merge_is_idempotent(a in registry(), b in registry()) {
        prop_assert_eq!(merged(&a, &a), a.clone());
        let ab = merged(&a, &b);
        prop_assert_eq!(merged(&ab, &b), ab.clone());
        prop_assert_eq!(merged(&ab, &a), ab);
    }

    /// Records delivered in any order, some twice, to nodes that also merge each other's
    /// registries part way, end equal to one registry that inserted them all once.
    #[test]
    fn any_order_with_duplicates_converges(
        records in prop::collection::vec(record(), 1..12),
        order in any::<u64>(),
        split in any::<prop::sample::Index>(),
    ) {
        use rand::{SeedableRng, seq::SliceRandom};
        let reference = build(&records);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(order);
        let mut shuffled: Vec<_> = records.iter().chain(records.iter().take(3)).cloned().collect();
        shuffled.shuffle(&mut rng);
        let at = split.index(shuffled.len());
        let (first, second) = shuffled.split_at(at);
        let mut node_a = build(first);
        let node_b = build(second);
        // Node a hears b's registry, node c hears everything one by one, backwards.
        node_a.merge(&node_b).expect("same dataset");
        let mut reversed = shuffled.clone();
        reversed.reverse();
        let node_c = build(&reversed);
        prop_assert_eq!(node_a.digest(), reference.digest());
        prop_assert_eq!(&node_a, &reference);
        prop_assert_eq!(&node_c, &reference);
        // Whoever is in force for a peer is the greatest record of its highest version.
        for (peer, entry) in reference.entries() {
            let top = records.iter().filter(|r| r.update().peer == *peer).map(|r| r.update().version).max();
            prop_assert_eq!(Some(entry.latest().update().version), top);
        }
    }
}
