//! Per-sample informativeness from probability tables; higher always means "label this first".

use crate::matrix::Matrix;

/// `1 - max p`: how unsure the model is of its top class.
pub(super) fn least_confidence(row: &[f32]) -> f32 {
    1.0 - row.iter().copied().fold(0.0, f32::max)
}

/// `1 - (p1 - p2)` for the two most probable classes: close calls between two classes score high.
pub(super) fn margin(row: &[f32]) -> f32 {
    let (mut first, mut second) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
    for &p in row {
        if p > first {
            (first, second) = (p, first);
        } else if p > second {
            second = p;
        }
    }
    if second == f32::NEG_INFINITY {
        second = 0.0;
    }
    1.0 - (first - second)
}

/// Shannon entropy of the row, in nats.
pub(super) fn entropy(row: &[f32]) -> f32 {
    -row.iter()
        .filter(|&&p| p > 0.0)
        .map(|&p| p * p.ln())
        .sum::<f32>()
}

/// BALD (Houlsby et al. 2011, Gal et al. 2017): the mutual information between the label and the
/// weights, estimated from Monte Carlo dropout passes as the entropy of the mean prediction minus
/// the mean entropy of the passes. It is high where passes disagree, not where each is merely
/// unsure.
pub(super) fn bald(passes: &[Matrix], row: usize) -> f32 {
    let classes = passes[0].cols();
    let t = passes.len() as f32;
    let mut mean = vec![0.0f32; classes];
    let mut mean_entropy = 0.0f32;
    for pass in passes {
        let r = pass.row(row);
        for (m, &p) in mean.iter_mut().zip(r) {
            *m += p / t;
        }
        mean_entropy += entropy(r) / t;
    }
    // Rounding can make the difference slightly negative when all passes agree.
    (entropy(&mean) - mean_entropy).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_on_known_rows() {
        assert!((least_confidence(&[0.6, 0.3, 0.1]) - 0.4).abs() < 1e-6);
        assert!((margin(&[0.6, 0.3, 0.1]) - 0.7).abs() < 1e-6);
        assert!((margin(&[0.1, 0.45, 0.45]) - 1.0).abs() < 1e-6);
        assert!((entropy(&[0.5, 0.5]) - 2f32.ln()).abs() < 1e-6);
        assert_eq!(entropy(&[1.0, 0.0]), 0.0);
        let agree = [
            Matrix::from_rows(2, &[[0.5, 0.5]]).unwrap(),
            Matrix::from_rows(2, &[[0.5, 0.5]]).unwrap(),
        ];
        assert_eq!(bald(&agree, 0), 0.0);
        let disagree = [
            Matrix::from_rows(2, &[[1.0, 0.0]]).unwrap(),
            Matrix::from_rows(2, &[[0.0, 1.0]]).unwrap(),
        ];
        assert!((bald(&disagree, 0) - 2f32.ln()).abs() < 1e-6);
    }
}
