//! A replica of one dataset's annotations: all its shard documents, written by one actor.

use automerge::sync::SyncDoc as _;
use automerge::{ActorId, ChangeHash};

use std::sync::Arc;

use crate::annotation::{AnnotatorKey, SampleId, SignedAnnotation};
use crate::layout::{ShardId, slot_key};
use crate::policy::Policy;
use crate::samples::Samples;
use crate::shard::storage::{LoadError, LoadReport};
use crate::shard::{Annotations, Shard, screen::screen, wins};
use crate::sync::{self, Limits, Received, SyncError};
use crate::validate::{Dataset, Rejection, check_record_cached, placement};

/// The largest actor id accepted, in bytes.
pub const MAX_ACTOR_LEN: usize = 32;

/// Errors of creating a replica.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicaError {
    /// The actor id is empty or longer than [`MAX_ACTOR_LEN`].
    #[error(
        "an actor id is 1 to {MAX_ACTOR_LEN} bytes, {0} were given; use 16 random bytes per \
         replica and process"
    )]
    ActorLength(usize),
}

/// Errors of recording an annotation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The annotation would be ignored by every reader.
    #[error(
        "the annotation is invalid for this dataset ({0:?}) and would be ignored by every peer"
    )]
    Invalid(Rejection),
    /// The annotator already has an annotation of this sample that is as new or newer; a label
    /// replaces an earlier one only with a later time.
    #[error(
        "the annotator already labelled this sample at {existing_ms} ms, not before the {offered_ms} \
         ms offered; give the new label a later time"
    )]
    NotNewer {
        /// Time of the annotation kept.
        existing_ms: u64,
        /// Time of the annotation offered.
        offered_ms: u64,
    },
}

/// Errors of merging two replicas.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MergeError {
    /// The replicas are of different datasets or layouts.
    #[error("cannot merge replicas of different datasets or shard layouts")]
    DifferentDataset,
    /// automerge could not apply the other replica's changes.
    #[error("could not merge shard {}: {reason}", shard.0)]
    Apply {
        /// The shard.
        shard: ShardId,
        /// automerge's error.
        reason: String,
    },
}

/// One replica of a dataset's annotations. Plain state: no I/O, no clock, no threads; the caller
/// supplies time (inside annotations), randomness (the actor id) and moves bytes.
#[derive(Debug)]
pub struct Replica {
    dataset: Dataset,
    shards: Vec<Shard>,
    limits: Limits,
    samples: Option<Arc<Samples>>,
    policy: Option<Arc<Policy>>,
}

impl Replica {
    /// An empty replica. `actor` identifies this writer in automerge and must be unique to this
    /// replica *and process run* (reusing one across concurrent writers corrupts documents): pass
    /// 16 random bytes, or fixed bytes in tests.
    pub fn new(dataset: Dataset, actor: &[u8]) -> Result<Self, ReplicaError> {
        if actor.is_empty() || actor.len() > MAX_ACTOR_LEN {
            return Err(ReplicaError::ActorLength(actor.len()));
        }
        let actor = ActorId::from(actor);
        let shards = dataset
            .layout
            .shards()
            .map(|id| Shard::new(id, actor.clone()))
            .collect();
        Ok(Self {
            dataset,
            shards,
            limits: Limits::default(),
            samples: None,
            policy: None,
        })
    }

    /// Applies the owner's policy (see [`crate::policy`]) from now on, to everything held:
    /// recording refuses annotators it does not admit, and reading ignores their annotations
    /// (counted as [`Rejection::NotAdmitted`]). Sync still takes them (they may share a change
    /// with admitted ones, and automerge history cannot be cut), so a later policy that admits
    /// them again brings them back.
    pub fn set_policy(&mut self, policy: Option<Arc<Policy>>) {
        self.policy = policy;
    }

    fn admitted(&self, annotator: &AnnotatorKey) -> bool {
        self.policy.as_ref().is_none_or(|p| p.admits(annotator))
    }

    /// Restricts annotations to the dataset's samples (from its manifest): recording and sync
    /// refuse others, reading ignores them (counted as [`Rejection::UnknownSample`]).
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

    /// Sets the bounds on sync messages.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The dataset this replica holds.
    pub fn dataset(&self) -> &Dataset {
        &self.dataset
    }

    fn shard_mut(&mut self, shard: ShardId) -> Option<&mut Shard> {
        self.shards.get_mut(usize::from(shard.0))
    }

    /// Stages a signed annotation for the next [`Replica::commit`]; returns its shard. Refuses
    /// what readers would ignore, and a label that is not newer than the annotator's current one
    /// for the sample. Recording the very same signed annotation again does nothing.
    pub fn record(&mut self, signed: &SignedAnnotation) -> Result<ShardId, RecordError> {
        // The cheap checks first: a flood of records for samples that do not exist costs no
        // signature verification.
        self.precheck(signed)?;
        let (shard_id, key) = placement(&self.dataset, signed);
        let dataset = self.dataset;
        let Some(shard) = self.shard_mut(shard_id) else {
            // The layout maps every sample to one of its shards.
            return Err(RecordError::Invalid(Rejection::WrongSlot));
        };
        check_record_cached(&dataset, signed, &shard.verified).map_err(RecordError::Invalid)?;
        let (visible, _) = shard.slot_values(&dataset, &key);
        let newest = visible
            .into_iter()
            .map(|(s, _, _)| s)
            .chain(shard.staged(&key).copied())
            .reduce(|best, s| if wins(&s, &best) { s } else { best });
        if let Some(existing) = newest {
            if existing == *signed {
                return Ok(shard_id);
            }
            let (existing_ms, offered_ms) =
                (existing.annotation().time_ms, signed.annotation().time_ms);
            if existing_ms >= offered_ms {
                return Err(RecordError::NotNewer {
                    existing_ms,
                    offered_ms,
                });
            }
        }
        shard.stage(key, *signed);
        Ok(shard_id)
    }

    /// Whether this replica already holds `signed`, or a newer valid annotation of the same
    /// sample by the same annotator (staged ones included). Holding it byte for byte costs no
    /// signature check: a store uses it to skip what it has when it replays its record log.
    pub fn holds(&self, signed: &SignedAnnotation) -> bool {
        let (shard, key) = placement(&self.dataset, signed);
        self.shards
            .get(usize::from(shard.0))
            .is_some_and(|s| s.holds(&key, signed))
    }

    /// Drops every staged, uncommitted annotation: a store that could not make a batch durable
    /// takes it back before anyone sees it.
    pub fn discard_staged(&mut self) {
        self.shards.iter_mut().for_each(Shard::discard_staged);
    }

    /// The checks of [`Replica::record`] that cost no signature verification: the sample is one
    /// of the dataset's and the owner's policy admits the annotator. A store runs them over a
    /// whole batch from a peer before verifying anything of it.
    pub fn precheck(&self, signed: &SignedAnnotation) -> Result<(), RecordError> {
        if signed.annotation().dataset != self.dataset.id {
            return Err(RecordError::Invalid(Rejection::WrongDataset));
        }
        if !self.known(&signed.annotation().sample) {
            return Err(RecordError::Invalid(Rejection::UnknownSample));
        }
        if !self.admitted(&signed.annotation().annotator) {
            return Err(RecordError::Invalid(Rejection::NotAdmitted));
        }
        Ok(())
    }

    /// Number of staged, uncommitted annotations.
    pub fn pending(&self) -> usize {
        self.shards.iter().map(Shard::pending).sum()
    }

    /// Commits staged annotations as one automerge change per touched shard; returns the number
    /// of changes made. Saving, syncing, merging and reading commit first.
    pub fn commit(&mut self) -> usize {
        self.shards
            .iter_mut()
            .filter_map(|s| s.commit().then_some(()))
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
        let shard = self
            .shards
            .get(usize::from(self.dataset.layout.shard_of(sample).0))?;
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

    /// Applies every change of `other` that this replica lacks, without screening: for replicas
    /// this process trusts (its own, or in tests). Peers' changes arrive through sync.
    pub fn merge(&mut self, other: &mut Replica) -> Result<(), MergeError> {
        if self.dataset != other.dataset {
            return Err(MergeError::DifferentDataset);
        }
        for (mine, theirs) in self.shards.iter_mut().zip(other.shards.iter_mut()) {
            mine.commit();
            theirs.commit();
            mine.bulk_apply(|d| d.merge(&mut theirs.doc))
                .map_err(|e| MergeError::Apply {
                    shard: mine.id,
                    reason: e.to_string(),
                })?;
        }
        Ok(())
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

    /// The next sync message for the peer whose state for `shard` is `state`, or `None` when
    /// there is nothing to send now. Never longer than [`Limits::max_message_bytes`], whatever
    /// the shard's size: see [`bounded`].
    pub fn generate_sync_message(
        &mut self,
        shard: ShardId,
        state: &mut sync::State,
    ) -> Option<Vec<u8>> {
        let max = self.limits.max_message_bytes;
        let s = self.shard_mut(shard)?;
        s.commit();
        let sent_before = state.0.sent_hashes.clone();
        let message = s.doc.generate_sync_message(&mut state.0)?;
        let encoded = message.clone().encode();
        if encoded.len() <= max {
            return Some(encoded);
        }
        Some(bounded(&s.doc, message, &sent_before, state, max))
    }

    /// Applies a sync message from the peer whose state for `shard` is `state`. The message is
    /// checked against the size limit and screened before anything is applied.
    pub fn receive_sync_message(
        &mut self,
        shard: ShardId,
        state: &mut sync::State,
        bytes: &[u8],
    ) -> Result<Received, SyncError> {
        let max = self.limits.max_message_bytes;
        let max_inflated = self.limits.max_inflated_bytes;
        if bytes.len() > max {
            return Err(SyncError::TooLarge {
                shard,
                len: bytes.len(),
                max,
            });
        }
        let dataset = self.dataset;
        let samples = self.samples.clone();
        let samples = samples.as_deref();
        let s = self
            .shard_mut(shard)
            .ok_or(SyncError::UnknownShard(shard))?;
        let message =
            automerge::sync::Message::decode(bytes).map_err(|e| SyncError::Malformed {
                shard,
                reason: e.to_string(),
            })?;
        s.commit();
        let items: Vec<&[u8]> = message.changes.iter().collect();
        let screened = screen(s, &dataset, samples, items.iter().copied(), max_inflated)
            .map_err(|refusal| SyncError::Refused { shard, refusal })?;
        let before = s.heads();
        s.bulk_apply(|d| d.receive_sync_message(&mut state.0, message))
            .map_err(|e| SyncError::Apply {
                shard,
                reason: e.to_string(),
            })?;
        Ok(Received {
            shard,
            changed: s.heads() != before,
            ops: screened.ops,
            records: screened.records,
        })
    }
}

/// A sync message that would exceed `max` bytes (a first sync of a shard grown past the limit,
/// for example by a flood of labels) is cut to the changes that fit, in the document's history
/// order, as plain change chunks; those left out are marked unsent in `state`, so automerge
/// offers them again in the next message, once the peer has said what it holds. Every change
/// this replica holds arrived within a message of at most `max` bytes or was made here in a
/// batch far smaller, so each message carries at least one change and the sync always ends.
fn bounded(
    doc: &automerge::Automerge,
    mut message: automerge::sync::Message,
    sent_before: &std::collections::BTreeSet<ChangeHash>,
    state: &mut sync::State,
    max: usize,
) -> Vec<u8> {
    use automerge::ReadDoc as _;
    let offered: std::collections::BTreeSet<ChangeHash> = state
        .0
        .sent_hashes
        .difference(sent_before)
        .copied()
        .collect();
    message.changes = automerge::sync::ChunkList::from(Vec::<Vec<u8>>::new());
    // Room for the changes: the message without them, and a length prefix per change.
    let mut room = max.saturating_sub(message.clone().encode().len() + 16);
    let mut chunks = Vec::new();
    // A whole-document message offers everything, also what the peer holds: only the changes
    // past the heads both sides share are worth their room.
    let known: Vec<ChangeHash> = state
        .0
        .shared_heads
        .iter()
        .filter(|h| doc.get_change_by_hash(h).is_some())
        .copied()
        .collect();
    for change in doc.get_changes(&known) {
        let hash = change.hash();
        if !offered.contains(&hash) {
            continue;
        }
        let bytes = change.raw_bytes();
        if bytes.len() + 10 <= room {
            room -= bytes.len() + 10;
            chunks.push(bytes.to_vec());
        } else {
            state.0.sent_hashes.remove(&hash);
        }
    }
    message.changes = automerge::sync::ChunkList::from(chunks);
    message.encode()
}

#[cfg(test)]
mod laws;
#[cfg(test)]
mod tests;
