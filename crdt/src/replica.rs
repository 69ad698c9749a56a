//! A replica of one dataset's annotations: all its shard documents, each a set of author chains
//! (`crate::chain`).

use std::collections::HashMap;
use std::sync::Arc;

use automerge::ChangeHash;

use crate::annotation::{AnnotatorKey, SampleId, SignedAnnotation};
use crate::layout::{ShardId, slot_key};
use crate::policy::Policy;
use crate::samples::Samples;
use crate::shard::storage::{LoadError, LoadReport};
use crate::shard::{Annotations, Shard, wins};
use crate::validate::{Dataset, Rejection, check_record};

/// Errors of recording an annotation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The annotation would be ignored by every reader.
    #[error(
        "the annotation is invalid for this dataset ({0:?}) and would be ignored by every peer"
    )]
    Invalid(Rejection),
    /// A record that is not its chain's next: records of the chain between are missing here
    /// (they come by sync, in order).
    #[error(
        "the annotator's chain here ends before seq {next}, so its record {offered} must wait for          the ones between"
    )]
    Gap {
        /// The `seq` the chain takes next.
        next: u32,
        /// The `seq` offered.
        offered: u32,
    },
    /// Another record with the same place in the chain is held: the annotator signed two
    /// records with one `seq` (its key runs on two nodes, or it is hostile). The first one
    /// heard stays.
    #[error("the annotator signed two different records with seq {seq}; the one held first stays")]
    Conflict {
        /// The `seq` signed twice.
        seq: u32,
    },
}

/// Errors of merging two replicas.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MergeError {
    /// The replicas are of different datasets or layouts.
    #[error("cannot merge replicas of different datasets or shard layouts")]
    DifferentDataset,
}

/// What [`Replica::record`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// The shard of the record.
    pub shard: ShardId,
    /// Whether it was new (staged for the next commit), or held already.
    pub new: bool,
}

/// Where one annotator's chain in a shard ends: the `seq` of its last record (what a peer
/// tells to get the records after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tip {
    /// The annotator.
    pub annotator: AnnotatorKey,
    /// The `seq` of the chain's last record held.
    pub seq: u32,
}

/// The records a peer lacks (see [`Replica::missing`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Missing {
    /// Records in chain order (each chain's from its first missing `seq` on).
    pub records: Vec<SignedAnnotation>,
    /// Whether more were left out past the limit.
    pub more: bool,
}

/// One replica of a dataset's annotations. Plain state: no I/O, no clock, no threads; the caller
/// supplies time (inside annotations) and moves bytes.
#[derive(Debug)]
pub struct Replica {
    dataset: Dataset,
    shards: Vec<Shard>,
    samples: Option<Arc<Samples>>,
    policy: Option<Arc<Policy>>,
    /// Counts policy changes: a shard's cached digest holds for the generation it was made in.
    policy_generation: u64,
}

impl Replica {
    /// An empty replica.
    pub fn new(dataset: Dataset) -> Self {
        let shards = dataset.layout.shards().map(Shard::new).collect();
        Self {
            dataset,
            shards,
            samples: None,
            policy: None,
            policy_generation: 0,
        }
    }

    /// An empty replica of the same dataset, samples and policy (to rebuild from records).
    pub fn fresh(&self) -> Replica {
        Replica {
            samples: self.samples.clone(),
            policy: self.policy.clone(),
            ..Replica::new(self.dataset)
        }
    }

    /// Whether `signed` counts here: of this dataset, of a listed sample, by an admitted
    /// annotator (what reading checks besides the record itself). Version-1 records included.
    pub fn counts(&self, signed: &SignedAnnotation) -> Result<(), Rejection> {
        let a = signed.annotation();
        if a.dataset != self.dataset.id {
            return Err(Rejection::WrongDataset);
        }
        if !self.known(&a.sample) {
            return Err(Rejection::UnknownSample);
        }
        if !self.admitted(&a.annotator) {
            return Err(Rejection::NotAdmitted);
        }
        Ok(())
    }

    /// Applies the owner's policy (see [`crate::policy`]) from now on, to everything held:
    /// recording refuses annotators it does not admit, reading ignores their annotations
    /// (counted as [`Rejection::NotAdmitted`]), and their chains are neither summarised nor
    /// given to peers. Chains held already are kept: a later policy that admits them again
    /// brings them back.
    pub fn set_policy(&mut self, policy: Option<Arc<Policy>>) {
        self.policy = policy;
        self.policy_generation += 1;
    }

    fn admitted(&self, annotator: &AnnotatorKey) -> bool {
        self.policy.as_ref().is_none_or(|p| p.admits(annotator))
    }

    /// Restricts annotations to the dataset's samples (from its manifest): recording refuses
    /// others, reading ignores them (counted as [`Rejection::UnknownSample`]).
    pub fn with_samples(mut self, samples: Arc<Samples>) -> Self {
        self.samples = Some(samples);
        self
    }

    fn known(&self, sample: &SampleId) -> bool {
        self.samples.as_ref().is_none_or(|s| s.contains(sample))
    }

    /// Drops annotations of unknown samples and of annotators not admitted from `read`,
    /// counting them.
    fn only_known(&self, mut read: Annotations) -> Annotations {
        if let Some(samples) = &self.samples {
            let before = read.annotations.len();
            read.annotations
                .retain(|a| samples.contains(&a.annotation().sample));
            read.rejected.unknown_sample += (before - read.annotations.len()) as u64;
        }
        if let Some(policy) = &self.policy {
            let before = read.annotations.len();
            read.annotations
                .retain(|a| policy.admits(&a.annotation().annotator));
            read.rejected.not_admitted += (before - read.annotations.len()) as u64;
        }
        read
    }

    /// The dataset this replica holds.
    pub fn dataset(&self) -> &Dataset {
        &self.dataset
    }

    fn shard(&self, shard: ShardId) -> Option<&Shard> {
        self.shards.get(usize::from(shard.0))
    }

    fn shard_mut(&mut self, shard: ShardId) -> Option<&mut Shard> {
        self.shards.get_mut(usize::from(shard.0))
    }

    /// The `seq` that `annotator`'s next record of `sample` must carry: one past the end of its
    /// chain in the sample's shard (staged records included).
    pub fn next_seq(&self, annotator: &AnnotatorKey, sample: &SampleId) -> u32 {
        self.shard(self.dataset.layout.shard_of(sample))
            .and_then(|s| s.tip(annotator))
            .map_or(1, |t| t.seq.saturating_add(1))
    }

    /// Stages a signed annotation for the next [`Replica::commit`]. Refuses what readers would
    /// ignore and what is not its chain's next record ([`RecordError::Gap`]); a record whose
    /// place the chain already has is held (`new` false), unless it differs from the one there
    /// ([`RecordError::Conflict`]). Signatures are checked only for records taken or compared.
    pub fn record(&mut self, signed: &SignedAnnotation) -> Result<Recorded, RecordError> {
        // The cheap checks first: a flood of records for samples that do not exist costs no
        // signature verification.
        self.precheck(signed)?;
        let dataset = self.dataset;
        let shard_id = dataset.layout.shard_of(&signed.annotation().sample);
        let Some(shard) = self.shard_mut(shard_id) else {
            // The layout maps every sample to one of its shards.
            return Err(RecordError::Invalid(Rejection::WrongSlot));
        };
        let new = shard.stage(signed, || check_record(&dataset, signed))?;
        Ok(Recorded {
            shard: shard_id,
            new,
        })
    }

    /// Whether this replica holds `signed`'s place in its chain (it or a later record of the
    /// chain, staged ones included). Costs no signature check: a store uses it to skip what it
    /// has when it replays its record log.
    pub fn holds(&self, signed: &SignedAnnotation) -> bool {
        let shard = self.dataset.layout.shard_of(&signed.annotation().sample);
        self.shard(shard).is_some_and(|s| s.holds(signed))
    }

    /// Drops every staged, uncommitted annotation: a store that could not make a batch durable
    /// takes it back before anyone sees it.
    pub fn discard_staged(&mut self) {
        self.shards.iter_mut().for_each(Shard::discard_staged);
    }

    /// The checks of [`Replica::record`] that cost no signature verification: the dataset, the
    /// sample is one of the dataset's, the owner's policy admits the annotator, and the record
    /// has a place in a chain (`seq` ≥ 1). A store runs them over a whole batch from a peer
    /// before verifying anything of it.
    pub fn precheck(&self, signed: &SignedAnnotation) -> Result<(), RecordError> {
        self.counts(signed).map_err(RecordError::Invalid)?;
        if signed.annotation().seq == 0 {
            return Err(RecordError::Invalid(Rejection::Malformed));
        }
        Ok(())
    }

    /// Number of staged, uncommitted annotations.
    pub fn pending(&self) -> usize {
        self.shards.iter().map(Shard::pending).sum()
    }

    /// Applies staged annotations as one batch of chain changes per touched shard; returns the
    /// number of shards changed. Saving, reading and serving peers commit first.
    pub fn commit(&mut self) -> usize {
        self.shards
            .iter_mut()
            .map(Shard::commit)
            .filter(|&c| c)
            .count()
    }

    /// All valid annotations (the winner of each slot) and the counts of ignored values. Holds
    /// every annotation in memory: for large datasets read shard by shard.
    pub fn read(&mut self) -> Annotations {
        self.commit();
        let mut out = Annotations::default();
        let dataset = self.dataset;
        for shard in &mut self.shards {
            out.extend(shard.read(&dataset));
        }
        out.sort();
        self.only_known(out)
    }

    /// The valid annotations of one shard (empty for a shard outside the layout).
    pub fn read_shard(&mut self, shard: ShardId) -> Annotations {
        let dataset = self.dataset;
        let Some(s) = self.shard_mut(shard) else {
            return Annotations::default();
        };
        s.commit();
        let mut out = s.read(&dataset);
        out.sort();
        self.only_known(out)
    }

    /// The current annotation of `sample` by `annotator`, if any (including a staged one).
    pub fn get(&self, sample: &SampleId, annotator: &AnnotatorKey) -> Option<SignedAnnotation> {
        if !self.known(sample) || !self.admitted(annotator) {
            return None;
        }
        let shard = self.shard(self.dataset.layout.shard_of(sample))?;
        let key = slot_key(sample, annotator);
        let committed = shard.get(&self.dataset, &key);
        match (committed, shard.staged(&key).copied()) {
            (Some(c), Some(s)) => Some(if wins(&s, &c) { s } else { c }),
            (c, s) => c.or(s),
        }
    }

    /// The automerge heads of a shard (empty for a shard outside the layout): equal heads mean
    /// equal documents.
    pub fn heads(&mut self, shard: ShardId) -> Vec<ChangeHash> {
        self.shard_mut(shard).map_or_else(Vec::new, |s| {
            s.commit();
            s.heads()
        })
    }

    /// Where every chain of the admitted annotators ends in `shard`, sorted by annotator (what a
    /// peer sends to get what it lacks).
    pub fn tips(&mut self, shard: ShardId) -> Vec<Tip> {
        let Some(s) = self.shard_mut(shard) else {
            return Vec::new();
        };
        s.commit();
        let mut tips: Vec<Tip> = s
            .tips()
            .map(|(annotator, tip)| Tip {
                annotator: *annotator,
                seq: tip.seq,
            })
            .collect();
        tips.retain(|t| self.admitted(&t.annotator));
        tips.sort_unstable();
        tips
    }

    /// A digest of the admitted chains of `shard` (each annotator, the `seq` and change hash of
    /// its chain's end): replicas with equal digests hold the same records there, whatever
    /// chains of others (banned annotators) they also keep.
    pub fn digest(&mut self, shard: ShardId) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new_derive_key("swarmlabel 2026-12-04 shard digest v1");
        let generation = self.policy_generation;
        let Some(s) = self.shard_mut(shard) else {
            return *hasher.finalize().as_bytes();
        };
        s.commit();
        if let Some((made_in, digest)) = s.digest
            && made_in == generation
        {
            return digest;
        }
        let mut ends: Vec<_> = s.tips().map(|(a, t)| (*a, *t)).collect();
        ends.retain(|(a, _)| self.admitted(a));
        ends.sort_unstable_by_key(|(a, _)| *a);
        for (annotator, tip) in ends {
            hasher.update(&annotator.0);
            hasher.update(&tip.seq.to_le_bytes());
            hasher.update(&tip.hash.0);
        }
        let digest = *hasher.finalize().as_bytes();
        if let Some(s) = self.shard_mut(shard) {
            s.digest = Some((generation, digest));
        }
        digest
    }

    /// The records of `shard` that a peer whose chains end at `theirs` lacks, of admitted
    /// annotators, in chain order, at most `max` (`more` says whether there were more). A chain
    /// the peer does not list is sent whole.
    pub fn missing(&mut self, shard: ShardId, theirs: &[Tip], max: usize) -> Missing {
        self.missing_in(shard, theirs, |_| true, max)
    }

    /// [`Replica::missing`] for the chains of the annotators `within` selects only (a range of
    /// keys, so that a shard with many annotators is exchanged range by range).
    pub fn missing_in(
        &mut self,
        shard: ShardId,
        theirs: &[Tip],
        within: impl Fn(&AnnotatorKey) -> bool,
        max: usize,
    ) -> Missing {
        let mut ours = self.tips(shard);
        ours.retain(|t| within(&t.annotator));
        let theirs: HashMap<AnnotatorKey, u32> =
            theirs.iter().map(|t| (t.annotator, t.seq)).collect();
        let wanted: HashMap<AnnotatorKey, u32> = ours
            .iter()
            .filter_map(|t| {
                let after = theirs.get(&t.annotator).copied().unwrap_or(0);
                (after < t.seq).then_some((t.annotator, after))
            })
            .collect();
        if wanted.is_empty() {
            return Missing::default();
        }
        let Some(s) = self.shard(shard) else {
            return Missing::default();
        };
        let mut records = s.records_after(&wanted);
        let more = records.len() > max;
        records.truncate(max);
        Missing { records, more }
    }

    /// Takes every record of `other` that this replica lacks (through [`Replica::missing`], as
    /// a peer's would come); returns how many were new. For replicas this process holds (tests,
    /// tools); peers' records come through the node's sync.
    pub fn merge(&mut self, other: &mut Replica) -> Result<usize, MergeError> {
        if self.dataset != other.dataset {
            return Err(MergeError::DifferentDataset);
        }
        let mut new = 0;
        for shard in self.dataset.layout.shards() {
            let tips = self.tips(shard);
            let missing = other.missing(shard, &tips, usize::MAX);
            for record in &missing.records {
                if self.record(record).is_ok_and(|r| r.new) {
                    new += 1;
                }
            }
            self.commit();
        }
        Ok(new)
    }

    /// A full save of one shard (empty for a shard outside the layout).
    pub fn save_shard(&mut self, shard: ShardId) -> Vec<u8> {
        self.shard_mut(shard).map_or_else(Vec::new, Shard::save)
    }

    /// The changes of one shard since its last save or load, to append to the saved bytes (a
    /// full save when there was none). Empty when nothing changed.
    pub fn save_shard_incremental(&mut self, shard: ShardId) -> Vec<u8> {
        self.shard_mut(shard)
            .map_or_else(Vec::new, Shard::save_incremental)
    }

    /// Loads saved bytes of one shard (a full save followed by any incremental saves) into this
    /// replica, merged with what the shard holds. On [`LoadError::Damaged`] the valid prefix has
    /// been loaded and the error says how much was lost.
    pub fn load_shard(&mut self, shard: ShardId, bytes: &[u8]) -> Result<LoadReport, LoadError> {
        let Some(s) = self.shard_mut(shard) else {
            return Err(LoadError::Unreadable {
                shard,
                reason: "the shard does not exist in this dataset's layout".into(),
            });
        };
        s.load(bytes)
    }
}

#[cfg(test)]
mod laws;
#[cfg(test)]
mod tests;
