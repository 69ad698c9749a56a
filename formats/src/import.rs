//! Importing a folder of images, a CSV file or a JSONL file as a signed dataset.
//!
//! A feeder thread walks the source and hands jobs to worker threads (bounded queues); the workers
//! read, validate (images are decoded once), hash and store each sample; this thread puts results
//! back in source order, drops duplicates, cuts pages, and at the end makes everything durable
//! with one file-system sync before the dataset is listed. Errors are reported for the first bad
//! input in source order, so the same input always gives the same message.

mod collect;
mod csv;
mod images;
mod jsonl;
mod validate;

use collect::{Collected, collect};
pub use validate::validate_labels;
use validate::{label_index, validate_metadata};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::{SystemTime, UNIX_EPOCH};

use swarmlabel_store::Catalog;
use swarmlabel_store::home::{Home, HomeError};
use swarmlabel_store::identity::Identity;
use swarmlabel_store::progress::Progress;
use swarmlabel_store::store::{BlobId, BlobStore, Put, StoreError};

use swarmlabel_store::dataset::manifest::{MediaType, Root, SignedRoot, Task};
use swarmlabel_store::dataset::{CatalogError, DatasetId};

pub use swarmlabel_store::dataset::manifest::MAX_SAMPLE_BYTES;
/// Examples of duplicates and warnings kept in a report (the counts are exact).
const MAX_EXAMPLES: usize = 20;

/// What kind of source to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// A folder is images; `.csv` is CSV; `.jsonl`/`.ndjson` is JSONL.
    #[default]
    Auto,
    /// A folder of PNG/JPEG files, searched recursively.
    Images,
    /// A CSV file with a header row and numeric feature columns.
    Csv,
    /// One JSON object per line with a text field.
    Jsonl,
}

/// How to import.
#[derive(Debug, Clone)]
pub struct Options {
    /// The dataset's name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Labeling instructions (markdown), shown to labelers; empty for none.
    pub instructions: String,
    /// The label set.
    pub labels: Vec<String>,
    /// The source format.
    pub format: Format,
    /// CSV column or JSONL field holding gold labels; `None` uses `label` when present.
    pub label_column: Option<String>,
    /// JSONL field holding the text.
    pub text_field: String,
    /// Unsupported files are errors instead of skipped with a warning.
    pub strict: bool,
    /// Creation time to record; `None` is now.
    pub created_at_ms: Option<u64>,
    /// Labels wanted per sample (1 to [`MAX_REDUNDANCY`](swarmlabel_store::dataset::manifest::MAX_REDUNDANCY)).
    pub redundancy: u32,
    /// Keep gold labels out of the published pages (see [`swarmlabel_store::dataset::gold`]): only this home has them.
    pub private_gold: bool,
}

impl Options {
    /// Options with defaults for everything but the name and label set.
    pub fn new(name: impl Into<String>, labels: Vec<String>) -> Self {
        Self {
            name: name.into(),
            description: String::new(),
            instructions: String::new(),
            labels,
            format: Format::Auto,
            label_column: None,
            text_field: "text".into(),
            strict: false,
            created_at_ms: None,
            redundancy: 1,
            private_gold: false,
        }
    }
}

/// Why an import failed. Nothing is listed when an import fails.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The source path does not exist.
    #[error("{} does not exist; check the path", .0.display())]
    Missing(PathBuf),
    /// The format cannot be told from the path.
    #[error("cannot tell the format of {} from its name; pass --format images|csv|jsonl", .0.display())]
    UnknownFormat(PathBuf),
    /// A file could not be read.
    #[error("cannot read {}: {source}; check that it exists and is readable", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The source holds no samples.
    #[error("{} has no samples: {detail}", path.display())]
    Empty {
        /// The source.
        path: PathBuf,
        /// What was looked for.
        detail: String,
    },
    /// The label set is invalid.
    #[error("{0}")]
    Labels(String),
    /// The name or description is invalid.
    #[error("{0}")]
    Metadata(String),
    /// An image does not decode.
    #[error("{} is not a valid image ({reason}); remove or replace it and import again", path.display())]
    CorruptImage {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        reason: String,
    },
    /// A file of an unsupported type, under `--strict`.
    #[error("{} is not a PNG or JPEG image; remove it, or import without --strict to skip it", .0.display())]
    Unsupported(PathBuf),
    /// A sample is too large.
    #[error("{} is {size} bytes, over the limit of {MAX_SAMPLE_BYTES} bytes per sample; shrink or remove it", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// A CSV row has the wrong number of fields.
    #[error("{} line {line}: the row has {fields} fields but the header has {expected}; fix the row", path.display())]
    RaggedRow {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// Fields in the row.
        fields: u64,
        /// Fields in the header.
        expected: u64,
    },
    /// A CSV feature is not a finite number.
    #[error("{} line {line}, column '{column}': '{value}' is not a number; feature columns must be numeric (name the label column with --label-column)", path.display())]
    NotNumeric {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// The column.
        column: String,
        /// The value.
        value: String,
    },
    /// A gold label is not in the label set.
    #[error(
        "{origin}: label '{label}' is not in the label set ({labels}); add it to --labels or fix the data"
    )]
    UnknownLabel {
        /// File and line.
        origin: String,
        /// The label.
        label: String,
        /// The label set, comma separated.
        labels: String,
    },
    /// A line or record is malformed in another way.
    #[error("{origin}: {message}")]
    Malformed {
        /// File and line.
        origin: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// The home could not be used.
    #[error(transparent)]
    Home(#[from] HomeError),
    /// The blob store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Listing the dataset failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// What an import did.
#[derive(Debug, Clone)]
pub struct Report {
    /// The new dataset's id.
    pub id: DatasetId,
    /// Its signed root.
    pub root: SignedRoot,
    /// Samples that were already in the store (from another dataset or an earlier import).
    pub existing_blobs: u64,
    /// Samples whose bytes equal an earlier sample of the same source (stored and listed once).
    pub duplicates: u64,
    /// Up to 20 duplicates, as "origin (same as sample ID)".
    pub duplicate_examples: Vec<String>,
    /// Files skipped because they are not images (none under `--strict`).
    pub skipped: u64,
    /// Gold labels kept in this home only, out of the published pages.
    pub private_gold: u64,
    /// Warnings and notes, up to 20 of each kind.
    pub warnings: Vec<String>,
}

/// One unit of work from a feeder.
enum Job {
    /// An image file to read and decode.
    ImageFile { path: PathBuf, gold: Option<u16> },
    /// Sample bytes already encoded by the feeder.
    Ready {
        origin: String,
        bytes: Vec<u8>,
        media_type: MediaType,
        gold: Option<u16>,
    },
}

/// A stored sample.
struct Done {
    origin: String,
    id: BlobId,
    size: u64,
    media_type: MediaType,
    gold: Option<u16>,
    put: Put,
}

/// What a feeder hands over besides jobs.
#[derive(Default)]
struct FeedOutcome {
    task: Option<Task>,
    skipped: u64,
    warnings: Vec<String>,
}

/// Sends jobs in source order, numbering them. Returns `false` once the import is stopping.
struct Feed<'a> {
    tx: mpsc::SyncSender<(u64, Result<Job, ImportError>)>,
    seq: u64,
    stop: &'a AtomicBool,
}

impl Feed<'_> {
    fn send(&mut self, job: Result<Job, ImportError>) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return false;
        }
        let failed = job.is_err();
        let ok = self.tx.send((self.seq, job)).is_ok();
        self.seq += 1;
        ok && !failed
    }
}

/// Imports `path` into `home` as a dataset owned by `owner`.
pub fn import(
    home: &Home,
    owner: &Identity,
    path: &Path,
    opts: &Options,
    progress: &dyn Progress,
) -> Result<Report, ImportError> {
    let labels = validate_labels(&opts.labels)?;
    if !(1..=swarmlabel_store::dataset::manifest::MAX_REDUNDANCY).contains(&opts.redundancy) {
        return Err(ImportError::Metadata(format!(
            "--redundancy {} is out of range; ask for 1 to {} labels per sample",
            opts.redundancy,
            swarmlabel_store::dataset::manifest::MAX_REDUNDANCY
        )));
    }
    validate_metadata(opts)?;
    if !path.exists() {
        return Err(ImportError::Missing(path.to_owned()));
    }
    let format = match opts.format {
        Format::Auto => detect_format(path)?,
        f => f,
    };
    let _lock = home.lock_shared()?;
    let store = home.blobs();
    progress.start("importing", None);
    let (collected, outcome) = read_source(path, format, &labels, opts, &store, progress);
    progress.finish();

    let mut collected = collected?;
    let Some(task) = outcome.task else {
        return Err(ImportError::Empty {
            path: path.to_owned(),
            detail: "no header".into(),
        });
    };
    if collected.sample_count == 0 {
        return Err(nothing_imported(path, format, outcome.skipped));
    }
    collected.flush_page(&store)?;
    // One sync makes every sample and page durable before the listing that names them exists.
    store.sync()?;
    let signed = sign_root(owner, opts, task, labels, &mut collected);
    let catalog = Catalog::of(home);
    if let Some(private) = &collected.private {
        // Durable before the listing that names the dataset: a listed dataset never lacks it.
        catalog.put_private_gold(&signed.id(), private)?;
    }
    if !collected.names.is_empty() {
        // Durable before the listing too: a listed image dataset has its file names.
        catalog.put_names(&signed.id(), &collected.names)?;
    }
    let id = catalog.add(&signed)?;
    let mut warnings = outcome.warnings;
    warnings.extend(collected.warnings);
    Ok(Report {
        id,
        root: signed,
        existing_blobs: collected.existing_blobs,
        duplicates: collected.duplicates,
        duplicate_examples: collected.duplicate_examples,
        skipped: outcome.skipped,
        private_gold: collected.private.map_or(0, |p| p.len() as u64),
        warnings,
    })
}

/// Reads the source: a feeder thread walks it, worker threads validate, hash and store samples
/// (bounded queues), and this thread collects the results in source order.
fn read_source(
    path: &Path,
    format: Format,
    labels: &[String],
    opts: &Options,
    store: &BlobStore,
    progress: &dyn Progress,
) -> (Result<Collected, ImportError>, FeedOutcome) {
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8);
    let stop = AtomicBool::new(false);
    let (job_tx, job_rx) = mpsc::sync_channel::<(u64, Result<Job, ImportError>)>(64);
    let (done_tx, done_rx) = mpsc::sync_channel::<(u64, Result<Done, ImportError>)>(64);
    let job_rx = Mutex::new(job_rx);
    std::thread::scope(|s| {
        let feeder = s.spawn(|| {
            let mut feed = Feed {
                tx: job_tx,
                seq: 0,
                stop: &stop,
            };
            let outcome = match format {
                Format::Images => images::feed(path, labels, opts.strict, &mut feed),
                Format::Csv => csv::feed(path, labels, opts.label_column.as_deref(), &mut feed),
                Format::Jsonl => jsonl::feed(path, labels, opts, &mut feed),
                Format::Auto => unreachable!("the format was detected above"),
            };
            drop(feed);
            outcome
        });
        for _ in 0..workers {
            let done_tx = done_tx.clone();
            let (job_rx, stop) = (&job_rx, &stop);
            s.spawn(move || {
                loop {
                    let next = job_rx.lock().map(|rx| rx.recv());
                    let Ok(Ok((seq, job))) = next else { break };
                    if stop.load(Ordering::Relaxed) {
                        continue;
                    }
                    let result = job.and_then(|job| process(job, store));
                    if done_tx.send((seq, result)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        let folder = (format == Format::Images).then(|| path.to_owned());
        let collected = collect(&done_rx, store, &stop, opts.private_gold, folder, progress);
        let outcome = feeder
            .join()
            .expect("invariant: the feeder thread does not panic");
        (collected, outcome)
    })
}

/// The error of a source with a header but no sample.
fn nothing_imported(path: &Path, format: Format, skipped: u64) -> ImportError {
    let detail = match format {
        Format::Images => format!(
            "no PNG or JPEG images found ({skipped} other files skipped); point it at a folder of images"
        ),
        Format::Csv => "the file has a header but no rows".into(),
        _ => "no lines with a text field".into(),
    };
    ImportError::Empty {
        path: path.to_owned(),
        detail,
    }
}

/// The dataset's root, signed by its owner; takes the pages out of `collected`.
fn sign_root(
    owner: &Identity,
    opts: &Options,
    task: Task,
    labels: Vec<String>,
    collected: &mut Collected,
) -> SignedRoot {
    let created_at_ms = opts.created_at_ms.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    });
    let root = Root {
        name: opts.name.trim().to_owned(),
        description: opts.description.clone(),
        instructions: opts.instructions.clone(),
        task,
        labels,
        redundancy: opts.redundancy,
        owner: owner.public_key(),
        created_at_ms,
        sample_count: collected.sample_count,
        gold_count: collected.gold_count,
        total_bytes: collected.total_bytes,
        pages: std::mem::take(&mut collected.pages),
    };
    SignedRoot::sign(root, owner)
}

fn process(job: Job, store: &BlobStore) -> Result<Done, ImportError> {
    let (origin, bytes, media_type, gold) = match job {
        Job::Ready {
            origin,
            bytes,
            media_type,
            gold,
        } => (origin, bytes, media_type, gold),
        Job::ImageFile { path, gold } => {
            let (bytes, media_type) = images::load(&path)?;
            (path.display().to_string(), bytes, media_type, gold)
        }
    };
    let (id, put) = store.put(&bytes)?;
    Ok(Done {
        origin,
        id,
        size: bytes.len() as u64,
        media_type,
        gold,
        put,
    })
}

fn detect_format(path: &Path) -> Result<Format, ImportError> {
    if path.is_dir() {
        return Ok(Format::Images);
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("csv") => Ok(Format::Csv),
        Some("jsonl" | "ndjson") => Ok(Format::Jsonl),
        _ => Err(ImportError::UnknownFormat(path.to_owned())),
    }
}

#[cfg(test)]
mod tests;
