//! Property tests of the CRDT laws: merge is commutative, associative and idempotent; replicas
//! that receive the same changes in any order, with duplicates, converge; sync converges despite
//! lost messages once an anti-entropy round runs. "Equal" means equal validated annotations,
//! equal rejection counts, and equal automerge heads in every shard.

use proptest::prelude::*;

use super::Replica;
use crate::ChangeHash;
use crate::annotation::Value;
use crate::layout::ShardId;
use crate::shard::Annotations;
use crate::sync::State;
use crate::testing::{dataset, replica, signed};

const WRITERS: usize = 3;

/// One write: replica `writer` records annotator `annotator`'s answer on `sample`, and commits
/// after it if `commit`.
#[derive(Clone, Debug)]
struct Write {
    writer: usize,
    annotator: u8,
    sample: u32,
    value: Value,
    commit: bool,
}

fn write() -> impl Strategy<Value = Write> {
    let value = prop_oneof![
        (0u16..4).prop_map(Value::Label),
        Just(Value::Skip),
        Just(Value::Unsure),
    ];
    // Few samples and annotators, so that slots are written again and concurrently.
    (0..WRITERS, 1u8..4, 0u32..6, value, any::<bool>()).prop_map(
        |(writer, annotator, sample, value, commit)| Write {
            writer,
            annotator,
            sample,
            value,
            commit,
        },
    )
}

/// Writer `w`'s replica after its writes (times increase with position, so every write is
/// newer than the last of its slot on that writer). Deterministic: building twice gives the
/// same documents.
fn build(writes: &[Write], w: usize) -> Replica {
    let mut r = replica(w as u8 + 1);
    for (t, x) in writes.iter().enumerate().filter(|(_, x)| x.writer == w) {
        r.record(&signed(x.annotator, x.sample, t as u64 + 1, x.value))
            .expect("a later write of a valid annotation is accepted");
        if x.commit {
            r.commit();
        }
    }
    r
}

/// The incremental saves of writer `w`, one per commit: the "changes" other replicas receive.
fn changes(writes: &[Write], w: usize) -> Vec<(ShardId, Vec<u8>)> {
    let mut r = replica(w as u8 + 1);
    let mut out = Vec::new();
    let flush = |r: &mut Replica, out: &mut Vec<(ShardId, Vec<u8>)>| {
        for shard in dataset().layout.shards() {
            let bytes = r.save_shard_incremental(shard);
            if !bytes.is_empty() {
                out.push((shard, bytes));
            }
        }
    };
    for (t, x) in writes.iter().enumerate().filter(|(_, x)| x.writer == w) {
        r.record(&signed(x.annotator, x.sample, t as u64 + 1, x.value))
            .expect("a later write of a valid annotation is accepted");
        if x.commit {
            flush(&mut r, &mut out);
        }
    }
    flush(&mut r, &mut out);
    out
}

fn state(r: &mut Replica) -> (Annotations, Vec<Vec<ChangeHash>>) {
    let heads = dataset().layout.shards().map(|s| r.heads(s)).collect();
    (r.read(), heads)
}

fn merged(writes: &[Write], order: &[usize]) -> Replica {
    let mut acc = build(writes, order[0]);
    for &w in &order[1..] {
        acc.merge(&mut build(writes, w)).expect("same dataset");
    }
    acc
}

/// One sync session on `shard` between `a` and `b`; each message is lost when `lose` says so.
fn session(
    a: &mut Replica,
    sa: &mut State,
    b: &mut Replica,
    sb: &mut State,
    shard: ShardId,
    lose: &mut impl FnMut() -> bool,
) -> bool {
    for _ in 0..32 {
        let m1 = a.generate_sync_message(shard, sa);
        if let Some(m) = &m1
            && !lose()
        {
            b.receive_sync_message(shard, sb, m)
                .expect("honest messages are accepted");
        }
        let m2 = b.generate_sync_message(shard, sb);
        if let Some(m) = &m2
            && !lose()
        {
            a.receive_sync_message(shard, sa, m)
                .expect("honest messages are accepted");
        }
        if m1.is_none() && m2.is_none() {
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
        left.merge(&mut build(&writes, 2)).expect("same dataset");
        let mut right = merged(&writes, &[1, 2]);
        let mut a = build(&writes, 0);
        a.merge(&mut right).expect("same dataset");
        prop_assert_eq!(state(&mut left), state(&mut a));
    }

    #[test]
    fn merge_is_idempotent(writes in prop::collection::vec(write(), 1..24)) {
        let mut a = build(&writes, 0);
        let before = state(&mut a);
        a.merge(&mut build(&writes, 0)).expect("same dataset");
        prop_assert_eq!(state(&mut a), before);
        let mut ab = merged(&writes, &[0, 1]);
        let once = state(&mut ab);
        ab.merge(&mut build(&writes, 1)).expect("same dataset");
        prop_assert_eq!(state(&mut ab), once);
    }

    #[test]
    fn any_order_with_duplicates_converges(
        writes in prop::collection::vec(write(), 1..24),
        orders in prop::collection::vec(prop::collection::vec(any::<prop::sample::Index>(), 0..64), 3),
    ) {
        let all: Vec<(ShardId, Vec<u8>)> =
            (0..WRITERS).flat_map(|w| changes(&writes, w)).collect();
        let mut reference = merged(&writes, &[0, 1, 2]);
        let want = state(&mut reference);
        for (i, picks) in orders.iter().enumerate() {
            // A shuffled delivery: the picked changes first (with repeats), then all of them in
            // reverse, so each arrives at least once and many arrive early, twice, or before
            // their dependencies.
            let mut r = replica(10 + i as u8);
            let n = all.len();
            let delivery = picks.iter().map(|p| &all[p.index(n)]).chain(all.iter().rev());
            for (shard, bytes) in delivery {
                match r.load_shard(*shard, bytes) {
                    Ok(_) | Err(crate::LoadError::MissingDependencies { .. }) => {}
                    Err(e) => prop_assert!(false, "{e}"),
                }
            }
            prop_assert_eq!(state(&mut r), want.clone());
        }
    }

    #[test]
    fn lost_sync_messages_are_repaired_by_the_next_round(
        writes in prop::collection::vec(write(), 1..24),
        losses in prop::collection::vec(any::<bool>(), 0..200),
        lossy_rounds in 1usize..3,
    ) {
        let mut replicas: Vec<Replica> = (0..WRITERS).map(|w| build(&writes, w)).collect();
        let shards: Vec<ShardId> = dataset().layout.shards().collect();
        // states[i][j][s]: replica i's state for peer j in shard s.
        let mut states = vec![vec![vec![State::new(); shards.len()]; WRITERS]; WRITERS];
        let mut losses = losses.into_iter().cycle();
        let mut lose = move || losses.next().unwrap_or(false);
        let pairs = [(0, 1), (1, 2), (0, 2)];
        for _ in 0..lossy_rounds {
            for &(i, j) in &pairs {
                for &shard in &shards {
                    let (left, right) = replicas.split_at_mut(j);
                    let (si, sj) = pair_states(&mut states, i, j, shard);
                    session(&mut left[i], si, &mut right[0], sj, shard, &mut lose);
                }
            }
        }
        // One clean anti-entropy round: every pair starts a new round and nothing is lost.
        for &(i, j) in &pairs {
            for &shard in &shards {
                let (left, right) = replicas.split_at_mut(j);
                let (si, sj) = pair_states(&mut states, i, j, shard);
                si.new_round();
                sj.new_round();
                prop_assert!(session(&mut left[i], si, &mut right[0], sj, shard, &mut || false));
            }
        }
        let want = state(&mut merged(&writes, &[0, 1, 2]));
        for r in &mut replicas {
            prop_assert_eq!(state(r), want.clone());
        }
    }
}

fn pair_states(
    states: &mut [Vec<Vec<State>>],
    i: usize,
    j: usize,
    shard: ShardId,
) -> (&mut State, &mut State) {
    let s = usize::from(shard.0);
    let (left, right) = states.split_at_mut(j);
    (&mut left[i][j][s], &mut right[0][i][s])
}
