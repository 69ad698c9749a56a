//! Saving a shard to bytes and loading it back, recovering what can be recovered.
//!
//! Saved bytes are automerge's own format: a compressed document chunk from a full save,
//! followed by the change chunks of any incremental saves appended after it. Every chunk starts
//! with a header (magic `85 6f 4a 83`, a 4-byte checksum, a type byte, a ULEB128 length), so a
//! file whose tail was cut off or damaged still yields the chunks before the damage: loading
//! walks the chunks, checks each one, and reports how much was kept and lost.

use std::ops::Range;

use automerge::{Automerge, Change, ReadDoc as _};

use super::Shard;
use crate::layout::ShardId;

const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChunkKind {
    Document,
    Change,
    CompressedChange,
    Bundle,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChunkSpan {
    pub(crate) kind: ChunkKind,
    pub(crate) range: Range<usize>,
}

/// A chunk header that does not parse, at a byte offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad chunk header at byte {offset}: {reason}")]
pub(crate) struct SplitError {
    pub(crate) offset: usize,
    pub(crate) reason: &'static str,
    /// The chunks that were complete before the bad header.
    pub(crate) complete: Vec<ChunkSpan>,
}

/// Splits automerge bytes into chunks by their headers (contents are not checked here).
pub(crate) fn split_chunks(bytes: &[u8]) -> Result<Vec<ChunkSpan>, SplitError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let fail = |reason, complete| SplitError {
            offset: at,
            reason,
            complete,
        };
        let rest = &bytes[at..];
        if rest.len() < 9 {
            return Err(fail("truncated header", out));
        }
        if rest[..4] != MAGIC {
            return Err(fail("not an automerge chunk (bad magic bytes)", out));
        }
        let kind = match rest[8] {
            0 => ChunkKind::Document,
            1 => ChunkKind::Change,
            2 => ChunkKind::CompressedChange,
            3 => ChunkKind::Bundle,
            _ => return Err(fail("unknown chunk type", out)),
        };
        let mut len: u64 = 0;
        let mut header = 9;
        let mut shift = 0;
        loop {
            let Some(&b) = rest.get(header) else {
                return Err(fail("truncated header", out));
            };
            header += 1;
            if shift > 56 {
                return Err(fail("chunk length overflows", out));
            }
            len |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| l.checked_add(header))
            .filter(|&end| end <= rest.len());
        let Some(end) = end else {
            return Err(fail("truncated chunk", out));
        };
        out.push(ChunkSpan {
            kind,
            range: at..at + end,
        });
        at += end;
    }
    Ok(out)
}

/// Errors of loading a shard from bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// Nothing could be loaded: the first chunk is missing or damaged. The shard is unchanged.
    #[error(
        "shard {} could not be loaded: {reason}; nothing was recovered, fetch it from peers",
        shard.0
    )]
    Unreadable {
        /// The shard.
        shard: ShardId,
        /// What is wrong with the bytes.
        reason: String,
    },
    /// A valid prefix was loaded into the shard; the rest is damaged or cut off.
    #[error(
        "shard {} is damaged at byte {damaged_at}: {reason}; kept {kept_chunks} chunks \
         ({kept_bytes} bytes), lost {lost_bytes} bytes; sync with peers to get the rest back",
        shard.0
    )]
    Damaged {
        /// The shard.
        shard: ShardId,
        /// Chunks loaded.
        kept_chunks: usize,
        /// Bytes loaded (the valid prefix).
        kept_bytes: usize,
        /// Bytes not loaded.
        lost_bytes: usize,
        /// Offset of the first damaged byte range.
        damaged_at: usize,
        /// What is wrong there.
        reason: String,
    },
    /// Every chunk loaded but some changes depend on changes that are not in the bytes (e.g. an
    /// incremental save without the full save before it); they stay queued until those arrive.
    #[error(
        "shard {} lacks {missing} changes that its saved changes depend on; they stay pending \
         until a peer supplies them",
        shard.0
    )]
    MissingDependencies {
        /// The shard.
        shard: ShardId,
        /// Number of missing dependency hashes.
        missing: usize,
    },
}

/// What a successful load read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadReport {
    /// Chunks read.
    pub chunks: usize,
    /// Bytes read.
    pub bytes: usize,
}

impl Shard {
    /// Full save (a compressed document); later incremental saves are relative to it.
    pub(crate) fn save(&mut self) -> Vec<u8> {
        self.commit();
        self.saved_heads = Some(self.heads());
        self.unsaved.clear();
        self.doc.save()
    }

    /// The changes since the last save or load, as change chunks to append to the saved bytes.
    /// Without a previous save or load this is a full save.
    pub(crate) fn save_incremental(&mut self) -> Vec<u8> {
        self.commit();
        if self.saved_heads.is_none() {
            return self.save();
        }
        self.saved_heads = Some(self.heads());
        std::mem::take(&mut self.unsaved)
    }

    /// Loads `bytes` into this shard (merged with what it holds). On [`LoadError::Damaged`] the
    /// valid prefix has been loaded.
    /// The document must be made of author chains (`crate::chain`); one that is not is refused
    /// whole ([`LoadError::Unreadable`]) and the shard is left empty.
    pub(crate) fn load(&mut self, bytes: &[u8]) -> Result<LoadReport, LoadError> {
        self.commit();
        let loaded =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.load_any(bytes)));
        let Ok(result) = loaded else {
            // automerge failed half-way: what it holds now cannot be trusted.
            *self = Shard::new(self.id);
            return Err(LoadError::Unreadable {
                shard: self.id,
                reason: "automerge failed on its bytes".into(),
            });
        };
        if let Err(reason) = self.rebuild_tips() {
            *self = Shard::new(self.id);
            return Err(LoadError::Unreadable {
                shard: self.id,
                reason: format!("it is not a document of author chains ({reason})"),
            });
        }
        result
    }

    fn load_any(&mut self, bytes: &[u8]) -> Result<LoadReport, LoadError> {
        // automerge reads the whole file at once only when it is made of the chunks a shard
        // writes: a bundle chunk (which shards never write) goes to the chunk-by-chunk path,
        // which refuses it; 30 damaged bytes read as a bundle made automerge 0.12 allocate
        // over 2 GB (found by the fuzz campaign, `docs/testing.md`).
        let plain = split_chunks(bytes)
            .is_ok_and(|chunks| chunks.iter().all(|c| c.kind != ChunkKind::Bundle));
        let fast = if self.doc.is_empty() && plain {
            contained(|| Automerge::load(bytes)).and_then(Result::ok)
        } else {
            None
        };
        if let Some(doc) = fast {
            self.doc = doc;
            self.digest = None;
            self.mark_loaded();
            self.saved_heads = Some(self.heads());
            self.unsaved.clear();
            let chunks = split_chunks(bytes).map_or(0, |c| c.len());
            return self.check_deps(LoadReport {
                chunks,
                bytes: bytes.len(),
            });
        }
        self.load_chunks(bytes)
    }

    fn check_deps(&mut self, report: LoadReport) -> Result<LoadReport, LoadError> {
        let missing = self.doc.get_missing_deps(&[]).len();
        if missing > 0 {
            return Err(LoadError::MissingDependencies {
                shard: self.id,
                missing,
            });
        }
        Ok(report)
    }

    /// The slow path: chunk by chunk, stopping at the first damaged one.
    fn load_chunks(&mut self, bytes: &[u8]) -> Result<LoadReport, LoadError> {
        let (chunks, split_err) = match split_chunks(bytes) {
            Ok(c) => (c, None),
            Err(e) => (e.complete.clone(), Some((e.offset, e.reason.to_string()))),
        };
        let mut kept = 0;
        let mut kept_bytes = 0;
        let mut failure = None;
        // Consecutive change chunks are applied as one batch (one bulk apply instead of one per
        // chunk); a batch that fails is retried chunk by chunk to find the damaged one.
        let mut batch: Vec<(Change, &ChunkSpan)> = Vec::new();
        for chunk in &chunks {
            let data = &bytes[chunk.range.clone()];
            let result = match chunk.kind {
                ChunkKind::Change | ChunkKind::CompressedChange => match decode_change(data) {
                    Ok(change) => {
                        batch.push((change, chunk));
                        continue;
                    }
                    Err(reason) => Err(reason),
                },
                ChunkKind::Document => {
                    if let Err(f) = self.apply_batch(&mut batch, &mut kept, &mut kept_bytes) {
                        failure = Some(f);
                        break;
                    }
                    match contained(|| Automerge::load(data)) {
                        Some(Ok(mut doc)) => self
                            .bulk_apply(usize::MAX, |d| d.merge(&mut doc))
                            .map(|_| ())
                            .map_err(|e| e.to_string()),
                        Some(Err(e)) => Err(e.to_string()),
                        None => Err("automerge failed on this chunk".into()),
                    }
                }
                ChunkKind::Bundle => Err("bundle chunks are not used by shards".into()),
            };
            match result {
                Ok(()) => {
                    kept += 1;
                    kept_bytes = chunk.range.end;
                }
                Err(reason) => {
                    failure = Some((chunk.range.start, reason));
                    break;
                }
            }
        }
        if let Err(f) = self.apply_batch(&mut batch, &mut kept, &mut kept_bytes) {
            failure = Some(f);
        }
        let failure = failure.or(split_err);
        self.saved_heads = Some(self.heads());
        self.unsaved.clear();
        match failure {
            None => self.check_deps(LoadReport {
                chunks: kept,
                bytes: kept_bytes,
            }),
            Some((_, reason)) if kept == 0 => Err(LoadError::Unreadable {
                shard: self.id,
                reason,
            }),
            Some((damaged_at, reason)) => Err(LoadError::Damaged {
                shard: self.id,
                kept_chunks: kept,
                kept_bytes,
                lost_bytes: bytes.len() - kept_bytes,
                damaged_at,
                reason,
            }),
        }
    }

    /// Applies the batched change chunks, counting them as kept; on failure returns the offset
    /// and reason of the first chunk automerge refuses (the ones before it are kept).
    fn apply_batch(
        &mut self,
        batch: &mut Vec<(Change, &ChunkSpan)>,
        kept: &mut usize,
        kept_bytes: &mut usize,
    ) -> Result<(), (usize, String)> {
        let items = std::mem::take(batch);
        let Some(last) = items.last().map(|(_, span)| span.range.end) else {
            return Ok(());
        };
        let changes: Vec<Change> = items.iter().map(|(c, _)| c.clone()).collect();
        if self
            .bulk_apply(changes.len(), |d| d.apply_changes(changes))
            .is_ok()
        {
            *kept += items.len();
            *kept_bytes = last;
            return Ok(());
        }
        for (change, span) in items {
            self.bulk_apply(1, |d| d.apply_changes([change]))
                .map_err(|e| (span.range.start, e.to_string()))?;
            *kept += 1;
            *kept_bytes = span.range.end;
        }
        Ok(())
    }
}

/// Runs automerge on bytes read from disk, which a damaged (or planted) file can make panic:
/// `None` when it did, so the file is set aside like any other damaged file.
fn contained<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> Option<T> {
    std::panic::catch_unwind(f).ok()
}

/// Decodes one change chunk and checks its checksum (automerge does not when decoding a single
/// chunk).
fn decode_change(bytes: &[u8]) -> Result<Change, String> {
    let change = contained(|| Change::try_from(bytes))
        .ok_or("automerge failed on this chunk")?
        .map_err(|e| e.to_string())?;
    if change.hash().0[..4] != bytes[4..8] {
        return Err("bad checksum".into());
    }
    Ok(change)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_finds_headers_and_refuses_garbage() {
        let mut doc = Automerge::new();
        let bytes = doc.save();
        let spans = split_chunks(&bytes).unwrap();
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].kind, ChunkKind::Document);
        assert_eq!(spans[0].range, 0..bytes.len());
        let err = split_chunks(&bytes[..bytes.len() - 1]).unwrap_err();
        assert_eq!(err.reason, "truncated chunk");
        assert!(err.complete.is_empty());
        let mut two = bytes.clone();
        two.extend_from_slice(b"garbage!!!");
        let err = split_chunks(&two).unwrap_err();
        assert_eq!(err.offset, bytes.len());
        assert_eq!(err.complete.len(), 1);
        let _ = &mut doc;
    }
}
