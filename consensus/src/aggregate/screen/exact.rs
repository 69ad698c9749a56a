//! The exact tests of the screening: binomial tails and Fisher's exact test, from log-factorials.

/// ln(n!), exact below 256, Stirling's series above (relative error below 1e-12).
pub(super) fn ln_factorial(n: u32) -> f64 {
    if n < 256 {
        return (2..=n).map(|i| f64::from(i).ln()).sum();
    }
    let x = f64::from(n);
    x * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI * x).ln() + 1.0 / (12.0 * x)
        - 1.0 / (360.0 * x * x * x)
}

fn ln_choose(n: u32, k: u32) -> f64 {
    ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k)
}

/// P(X = i) for X ~ Binomial(n, p).
fn binomial_pmf(i: u32, n: u32, p: f64) -> f64 {
    if p <= 0.0 {
        return if i == 0 { 1.0 } else { 0.0 };
    }
    if p >= 1.0 {
        return if i == n { 1.0 } else { 0.0 };
    }
    (ln_choose(n, i) + f64::from(i) * p.ln() + f64::from(n - i) * (1.0 - p).ln()).exp()
}

/// P(X ≤ k) for X ~ Binomial(n, p).
pub(super) fn binomial_lower(k: u32, n: u32, p: f64) -> f64 {
    (0..=k.min(n))
        .map(|i| binomial_pmf(i, n, p))
        .sum::<f64>()
        .min(1.0)
}

/// P(X ≥ k) for X ~ Binomial(n, p).
pub(super) fn binomial_upper(k: u32, n: u32, p: f64) -> f64 {
    if k > n {
        return 0.0;
    }
    (k..=n).map(|i| binomial_pmf(i, n, p)).sum::<f64>().min(1.0)
}

/// Fisher's exact test, one-sided: the probability, with the agreed answers spread over two groups
/// at random, that the first group (of `n1`) holds at least `k1` of them.
pub(super) fn fisher_upper(k1: u32, n1: u32, k2: u32, n2: u32) -> f64 {
    let total = n1 + n2;
    let agreed = k1 + k2;
    let ln_all = ln_choose(total, n1);
    let top = agreed.min(n1);
    (k1..=top)
        .filter(|&x| agreed - x <= n2)
        .map(|x| (ln_choose(agreed, x) + ln_choose(total - agreed, n1 - x) - ln_all).exp())
        .sum::<f64>()
        .min(1.0)
}
