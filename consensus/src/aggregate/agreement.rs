//! Chance-corrected agreement between annotators, for nominal labels.

use super::Votes;

/// Why agreement is undefined for a table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AgreementError {
    /// No item has the two or more votes needed to compare raters.
    #[error("no sample has two or more votes, so agreement is undefined")]
    NoPairableItems,
    /// Every vote is the same label, so chance agreement is 1 and the coefficient is 0/0.
    #[error("every vote is the same label, so agreement beyond chance is undefined")]
    NoVariation,
    /// Fleiss' kappa needs the same number of raters on every item; use Krippendorff's alpha.
    #[error(
        "Fleiss' kappa needs the same number of votes on every sample (found {first} and \
         {other}); use Krippendorff's alpha"
    )]
    UnequalRaters {
        /// Votes on the first item.
        first: u32,
        /// A different count on another item.
        other: u32,
    },
}

/// Krippendorff's alpha for nominal data: `1 - D_o / D_e` from the coincidence matrix. Handles any
/// number of raters per item; items with fewer than two votes are left out (they cannot be
/// compared), as are items with no votes.
pub fn krippendorff_alpha(votes: &Votes) -> Result<f64, AgreementError> {
    let k = usize::from(votes.classes());
    let counts = votes.counts();
    // Coincidences: each ordered pair of votes (c, l) within an item of m votes adds 1/(m-1).
    let mut o = vec![0.0f64; k * k];
    for row in counts.chunks(k.max(1)) {
        let m: u32 = row.iter().sum();
        if m < 2 {
            continue;
        }
        let w = 1.0 / f64::from(m - 1);
        for c in 0..k {
            for l in 0..k {
                let pairs = if c == l {
                    f64::from(row[c]) * (f64::from(row[c]) - 1.0)
                } else {
                    f64::from(row[c]) * f64::from(row[l])
                };
                o[c * k + l] += pairs * w;
            }
        }
    }
    let n_c: Vec<f64> = (0..k).map(|c| o[c * k..(c + 1) * k].iter().sum()).collect();
    let n: f64 = n_c.iter().sum();
    if n == 0.0 {
        return Err(AgreementError::NoPairableItems);
    }
    let mut disagree_observed = 0.0;
    let mut disagree_expected = 0.0;
    for c in 0..k {
        for l in 0..k {
            if c != l {
                disagree_observed += o[c * k + l];
                disagree_expected += n_c[c] * n_c[l];
            }
        }
    }
    if disagree_expected == 0.0 {
        return Err(AgreementError::NoVariation);
    }
    Ok(1.0 - (n - 1.0) * disagree_observed / disagree_expected)
}

/// Fleiss' kappa from per-item label counts (`items × classes`, row-major, as
/// [`Votes::counts`]): every item must have the same number `n ≥ 2` of votes. Items without
/// votes are left out.
pub fn fleiss_kappa(counts: &[u32], classes: u16) -> Result<f64, AgreementError> {
    let k = usize::from(classes).max(1);
    let rows: Vec<&[u32]> = counts
        .chunks(k)
        .filter(|r| r.iter().any(|&c| c > 0))
        .collect();
    let Some(first) = rows.first() else {
        return Err(AgreementError::NoPairableItems);
    };
    let n: u32 = first.iter().sum();
    if let Some(other) = rows.iter().map(|r| r.iter().sum::<u32>()).find(|&m| m != n) {
        return Err(AgreementError::UnequalRaters { first: n, other });
    }
    if n < 2 {
        return Err(AgreementError::NoPairableItems);
    }
    let items = rows.len() as f64;
    let nf = f64::from(n);
    let p_bar: f64 = rows
        .iter()
        .map(|r| {
            let sq: f64 = r.iter().map(|&c| f64::from(c) * f64::from(c)).sum();
            (sq - nf) / (nf * (nf - 1.0))
        })
        .sum::<f64>()
        / items;
    let p_e: f64 = (0..k)
        .map(|c| {
            let p = rows.iter().map(|r| f64::from(r[c])).sum::<f64>() / (items * nf);
            p * p
        })
        .sum();
    if p_e >= 1.0 {
        return Err(AgreementError::NoVariation);
    }
    Ok((p_bar - p_e) / (1.0 - p_e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: nominal
    /// data, 4 observers, 12 units, missing values. Published value: alpha = 0.743.
    #[test]
    fn krippendorff_matches_the_published_example() {
        const N: u16 = u16::MAX;
        let observers: [[u16; 12]; 4] = [
            [1, 2, 3, 3, 2, 1, 4, 1, 2, N, N, N],
            [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, N, 3],
            [N, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, N],
            [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, N],
        ];
        let mut votes = Votes::new(6).unwrap();
        for (rater, row) in observers.iter().enumerate() {
            for (item, &v) in row.iter().enumerate() {
                if v != N {
                    votes.push(item as u32, rater as u32, v).unwrap();
                }
            }
        }
        let alpha = krippendorff_alpha(&votes).unwrap();
        // By hand: n = 40, off-diagonal coincidences sum to 8, sum of n_c n_k over c != k is
        // 1216, so alpha = 1 - 39 * 8 / 1216 = 113/152 = 0.74342.
        assert!((alpha - 113.0 / 152.0).abs() < 1e-12, "{alpha}");
        assert!((alpha - 0.743).abs() < 5e-4);
    }

    /// Fleiss (1971) as reproduced on Wikipedia "Fleiss' kappa": 10 subjects, 14 raters,
    /// 5 categories; P̄ = 0.378, P̄e = 0.213, kappa = 0.210.
    #[test]
    fn fleiss_matches_the_textbook_example() {
        let table: [[u32; 5]; 10] = [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ];
        let counts: Vec<u32> = table.iter().flatten().copied().collect();
        let kappa = fleiss_kappa(&counts, 5).unwrap();
        assert!((kappa - 0.20993).abs() < 1e-4, "{kappa}");
    }

    /// A table small enough to do by hand: 2 raters, 4 items, labels a/b.
    /// Items: (a,a) (a,a) (b,b) (a,b). Coincidences: o_aa = 4, o_bb = 2, o_ab = o_ba = 1;
    /// n_a = 5, n_b = 3, n = 8. alpha = 1 - 7 * 2 / (2 * 15) = 8/15.
    /// Fleiss: P_i = 1,1,1,0 so P̄ = 0.75; p_a = 5/8, p_b = 3/8, P̄e = 34/64;
    /// kappa = (0.75 - 34/64) / (1 - 34/64) = 14/30 = 7/15.
    #[test]
    fn hand_computed_small_table() {
        let mut votes = Votes::new(2).unwrap();
        for (item, a, b) in [(0, 0, 0), (1, 0, 0), (2, 1, 1), (3, 0, 1)] {
            votes.push(item, 0, a).unwrap();
            votes.push(item, 1, b).unwrap();
        }
        let alpha = krippendorff_alpha(&votes).unwrap();
        assert!((alpha - 8.0 / 15.0).abs() < 1e-12, "{alpha}");
        let kappa = fleiss_kappa(&votes.counts(), 2).unwrap();
        assert!((kappa - 7.0 / 15.0).abs() < 1e-12, "{kappa}");
    }

    #[test]
    fn undefined_cases_are_errors() {
        let mut one_vote_each = Votes::new(2).unwrap();
        one_vote_each.push(0, 0, 0).unwrap();
        one_vote_each.push(1, 0, 1).unwrap();
        assert_eq!(
            krippendorff_alpha(&one_vote_each),
            Err(AgreementError::NoPairableItems)
        );
        let mut all_same = Votes::new(2).unwrap();
        for item in 0..3 {
            all_same.push(item, 0, 1).unwrap();
            all_same.push(item, 1, 1).unwrap();
        }
        assert_eq!(
            krippendorff_alpha(&all_same),
            Err(AgreementError::NoVariation)
        );
        assert_eq!(
            fleiss_kappa(&all_same.counts(), 2),
            Err(AgreementError::NoVariation)
        );
        let mut unequal = all_same.clone();
        unequal.push(0, 2, 0).unwrap();
        assert!(matches!(
            fleiss_kappa(&unequal.counts(), 2),
            Err(AgreementError::UnequalRaters { first: 3, other: 2 })
        ));
    }
}
