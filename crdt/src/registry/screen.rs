//! The outlier screen: a node scores each update on its own held-out labels (the caller runs the
//! models) and leaves out those far below the best or below a floor, before merging. The node
//! trusts its own labels, not the validation figures peers announce.

use std::collections::BTreeMap;

use crate::annotation::AnnotatorKey;

/// When an update is left out. Scores are accuracies in parts per million (as
/// [`super::Validation::from_counts`] computes them), so that the screen is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Left out when the score is more than this many ppm below the best score.
    pub max_below_best_ppm: u32,
    /// Left out when the score is below this.
    pub floor_ppm: u32,
}

/// Why an update is left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Reason {
    /// Below the floor.
    #[error("it scores {score_ppm} ppm on our held-out labels, below the floor of {floor_ppm}")]
    BelowFloor {
        /// Its score.
        score_ppm: u32,
        /// The floor.
        floor_ppm: u32,
    },
    /// Too far below the best update.
    #[error(
        "it scores {score_ppm} ppm on our held-out labels, more than {max_below_best_ppm} below \
         the best ({best_ppm})"
    )]
    FarBelowBest {
        /// Its score.
        score_ppm: u32,
        /// The best score.
        best_ppm: u32,
        /// The largest gap allowed.
        max_below_best_ppm: u32,
    },
}

/// The outcome of [`screen`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// The peers kept, sorted.
    pub kept: Vec<AnnotatorKey>,
    /// The peers left out and why, sorted by peer.
    pub excluded: Vec<(AnnotatorKey, Reason)>,
}

impl Outcome {
    /// Whether `peer`'s update passed the screen.
    pub fn keeps(&self, peer: &AnnotatorKey) -> bool {
        self.kept.binary_search(peer).is_ok()
    }
}

/// Screens updates by their scores on the node's own held-out labels. A peer listed twice counts
/// with its lower score. The floor is checked first, then the gap to the best score of all.
pub fn screen(scores: impl IntoIterator<Item = (AnnotatorKey, u32)>, config: &Config) -> Outcome {
    let mut by_peer: BTreeMap<AnnotatorKey, u32> = BTreeMap::new();
    for (peer, score) in scores {
        let s = by_peer.entry(peer).or_insert(score);
        *s = (*s).min(score);
    }
    let best_ppm = by_peer.values().copied().max().unwrap_or(0);
    let mut outcome = Outcome::default();
    for (peer, score_ppm) in by_peer {
        if score_ppm < config.floor_ppm {
            outcome.excluded.push((
                peer,
                Reason::BelowFloor {
                    score_ppm,
                    floor_ppm: config.floor_ppm,
                },
            ));
        } else if best_ppm - score_ppm > config.max_below_best_ppm {
            outcome.excluded.push((
                peer,
                Reason::FarBelowBest {
                    score_ppm,
                    best_ppm,
                    max_below_best_ppm: config.max_below_best_ppm,
                },
            ));
        } else {
            outcome.kept.push(peer);
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::annotator;

    #[test]
    fn excludes_below_the_floor_and_far_below_the_best_saying_why() {
        let config = Config {
            max_below_best_ppm: 50_000,
            floor_ppm: 500_000,
        };
        let outcome = screen(
            [
                (annotator(1), 900_000),
                (annotator(2), 850_000), // exactly 5 points below the best: kept
                (annotator(3), 849_999), // just more: out
                (annotator(4), 400_000), // below the floor
                (annotator(1), 910_000), // listed twice: the lower score counts
            ],
            &config,
        );
        let mut kept = vec![annotator(1), annotator(2)];
        kept.sort();
        assert_eq!(outcome.kept, kept);
        assert!(outcome.keeps(&annotator(2)));
        assert!(!outcome.keeps(&annotator(3)));
        let mut excluded = vec![
            (
                annotator(3),
                Reason::FarBelowBest {
                    score_ppm: 849_999,
                    best_ppm: 900_000,
                    max_below_best_ppm: 50_000,
                },
            ),
            (
                annotator(4),
                Reason::BelowFloor {
                    score_ppm: 400_000,
                    floor_ppm: 500_000,
                },
            ),
        ];
        excluded.sort_by_key(|e| e.0);
        assert_eq!(outcome.excluded, excluded);
        assert_eq!(screen([], &config), Outcome::default());
    }
}
