//! Coordinated selection without a coordinator: which of the strategy's candidates this labeler
//! should be shown, so that volunteers rarely label the same sample beyond the redundancy target.
//!
//! Every node ranks the pool with (nearly) the same model. Each candidate belongs to the
//! `redundancy` active labelers with the highest `hash(sample, labeler)` (rendezvous hashing):
//! a labeler takes the best-ranked candidates of its own share, so two labelers given the same
//! ranking pick disjoint samples (for a target of 1) without exchanging a message. Only when its
//! share runs out does a labeler fall back to others' candidates, best first. Samples that already
//! have enough labels, that this labeler labelled, or that the caller excludes are never picked.
//!
//! I/O-free: the active labelers and label counts come in as arguments (see
//! [`active_labelers`]); the same inputs always give the same picks.

use std::collections::{BTreeSet, HashMap, HashSet};

use swarmlabel_active_learning::Query;
use swarmlabel_crdt::{AnnotatorKey, SampleId, SignedAnnotation};

/// Who a pick was meant for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Share {
    /// The sample is in this labeler's rendezvous share.
    Mine,
    /// Another labeler's share, taken because this labeler's share ran out.
    Fallback,
}

/// One sample for this labeler, with its position in the strategy's ranking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// The sample.
    pub sample: SampleId,
    /// Its position in the ranked candidates (0 = the strategy's best).
    pub rank: usize,
    /// Whose share it was.
    pub share: Share,
}

/// What a selection starts from.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The strategy's candidates, best first.
    pub ranked: &'a [SampleId],
    /// Label votes per sample so far (absent = 0).
    pub counts: &'a HashMap<SampleId, u32>,
    /// Samples this labeler has already answered.
    pub mine: &'a HashSet<SampleId>,
    /// Samples the caller excludes (already shown and not yet answered, for example).
    pub exclude: &'a HashSet<SampleId>,
    /// Labels wanted per sample (at least 1).
    pub redundancy: u32,
    /// The labelers currently active on the dataset (this one is added if absent).
    pub active: &'a [AnnotatorKey],
    /// This labeler.
    pub me: AnnotatorKey,
}

/// Up to `n` samples for this labeler: its own share first, then, if that runs out, other
/// candidates. Within each part, *open* samples (with some labels but fewer than the
/// redundancy target) come before fresh ones, each in ranking order: a sample once labelled
/// drops in an uncertainty ranking (the model has learned it), and without this its other
/// labelers would never reach it, leaving it with one possibly wrong answer.
pub fn select(input: &Input<'_>, n: usize) -> Vec<Choice> {
    let mut active: BTreeSet<AnnotatorKey> = input.active.iter().copied().collect();
    active.insert(input.me);
    let active: Vec<AnnotatorKey> = active.into_iter().collect();
    let redundancy = input.redundancy.max(1);
    let owners = (redundancy as usize).min(active.len());
    let eligible =
        |sample: &SampleId| !input.mine.contains(sample) && !input.exclude.contains(sample);
    // Open samples are few (the counts map holds only labelled ones): look them up instead of
    // walking the whole ranking.
    let open: HashSet<SampleId> = input
        .counts
        .iter()
        .filter(|(sample, c)| **c > 0 && **c < redundancy && eligible(sample))
        .map(|(sample, _)| *sample)
        .collect();
    let mut parts: [Vec<Choice>; 4] = Default::default();
    let [mine_open, mine_fresh, others_open, others_fresh] = &mut parts;
    let mut open_left = open.len();
    for (rank, sample) in input.ranked.iter().enumerate() {
        let is_open = open.contains(sample);
        if is_open {
            open_left -= 1;
        } else {
            if mine_open.len() + mine_fresh.len() >= n {
                // Enough of my own: only open samples still matter.
                if open_left == 0 {
                    break;
                }
                continue;
            }
            if input.counts.get(sample).copied().unwrap_or(0) > 0 || !eligible(sample) {
                continue;
            }
        }
        let share = if is_owner(sample, &input.me, &active, owners) {
            Share::Mine
        } else {
            Share::Fallback
        };
        let choice = Choice {
            sample: *sample,
            rank,
            share,
        };
        match (share, is_open) {
            (Share::Mine, true) => mine_open.push(choice),
            (Share::Mine, false) => mine_fresh.push(choice),
            (Share::Fallback, true) => others_open.push(choice),
            (Share::Fallback, false) => others_fresh.push(choice),
        }
    }
    parts.into_iter().flatten().take(n).collect()
}

/// The ranking a labeler's picks come from when part of them should be random
/// ([`Query::explore_percent`]): position `i` (from 0) is taken from `random` when
/// [`Query::explored`] counts one more random pick among the first `i + 1` than among the first
/// `i`, otherwise from `by_score`, each time the first sample of that list not yet placed. Every
/// sample of either list appears once; without an explore share, `by_score` comes back as is.
pub fn interleave(
    by_score: Vec<(SampleId, f32)>,
    random: &[(SampleId, f32)],
    query: &Query,
) -> Vec<(SampleId, f32)> {
    if query.explore_percent == 0 {
        return by_score;
    }
    let score: HashMap<SampleId, f32> = by_score.iter().copied().collect();
    let mut placed: HashSet<SampleId> = HashSet::with_capacity(by_score.len());
    let mut out = Vec::with_capacity(by_score.len());
    let (mut a, mut b) = (by_score.iter(), random.iter());
    let mut i = 0usize;
    loop {
        let from_random = query.explored(i + 1) > query.explored(i);
        let (first, second) = if from_random {
            (&mut b, &mut a)
        } else {
            (&mut a, &mut b)
        };
        let next = first
            .by_ref()
            .find(|(s, _)| !placed.contains(s))
            .or_else(|| second.by_ref().find(|(s, _)| !placed.contains(s)));
        let Some(&(sample, _)) = next else {
            return out;
        };
        placed.insert(sample);
        out.push((sample, score.get(&sample).copied().unwrap_or(0.0)));
        i += 1;
    }
}

/// Whether `me` is among the `owners` labelers of `active` with the highest rendezvous weight
/// for `sample`.
fn is_owner(sample: &SampleId, me: &AnnotatorKey, active: &[AnnotatorKey], owners: usize) -> bool {
    let my_weight = weight(sample, me);
    // Ties (equal 64-bit weights) are broken by key, so the owners are one well-defined set.
    let above = active
        .iter()
        .filter(|k| *k != me)
        .filter(|k| (weight(sample, k), **k) > (my_weight, *me))
        .count();
    above < owners
}

/// The rendezvous weight of `labeler` for `sample`: the first 8 bytes of
/// BLAKE3(`sample` ‖ `labeler`).
pub fn weight(sample: &SampleId, labeler: &AnnotatorKey) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(&sample.0);
    h.update(&labeler.0);
    let bytes = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes.as_bytes()[..8]);
    u64::from_le_bytes(first)
}

/// The annotators who answered any sample of `annotations` at or after `since_ms` (the
/// annotators' own clocks), sorted.
pub fn active_labelers(annotations: &[SignedAnnotation], since_ms: u64) -> Vec<AnnotatorKey> {
    let set: BTreeSet<AnnotatorKey> = annotations
        .iter()
        .map(SignedAnnotation::annotation)
        .filter(|a| a.time_ms >= since_ms)
        .map(|a| a.annotator)
        .collect();
    set.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: u32) -> SampleId {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&i.to_le_bytes());
        SampleId(b)
    }

    fn labeler(i: u8) -> AnnotatorKey {
        AnnotatorKey([i; 32])
    }

    struct World {
        ranked: Vec<SampleId>,
        counts: HashMap<SampleId, u32>,
        mine: HashSet<SampleId>,
        exclude: HashSet<SampleId>,
    }

    impl World {
        fn new(n: u32) -> Self {
            Self {
                ranked: (0..n).map(sample).collect(),
                counts: HashMap::new(),
                mine: HashSet::new(),
                exclude: HashSet::new(),
            }
        }

        fn pick(&self, me: AnnotatorKey, active: &[AnnotatorKey], r: u32, n: usize) -> Vec<Choice> {
            select(
                &Input {
                    ranked: &self.ranked,
                    counts: &self.counts,
                    mine: &self.mine,
                    exclude: &self.exclude,
                    redundancy: r,
                    active,
                    me,
                },
                n,
            )
        }
    }

    #[test]
    fn labelers_sharing_a_ranking_pick_each_sample_at_most_redundancy_times() {
        let world = World::new(500);
        let active: Vec<AnnotatorKey> = (0..10).map(labeler).collect();
        for r in [1u32, 3] {
            let mut times: HashMap<SampleId, u32> = HashMap::new();
            for &me in &active {
                let picks = world.pick(me, &active, r, 8);
                assert_eq!(picks.len(), 8);
                assert!(picks.iter().all(|c| c.share == Share::Mine));
                for c in picks {
                    *times.entry(c.sample).or_default() += 1;
                }
            }
            assert_eq!(times.values().sum::<u32>(), 80);
            assert!(
                times.values().all(|&t| t <= r),
                "redundancy {r}: a sample was picked {} times",
                times.values().max().unwrap()
            );
            // The picks stay near the top of the ranking: 10 labelers x 8 picks / r samples
            // spread over the best candidates, not deep into the pool.
            let deepest = times
                .keys()
                .map(|s| world.ranked.iter().position(|x| x == s).unwrap())
                .max()
                .unwrap();
            assert!(deepest < 250, "redundancy {r}: a pick at rank {deepest}");
        }
    }

    #[test]
    fn samples_labelled_enough_mine_or_excluded_are_never_picked() {
        let mut world = World::new(40);
        world.counts.insert(sample(0), 1);
        world.counts.insert(sample(1), 2);
        world.mine.insert(sample(2));
        world.exclude.insert(sample(3));
        let picks = world.pick(labeler(0), &[], 2, 40);
        let got: HashSet<SampleId> = picks.iter().map(|c| c.sample).collect();
        // Sample 0 has one label of the two wanted: still eligible.
        assert!(got.contains(&sample(0)));
        for skipped in [1, 2, 3] {
            assert!(
                !got.contains(&sample(skipped)),
                "sample {skipped} was picked"
            );
        }
        assert_eq!(got.len(), 37);
    }

    #[test]
    fn a_lone_labeler_takes_the_ranking_in_order() {
        let world = World::new(20);
        let picks = world.pick(labeler(7), &[labeler(7)], 1, 5);
        let ranks: Vec<usize> = picks.iter().map(|c| c.rank).collect();
        assert_eq!(ranks, vec![0, 1, 2, 3, 4]);
        assert!(picks.iter().all(|c| c.share == Share::Mine));
    }

    #[test]
    fn interleave_alternates_the_score_order_with_the_random_one_without_repeats() {
        let by_score: Vec<(SampleId, f32)> =
            (0..6).map(|i| (sample(i), 1.0 - i as f32 / 10.0)).collect();
        let random: Vec<(SampleId, f32)> = [5, 0, 4, 1, 3, 2].map(|i| (sample(i), 0.0)).to_vec();
        let ids = |v: Vec<(SampleId, f32)>| -> Vec<u32> {
            v.iter()
                .map(|(s, _)| u32::from_le_bytes(s.0[..4].try_into().unwrap()))
                .collect()
        };
        let share = |p: u8| {
            let mut q = Query::new(swarmlabel_active_learning::Strategy::Margin);
            q.explore_percent = p;
            q
        };
        // 50 %: random at positions 1, 3, 5; each sample once.
        assert_eq!(
            ids(interleave(by_score.clone(), &random, &share(50))),
            [0, 5, 1, 4, 2, 3]
        );
        let mixed = interleave(by_score.clone(), &random, &share(50));
        // Scores travel with their samples.
        assert!((mixed[1].1 - 0.5).abs() < 1e-6, "{mixed:?}");
        assert_eq!(
            ids(interleave(by_score.clone(), &random, &share(0))),
            [0, 1, 2, 3, 4, 5]
        );
        assert_eq!(
            ids(interleave(by_score.clone(), &random, &share(100))),
            [5, 0, 4, 1, 3, 2]
        );
    }

    #[test]
    fn open_samples_of_my_share_come_before_fresh_ones() {
        let mut world = World::new(60);
        let active: Vec<AnnotatorKey> = (0..4).map(labeler).collect();
        let me = labeler(0);
        // Deep in the ranking, one label of the three wanted: the model has learned them.
        for i in 50..60 {
            world.counts.insert(sample(i), 1);
        }
        world.counts.insert(sample(49), 3);
        let picks = world.pick(me, &active, 3, 5);
        assert_eq!(picks.len(), 5);
        let open_mine: Vec<usize> = (50..60)
            .filter(|&i| is_owner(&sample(i), &me, &active, 3))
            .map(|i| i as usize)
            .collect();
        assert!(!open_mine.is_empty(), "3 of 4 labelers own each sample");
        let expected = open_mine.len().min(5);
        let ranks: Vec<usize> = picks.iter().map(|c| c.rank).collect();
        assert_eq!(&ranks[..expected], &open_mine[..expected]);
        assert!(ranks[expected..].iter().all(|&r| r < 49), "{ranks:?}");
        assert!(picks.iter().all(|c| c.share == Share::Mine));
        // With a target of 1 nothing is open: samples with a label are never picked.
        let picks = world.pick(me, &active, 1, 60);
        assert!(picks.iter().all(|c| c.rank < 49), "{picks:?}");
    }

    #[test]
    fn falls_back_to_others_candidates_when_the_share_runs_out() {
        let world = World::new(6);
        let active: Vec<AnnotatorKey> = (0..3).map(labeler).collect();
        let picks = world.pick(labeler(0), &active, 1, 6);
        assert_eq!(picks.len(), 6);
        let first_fallback = picks
            .iter()
            .position(|c| c.share == Share::Fallback)
            .expect("with 6 samples and 3 labelers some are others'");
        assert!(
            picks[..first_fallback]
                .iter()
                .all(|c| c.share == Share::Mine)
        );
        assert!(
            picks[first_fallback..]
                .iter()
                .all(|c| c.share == Share::Fallback)
        );
        // Within each part, ranking order.
        for part in [&picks[..first_fallback], &picks[first_fallback..]] {
            assert!(part.windows(2).all(|w| w[0].rank < w[1].rank));
        }
    }
}
