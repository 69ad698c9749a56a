//! Screening annotators: the machine flags, a person decides.
//!
//! Each annotator's answers are compared with a *reference* label per item: the gold label where
//! the owner holds one, otherwise the majority of the *other* annotators' answers on that item
//! (leave-one-out, so an annotator is never compared with itself; ties and items nobody else
//! answered give no reference). Annotators flagged in one round are left out of the references
//! of the next, so a spammer does not make honest annotators look bad; rounds stop when the flags
//! settle.
//!
//! Three patterns are flagged, each by a one-sided exact test at level `alpha`, and only after
//! `min_answers` compared answers, so that an honest newcomer with a few unlucky answers is not:
//!
//! - **fixed on one label**: among the items whose reference is *another* label, the annotator
//!   still answered its favourite label more often than `fixed_rate` would allow (binomial test);
//! - **random**: agreement with the reference is significantly below the crowd's typical
//!   agreement (the median of the annotators', left-out ones aside) *and* not significantly
//!   above chance (`1 / classes`, a uniform guesser's agreement whatever the truth): both
//!   binomial tests, so an honest but careless annotator, worse than the crowd yet clearly
//!   better than guessing, is not called random;
//! - **drifting**: after some point of the annotator's answers (by time) its agreement dropped by
//!   at least `drift_drop` more than the other annotators' agreement over the same periods (later
//!   items are often harder: active learning picks them so), and is then significantly below
//!   theirs (Fisher's exact test at the best of a few split points, corrected for the number
//!   tried).
//!
//! An annotator carries at most one flag, the first of that order that holds. A flag is evidence
//! for a person, not a verdict: its [`Flag::reason`] says what was seen in one sentence.

use std::collections::{BTreeMap, BTreeSet};

use swarmlabel_crdt::{AnnotatorKey, SampleId, SignedAnnotation};

mod exact;

use exact::{binomial_lower, binomial_upper, fisher_upper};

/// One answer: rater `rater` gave label `label` to item `item` at `time_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The item (sample) index.
    pub item: u32,
    /// The rater (annotator) index.
    pub rater: u32,
    /// The label index.
    pub label: u16,
    /// When it was given (milliseconds; only the order matters).
    pub time_ms: u64,
}

/// The label answers among annotations, as dense indices: items are the samples in sorted
/// order, raters the annotators in sorted order (as in [`super::Votes::from_annotations`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answers {
    /// The answers (skips and unsure answers left out).
    pub answers: Vec<Answer>,
    /// Sample ids by item index.
    pub samples: Vec<SampleId>,
    /// Annotator keys by rater index.
    pub annotators: Vec<AnnotatorKey>,
}

impl Answers {
    /// The label answers of `annotations`.
    pub fn from_annotations(annotations: &[SignedAnnotation]) -> Self {
        let mut samples = BTreeMap::new();
        let mut annotators = BTreeMap::new();
        for a in annotations.iter().map(SignedAnnotation::annotation) {
            if a.value.label().is_some() {
                samples.insert(a.sample, 0u32);
                annotators.insert(a.annotator, 0u32);
            }
        }
        for (i, v) in samples.values_mut().enumerate() {
            *v = u32::try_from(i).unwrap_or(u32::MAX);
        }
        for (i, v) in annotators.values_mut().enumerate() {
            *v = u32::try_from(i).unwrap_or(u32::MAX);
        }
        let answers = annotations
            .iter()
            .map(SignedAnnotation::annotation)
            .filter_map(|a| {
                let label = a.value.label()?;
                Some(Answer {
                    item: samples[&a.sample],
                    rater: annotators[&a.annotator],
                    label,
                    time_ms: a.time_ms,
                })
            })
            .collect();
        Self {
            answers,
            samples: samples.into_keys().collect(),
            annotators: annotators.into_keys().collect(),
        }
    }

    /// The item index of `sample`, if it has answers.
    pub fn item(&self, sample: &SampleId) -> Option<u32> {
        self.samples
            .binary_search(sample)
            .ok()
            .and_then(|i| u32::try_from(i).ok())
    }
}

/// Screening settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScreenConfig {
    /// Compared answers (answers with a reference) needed before any flag.
    pub min_answers: u32,
    /// Level of each one-sided test.
    pub alpha: f64,
    /// Largest rate at which an honest annotator gives its favourite label to items whose
    /// reference is another label.
    pub fixed_rate: f64,
    /// Smallest drop in agreement, earlier answers to later ones, flagged as drifting.
    pub drift_drop: f64,
    /// At most this many rounds of leaving flagged annotators out of the references.
    pub rounds: usize,
}

impl Default for ScreenConfig {
    /// 12 answers, level 0.01, fixed rate 0.5, drop 0.3, 3 rounds.
    fn default() -> Self {
        Self {
            min_answers: 12,
            alpha: 0.01,
            fixed_rate: 0.5,
            drift_drop: 0.3,
            rounds: 3,
        }
    }
}

/// What an annotator was flagged for, with the evidence.
#[derive(Clone, Debug, PartialEq)]
pub enum Flag {
    /// Nearly always the same label, whatever the item.
    Fixed {
        /// The label it keeps giving.
        label: u16,
        /// Items whose reference is another label.
        others: u32,
        /// How many of those it gave `label` anyway.
        gave: u32,
        /// P(at least `gave` of `others` | rate `fixed_rate`).
        p_value: f64,
    },
    /// Agreement no better than guessing.
    Random {
        /// Compared answers.
        compared: u32,
        /// Of which agreed with the reference.
        agreed: u32,
        /// A uniform guesser's agreement.
        chance: f64,
        /// The crowd's typical agreement.
        typical: f64,
        /// P(at most `agreed` of `compared` | agreement `typical`).
        p_value: f64,
        /// P(at least `agreed` of `compared` | agreement `chance`): large, or it would not be
        /// flagged.
        p_chance: f64,
    },
    /// Agreement dropped sharply over time.
    Drift {
        /// Agreed and compared answers before the split.
        before: (u32, u32),
        /// Agreed and compared answers after it.
        after: (u32, u32),
        /// Fisher's exact one-sided p-value, corrected for the splits tried.
        p_value: f64,
    },
}

impl Flag {
    /// The test's p-value.
    pub fn p_value(&self) -> f64 {
        match self {
            Flag::Fixed { p_value, .. }
            | Flag::Random { p_value, .. }
            | Flag::Drift { p_value, .. } => *p_value,
        }
    }

    /// A short name: `fixed`, `random` or `drift`.
    pub fn kind(&self) -> &'static str {
        match self {
            Flag::Fixed { .. } => "fixed",
            Flag::Random { .. } => "random",
            Flag::Drift { .. } => "drift",
        }
    }

    /// One sentence for a person, naming labels by `labels` (indices where a name is missing).
    pub fn reason(&self, labels: &[String]) -> String {
        match self {
            Flag::Fixed {
                label,
                others,
                gave,
                p_value,
            } => {
                let name = labels
                    .get(usize::from(*label))
                    .cloned()
                    .unwrap_or_else(|| format!("#{label}"));
                format!(
                    "answers \"{name}\" almost whatever the sample: on {gave} of {others} samples \
                     that others label differently (p = {})",
                    p(*p_value)
                )
            }
            Flag::Random {
                compared,
                agreed,
                chance,
                typical,
                p_value,
                ..
            } => format!(
                "answers look random: agrees with others on {agreed} of {compared} samples \
                 ({:.0} %, where guessing gives {:.0} % and annotators typically {:.0} %; p = {})",
                percent(*agreed, *compared),
                chance * 100.0,
                typical * 100.0,
                p(*p_value)
            ),
            Flag::Drift {
                before,
                after,
                p_value,
            } => format!(
                "agreement with others fell from {:.0} % ({} of {}) to {:.0} % ({} of {}) in its \
                 later answers (p = {})",
                percent(before.0, before.1),
                before.0,
                before.1,
                percent(after.0, after.1),
                after.0,
                after.1,
                p(*p_value)
            ),
        }
    }
}

fn percent(a: u32, b: u32) -> f64 {
    if b == 0 {
        0.0
    } else {
        100.0 * f64::from(a) / f64::from(b)
    }
}

fn p(value: f64) -> String {
    if value < 1e-4 {
        format!("{value:.1e}")
    } else {
        format!("{value:.4}")
    }
}

/// The screening of one annotator.
#[derive(Clone, Debug, PartialEq)]
pub struct Screening {
    /// The rater index.
    pub rater: u32,
    /// Its label answers.
    pub answers: u32,
    /// Of which had a reference.
    pub compared: u32,
    /// Of which agreed with it.
    pub agreed: u32,
    /// The flag, if any.
    pub flag: Option<Flag>,
}

impl Screening {
    /// Agreement with the references, or `None` without any compared answer.
    pub fn agreement(&self) -> Option<f64> {
        (self.compared > 0).then(|| f64::from(self.agreed) / f64::from(self.compared))
    }
}

/// Screens every rater of `answers` over `classes` labels, with `gold` items (item, label) as the
/// reference where given. One entry per rater index up to the largest, in rater order.
/// A rater should answer an item at most once (true of annotations from the CRDT).
pub fn screen(
    answers: &[Answer],
    gold: &[(u32, u16)],
    classes: u16,
    config: ScreenConfig,
) -> Vec<Screening> {
    let raters = answers.iter().map(|a| a.rater + 1).max().unwrap_or(0);
    let gold: BTreeMap<u32, u16> = gold.iter().copied().collect();
    let mut by_item: BTreeMap<u32, Vec<(u32, u16)>> = BTreeMap::new();
    for a in answers {
        by_item.entry(a.item).or_default().push((a.rater, a.label));
    }
    let mut by_rater: Vec<Vec<Answer>> = vec![Vec::new(); raters as usize];
    for a in answers {
        by_rater[a.rater as usize].push(*a);
    }
    for list in &mut by_rater {
        list.sort_by_key(|a| (a.time_ms, a.item));
    }
    let mut excluded: BTreeSet<u32> = BTreeSet::new();
    let mut result = Vec::new();
    for _ in 0..config.rounds.max(1) {
        let compared: Vec<Vec<Compared>> = (0..raters)
            .map(|r| {
                by_rater[r as usize]
                    .iter()
                    .filter_map(|a| {
                        let reference = match gold.get(&a.item) {
                            Some(&g) => g,
                            None => leave_one_out(&by_item[&a.item], r, &excluded, classes)?,
                        };
                        Some(Compared {
                            time_ms: a.time_ms,
                            agreed: a.label == reference,
                            given: a.label,
                            reference,
                        })
                    })
                    .collect()
            })
            .collect();
        let crowd = Crowd::new(&compared, &excluded);
        let typical = typical_agreement(&compared, &excluded, config.min_answers);
        result = (0..raters)
            .map(|r| {
                let own = &compared[r as usize];
                let mut screening = Screening {
                    rater: r,
                    answers: by_rater[r as usize].len() as u32,
                    compared: own.len() as u32,
                    agreed: own.iter().filter(|c| c.agreed).count() as u32,
                    flag: None,
                };
                if own.len() >= config.min_answers.max(1) as usize && classes >= 2 {
                    let others = |t: u64| crowd.others_before(t, own, excluded.contains(&r));
                    screening.flag = fixed(own, classes, &config)
                        .or_else(|| random(own, classes, typical, &config))
                        .or_else(|| drift(own, others, &config));
                }
                screening
            })
            .collect();
        let flagged: BTreeSet<u32> = result
            .iter()
            .filter(|s| s.flag.is_some())
            .map(|s| s.rater)
            .collect();
        if flagged == excluded {
            break;
        }
        excluded = flagged;
    }
    result
}

/// One answer that had a reference.
#[derive(Clone, Copy, Debug)]
struct Compared {
    time_ms: u64,
    agreed: bool,
    given: u16,
    reference: u16,
}

/// The compared answers of every rater not excluded, by time, to count how the crowd agreed
/// before a moment.
struct Crowd {
    times: Vec<u64>,
    /// `agreed[i]`: agreements among the first `i` answers.
    agreed: Vec<u32>,
}

impl Crowd {
    fn new(compared: &[Vec<Compared>], excluded: &BTreeSet<u32>) -> Self {
        let mut all: Vec<(u64, bool)> = compared
            .iter()
            .enumerate()
            .filter(|(r, _)| !excluded.contains(&(*r as u32)))
            .flat_map(|(_, list)| list.iter().map(|c| (c.time_ms, c.agreed)))
            .collect();
        all.sort_unstable();
        let mut agreed = Vec::with_capacity(all.len() + 1);
        agreed.push(0);
        for (_, a) in &all {
            agreed.push(agreed.last().copied().unwrap_or(0) + u32::from(*a));
        }
        Self {
            times: all.into_iter().map(|(t, _)| t).collect(),
            agreed,
        }
    }

    /// (agreed, compared) of the raters other than the one whose answers are `own` (counted in
    /// the crowd unless `own_excluded`), before `t` and from `t` on.
    fn others_before(&self, t: u64, own: &[Compared], own_excluded: bool) -> [(u32, u32); 2] {
        let cut = self.times.partition_point(|&x| x < t);
        let total = self.times.len();
        let mut before = (self.agreed[cut], cut as u32);
        let mut after = (self.agreed[total] - self.agreed[cut], (total - cut) as u32);
        if !own_excluded {
            for c in own {
                let part = if c.time_ms < t {
                    &mut before
                } else {
                    &mut after
                };
                part.0 -= u32::from(c.agreed);
                part.1 -= 1;
            }
        }
        [before, after]
    }
}

/// The majority label of the item's answers by raters other than `rater` and not `excluded`;
/// `None` when there are none or the top is tied.
fn leave_one_out(
    votes: &[(u32, u16)],
    rater: u32,
    excluded: &BTreeSet<u32>,
    classes: u16,
) -> Option<u16> {
    let mut counts = vec![0u32; usize::from(classes)];
    for &(r, l) in votes {
        if r != rater
            && !excluded.contains(&r)
            && let Some(c) = counts.get_mut(usize::from(l))
        {
            *c += 1;
        }
    }
    let top = *counts.iter().max()?;
    if top == 0 || counts.iter().filter(|&&c| c == top).count() > 1 {
        return None;
    }
    counts.iter().position(|&c| c == top).map(|l| l as u16)
}

/// Fixed: the favourite label, given to items whose reference is another label.
fn fixed(own: &[Compared], classes: u16, config: &ScreenConfig) -> Option<Flag> {
    let mut given = vec![0u32; usize::from(classes)];
    for c in own {
        if let Some(g) = given.get_mut(usize::from(c.given)) {
            *g += 1;
        }
    }
    let label = given
        .iter()
        .enumerate()
        .max_by_key(|&(l, &g)| (g, std::cmp::Reverse(l)))
        .map_or(0, |(l, _)| l as u16);
    let others = own.iter().filter(|c| c.reference != label).count() as u32;
    let gave = own
        .iter()
        .filter(|c| c.reference != label && c.given == label)
        .count() as u32;
    if others < config.min_answers / 2 {
        return None;
    }
    let p_value = binomial_upper(gave, others, config.fixed_rate);
    (p_value < config.alpha).then_some(Flag::Fixed {
        label,
        others,
        gave,
        p_value,
    })
}

/// The median agreement of the raters not excluded with at least half the minimum of compared
/// answers; `None` without any.
fn typical_agreement(
    compared: &[Vec<Compared>],
    excluded: &BTreeSet<u32>,
    min_answers: u32,
) -> Option<f64> {
    let mut rates: Vec<f64> = compared
        .iter()
        .enumerate()
        .filter(|(r, list)| {
            !excluded.contains(&(*r as u32)) && list.len() as u32 >= (min_answers / 2).max(1)
        })
        .map(|(_, list)| list.iter().filter(|c| c.agreed).count() as f64 / list.len() as f64)
        .collect();
    if rates.is_empty() {
        return None;
    }
    rates.sort_by(f64::total_cmp);
    let mid = rates.len() / 2;
    Some(if rates.len() % 2 == 1 {
        rates[mid]
    } else {
        (rates[mid - 1] + rates[mid]) / 2.0
    })
}

/// Random: agreement significantly below the crowd's typical agreement and not significantly
/// above chance. Nothing is flagged while the crowd itself agrees no better than chance.
fn random(
    own: &[Compared],
    classes: u16,
    typical: Option<f64>,
    config: &ScreenConfig,
) -> Option<Flag> {
    let compared = own.len() as u32;
    let agreed = own.iter().filter(|c| c.agreed).count() as u32;
    let chance = 1.0 / f64::from(classes);
    let typical = typical.filter(|&t| t > chance)?;
    let p_value = binomial_lower(agreed, compared, typical);
    let p_chance = binomial_upper(agreed, compared, chance);
    (p_value < config.alpha && p_chance >= config.alpha).then_some(Flag::Random {
        compared,
        agreed,
        chance,
        typical,
        p_value,
        p_chance,
    })
}

/// Drift: after some point the rater agrees much less than before, *relative to the crowd over
/// the same periods* (later items are often harder: active learning picks them so), and in the
/// later period significantly less than the others (Fisher's exact test). The split is searched
/// at tenths of the answers, the p-value corrected for the splits tried (Bonferroni).
fn drift(
    own: &[Compared],
    others: impl Fn(u64) -> [(u32, u32); 2],
    config: &ScreenConfig,
) -> Option<Flag> {
    let n = own.len();
    let splits: Vec<usize> = (2..=8)
        .map(|t| n * t / 10)
        .filter(|&s| s > 0 && s < n)
        .collect();
    let rate = |(k, n): (u32, u32)| {
        if n == 0 {
            0.0
        } else {
            f64::from(k) / f64::from(n)
        }
    };
    let best = splits
        .iter()
        .filter_map(|&s| {
            let k1 = own[..s].iter().filter(|c| c.agreed).count() as u32;
            let k2 = own[s..].iter().filter(|c| c.agreed).count() as u32;
            let (before, after) = ((k1, s as u32), (k2, (n - s) as u32));
            let [crowd_before, crowd_after] = others(own[s].time_ms);
            if crowd_before.1 == 0 || crowd_after.1 == 0 {
                return None;
            }
            let own_drop = rate(before) - rate(after);
            let crowd_drop = rate(crowd_before) - rate(crowd_after);
            if own_drop - crowd_drop < config.drift_drop {
                return None;
            }
            // Later, the rater against the crowd: does the crowd hold more of the agreements
            // than its share of the answers?
            let p = fisher_upper(crowd_after.0, crowd_after.1, after.0, after.1);
            Some((before, after, p))
        })
        .min_by(|a, b| a.2.total_cmp(&b.2))?;
    let (before, after, p_value) = best;
    let p_value = (p_value * splits.len() as f64).min(1.0);
    (p_value < config.alpha).then_some(Flag::Drift {
        before,
        after,
        p_value,
    })
}

#[cfg(test)]
mod tests;
