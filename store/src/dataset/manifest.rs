//! The dataset manifest: a signed root that names pages of sample entries.
//!
//! The encoding is canonical (one byte string per value) and specified byte for byte in
//! `docs/formats.md`, so that another implementation can verify a dataset. Decoders read untrusted
//! bytes from peers: every length is bounded before anything is allocated, and no input panics.

use crate::identity::{Identity, PublicKey, SIGNATURE_LEN};
use crate::store::BlobId;

use super::DatasetId;

/// Bytes in one sample at most.
pub const MAX_SAMPLE_BYTES: u64 = 64 * 1024 * 1024;
/// Samples in one manifest page at most.
pub const MAX_PAGE_SAMPLES: usize = 65_536;
/// Pages in one manifest at most (2^30 samples).
pub const MAX_PAGES: usize = 16_384;
/// Labels in a label set at most.
pub const MAX_LABELS: usize = 1_024;
/// Bytes in a label name at most.
pub const MAX_LABEL_BYTES: usize = 64;
/// Bytes in a dataset name at most.
pub const MAX_NAME_BYTES: usize = 256;
/// Bytes in a description at most.
pub const MAX_DESCRIPTION_BYTES: usize = 16 * 1024;
/// Bytes of labeling instructions at most (markdown).
pub const MAX_INSTRUCTIONS_BYTES: usize = 64 * 1024;
/// Feature columns of a tabular dataset at most.
pub const MAX_FEATURES: usize = 65_536;
/// Bytes in a feature name at most.
pub const MAX_FEATURE_NAME_BYTES: usize = 256;
/// Labels wanted per sample at most (the owner's redundancy target).
pub const MAX_REDUNDANCY: u32 = 16;

/// The domain under which roots are signed.
pub const ROOT_SIGNATURE_DOMAIN: &str = "swarmlabel/manifest-root/v1";
const ROOT_MAGIC: &[u8; 8] = b"SWLROOT2";
/// A root with labeling instructions after its description. A root without instructions is still
/// written as version 2, so its bytes (and the dataset id) are what they were, and peers that
/// predate instructions still read it.
const ROOT_MAGIC_3: &[u8; 8] = b"SWLROOT3";
const PAGE_MAGIC: &[u8; 8] = b"SWLPAGE1";
const NO_GOLD: u16 = u16::MAX;
const ENTRY_LEN: usize = 32 + 8 + 1 + 2;

/// What a dataset's samples are and what labelling them means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// Image classification: samples are PNG or JPEG files.
    ImageClassification,
    /// Classification of numeric rows: samples are [`MediaType::Row`] encodings of these columns.
    TabularClassification {
        /// The feature columns, in sample order.
        features: Vec<String>,
    },
    /// Text classification: samples are UTF-8 text.
    TextClassification,
}

impl Task {
    /// A short name for listings.
    pub fn kind(&self) -> &'static str {
        match self {
            Task::ImageClassification => "images",
            Task::TabularClassification { .. } => "csv",
            Task::TextClassification => "text",
        }
    }
}

/// How a sample's bytes are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MediaType {
    /// A PNG image.
    Png = 1,
    /// A JPEG image.
    Jpeg = 2,
    /// A numeric row: little-endian IEEE 754 f64 per feature, `-0.0` written as `0.0`, no NaN or
    /// infinity.
    Row = 3,
    /// UTF-8 text.
    Text = 4,
}

impl MediaType {
    /// The MIME type.
    pub fn mime(self) -> &'static str {
        match self {
            MediaType::Png => "image/png",
            MediaType::Jpeg => "image/jpeg",
            MediaType::Row => "application/x-swarmlabel-row",
            MediaType::Text => "text/plain; charset=utf-8",
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => MediaType::Png,
            2 => MediaType::Jpeg,
            3 => MediaType::Row,
            4 => MediaType::Text,
            _ => return None,
        })
    }
}

/// One sample of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleEntry {
    /// BLAKE3 of the sample's bytes.
    pub id: BlobId,
    /// The sample's length in bytes.
    pub size: u64,
    /// How the bytes are encoded.
    pub media_type: MediaType,
    /// The owner's label for this sample, as an index into the label set.
    pub gold: Option<u16>,
}

/// A page of at most [`MAX_PAGE_SAMPLES`] sample entries; stored as a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Position of the page in the manifest, from 0.
    pub index: u32,
    /// The samples, in dataset order.
    pub samples: Vec<SampleEntry>,
}

/// A root's reference to one page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRef {
    /// BLAKE3 of the encoded page.
    pub id: BlobId,
    /// Samples in that page.
    pub samples: u32,
}

/// The manifest root: everything about a dataset but its sample entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    /// Short human name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// What labelers should know (markdown, at most [`MAX_INSTRUCTIONS_BYTES`]); shown on the
    /// labeling page and in the terminal labeler. Empty: none.
    pub instructions: String,
    /// The task.
    pub task: Task,
    /// The label set; gold labels and annotations index into it.
    pub labels: Vec<String>,
    /// Labels wanted per sample (the owner's redundancy target, 1 to [`MAX_REDUNDANCY`]):
    /// volunteers' nodes spread samples so that each gets this many labelers.
    pub redundancy: u32,
    /// The data owner's key, which signs the root.
    pub owner: PublicKey,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// Samples in all pages.
    pub sample_count: u64,
    /// Samples with a gold label.
    pub gold_count: u64,
    /// Bytes of all samples.
    pub total_bytes: u64,
    /// The pages, in order.
    pub pages: Vec<PageRef>,
}

/// A root with its owner's signature, as stored and sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRoot {
    root: Root,
    bytes: Vec<u8>,
}

/// Why manifest bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes do not start with the expected magic.
    #[error("not a swarmlabel manifest {0} (wrong magic or version)")]
    Magic(&'static str),
    /// The bytes end early.
    #[error("the manifest is truncated")]
    Truncated,
    /// Bytes remain after the value.
    #[error("the manifest has trailing bytes")]
    Trailing,
    /// A field is out of bounds.
    #[error("the manifest's {0} is out of bounds")]
    Bounds(&'static str),
    /// A string field is not UTF-8.
    #[error("the manifest's {0} is not UTF-8")]
    Utf8(&'static str),
    /// An enum code is unknown.
    #[error("the manifest has an unknown {0}")]
    Unknown(&'static str),
    /// The root's signature does not verify under its owner key.
    #[error("the manifest's signature does not match its owner key")]
    Signature,
    /// The page's counts or labels contradict the root.
    #[error("the page does not match the manifest root: {0}")]
    Mismatch(&'static str),
}

impl Root {
    /// Encodes the root canonically (the bytes the owner signs).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(256 + self.pages.len() * 36);
        if self.instructions.is_empty() {
            w.extend_from_slice(ROOT_MAGIC);
            put_str(&mut w, &self.name);
            put_str(&mut w, &self.description);
        } else {
            w.extend_from_slice(ROOT_MAGIC_3);
            put_str(&mut w, &self.name);
            put_str(&mut w, &self.description);
            put_str(&mut w, &self.instructions);
        }
        match &self.task {
            Task::ImageClassification => w.push(1),
            Task::TabularClassification { features } => {
                w.push(2);
                put_u32(&mut w, features.len() as u32);
                for f in features {
                    put_str(&mut w, f);
                }
            }
            Task::TextClassification => w.push(3),
        }
        put_u32(&mut w, self.labels.len() as u32);
        for l in &self.labels {
            put_str(&mut w, l);
        }
        put_u32(&mut w, self.redundancy);
        w.extend_from_slice(&self.owner.0);
        w.extend_from_slice(&self.created_at_ms.to_le_bytes());
        w.extend_from_slice(&self.sample_count.to_le_bytes());
        w.extend_from_slice(&self.gold_count.to_le_bytes());
        w.extend_from_slice(&self.total_bytes.to_le_bytes());
        put_u32(&mut w, self.pages.len() as u32);
        for p in &self.pages {
            w.extend_from_slice(&p.id.0);
            put_u32(&mut w, p.samples);
        }
        w
    }

    /// Decodes and bounds-checks a root (without its signature).
    pub fn decode(bytes: &[u8]) -> Result<Root, DecodeError> {
        let mut r = Reader { buf: bytes };
        let magic = r.take(8)?;
        let with_instructions = match magic {
            m if m == ROOT_MAGIC => false,
            m if m == ROOT_MAGIC_3 => true,
            _ => return Err(DecodeError::Magic("root")),
        };
        let name = r.str(MAX_NAME_BYTES, "name")?;
        let description = r.str(MAX_DESCRIPTION_BYTES, "description")?;
        let instructions = if with_instructions {
            let text = r.str(MAX_INSTRUCTIONS_BYTES, "instructions")?;
            // Version 3 is for roots with instructions: one empty would have a second encoding.
            if text.is_empty() {
                return Err(DecodeError::Bounds("instructions"));
            }
            text
        } else {
            String::new()
        };
        let task = match r.u8()? {
            1 => Task::ImageClassification,
            2 => {
                let n = r.count(MAX_FEATURES, "feature count")?;
                let features = (0..n)
                    .map(|_| r.str(MAX_FEATURE_NAME_BYTES, "feature name"))
                    .collect::<Result<_, _>>()?;
                Task::TabularClassification { features }
            }
            3 => Task::TextClassification,
            _ => return Err(DecodeError::Unknown("task")),
        };
        let n = r.count(MAX_LABELS, "label count")?;
        let labels: Vec<String> = (0..n)
            .map(|_| r.str(MAX_LABEL_BYTES, "label"))
            .collect::<Result<_, _>>()?;
        if labels.is_empty() || labels.iter().any(String::is_empty) {
            return Err(DecodeError::Bounds("label set"));
        }
        // What import refuses, a peer's root may not hold either: terminal control sequences in
        // what `dataset search` prints, two labels of one name.
        let distinct: std::collections::HashSet<&String> = labels.iter().collect();
        if distinct.len() != labels.len() {
            return Err(DecodeError::Bounds("label set (a label named twice)"));
        }
        let line = |s: &str| !s.chars().any(char::is_control);
        let text = |s: &str| !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t');
        if !line(&name) || !labels.iter().all(|l| line(l)) {
            return Err(DecodeError::Bounds("name or label (control characters)"));
        }
        if !text(&description) || !text(&instructions) {
            return Err(DecodeError::Bounds("description (control characters)"));
        }
        if let Task::TabularClassification { features } = &task
            && !features.iter().all(|f| line(f))
        {
            return Err(DecodeError::Bounds("feature name (control characters)"));
        }
        let redundancy = r.u32()?;
        if !(1..=MAX_REDUNDANCY).contains(&redundancy) {
            return Err(DecodeError::Bounds("redundancy"));
        }
        let owner = PublicKey(r.array()?);
        let created_at_ms = r.u64()?;
        let sample_count = r.u64()?;
        let gold_count = r.u64()?;
        let total_bytes = r.u64()?;
        let n = r.count(MAX_PAGES, "page count")?;
        let mut pages = Vec::with_capacity(n);
        for _ in 0..n {
            let id = BlobId(r.array()?);
            let samples = r.u32()?;
            if samples == 0 || samples as usize > MAX_PAGE_SAMPLES {
                return Err(DecodeError::Bounds("page size"));
            }
            pages.push(PageRef { id, samples });
        }
        r.finish()?;
        let counted: u64 = pages.iter().map(|p| u64::from(p.samples)).sum();
        if counted != sample_count || gold_count > sample_count {
            return Err(DecodeError::Mismatch("sample counts"));
        }
        Ok(Root {
            name,
            description,
            instructions,
            task,
            labels,
            redundancy,
            owner,
            created_at_ms,
            sample_count,
            gold_count,
            total_bytes,
            pages,
        })
    }
}

impl SignedRoot {
    /// Signs `root` with the owner's key. `root.owner` must be `owner`'s public key.
    pub fn sign(root: Root, owner: &Identity) -> SignedRoot {
        assert_eq!(
            root.owner,
            owner.public_key(),
            "a root is signed by its owner"
        );
        let mut bytes = root.encode();
        let signature = owner.sign(ROOT_SIGNATURE_DOMAIN, &bytes);
        bytes.extend_from_slice(&signature);
        SignedRoot { root, bytes }
    }

    /// Decodes signed root bytes and verifies the owner's signature.
    pub fn decode(bytes: &[u8]) -> Result<SignedRoot, DecodeError> {
        if bytes.len() < SIGNATURE_LEN {
            return Err(DecodeError::Truncated);
        }
        let (body, sig) = bytes.split_at(bytes.len() - SIGNATURE_LEN);
        let root = Root::decode(body)?;
        let sig: [u8; SIGNATURE_LEN] = sig.try_into().map_err(|_| DecodeError::Truncated)?;
        if !root.owner.verify(ROOT_SIGNATURE_DOMAIN, body, &sig) {
            return Err(DecodeError::Signature);
        }
        Ok(SignedRoot {
            root,
            bytes: bytes.to_vec(),
        })
    }

    /// The dataset id: BLAKE3 of the signed bytes.
    pub fn id(&self) -> DatasetId {
        DatasetId::of(&self.bytes)
    }

    /// The root.
    pub fn root(&self) -> &Root {
        &self.root
    }

    /// The signed bytes (encoded root followed by the 64-byte signature).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl PageRef {
    /// The exact length in bytes of the page this names (a requester bounds the response by it).
    pub fn encoded_len(&self) -> u64 {
        16 + u64::from(self.samples) * ENTRY_LEN as u64
    }
}

impl Page {
    /// Encodes the page canonically.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(16 + self.samples.len() * ENTRY_LEN);
        w.extend_from_slice(PAGE_MAGIC);
        put_u32(&mut w, self.index);
        put_u32(&mut w, self.samples.len() as u32);
        for s in &self.samples {
            w.extend_from_slice(&s.id.0);
            w.extend_from_slice(&s.size.to_le_bytes());
            w.push(s.media_type as u8);
            w.extend_from_slice(&s.gold.unwrap_or(NO_GOLD).to_le_bytes());
        }
        w
    }

    /// Decodes a page and checks it against the root that names it as page `index`: the sample
    /// count it names, and gold labels within the root's label set.
    pub fn decode(bytes: &[u8], root: &Root, index: usize) -> Result<Page, DecodeError> {
        let expected = root
            .pages
            .get(index)
            .ok_or(DecodeError::Mismatch("page index"))?;
        let mut r = Reader { buf: bytes };
        if r.take(8)? != PAGE_MAGIC {
            return Err(DecodeError::Magic("page"));
        }
        if r.u32()? as usize != index {
            return Err(DecodeError::Mismatch("page index"));
        }
        let n = r.count(MAX_PAGE_SAMPLES, "page size")?;
        if n != expected.samples as usize {
            return Err(DecodeError::Mismatch("page size"));
        }
        if r.buf.len() != n * ENTRY_LEN {
            return Err(if r.buf.len() < n * ENTRY_LEN {
                DecodeError::Truncated
            } else {
                DecodeError::Trailing
            });
        }
        let mut samples = Vec::with_capacity(n);
        for _ in 0..n {
            let id = BlobId(r.array()?);
            let size = r.u64()?;
            let media_type =
                MediaType::from_code(r.u8()?).ok_or(DecodeError::Unknown("media type"))?;
            let gold = match u16::from_le_bytes(r.array()?) {
                NO_GOLD => None,
                g if (g as usize) < root.labels.len() => Some(g),
                _ => return Err(DecodeError::Mismatch("gold label outside the label set")),
            };
            samples.push(SampleEntry {
                id,
                size,
                media_type,
                gold,
            });
        }
        Ok(Page {
            index: index as u32,
            samples,
        })
    }
}

/// The canonical bytes of a numeric row ([`MediaType::Row`]): so "1" and "1.0" are one sample.
pub fn encode_row(values: &[f64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 8);
    for v in values {
        // Adding 0.0 turns -0.0 into +0.0 and leaves every other value as it is.
        out.extend_from_slice(&(v + 0.0).to_le_bytes());
    }
    out
}

/// The values of a [`MediaType::Row`] sample, or `None` if the bytes are not a whole number of
/// finite f64 values.
pub fn decode_row(bytes: &[u8]) -> Option<Vec<f64>> {
    if !bytes.len().is_multiple_of(8) {
        return None;
    }
    bytes
        .chunks_exact(8)
        .map(|c| Some(f64::from_le_bytes(c.try_into().ok()?)).filter(|v| v.is_finite()))
        .collect()
}

fn put_u32(w: &mut Vec<u8>, v: u32) {
    w.extend_from_slice(&v.to_le_bytes());
}

fn put_str(w: &mut Vec<u8>, s: &str) {
    put_u32(w, s.len() as u32);
    w.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.take(N)?.try_into().map_err(|_| DecodeError::Truncated)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn count(&mut self, max: usize, what: &'static str) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n > max {
            return Err(DecodeError::Bounds(what));
        }
        Ok(n)
    }

    fn str(&mut self, max: usize, what: &'static str) -> Result<String, DecodeError> {
        let n = self.count(max, what)?;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::Utf8(what))
    }

    fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing)
        }
    }
}

#[cfg(test)]
mod tests;
