//! The driver's side of the rollout guard (see [`crate::learn::guard`]): what to do with a
//! rescore's candidate, and what to record once it is decided.

use std::sync::Arc;

use swarmlabel_active_learning::Matrix;

use super::Driver;
use crate::models::MergedModel;

/// What the rollout guard does with a rescore's candidate.
pub(super) enum Judge {
    /// Rank with the candidate: this node's own model, the first model, a model already in use,
    /// too few labels to judge, or the guard off.
    Take,
    /// Keep the model in use without measuring again: the candidate is the merged model refused
    /// last, and the labels have not changed since.
    KeepAsBefore,
    /// Measure the candidate and the model in use on these `(row, class)` labels.
    Measure(Vec<(usize, usize)>),
}

/// A rescore's outcome.
pub(super) struct Scored {
    pub(super) probs: Matrix,
    pub(super) scores: Vec<f32>,
    /// The weights ranked with.
    pub(super) bytes: Option<Arc<Vec<u8>>>,
    /// When the guard refused the candidate: its accuracy, the kept model's, and on how many
    /// labels.
    pub(super) verdict: Option<(f64, f64, usize)>,
}

/// Whether `candidate` is the merged model's bytes.
pub(super) fn is_merged(merged: Option<&MergedModel>, candidate: Option<&Arc<Vec<u8>>>) -> bool {
    matches!((merged, candidate), (Some(m), Some(c)) if Arc::ptr_eq(&m.weights, c) || *m.weights == **c)
}

impl Driver {
    pub(super) fn judgement(
        &self,
        merged: Option<&MergedModel>,
        candidate: Option<&Arc<Vec<u8>>>,
        current: Option<&Arc<Vec<u8>>>,
    ) -> Judge {
        let guard = &self.config.guard;
        let (Some(m), Some(current)) = (merged, current) else {
            return Judge::Take;
        };
        if !guard.enabled
            || !is_merged(merged, candidate)
            || *m.weights == **current
            || self.usable.len() < guard.min_labels
        {
            return Judge::Take;
        }
        if self.refused == Some((m.hash.0, self.usable.len())) {
            return Judge::KeepAsBefore;
        }
        Judge::Measure(self.usable.clone())
    }

    /// Records what the guard decided about `merged`.
    pub(super) fn guarded(
        &mut self,
        merged: &MergedModel,
        kept_as_before: bool,
        took_merged: bool,
        verdict: Option<(f64, f64, usize)>,
    ) {
        if let Some((new, kept, labels)) = verdict {
            let first = self.refused.is_none_or(|(hash, _)| hash != merged.hash.0);
            self.refused = Some((merged.hash.0, labels));
            let refusal = crate::learn::guard::Refusal::new(
                hex::encode(merged.hash.0),
                new,
                kept,
                labels,
                &self.config.guard,
            );
            if first {
                tracing::warn!(dataset = %self.crdt, "{}", refusal.reason);
                self.config.vitals.refused(&self.crdt);
            }
            let mut board = self.board();
            board.progress.refused_merges += u64::from(first);
            board.progress.guard = Some(refusal);
        } else if took_merged && !kept_as_before {
            self.refused = None;
            self.board().progress.guard = None;
        }
    }
}
