//! The record log of a dataset: every signed annotation the store took, appended in fixed-size,
//! checksummed entries. It is what makes a label durable; the shard files are automerge's view
//! of the same records (for sync and fast loading) and are rebuilt from the log when they are
//! damaged.
//!
//! ```text
//! entry := "SLr2" ‖ checksum: first 8 bytes of BLAKE3(record) ‖ record: 181 bytes (signed annotation)
//! ```
//!
//! Logs written before author chains hold version-1 records in `"SLr1"` entries of 177-byte
//! records ([`Format::V1`]); they are only read (to migrate a home, `super::legacy`).
//!
//! A damaged byte costs exactly the entry it falls in: reading checks each entry's checksum, and
//! past a bad one looks for the next offset where a whole entry checks, so the entries after the
//! damage are all found again. Bytes cut off at the end (a crash in the middle of an append, of a
//! label that was therefore never acknowledged) are shorter than one entry and are dropped.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write as _};
use std::path::{Path, PathBuf};

use swarmlabel_crdt::SignedAnnotation;
use swarmlabel_crdt::annotation::{SIGNED_LEN, SIGNED_LEN_V1};

use super::durable;

/// The file name of the log in a dataset's label folder.
pub(crate) const FILE_NAME: &str = "records.log";

const CHECKSUM_LEN: usize = 8;
/// Bytes per entry.
pub(crate) const ENTRY_LEN: usize = 4 + CHECKSUM_LEN + SIGNED_LEN;

/// The entry format of a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Version-2 records (chains): what is written.
    V2,
    /// Version-1 records, read to migrate a home written before chains.
    V1,
}

impl Format {
    fn magic(self) -> [u8; 4] {
        match self {
            Format::V2 => *b"SLr2",
            Format::V1 => *b"SLr1",
        }
    }

    fn record_len(self) -> usize {
        match self {
            Format::V2 => SIGNED_LEN,
            Format::V1 => SIGNED_LEN_V1,
        }
    }

    fn entry_len(self) -> usize {
        4 + CHECKSUM_LEN + self.record_len()
    }

    /// The format a log's first bytes name, if any.
    pub(crate) fn of(first: &[u8]) -> Option<Format> {
        [Format::V2, Format::V1]
            .into_iter()
            .find(|f| first.starts_with(&f.magic()))
    }
}

/// What reading a log found besides its records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Scan {
    /// Whole entries read.
    pub(crate) entries: u64,
    /// Damaged byte ranges (offset, length) skipped between or after whole entries.
    pub(crate) damaged: Vec<(u64, u64)>,
    /// Bytes at the end too short to be an entry: a cut-off append.
    pub(crate) torn_tail: u64,
    /// Where the last whole entry ends.
    pub(crate) valid_end: u64,
}

impl Scan {
    /// Damaged bytes in all.
    pub(crate) fn damaged_bytes(&self) -> u64 {
        self.damaged.iter().map(|(_, len)| len).sum()
    }
}

/// An open log, appended to.
#[derive(Debug)]
pub(crate) struct RecordLog {
    path: PathBuf,
    file: File,
    len: u64,
}

/// The entry of a version-2 record (a version-1 record is never written).
fn entry(signed: &SignedAnnotation) -> [u8; ENTRY_LEN] {
    let record = signed.to_bytes();
    let mut out = [0u8; ENTRY_LEN];
    out[..4].copy_from_slice(&Format::V2.magic());
    out[4..4 + CHECKSUM_LEN].copy_from_slice(&blake3::hash(&record).as_bytes()[..CHECKSUM_LEN]);
    out[4 + CHECKSUM_LEN..4 + CHECKSUM_LEN + record.len()].copy_from_slice(&record);
    out
}

/// The record of a whole, intact entry (checked, not verified: its signature is checked when
/// the store records it).
fn parse(bytes: &[u8], format: Format) -> Option<SignedAnnotation> {
    let (magic, rest) = bytes.split_first_chunk::<4>()?;
    let (checksum, record) = rest.split_first_chunk::<CHECKSUM_LEN>()?;
    if *magic != format.magic() || record.len() != format.record_len() {
        return None;
    }
    if blake3::hash(record).as_bytes()[..CHECKSUM_LEN] != checksum[..] {
        return None;
    }
    let signed = SignedAnnotation::from_bytes(record).ok()?;
    // Each format holds its own version only.
    (usize::from(signed.to_bytes().len() as u16) == format.record_len()).then_some(signed)
}

/// Reads version-2 entries from `reader`, calling `each` with every intact record in order.
pub(crate) fn scan(reader: impl Read, each: impl FnMut(SignedAnnotation)) -> io::Result<Scan> {
    scan_format(reader, Format::V2, each)
}

/// Reads entries of `format` from `reader`, calling `each` with every intact record in order.
pub(crate) fn scan_format(
    reader: impl Read,
    format: Format,
    mut each: impl FnMut(SignedAnnotation),
) -> io::Result<Scan> {
    const BLOCK: usize = 64 * 1024;
    let entry_len = format.entry_len();
    let mut reader = BufReader::with_capacity(BLOCK, reader);
    let mut out = Scan::default();
    // `buf[at..]` is unread; `base` is the file offset of `buf[0]`.
    let mut buf: Vec<u8> = Vec::with_capacity(BLOCK + entry_len);
    let (mut at, mut base) = (0usize, 0u64);
    let mut eof = false;
    let mut damage_from: Option<u64> = None;
    loop {
        if !eof && buf.len() - at < entry_len {
            buf.drain(..at);
            base += at as u64;
            at = 0;
            let mut block = [0u8; 8192];
            while buf.len() < BLOCK {
                let n = reader.read(&mut block)?;
                if n == 0 {
                    eof = true;
                    break;
                }
                buf.extend_from_slice(&block[..n]);
            }
        }
        let offset = base + at as u64;
        if buf.len() - at < entry_len {
            let rest = (buf.len() - at) as u64;
            match damage_from.take() {
                Some(from) => out.damaged.push((from, offset + rest - from)),
                None => out.torn_tail = rest,
            }
            return Ok(out);
        }
        match parse(&buf[at..at + entry_len], format) {
            Some(record) => {
                if let Some(from) = damage_from.take() {
                    out.damaged.push((from, offset - from));
                }
                each(record);
                out.entries += 1;
                at += entry_len;
                out.valid_end = offset + entry_len as u64;
            }
            None => {
                damage_from.get_or_insert(offset);
                at += 1;
            }
        }
    }
}

impl RecordLog {
    /// Opens the log in `dir` (creating it), calling `each` with every intact record. A cut-off
    /// last entry is dropped from the file; other damage is reported and left for
    /// [`RecordLog::rewrite_aside`].
    pub(crate) fn open(
        dir: &Path,
        each: impl FnMut(SignedAnnotation),
    ) -> io::Result<(RecordLog, Scan, bool)> {
        let path = dir.join(FILE_NAME);
        let existed = path.exists();
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        if !existed {
            durable::created(&path);
            durable::sync_dir(dir)?;
        }
        let scan = scan(&file, each)?;
        let mut len = file.metadata()?.len();
        if scan.torn_tail > 0 {
            len = scan.valid_end;
            file.set_len(len)?;
            durable::sync_data(&file, &path)?;
        }
        Ok((RecordLog { path, file, len }, scan, !existed))
    }

    /// The log's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `records` and fsyncs once. On failure (a full disk) the file is cut back to what
    /// it held, so nothing half-written sits before the next append, and nothing of the batch
    /// counts as stored.
    pub(crate) fn append(&mut self, records: &[SignedAnnotation]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(records.len() * ENTRY_LEN);
        for signed in records {
            bytes.extend_from_slice(&entry(signed));
        }
        let written = (&self.file)
            .write_all(&bytes)
            .and_then(|()| durable::sync_data(&self.file, &self.path));
        if let Err(e) = written {
            if self.file.set_len(self.len).is_ok() {
                let _ = durable::sync_data(&self.file, &self.path);
            }
            return Err(e);
        }
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Keeps the damaged log's bytes aside (as they are) and puts a clean log with its intact
    /// entries in its place; returns where the damaged bytes went. Crash-safe: the clean log is
    /// written and fsynced beside, the damaged one linked aside, then the clean one renamed over
    /// it, so at every moment `records.log` is either the damaged log or the clean one.
    pub(crate) fn rewrite_aside(&mut self) -> io::Result<PathBuf> {
        let mut intact = Vec::new();
        scan(File::open(&self.path)?, |signed| intact.push(signed))?;
        let aside = swarmlabel_store::fs::aside_path(&self.path);
        if std::fs::hard_link(&self.path, &aside).is_err() {
            std::fs::copy(&self.path, &aside)?;
            durable::sync_data(&File::open(&aside)?, &aside)?;
        }
        self.replace_with(&intact)?;
        Ok(aside)
    }

    /// Replaces the log with one holding exactly `records` (compaction), crash-safe: written
    /// and fsynced beside, then renamed over the old one and the folder fsynced.
    pub(crate) fn replace_with(&mut self, records: &[SignedAnnotation]) -> io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new(".")).to_owned();
        let tmp = self.path.with_extension("log.new");
        let clean = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&tmp)?;
        durable::created(&tmp);
        let mut out = BufWriter::new(&clean);
        for signed in records {
            out.write_all(&entry(signed))?;
        }
        out.flush()?;
        drop(out);
        durable::sync_data(&clean, &tmp)?;
        drop(clean);
        std::fs::rename(&tmp, &self.path)?;
        durable::renamed(&tmp, &self.path);
        durable::sync_dir(&dir)?;
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)?;
        self.len = self.file.metadata()?.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmlabel_crdt::{Annotation, DatasetId, SampleId, Value};
    use swarmlabel_store::identity::Identity;

    fn records(n: u8) -> Vec<SignedAnnotation> {
        let id = Identity::from_secret_bytes([3; 32]);
        (0..n)
            .map(|i| {
                let annotation = Annotation {
                    dataset: DatasetId([1; 32]),
                    sample: SampleId([i; 32]),
                    annotator: id.public_key(),
                    seq: u32::from(i) + 1,
                    time_ms: 100 + u64::from(i),
                    value: Value::Label(1),
                    suggestion: None,
                };
                SignedAnnotation::sign(annotation, id.signing_key()).unwrap()
            })
            .collect()
    }

    fn read(bytes: &[u8]) -> (Vec<SampleId>, Scan) {
        let mut got = Vec::new();
        let scan = scan(bytes, |s| got.push(s.annotation().sample)).unwrap();
        (got, scan)
    }

    #[test]
    fn a_flipped_byte_costs_the_entry_it_falls_in_and_nothing_else() {
        let all = records(5);
        let bytes: Vec<u8> = all.iter().flat_map(entry).collect();
        let (got, scan) = read(&bytes);
        assert_eq!(got.len(), 5);
        assert_eq!(scan.damaged, []);
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x20;
            let (got, scan) = read(&damaged);
            let hit = at / ENTRY_LEN;
            let expected: Vec<SampleId> = all
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != hit)
                .map(|(_, s)| s.annotation().sample)
                .collect();
            assert_eq!(got, expected, "flip at byte {at}");
            assert_eq!(
                scan.damaged,
                [((hit * ENTRY_LEN) as u64, ENTRY_LEN as u64)],
                "flip at byte {at}"
            );
        }
    }

    #[test]
    fn a_cut_off_tail_is_torn_not_damage_and_inserted_garbage_is_skipped() {
        let all = records(3);
        let mut bytes: Vec<u8> = all.iter().flat_map(entry).collect();
        bytes.truncate(bytes.len() - 10);
        let (got, scan) = read(&bytes);
        assert_eq!(got.len(), 2);
        assert_eq!(scan.torn_tail, (ENTRY_LEN - 10) as u64);
        assert_eq!(scan.valid_end, 2 * ENTRY_LEN as u64);
        assert_eq!(scan.damaged, []);

        let mut bytes: Vec<u8> = all.iter().flat_map(entry).collect();
        bytes.splice(ENTRY_LEN..ENTRY_LEN, *b"garbage");
        let (got, scan) = read(&bytes);
        assert_eq!(got.len(), 3, "every entry is found again after the garbage");
        assert_eq!(scan.damaged, [(ENTRY_LEN as u64, 7)]);
    }

    #[test]
    fn records_appended_are_read_back_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, scan, created) = RecordLog::open(dir.path(), |_| {}).unwrap();
        assert!(created);
        assert_eq!(scan.entries, 0);
        log.append(&records(2)).unwrap();
        drop(log);
        let mut n = 0;
        let (_, scan, created) = RecordLog::open(dir.path(), |_| n += 1).unwrap();
        assert!(!created);
        assert_eq!((n, scan.entries), (2, 2));
    }
}
