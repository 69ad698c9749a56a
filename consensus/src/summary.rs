//! What a dataset's annotations add up to: a consensus label per sample, a reliability per
//! annotator, inter-annotator agreement and counts. This is what `swarmlabel labels --stats` and
//! `swarmlabel export` show.
//!
//! I/O-free: [`summarise`] is a plain function of the validated annotations (as the label store
//! reads them), the label set, the gold labels of the manifest and the chosen [`Method`]. The
//! statistics themselves are `crate::aggregate`'s; this module decides which ones a
//! data owner sees and says plainly when one is not defined.
//!
//! - The consensus is Dawid–Skene's by default (gold labels held fixed, so skill is anchored to
//!   known truth), or majority vote. A majority tie gives no label: the sample needs another
//!   annotator, and a silent tie-break would hide that.
//! - Reliability is always the Dawid–Skene estimate (the probability that the annotator's answer
//!   is the true label), whatever the consensus method; beside it are the share of the
//!   annotator's votes that match the consensus and, where gold labels exist, the share that
//!   match them.
//! - Skip and unsure answers are not votes; they are counted separately.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use crate::aggregate::{self, AgreementError, Outcome, TieBreak, Votes};
use serde::{Deserialize, Serialize};
use swarmlabel_crdt::{Annotations, AnnotatorKey, SampleId, Value};

/// How the consensus label of a sample is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Dawid–Skene EM: votes weighted by each annotator's estimated confusion matrix.
    #[default]
    DawidSkene,
    /// The label with strictly the most votes; ties give no label.
    Majority,
}

impl Method {
    /// The name used in the API and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Method::DawidSkene => "dawid-skene",
            Method::Majority => "majority",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A method name that is neither `dawid-skene` nor `majority`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a consensus method; use dawid-skene or majority")]
pub struct ParseMethodError(pub String);

impl FromStr for Method {
    type Err = ParseMethodError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "dawid-skene" => Ok(Method::DawidSkene),
            "majority" => Ok(Method::Majority),
            other => Err(ParseMethodError(other.to_owned())),
        }
    }
}

/// Why annotations could not be summarised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConsensusError {
    /// The annotations do not fit the label set (they were validated against another one).
    #[error("the annotations do not fit the dataset's label set: {0}")]
    Votes(#[from] aggregate::VoteError),
}

/// Everything [`summarise`] found: the statistics and the consensus of every annotated sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Counts, agreement and annotators.
    pub stats: Stats,
    /// One row per annotated sample (with at least one annotation), by sample id.
    pub samples: Vec<SampleLabel>,
}

impl Summary {
    /// The rows as the API and the exports show them: classes by their names.
    pub fn named(&self) -> Vec<SampleConsensus> {
        self.samples
            .iter()
            .map(|s| s.named(&self.stats.labels))
            .collect()
    }
}

/// The name of class `l` in `labels`; an index outside it, which validation rules out, is written
/// as `#INDEX`.
pub fn label_name(labels: &[String], l: u16) -> String {
    labels
        .get(usize::from(l))
        .cloned()
        .unwrap_or_else(|| format!("#{l}"))
}

/// The consensus of one annotated sample, classes as indices into the label set.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleLabel {
    /// The sample.
    pub sample: SampleId,
    /// The consensus class; `None` without votes or on a majority tie.
    pub class: Option<u16>,
    /// Dawid–Skene: the posterior probability of the class; majority: its share of the votes.
    pub confidence: Option<f64>,
    /// Label votes.
    pub votes: u32,
    /// Skips.
    pub skips: u32,
    /// Unsure answers.
    pub unsure: u32,
    /// The classes tied for the most votes (majority only; empty otherwise).
    pub tied: Vec<u16>,
}

impl SampleLabel {
    /// The row as the API and the exports show it, naming classes from `labels` (an index
    /// outside it, which validation rules out, is written as `#INDEX`).
    pub fn named(&self, labels: &[String]) -> SampleConsensus {
        let name = |l: u16| label_name(labels, l);
        SampleConsensus {
            sample: self.sample,
            label: self.class.map(name),
            confidence: self.confidence,
            votes: self.votes,
            skips: self.skips,
            unsure: self.unsure,
            tied: self.tied.iter().copied().map(name).collect(),
        }
    }
}

/// Counts, agreement and annotators of a dataset's annotations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// The consensus method used (see [`Stats::note`] when it is not the one asked for).
    pub method: Method,
    /// Why the method asked for could not be used, when it could not.
    pub note: Option<String>,
    /// The label set.
    pub labels: Vec<String>,
    /// How much there is.
    pub counts: Counts,
    /// How much annotators agree beyond chance.
    pub agreement: Agreement,
    /// Every annotator with at least one valid annotation, most reliable first (annotators
    /// without label votes, who have no reliability, last).
    pub annotators: Vec<AnnotatorStats>,
}

/// How much there is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Samples with at least one valid annotation (label, skip or unsure).
    pub samples_annotated: u64,
    /// Samples with at least one label vote.
    pub samples_labelled: u64,
    /// Samples that got a consensus label (majority ties do not).
    pub samples_with_consensus: u64,
    /// Labelled samples that have a gold label in the manifest (they anchor Dawid–Skene).
    pub gold_samples_labelled: u64,
    /// Valid annotations: one per (sample, annotator), the latest.
    pub annotations: u64,
    /// Annotations that are labels (votes).
    pub votes: u64,
    /// Annotations that are skips.
    pub skips: u64,
    /// Annotations that are "unsure".
    pub unsure: u64,
    /// Distinct annotators.
    pub annotators: u64,
    /// Stored values that were ignored, by reason.
    pub rejected: Rejected,
    /// Slots written concurrently from two devices (resolved to the latest).
    pub conflicted_slots: u64,
}

/// Stored values that failed validation, by the first check they failed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// All of them.
    pub total: u64,
    /// Not an annotation record, or a key that is not a slot key.
    pub malformed: u64,
    /// Signed for another dataset.
    pub wrong_dataset: u64,
    /// Stored in another annotator's or another shard's slot.
    pub wrong_slot: u64,
    /// A label outside the label set.
    pub unknown_label: u64,
    /// A signature that does not verify.
    pub bad_signature: u64,
}

/// Chance-corrected agreement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// Krippendorff's alpha (nominal): any number of votes per sample; samples with one vote are
    /// left out.
    pub krippendorff_alpha: Coefficient,
    /// Fleiss' kappa: only when every labelled sample has the same number of votes.
    pub fleiss_kappa: Coefficient,
}

/// An agreement coefficient, or why it is not given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Coefficient {
    /// The value, when defined.
    pub value: Option<f64>,
    /// One sentence saying why there is no value.
    pub unavailable: Option<String>,
}

impl From<Result<f64, AgreementError>> for Coefficient {
    fn from(result: Result<f64, AgreementError>) -> Self {
        match result {
            Ok(v) => Coefficient {
                value: Some(v),
                unavailable: None,
            },
            Err(e) => Coefficient {
                value: None,
                unavailable: Some(e.to_string()),
            },
        }
    }
}

/// One annotator's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnnotatorStats {
    /// The annotator's public key (hex in JSON).
    pub annotator: AnnotatorKey,
    /// Label votes.
    pub votes: u64,
    /// Skips.
    pub skips: u64,
    /// Unsure answers.
    pub unsure: u64,
    /// Dawid–Skene's probability that this annotator's answer is the true label; `None` without
    /// votes, or when nothing tells skill from truth (see [`summarise`]).
    pub reliability: Option<f64>,
    /// Share of the annotator's votes on samples with a consensus label that match it.
    pub agrees_with_consensus: Option<f64>,
    /// Votes on samples with a gold label.
    pub gold_votes: u64,
    /// Share of those that match the gold label.
    pub gold_accuracy: Option<f64>,
    /// What the screening flags this annotator for, if anything (see
    /// [`crate::aggregate::screen()`]): a person decides what to do about it.
    #[serde(default)]
    pub flag: Option<AnnotatorFlag>,
}

/// A flag of the screening, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnnotatorFlag {
    /// `random`, `fixed` or `drift`.
    pub kind: String,
    /// One sentence with the evidence.
    pub reason: String,
    /// The test's p-value.
    pub p_value: f64,
}

/// The consensus of one annotated sample as the API and the exports show it (classes by name;
/// [`SampleLabel`] is the same row with class indices).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleConsensus {
    /// The sample id (hex in JSON).
    pub sample: SampleId,
    /// The consensus label's name; `None` without votes or on a majority tie.
    pub label: Option<String>,
    /// Dawid–Skene: the posterior probability of the label; majority: its share of the votes.
    pub confidence: Option<f64>,
    /// Label votes.
    pub votes: u32,
    /// Skips.
    pub skips: u32,
    /// Unsure answers.
    pub unsure: u32,
    /// The labels tied for the most votes (majority only; empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tied: Vec<String>,
}

#[derive(Default)]
struct Tally {
    votes: u32,
    skips: u32,
    unsure: u32,
}

/// Why Dawid–Skene is not used when nothing tells an annotator's skill from the truth.
pub const UNANCHORED: &str = "Dawid-Skene needs a sample labelled by two annotators or a gold \
    label to tell an annotator's skill from the truth, and there is none yet; the consensus is \
    majority vote and reliability is not estimated";

/// Summarises a dataset's validated annotations. `labels` is the label set the annotations were
/// validated against; `gold` holds the manifest's gold labels (indices into `labels`; others are
/// ignored). Deterministic: the same inputs give the same summary.
///
/// When no sample has votes from two annotators and no labelled sample has a gold label (a lone
/// annotator), Dawid–Skene cannot be fitted meaningfully: EM then drifts towards a "garbage"
/// class and its confidences mean nothing. The consensus is then majority vote, every
/// reliability is `None` and [`Stats::note`] says why ([`UNANCHORED`]).
pub fn summarise(
    read: &Annotations,
    labels: &[String],
    gold: &HashMap<SampleId, u16>,
    method: Method,
) -> Result<Summary, ConsensusError> {
    let classes = u16::try_from(labels.len()).unwrap_or(u16::MAX);
    let votes = Votes::from_annotations(&read.annotations, classes)?;
    let item_of: HashMap<SampleId, u32> = votes
        .samples()
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, i as u32))
        .collect();
    let gold_items: Vec<(u32, u16)> = item_of
        .iter()
        .filter_map(|(s, &i)| gold.get(s).map(|&g| (i, g)))
        .filter(|&(_, g)| g < classes)
        .collect();
    let fit = aggregate::dawid_skene(&votes, &gold_items, aggregate::Config::default());
    let k = usize::from(classes).max(1);
    let anchored = !gold_items.is_empty()
        || votes
            .counts()
            .chunks(k)
            .any(|row| row.iter().sum::<u32>() >= 2);
    let (method, note) = if anchored || votes.items() == 0 {
        (method, None)
    } else {
        (Method::Majority, Some(UNANCHORED.to_owned()))
    };
    let consensus = item_consensus(method, &votes, &fit);
    let Tallies {
        per_sample,
        per_annotator,
        mut counts,
    } = tally(read, &item_of, &consensus, gold);

    let samples = sample_labels(&per_sample, &item_of, &consensus);

    let flags = screen(read, labels, gold, classes);
    let rater_of: HashMap<AnnotatorKey, u32> = votes
        .annotators()
        .iter()
        .enumerate()
        .map(|(j, a)| (*a, j as u32))
        .collect();
    let reliability = |key: &AnnotatorKey| {
        rater_of
            .get(key)
            .filter(|_| anchored)
            .map(|&j| fit.reliability(j))
    };
    let annotators = annotator_stats(&per_annotator, reliability, flags);
    counts.rejected = Rejected::of(&read.rejected);
    counts.samples_annotated = samples.len() as u64;
    counts.samples_labelled = u64::from(votes.items());
    counts.samples_with_consensus = samples.iter().filter(|s| s.class.is_some()).count() as u64;
    counts.gold_samples_labelled = gold_items.len() as u64;
    counts.annotations = read.annotations.len() as u64;
    counts.annotators = annotators.len() as u64;
    counts.conflicted_slots = read.conflicted_slots;

    let agreement = Agreement {
        krippendorff_alpha: aggregate::krippendorff_alpha(&votes).into(),
        fleiss_kappa: aggregate::fleiss_kappa(&votes.counts(), classes).into(),
    };
    Ok(Summary {
        stats: Stats {
            method,
            note,
            labels: labels.to_vec(),
            counts,
            agreement,
            annotators,
        },
        samples,
    })
}

/// The consensus of each annotated sample, in sample order.
fn sample_labels(
    per_sample: &BTreeMap<SampleId, Tally>,
    item_of: &HashMap<SampleId, u32>,
    consensus: &[ItemConsensus],
) -> Vec<SampleLabel> {
    per_sample
        .iter()
        .map(|(sample, tally)| {
            let (class, confidence, tied) = item_of
                .get(sample)
                .map(|&i| consensus[i as usize].clone())
                .unwrap_or_default();
            SampleLabel {
                sample: *sample,
                class,
                confidence,
                votes: tally.votes,
                skips: tally.skips,
                unsure: tally.unsure,
                tied,
            }
        })
        .collect()
}

impl Rejected {
    /// The counts of what the CRDT refused, by reason.
    fn of(rejected: &swarmlabel_crdt::Rejections) -> Rejected {
        Rejected {
            total: rejected.total(),
            malformed: rejected.malformed,
            wrong_dataset: rejected.wrong_dataset,
            wrong_slot: rejected.wrong_slot,
            unknown_label: rejected.unknown_label,
            bad_signature: rejected.bad_signature,
        }
    }
}

/// The consensus of every item with votes, as (label, confidence, tied labels).
type ItemConsensus = (Option<u16>, Option<f64>, Vec<u16>);

fn item_consensus(method: Method, votes: &Votes, fit: &aggregate::Fit) -> Vec<ItemConsensus> {
    match method {
        Method::DawidSkene => (0..votes.items())
            .map(|i| match fit.consensus(i) {
                Some((l, p)) => (Some(l), Some(p), Vec::new()),
                None => (None, None, Vec::new()),
            })
            .collect(),
        Method::Majority => aggregate::majority(votes)
            .into_iter()
            .map(|o| {
                let label = o.label(TieBreak::Abstain);
                match o {
                    Outcome::NoVotes => (None, None, Vec::new()),
                    Outcome::Winner { .. } => (label, Some(o.confidence()), Vec::new()),
                    Outcome::Tie { labels, .. } => (None, None, labels),
                }
            })
            .collect(),
    }
}

/// One annotator's counts: answers, then labels on samples with a consensus, of those the
/// ones that agree with it, labels on gold samples, and of those the right ones.
#[derive(Default)]
struct AnnotatorTally {
    answers: Tally,
    with_consensus: u64,
    agreeing: u64,
    gold_votes: u64,
    gold_right: u64,
}

struct Tallies {
    per_sample: BTreeMap<SampleId, Tally>,
    per_annotator: BTreeMap<AnnotatorKey, AnnotatorTally>,
    counts: Counts,
}

/// Counts every annotation per sample, per annotator and in all.
fn tally(
    read: &Annotations,
    item_of: &HashMap<SampleId, u32>,
    consensus: &[ItemConsensus],
    gold: &HashMap<SampleId, u16>,
) -> Tallies {
    let mut per_sample: BTreeMap<SampleId, Tally> = BTreeMap::new();
    let mut per_annotator: BTreeMap<AnnotatorKey, AnnotatorTally> = BTreeMap::new();
    let mut counts = Counts::default();
    for signed in &read.annotations {
        let a = signed.annotation();
        let tally = per_sample.entry(a.sample).or_default();
        let mine = per_annotator.entry(a.annotator).or_default();
        match a.value {
            Value::Label(l) => {
                tally.votes += 1;
                mine.answers.votes += 1;
                counts.votes += 1;
                if let Some((Some(c), _, _)) =
                    item_of.get(&a.sample).map(|&i| &consensus[i as usize])
                {
                    mine.with_consensus += 1;
                    mine.agreeing += u64::from(*c == l);
                }
                if let Some(&g) = gold.get(&a.sample) {
                    mine.gold_votes += 1;
                    mine.gold_right += u64::from(g == l);
                }
            }
            Value::Skip => {
                tally.skips += 1;
                mine.answers.skips += 1;
                counts.skips += 1;
            }
            Value::Unsure => {
                tally.unsure += 1;
                mine.answers.unsure += 1;
                counts.unsure += 1;
            }
        }
    }
    Tallies {
        per_sample,
        per_annotator,
        counts,
    }
}

/// Every annotator's figures, most reliable first; ties by votes, then key, so the order is
/// stable.
fn annotator_stats(
    per_annotator: &BTreeMap<AnnotatorKey, AnnotatorTally>,
    reliability: impl Fn(&AnnotatorKey) -> Option<f64>,
    mut flags: HashMap<AnnotatorKey, AnnotatorFlag>,
) -> Vec<AnnotatorStats> {
    let share = |part: u64, whole: u64| (whole > 0).then(|| part as f64 / whole as f64);
    let mut annotators: Vec<AnnotatorStats> = per_annotator
        .iter()
        .map(|(key, t)| AnnotatorStats {
            annotator: *key,
            votes: u64::from(t.answers.votes),
            skips: u64::from(t.answers.skips),
            unsure: u64::from(t.answers.unsure),
            reliability: reliability(key),
            agrees_with_consensus: share(t.agreeing, t.with_consensus),
            gold_votes: t.gold_votes,
            gold_accuracy: share(t.gold_right, t.gold_votes),
            flag: flags.remove(key),
        })
        .collect();
    annotators.sort_by(|a, b| {
        let r = |s: &AnnotatorStats| s.reliability.unwrap_or(f64::NEG_INFINITY);
        r(b).total_cmp(&r(a))
            .then(b.votes.cmp(&a.votes))
            .then(a.annotator.cmp(&b.annotator))
    });
    annotators
}

/// The screening's flags of the annotators of `read`, against the gold labels where there are
/// any and the leave-one-out consensus elsewhere.
fn screen(
    read: &Annotations,
    labels: &[String],
    gold: &HashMap<SampleId, u16>,
    classes: u16,
) -> HashMap<AnnotatorKey, AnnotatorFlag> {
    let answers = aggregate::Answers::from_annotations(&read.annotations);
    let gold_items: Vec<(u32, u16)> = answers
        .samples
        .iter()
        .enumerate()
        .filter_map(|(i, s)| Some((i as u32, *gold.get(s).filter(|&&g| g < classes)?)))
        .collect();
    aggregate::screen(
        &answers.answers,
        &gold_items,
        classes,
        aggregate::ScreenConfig::default(),
    )
    .into_iter()
    .filter_map(|s| {
        let flag = s.flag?;
        let key = *answers.annotators.get(s.rater as usize)?;
        Some((
            key,
            AnnotatorFlag {
                kind: flag.kind().to_owned(),
                reason: flag.reason(labels),
                p_value: flag.p_value(),
            },
        ))
    })
    .collect()
}

#[cfg(test)]
mod tests;
