//! Picking a batch that is spread out: the diversity step over the most uncertain candidates, and
//! the representative picks of the cold start.

use rand::Rng;

use super::kmeans::{kmeans, squared_distance};
use crate::matrix::Matrix;

/// Most candidates the cold start clusters; a random subset of a larger pool stands for it.
pub(super) const MAX_COLD_START_CANDIDATES: usize = 4000;

/// Chooses `k` of `candidates` (pool indices, sorted by decreasing `score`) that are both
/// uncertain and unlike each other, as in Zhdanov 2019 ("Diverse mini-batch active learning"):
/// clusters the candidates with k-means weighted by score and takes the candidate nearest to each
/// centre. The centre sits where uncertain candidates crowd, so the pick is a typical uncertain
/// sample of its region rather than an odd one. Slots left by empty clusters go to the best
/// remaining candidates.
pub(super) fn diverse<R: Rng + ?Sized>(
    features: &Matrix,
    candidates: &[usize],
    scores: &[f32],
    k: usize,
    rng: &mut R,
) -> Vec<usize> {
    if candidates.len() <= k {
        return candidates.to_vec();
    }
    // Weights must be positive: a score of 0 still counts a little.
    let weights: Vec<f32> = candidates
        .iter()
        .map(|&i| scores[i].max(0.0) + 1e-6)
        .collect();
    let clusters = kmeans(features, candidates, &weights, k, rng);
    let mut nearest: Vec<Option<(f32, usize)>> = vec![None; clusters.centroids.len()];
    for (pos, &c) in clusters.assignment.iter().enumerate() {
        let d = squared_distance(features.row(candidates[pos]), &clusters.centroids[c]);
        if nearest[c].is_none_or(|(best, _)| d < best) {
            nearest[c] = Some((d, pos));
        }
    }
    let mut chosen: Vec<usize> = nearest.into_iter().flatten().map(|(_, pos)| pos).collect();
    chosen.sort_unstable();
    let mut picks: Vec<usize> = chosen.iter().map(|&pos| candidates[pos]).collect();
    for (pos, &i) in candidates.iter().enumerate() {
        if picks.len() >= k {
            break;
        }
        if chosen.binary_search(&pos).is_err() {
            picks.push(i);
        }
    }
    picks
}

/// Chooses `k` of `candidates` that represent the pool: the candidate nearest to each centre of
/// a k-means clustering weighted by local density, so the picks sit in dense regions and in
/// different ones. Unweighted k-means would spend a centre on any far outlier (isolating it is
/// what minimises its objective), and an outlier is the least representative sample there is.
pub(super) fn representative<R: Rng + ?Sized>(
    features: &Matrix,
    candidates: &[usize],
    k: usize,
    rng: &mut R,
) -> Vec<usize> {
    if candidates.len() <= k {
        return candidates.to_vec();
    }
    let sample: Vec<usize> = if candidates.len() > MAX_COLD_START_CANDIDATES {
        rand::seq::index::sample(rng, candidates.len(), MAX_COLD_START_CANDIDATES)
            .into_iter()
            .map(|i| candidates[i])
            .collect()
    } else {
        candidates.to_vec()
    };
    let weights = density(features, &sample, rng);
    let clusters = kmeans(features, &sample, &weights, k, rng);
    let mut nearest: Vec<Option<(f32, usize)>> = vec![None; clusters.centroids.len()];
    for (pos, &c) in clusters.assignment.iter().enumerate() {
        let d = squared_distance(features.row(sample[pos]), &clusters.centroids[c]);
        if nearest[c].is_none_or(|(best, _)| d < best) {
            nearest[c] = Some((d, sample[pos]));
        }
    }
    let mut picks: Vec<usize> = nearest.into_iter().flatten().map(|(_, i)| i).collect();
    for &i in &sample {
        if picks.len() >= k {
            break;
        }
        if !picks.contains(&i) {
            picks.push(i);
        }
    }
    picks
}

/// Reference points the density of each candidate is measured against.
const DENSITY_REFERENCES: usize = 200;
/// Nearest references averaged into a candidate's local distance.
const DENSITY_NEIGHBOURS: usize = 10;

/// A weight in `(0, 1]` per point of `points`: `1 / (1 + (d / median d)^2)` where `d` is the mean
/// distance to the nearest of a random set of reference points. Points in crowded regions weigh
/// about 1, isolated ones close to 0.
fn density<R: Rng + ?Sized>(features: &Matrix, points: &[usize], rng: &mut R) -> Vec<f32> {
    let refs: Vec<usize> =
        rand::seq::index::sample(rng, points.len(), DENSITY_REFERENCES.min(points.len()))
            .into_iter()
            .map(|i| points[i])
            .collect();
    let m = DENSITY_NEIGHBOURS.min(refs.len());
    let local: Vec<f32> = points
        .iter()
        .map(|&p| {
            let mut d: Vec<f32> = refs
                .iter()
                .map(|&r| squared_distance(features.row(p), features.row(r)).sqrt())
                .collect();
            d.select_nth_unstable_by(m - 1, f32::total_cmp);
            d[..m].iter().sum::<f32>() / m as f32
        })
        .collect();
    let mut sorted = local.clone();
    sorted.sort_by(f32::total_cmp);
    let median = sorted[sorted.len() / 2];
    if median <= 0.0 {
        return vec![1.0; points.len()];
    }
    local
        .iter()
        .map(|d| 1.0 / (1.0 + (d / median) * (d / median)))
        .collect()
}
