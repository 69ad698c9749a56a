//! Property tests of the CRDT laws: merge is commutative, associative and idempotent; replicas
//! that receive the same records in any order, with duplicates and losses, converge once they
//! pull what they lack. "Equal" means equal validated annotations, equal rejection counts, equal
//! digests and equal automerge heads in every shard.

use proptest::prelude::*;

use super::{Replica, Tip};
use crate::ChangeHash;
use crate::annotation::{SignedAnnotation, Value};
use crate::layout::ShardId;
use crate::shard::Annotations;
use crate::testing::{dataset, next, replica};

const WRITERS: usize = 3;

/// One write: writer `writer` (a node labelling with its own key) answers on `sample`.
#[derive(Clone, Debug)]
struct Write {
    writer: usize,
    sample: u32,
    value: Value,
}

fn write() -> impl Strategy<Value = Write> {
    let value = prop_oneof![
        (0u16..4).prop_map(Value::Label),
        Just(Value::Skip),
        Just(Value::Unsure),
    ];
    // Few samples, so that slots are written again and chains go on in several shards.
    (0..WRITERS, 0u32..6, value).prop_map(|(writer, sample, value)| Write {
        writer,
        sample,
        value,
    })
}

/// Writer `w`'s replica after its writes, and its records in the order made. Deterministic.
fn build(writes: &[Write], w: usize) -> (Replica, Vec<SignedAnnotation>) {
    let mut r = replica();
    let mut made = Vec::new();
    for (t, x) in writes.iter().enumerate().filter(|(_, x)| x.writer == w) {
        let record = next(&r, w as u8 + 1, x.sample, t as u64 + 1, x.value);
        r.record(&record)
            .expect("the chain's next record of a valid annotation is taken");
        made.push(record);
    }
    r.commit();
    (r, made)
}

/// What a replica reads, and each shard's digest and heads.
type State = (Annotations, Vec<([u8; 32], Vec<ChangeHash>)>);

fn state(r: &mut Replica) -> State {
    let shards = dataset()
        .layout
        .shards()
        .map(|s| (r.digest(s), r.heads(s)))
        .collect();
    (r.read(), shards)
}

fn merged(writes: &[Write], order: &[usize]) -> Replica {
    let mut acc = build(writes, order[0]).0;
    for &w in &order[1..] {
        acc.merge(&mut build(writes, w).0).expect("same dataset");
    }
    acc
}

/// One pull of `shard` by `to` from `from`, in pages of `page` records; a page is lost when
/// `lose` says so. Returns whether the pull ended (a page without more arrived).
fn pull(
    to: &mut Replica,
    from: &mut Replica,
    shard: ShardId,
    page: usize,
    lose: &mut impl FnMut() -> bool,
) -> bool {
    for _ in 0..64 {
        let tips: Vec<Tip> = to.tips(shard);
        let got = from.missing(shard, &tips, page);
        if lose() {
            continue;
        }
        for r in &got.records {
            to.record(r)
                .expect("records pulled in chain order are taken");
        }
        to.commit();
        if !got.more {
            return true;
        }
    }
    false
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn merge_is_commutative(writes in prop::collection::vec(write(), 1..24)) {
        let mut ab = merged(&writes, &[0, 1]);
        let mut ba = merged(&writes, &[1, 0]);
        prop_assert_eq!(state(&mut ab), state(&mut ba));
    }

    #[test]
    fn merge_is_associative(writes in prop::collection::vec(write(), 1..24)) {
        let mut left = merged(&writes, &[0, 1]);
        left.merge(&mut build(&writes, 2).0).expect("same dataset");
        let mut right = merged(&writes, &[1, 2]);
        let mut a = build(&writes, 0).0;
        a.merge(&mut right).expect("same dataset");
        prop_assert_eq!(state(&mut left), state(&mut a));
    }

    #[test]
    fn merge_is_idempotent(writes in prop::collection::vec(write(), 1..24)) {
        let mut a = build(&writes, 0).0;
        let before = state(&mut a);
        a.merge(&mut build(&writes, 0).0).expect("same dataset");
        prop_assert_eq!(state(&mut a), before);
        let mut ab = merged(&writes, &[0, 1]);
        let once = state(&mut ab);
        ab.merge(&mut build(&writes, 1).0).expect("same dataset");
        prop_assert_eq!(state(&mut ab), once);
    }

    #[test]
    fn records_in_any_order_with_duplicates_converge_once_gaps_are_pulled(
        writes in prop::collection::vec(write(), 1..24),
        orders in prop::collection::vec(prop::collection::vec(any::<prop::sample::Index>(), 0..64), 3),
    ) {
        let all: Vec<SignedAnnotation> =
            (0..WRITERS).flat_map(|w| build(&writes, w).1).collect();
        let mut reference = merged(&writes, &[0, 1, 2]);
        let want = state(&mut reference);
        for picks in &orders {
            // Gossip in a shuffled order, with repeats: records past a gap are refused and come
            // again by a pull, as anti-entropy does.
            let mut r = replica();
            let n = all.len();
            for record in picks.iter().map(|p| &all[p.index(n)]).chain(all.iter().rev()) {
                match r.record(record) {
                    Ok(_) | Err(super::RecordError::Gap { .. }) => {}
                    Err(e) => prop_assert!(false, "{e}"),
                }
            }
            r.commit();
            for shard in dataset().layout.shards() {
                prop_assert!(pull(&mut r, &mut reference, shard, 3, &mut || false));
            }
            prop_assert_eq!(state(&mut r), want.clone());
        }
    }

    #[test]
    fn lost_pulls_are_repaired_by_the_next_round(
        writes in prop::collection::vec(write(), 1..24),
        losses in prop::collection::vec(any::<bool>(), 0..200),
        lossy_rounds in 1usize..3,
    ) {
        let mut replicas: Vec<Replica> = (0..WRITERS).map(|w| build(&writes, w).0).collect();
        let shards: Vec<ShardId> = dataset().layout.shards().collect();
        let mut losses = losses.into_iter().cycle();
        let mut lose = move || losses.next().unwrap_or(false);
        let pairs = [(0, 1), (1, 2), (0, 2), (1, 0), (2, 1), (2, 0)];
        for _ in 0..lossy_rounds {
            for &(i, j) in &pairs {
                for &shard in &shards {
                    let (to, from) = two(&mut replicas, i, j);
                    pull(to, from, shard, 2, &mut lose);
                }
            }
        }
        // One clean anti-entropy round each way (and once more to pass on what was relayed).
        for _ in 0..2 {
            for &(i, j) in &pairs {
                for &shard in &shards {
                    let (to, from) = two(&mut replicas, i, j);
                    prop_assert!(pull(to, from, shard, 2, &mut || false));
                }
            }
        }
        let want = state(&mut merged(&writes, &[0, 1, 2]));
        for r in &mut replicas {
            prop_assert_eq!(state(r), want.clone());
        }
    }
}

/// Replicas `i` and `j` (different) as (to, from).
fn two(replicas: &mut [Replica], i: usize, j: usize) -> (&mut Replica, &mut Replica) {
    if i < j {
        let (left, right) = replicas.split_at_mut(j);
        (&mut left[i], &mut right[0])
    } else {
        let (left, right) = replicas.split_at_mut(i);
        (&mut right[0], &mut left[j])
    }
}
