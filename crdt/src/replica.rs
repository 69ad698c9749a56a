//! A replica of one dataset's annotations: all its shard documents, written by one actor.

use automerge::sync::SyncDoc as _;
use automerge::{ActorId, ChangeHash};

use crate::annotation::{AnnotatorKey, SampleId, SignedAnnotation};
use crate::layout::{ShardId, slot_key};
use crate::shard::storage::{LoadError, LoadReport};
use crate::shard::{Annotations, Shard, screen::screen, wins};
use crate::sync::{self, Limits, Received, SyncError};
use crate::validate::{Dataset, Rejection, check_record, placement};

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
        })
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
        check_record(&self.dataset, signed).map_err(RecordError::Invalid)?;
        let (shard_id, key) = placement(&self.dataset, signed);
        let dataset = self.dataset;
        let Some(shard) = self.shard_mut(shard_id) else {
            // The layout maps every sample to one of its shards.
            return Err(RecordError::Invalid(Rejection::WrongSlot));
        };
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
        for shard in &self.shards {
            out.extend(shard.read(&self.dataset));
        }
        out.sort();
        out
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
        out
    }

    /// The current annotation of `sample` by `annotator`, if any (including a staged one).
    pub fn get(&self, sample: &SampleId, annotator: &AnnotatorKey) -> Option<SignedAnnotation> {
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
    /// there is nothing to send now. May exceed the peer's message limit if the shard does.
    pub fn generate_sync_message(
        &mut self,
        shard: ShardId,
        state: &mut sync::State,
    ) -> Option<Vec<u8>> {
        let s = self.shard_mut(shard)?;
        s.commit();
        s.doc
            .generate_sync_message(&mut state.0)
            .map(|m| m.encode())
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
        let ops = screen(s, &dataset, items.iter().copied(), max_inflated)
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
            ops,
        })
    }
}

#[cfg(test)]
mod laws;
#[cfg(test)]
mod tests;
