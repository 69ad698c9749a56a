//! Majority vote, with ties reported rather than silently broken.

use super::Votes;

/// The majority-vote outcome of one item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nobody voted a label on this item.
    NoVotes,
    /// One label has strictly more votes than any other.
    Winner {
        /// The label.
        label: u16,
        /// Its votes.
        votes: u32,
        /// All votes on the item.
        total: u32,
    },
    /// Several labels share the most votes.
    Tie {
        /// The tied labels, ascending.
        labels: Vec<u16>,
        /// The votes of each tied label.
        votes: u32,
        /// All votes on the item.
        total: u32,
    },
}

/// What to do with a tie when a single label is wanted.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TieBreak<'a> {
    /// No label: the item needs another annotator (the default, and the honest one).
    Abstain,
    /// The tied label with the greatest prior (e.g. class frequencies, or Dawid–Skene priors);
    /// equal priors fall back to the lowest index. The slice is indexed by label.
    Prior(&'a [f64]),
    /// The lowest tied label index: deterministic, but biased towards early labels.
    LowestIndex,
}

impl Outcome {
    /// The winning label, with ties resolved by `tie`.
    pub fn label(&self, tie: TieBreak<'_>) -> Option<u16> {
        match (self, tie) {
            (Outcome::NoVotes, _) => None,
            (Outcome::Winner { label, .. }, _) => Some(*label),
            (Outcome::Tie { .. }, TieBreak::Abstain) => None,
            (Outcome::Tie { labels, .. }, TieBreak::LowestIndex) => labels.first().copied(),
            (Outcome::Tie { labels, .. }, TieBreak::Prior(prior)) => {
                labels.iter().copied().reduce(|best, l| {
                    let p = |x: u16| prior.get(usize::from(x)).copied().unwrap_or(0.0);
                    if p(l) > p(best) { l } else { best }
                })
            }
        }
    }

    /// The share of the item's votes that the top label got (0 without votes). For a tie it is
    /// the share of each tied label.
    pub fn confidence(&self) -> f64 {
        match self {
            Outcome::NoVotes => 0.0,
            Outcome::Winner { votes, total, .. } | Outcome::Tie { votes, total, .. } => {
                f64::from(*votes) / f64::from(*total)
            }
        }
    }
}

/// The majority-vote outcome of every item of `votes`, by item index.
pub fn majority(votes: &Votes) -> Vec<Outcome> {
    let k = usize::from(votes.classes());
    let counts = votes.counts();
    counts
        .chunks(k.max(1))
        .map(|row| {
            let total: u32 = row.iter().sum();
            let top = row.iter().copied().max().unwrap_or(0);
            if total == 0 {
                return Outcome::NoVotes;
            }
            let labels: Vec<u16> = row
                .iter()
                .enumerate()
                .filter(|&(_, &c)| c == top)
                // Indices of a row are below `classes`, a u16.
                .map(|(l, _)| l as u16)
                .collect();
            match labels[..] {
                [label] => Outcome::Winner {
                    label,
                    votes: top,
                    total,
                },
                _ => Outcome::Tie {
                    labels,
                    votes: top,
                    total,
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-made table, 3 labels: item 0 clear winner, item 1 two-way tie, item 2 three-way tie,
    /// item 3 no votes (only item 4 is voted after it), item 4 single vote.
    fn table() -> Votes {
        let mut v = Votes::new(3).unwrap();
        for (item, rater, label) in [
            (0, 0, 2),
            (0, 1, 2),
            (0, 2, 1),
            (1, 0, 0),
            (1, 1, 1),
            (1, 2, 1),
            (1, 3, 0),
            (2, 0, 0),
            (2, 1, 1),
            (2, 2, 2),
            (4, 3, 1),
        ] {
            v.push(item, rater, label).unwrap();
        }
        v
    }

    #[test]
    fn majority_reports_winners_ties_and_empty_items() {
        let out = majority(&table());
        assert_eq!(
            out,
            vec![
                Outcome::Winner {
                    label: 2,
                    votes: 2,
                    total: 3
                },
                Outcome::Tie {
                    labels: vec![0, 1],
                    votes: 2,
                    total: 4
                },
                Outcome::Tie {
                    labels: vec![0, 1, 2],
                    votes: 1,
                    total: 3
                },
                Outcome::NoVotes,
                Outcome::Winner {
                    label: 1,
                    votes: 1,
                    total: 1
                },
            ]
        );
        assert!((out[0].confidence() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(out[1].confidence(), 0.5);
        assert_eq!(out[3].confidence(), 0.0);
    }

    #[test]
    fn ties_are_resolved_only_as_asked() {
        let out = majority(&table());
        assert_eq!(out[1].label(TieBreak::Abstain), None);
        assert_eq!(out[1].label(TieBreak::LowestIndex), Some(0));
        let prior: [f64; 3] = [0.2, 0.5, 0.3];
        assert_eq!(out[1].label(TieBreak::Prior(&prior)), Some(1));
        assert_eq!(out[2].label(TieBreak::Prior(&prior)), Some(1));
        let flat: [f64; 3] = [0.3, 0.3, 0.4];
        assert_eq!(out[1].label(TieBreak::Prior(&flat)), Some(0));
        // A winner is never overridden by the tie rule.
        assert_eq!(out[0].label(TieBreak::Abstain), Some(2));
        assert_eq!(out[3].label(TieBreak::LowestIndex), None);
    }
}
