//! Quantiles of measured values, one rule for every benchmark: the value at rank
//! `round((n - 1) x q)` of the sorted values (0 for no values).

/// The `q` quantile (0 to 1) of `values`, in any order.
pub(crate) fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v.get(i).copied().unwrap_or(0.0)
}
