//! Numeric rows (one CSV record per sample), standardised with statistics of the pool.

use super::{Extractor, FeatureError};
use std::fmt;

/// Standardises numeric rows: `(x - mean) / std` per column, with the mean and (population)
/// standard deviation of the pool the extractor was fitted on. A constant column keeps a scale
/// of 1, so it becomes 0 rather than NaN.
///
/// As an [`Extractor`], a sample's bytes are one CSV record of numbers separated by commas (the
/// label column already removed).
#[derive(Debug, Clone, PartialEq)]
pub struct Tabular {
    mean: Vec<f64>,
    std: Vec<f64>,
}

impl Tabular {
    /// Fits the statistics on the pool's `(id, values)` rows. Every row must have the width of the
    /// first and only finite values; otherwise the error names the bad row.
    pub fn fit<'a, I, R>(rows: I) -> Result<Self, FeatureError>
    where
        I: IntoIterator<Item = (&'a str, R)>,
        R: AsRef<[f64]>,
    {
        let mut sum: Vec<f64> = Vec::new();
        let mut sum_sq: Vec<f64> = Vec::new();
        let mut count = 0usize;
        // Two moments in one pass, accumulated around the first row to limit cancellation.
        let mut shift: Vec<f64> = Vec::new();
        for (id, row) in rows {
            let row = row.as_ref();
            if count == 0 {
                shift = row.to_vec();
                sum = vec![0.0; row.len()];
                sum_sq = vec![0.0; row.len()];
            }
            check(id, row, shift.len())?;
            for (j, &x) in row.iter().enumerate() {
                let d = x - shift[j];
                sum[j] += d;
                sum_sq[j] += d * d;
            }
            count += 1;
        }
        if count == 0 {
            return Err(FeatureError::EmptyPool);
        }
        let n = count as f64;
        let mean = sum.iter().zip(&shift).map(|(s, c)| c + s / n).collect();
        let std = sum
            .iter()
            .zip(&sum_sq)
            .map(|(s, q)| {
                let var = (q / n - (s / n) * (s / n)).max(0.0);
                if var.sqrt() > 1e-12 { var.sqrt() } else { 1.0 }
            })
            .collect();
        Ok(Self { mean, std })
    }

    /// An extractor that passes `width` values through unchanged (mean 0, scale 1).
    pub fn identity(width: usize) -> Self {
        Self {
            mean: vec![0.0; width],
            std: vec![1.0; width],
        }
    }

    /// Per-column means of the pool.
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// Per-column standard deviations of the pool (1 for constant columns).
    pub fn std(&self) -> &[f64] {
        &self.std
    }

    /// The standardised features of the sample `id` with raw `values`.
    pub fn standardise(
        &self,
        id: impl fmt::Display,
        values: &[f64],
    ) -> Result<Vec<f32>, FeatureError> {
        check(id, values, self.mean.len())?;
        Ok(values
            .iter()
            .zip(self.mean.iter().zip(&self.std))
            .map(|(x, (m, s))| ((x - m) / s) as f32)
            .collect())
    }

    /// Parses one CSV record of numbers (`1,2.5,-3`); surrounding spaces and one trailing line
    /// break are ignored.
    pub fn parse_record(id: impl fmt::Display, bytes: &[u8]) -> Result<Vec<f64>, FeatureError> {
        let text = std::str::from_utf8(bytes).map_err(|e| FeatureError::Undecodable {
            id: id.to_string(),
            reason: format!("not UTF-8 text ({e})"),
        })?;
        let text = text.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            return Ok(Vec::new());
        }
        text.split(',')
            .enumerate()
            .map(|(column, field)| {
                let field = field.trim();
                match field.parse::<f64>() {
                    Ok(x) if x.is_finite() => Ok(x),
                    _ => Err(FeatureError::NotANumber {
                        id: id.to_string(),
                        column,
                        value: field.to_owned(),
                    }),
                }
            })
            .collect()
    }
}

impl Extractor for Tabular {
    fn width(&self) -> usize {
        self.mean.len()
    }

    fn extract(&self, id: impl fmt::Display, bytes: &[u8]) -> Result<Vec<f32>, FeatureError> {
        self.standardise(&id, &Self::parse_record(&id, bytes)?)
    }
}

fn check(id: impl fmt::Display, row: &[f64], width: usize) -> Result<(), FeatureError> {
    if row.len() != width {
        return Err(FeatureError::WrongWidth {
            id: id.to_string(),
            expected: width,
            got: row.len(),
        });
    }
    match row.iter().position(|x| !x.is_finite()) {
        Some(column) => Err(FeatureError::NotANumber {
            id: id.to_string(),
            column,
            value: row[column].to_string(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standardises_with_pool_statistics_and_keeps_constant_columns_finite() {
        let pool = [("a", vec![1.0, 5.0]), ("b", vec![3.0, 5.0])];
        let t = Tabular::fit(pool.iter().map(|(id, r)| (*id, r))).unwrap();
        assert_eq!(t.mean(), &[2.0, 5.0]);
        assert_eq!(t.std(), &[1.0, 1.0]);
        assert_eq!(t.standardise("c", &[4.0, 5.0]).unwrap(), vec![2.0, 0.0]);
        assert_eq!(t.extract("d", b"0, 7\n").unwrap(), vec![-2.0, 2.0]);
    }

    #[test]
    fn bad_rows_are_errors_naming_the_sample() {
        let t = Tabular::identity(2);
        assert_eq!(
            t.extract("s1", b"1,2,3"),
            Err(FeatureError::WrongWidth {
                id: "s1".into(),
                expected: 2,
                got: 3
            })
        );
        assert_eq!(
            t.extract("s2", b"1,NaN"),
            Err(FeatureError::NotANumber {
                id: "s2".into(),
                column: 1,
                value: "NaN".into()
            })
        );
        assert!(
            matches!(t.extract("s3", b"1,x"), Err(FeatureError::NotANumber { id, .. }) if id == "s3")
        );
        assert!(
            matches!(t.extract("s4", &[0xff, 0x2c]), Err(FeatureError::Undecodable { id, .. }) if id == "s4")
        );
        let pool = [("p1", vec![1.0, 2.0]), ("p2", vec![1.0, f64::INFINITY])];
        assert!(
            matches!(Tabular::fit(pool.iter().map(|(i, r)| (*i, r))), Err(FeatureError::NotANumber { id, .. }) if id == "p2")
        );
        let ragged = [("p1", vec![1.0, 2.0]), ("p2", vec![1.0])];
        assert!(
            matches!(Tabular::fit(ragged.iter().map(|(i, r)| (*i, r))), Err(FeatureError::WrongWidth { id, .. }) if id == "p2")
        );
        let none: [(&str, Vec<f64>); 0] = [];
        assert_eq!(
            Tabular::fit(none.iter().map(|(i, r)| (*i, r))),
            Err(FeatureError::EmptyPool)
        );
    }
}
