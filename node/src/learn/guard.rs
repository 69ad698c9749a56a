//! The rollout guard: a node ranks with a new merged model only if, on the labels this node
//! holds, it is not worse than the model in use beyond a tolerance. Otherwise the node keeps
//! ranking with the model it had, says why ([`Refusal`], in `status`) and counts it
//! (`swarmlabel_learn_merged_refused_total`). The merged model's bytes stay the same on every
//! node: the merge is eventually consistent, the guard only decides what this node uses.
//!
//! The decision is a plain function of two accuracies; the driver measures them on a blocking
//! thread.

/// Settings of the guard.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuardConfig {
    /// Largest drop in accuracy (a fraction: 0.10 is ten points) a new merged model may show
    /// against the model in use.
    pub tolerance: f64,
    /// Usable labels needed before the guard judges (fewer say too little).
    pub min_labels: usize,
    /// Whether the guard runs at all.
    pub enabled: bool,
}

impl Default for GuardConfig {
    /// Ten points, 20 labels, on. The model in use is often this node's own, measured on labels
    /// it was trained on, so it has an edge a fair merged model does not: the tolerance leaves
    /// room for that edge, and a poisoned model falls far below it.
    fn default() -> Self {
        Self {
            tolerance: 0.10,
            min_labels: 20,
            enabled: true,
        }
    }
}

/// Whether a merged model with accuracy `candidate` may replace one with `current`.
pub fn accepts(candidate: f64, current: f64, config: &GuardConfig) -> bool {
    candidate + config.tolerance >= current
}

/// A merged model the guard kept out, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Refusal {
    /// Hash (hex) of the merged model refused.
    pub merged: String,
    /// Its accuracy on this node's labels.
    pub merged_accuracy: f64,
    /// The accuracy of the model kept, on the same labels.
    pub kept_accuracy: f64,
    /// How many labels both were measured on.
    pub labels: usize,
    /// The tolerance in force.
    pub tolerance: f64,
    /// One sentence for `status`.
    pub reason: String,
}

impl Refusal {
    /// The refusal of `merged` (hex) with these figures.
    pub fn new(
        merged: String,
        merged_accuracy: f64,
        kept_accuracy: f64,
        labels: usize,
        config: &GuardConfig,
    ) -> Self {
        let reason = format!(
            "kept the model in use: the new merged model {} gets {:.1} % of this node's {labels} \
             labels right, the model in use {:.1} % (more than {:.0} points worse)",
            &merged[..merged.len().min(12)],
            merged_accuracy * 100.0,
            kept_accuracy * 100.0,
            config.tolerance * 100.0,
        );
        Self {
            merged,
            merged_accuracy,
            kept_accuracy,
            labels,
            tolerance: config.tolerance,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_within_the_tolerance_is_taken_and_one_beyond_it_is_not() {
        let config = GuardConfig::default();
        assert!(accepts(0.90, 0.90, &config));
        assert!(accepts(0.81, 0.90, &config), "9 points worse: within 10");
        assert!(accepts(0.99, 0.50, &config), "better is always taken");
        assert!(!accepts(0.79, 0.90, &config), "11 points worse");
        let refusal = Refusal::new("ab".repeat(32), 0.1, 0.9, 40, &config);
        assert_eq!(
            refusal.reason,
            "kept the model in use: the new merged model abababababab gets 10.0 % of this \
             node's 40 labels right, the model in use 90.0 % (more than 10 points worse)"
        );
    }
}
