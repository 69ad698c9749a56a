//! Weighted k-means (k-means++ seeding, Lloyd iterations): the clustering behind the diversity
//! step and the cold start.

use rand::Rng;

use crate::matrix::Matrix;

/// Lloyd iterations at most; assignments of a few hundred points settle well before.
const MAX_ITERATIONS: usize = 25;

/// A clustering of some rows of a feature matrix.
#[derive(Debug)]
pub(super) struct Clusters {
    /// Cluster of each point, in the order the points were given.
    pub(super) assignment: Vec<usize>,
    /// Centre of each cluster.
    pub(super) centroids: Vec<Vec<f32>>,
}

pub(super) fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Clusters the rows `points` of `features` into `min(k, points.len())` clusters; point `i`
/// counts `weights[i]` times (all weights must be positive and finite).
pub(super) fn kmeans<R: Rng + ?Sized>(
    features: &Matrix,
    points: &[usize],
    weights: &[f32],
    k: usize,
    rng: &mut R,
) -> Clusters {
    let k = k.min(points.len());
    let row = |i: usize| features.row(points[i]);
    // k-means++: each new centre is drawn with probability proportional to weight times the
    // squared distance to the nearest centre so far.
    let mut centroids: Vec<Vec<f32>> = Vec::with_capacity(k);
    let mut nearest = vec![f32::INFINITY; points.len()];
    while centroids.len() < k {
        let mass: Vec<f32> = if centroids.is_empty() {
            weights.to_vec()
        } else {
            weights.iter().zip(&nearest).map(|(w, d)| w * d).collect()
        };
        let total: f32 = mass.iter().sum();
        let chosen = if total > 0.0 && total.is_finite() {
            let mut target = rng.random_range(0.0..total);
            let mut pick = mass.len() - 1;
            for (i, &m) in mass.iter().enumerate() {
                if target < m {
                    pick = i;
                    break;
                }
                target -= m;
            }
            pick
        } else {
            // Every remaining point coincides with a centre: any point will do.
            rng.random_range(0..points.len())
        };
        let centre = row(chosen).to_vec();
        for (i, d) in nearest.iter_mut().enumerate() {
            *d = d.min(squared_distance(row(i), &centre));
        }
        centroids.push(centre);
    }
    let mut assignment = vec![usize::MAX; points.len()];
    for _ in 0..MAX_ITERATIONS {
        let mut changed = false;
        for (i, a) in assignment.iter_mut().enumerate() {
            let best = closest(row(i), &centroids);
            if *a != best {
                *a = best;
                changed = true;
            }
        }
        if !changed {
            break;
        }
        let dims = features.cols();
        let mut sums = vec![vec![0.0f32; dims]; k];
        let mut mass = vec![0.0f32; k];
        for (i, &c) in assignment.iter().enumerate() {
            for (s, &x) in sums[c].iter_mut().zip(row(i)) {
                *s += weights[i] * x;
            }
            mass[c] += weights[i];
        }
        for c in 0..k {
            // An emptied cluster keeps its old centre.
            if mass[c] > 0.0 {
                centroids[c] = sums[c].iter().map(|s| s / mass[c]).collect();
            }
        }
    }
    Clusters {
        assignment,
        centroids,
    }
}

/// Index of the centre nearest to `x` (the first on ties).
fn closest(x: &[f32], centroids: &[Vec<f32>]) -> usize {
    let mut best = (0, f32::INFINITY);
    for (c, centre) in centroids.iter().enumerate() {
        let d = squared_distance(x, centre);
        if d < best.1 {
            best = (c, d);
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;

    #[test]
    fn separates_well_separated_groups() {
        let rows: Vec<[f32; 2]> = (0..30)
            .map(|i| {
                let g = (i % 3) as f32 * 10.0;
                [g + (i as f32 * 0.01), g - (i as f32 * 0.01)]
            })
            .collect();
        let m = Matrix::from_rows(2, &rows).unwrap();
        let points: Vec<usize> = (0..30).collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let c = kmeans(&m, &points, &[1.0; 30], 3, &mut rng);
        for i in 0..30 {
            for j in 0..30 {
                assert_eq!(
                    c.assignment[i] == c.assignment[j],
                    i % 3 == j % 3,
                    "points {i} and {j}"
                );
            }
        }
    }
}
