//! The labels part of the API: record a signed label (a new one, or an edit of a past one), undo
//! the human's last label, list a dataset's labels. The stores belong to the node's labels service
//! ([`crate::labels::Labels`]), which the network feeds too; the API keeps only what validating a
//! request needs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use swarmlabel_crdt::{AnnotatorKey, RecordError, SampleId, SignedAnnotation, Suggestion, Value};

use super::body::parse_json;
use super::{ApiError, AppState};
use crate::labels::{LabelStoreError, LabelsError};
use swarmlabel_store::dataset::DatasetId;
use swarmlabel_store::dataset::manifest::{MediaType, Task};
use swarmlabel_store::store::BlobId;

pub(super) mod consensus;

/// What validating a label of a dataset, and showing its samples, needs: its name, task, label
/// set and samples.
#[derive(Debug)]
pub(crate) struct Book {
    pub(crate) name: String,
    pub(crate) description: String,
    /// The owner's labeling instructions (markdown; empty: none).
    pub(crate) instructions: String,
    pub(crate) task: Task,
    pub(crate) labels: Vec<String>,
    /// Sample ids in manifest order.
    pub(crate) order: Vec<BlobId>,
    pub(crate) media: HashMap<BlobId, MediaType>,
    /// The owner's gold labels, where the manifest has them.
    pub(crate) gold: HashMap<SampleId, u16>,
}

/// The books of the datasets in the home, read on first use.
pub(crate) type Books = Arc<Mutex<HashMap<DatasetId, Arc<Book>>>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LabelBody {
    sample: String,
    label: Option<String>,
    #[serde(default)]
    skip: bool,
    #[serde(default)]
    unsure: bool,
    /// The model's guess shown to the human when they answered, if it was shown.
    suggestion: Option<SuggestionBody>,
    /// Milliseconds from showing the sample to this answer, as the page measured them (only
    /// counted in the `swarmlabel_learn_answer_seconds` metric, never stored).
    think_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SuggestionBody {
    label: String,
    probability: f64,
}

/// One annotation as the API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct LabelView {
    pub(crate) sample: SampleId,
    pub(crate) annotator: AnnotatorKey,
    pub(crate) value: String,
    pub(crate) time_ms: u64,
}

pub(crate) fn bad(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError(status, message.into())
}

/// The book of `id` and its crdt view, read from the catalog on first use (blocking).
fn open_book(s: &AppState, id: DatasetId) -> Result<Arc<Book>, ApiError> {
    let mut books = s
        .books
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let home = s.node.home();
    let catalog = swarmlabel_store::Catalog::of(home);
    let listed = catalog.get(&id).map_err(|_| {
        bad(
            StatusCode::NOT_FOUND,
            format!("dataset {id} is not in this node's home; join it first"),
        )
    })?;
    let root = listed.root.root();
    if let Some(book) = books.get(&id) {
        return Ok(book.clone());
    }
    let mut order = Vec::new();
    let mut media = HashMap::new();
    for index in 0..root.pages.len() {
        let page = catalog
            .page(&listed, index)
            .map_err(|e| bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        for entry in &page.samples {
            order.push(entry.id);
            media.insert(entry.id, entry.media_type);
        }
    }
    let gold = catalog
        .gold(&listed)
        .map_err(|e| bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .into_iter()
        .collect();
    let book = Arc::new(Book {
        name: root.name.clone(),
        description: root.description.clone(),
        instructions: root.instructions.clone(),
        task: root.task.clone(),
        labels: root.labels.clone(),
        order,
        media,
        gold,
    });
    books.insert(id, book.clone());
    Ok(book)
}

/// The book of `id`, with its labels open in the labels service.
pub(crate) async fn book(s: &AppState, id: DatasetId) -> Result<Arc<Book>, ApiError> {
    let state = s.clone();
    let book = tokio::task::spawn_blocking(move || open_book(&state, id))
        .await
        .map_err(|e| bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    // A dataset listed while the node runs opens here (labels, policy, models, learning loop),
    // as a listed one did at the start.
    s.joiner
        .datasets
        .open(s.node.home(), id)
        .await
        .map_err(|e| bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(book)
}

pub(crate) fn labels_error(e: LabelsError) -> ApiError {
    match &e {
        LabelsError::Store(store) if crate::labels::is_disk_full(store) => bad(
            StatusCode::INSUFFICIENT_STORAGE,
            format!(
                "the disk holding this node's home is full, so the label was not stored ({e}); \
                 free some space and answer again"
            ),
        ),
        LabelsError::Store(LabelStoreError::Record(RecordError::Invalid(
            swarmlabel_crdt::Rejection::NotAdmitted,
        ))) => bad(
            StatusCode::FORBIDDEN,
            "the dataset's owner does not admit this node's key (it is banned, or not on the \
             allowlist), so its labels do not count; ask the owner (`swarmlabel id` shows your key)",
        ),
        _ => bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

pub(crate) fn parse_id(text: &str) -> Result<DatasetId, ApiError> {
    text.parse().map_err(|_| {
        bad(
            StatusCode::BAD_REQUEST,
            format!("'{text}' is not a dataset id (64 hex characters)"),
        )
    })
}

pub(crate) async fn record(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<LabelView>, ApiError> {
    s.change(&headers, async {
        let id = parse_id(&id)?;
        let body: LabelBody = parse_json(&body)?;
        let book = book(&s, id).await?;
        let sample = parse_sample(&book, id, &body.sample)?;
        let value = match (body.label.as_deref(), body.skip, body.unsure) {
            (Some(name), false, false) => Value::Label(label_index(&book, name)?),
            (None, true, false) => Value::Skip,
            (None, false, true) => Value::Unsure,
            _ => {
                return Err(bad(
                    StatusCode::BAD_REQUEST,
                    "give exactly one of a label, skip or unsure",
                ));
            }
        };
        let suggestion = match &body.suggestion {
            Some(g) if (0.0..=1.0).contains(&g.probability) => Some(Suggestion::with_probability(
                label_index(&book, &g.label)?,
                g.probability,
            )),
            Some(g) => {
                return Err(bad(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "the suggestion's probability {} is not between 0 and 1; send the model's probability as shown",
                        g.probability
                    ),
                ));
            }
            None => None,
        };
        let view = store(&s, id, &book, sample, value, suggestion).await?;
        if let (Some(ms), Some(learners)) = (body.think_ms, &s.joiner.datasets.learners) {
            // An hour at most: a page left open overnight says nothing about labelling time.
            let seconds = Duration::from_millis(ms.min(3_600_000)).as_secs_f64();
            learners.vitals().answered(&id, seconds);
        }
        Ok(Json(view))
    })
    .await
}

/// The sample id `text` of dataset `id`, which must be one of its samples.
pub(crate) fn parse_sample(book: &Book, id: DatasetId, text: &str) -> Result<BlobId, ApiError> {
    let sample: BlobId = text.trim().parse().map_err(|_| {
        bad(
            StatusCode::BAD_REQUEST,
            format!("'{text}' is not a sample id (64 hex characters)"),
        )
    })?;
    if !book.media.contains_key(&sample) {
        return Err(bad(
            StatusCode::NOT_FOUND,
            format!(
                "sample {sample} is not in dataset {id}; use a sample id from its queue or export"
            ),
        ));
    }
    Ok(sample)
}

fn label_index(book: &Book, name: &str) -> Result<u16, ApiError> {
    match book.labels.iter().position(|l| l == name.trim()) {
        Some(i) => Ok(i as u16),
        None => Err(bad(
            StatusCode::BAD_REQUEST,
            format!(
                "label '{name}' is not in the label set ({}); use one of them",
                book.labels.join(",")
            ),
        )),
    }
}

/// Signs `value` for `sample` with the node's key and records it; returns once it is durable.
async fn store(
    s: &AppState,
    id: DatasetId,
    book: &Book,
    sample: BlobId,
    value: Value,
    suggestion: Option<Suggestion>,
) -> Result<LabelView, ApiError> {
    let identity = &s.identity;
    let answer = crate::labels::Own {
        sample,
        value,
        suggestion,
        time_ms: now_ms(),
    };
    let signed = s
        .labels
        .record_own(id, answer)
        .await
        .map_err(labels_error)?;
    let time_ms = signed.annotation().time_ms;
    Ok(LabelView {
        sample,
        annotator: identity.public_key(),
        value: value_text(value, &book.labels),
        time_ms,
    })
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What undo did.
#[derive(Debug, Serialize)]
pub(crate) struct UndoView {
    /// The sample whose label was undone: the page shows it again.
    sample: SampleId,
    /// The answer undone.
    undone: String,
    /// What the slot holds now (a signed skip: the CRDT keeps no deletions).
    now: LabelView,
}

/// Undoes the human's most recent label (or unsure answer) in dataset `id`. The CRDT keeps one
/// latest answer per sample and annotator and has no deletion, so the answer is replaced by a
/// signed skip, which is not a vote; the sample comes back to the queue.
pub(crate) async fn undo(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<UndoView>, ApiError> {
    s.change(&headers, async {
        let id = parse_id(&id)?;
        let book = book(&s, id).await?;
        let read = s.labels.read(id).await.map_err(labels_error)?;
        let me = s.identity.public_key();
        let last = read
            .annotations
            .iter()
            .map(SignedAnnotation::annotation)
            .filter(|a| a.annotator == me && a.value != Value::Skip)
            .max_by_key(|a| a.time_ms)
            .ok_or_else(|| {
                bad(
                    StatusCode::CONFLICT,
                    format!("you have no label in dataset {id} to undo; label a sample first"),
                )
            })?;
        let sample = last.sample;
        let undone = value_text(last.value, &book.labels);
        let now = store(&s, id, &book, sample, Value::Skip, None).await?;
        Ok(Json(UndoView {
            sample,
            undone,
            now,
        }))
    })
    .await
}

pub(crate) fn value_text(value: Value, labels: &[String]) -> String {
    match value {
        Value::Label(i) => labels
            .get(usize::from(i))
            .cloned()
            .unwrap_or_else(|| format!("#{i}")),
        Value::Skip => "skip".into(),
        Value::Unsure => "unsure".into(),
    }
}

pub(crate) async fn list(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    s.check(&headers)?;
    let id = parse_id(&id)?;
    let book = book(&s, id).await?;
    let read = s.labels.read(id).await.map_err(labels_error)?;
    let views: Vec<LabelView> = read
        .annotations
        .iter()
        .map(|a| {
            let a = a.annotation();
            LabelView {
                sample: a.sample,
                annotator: a.annotator,
                value: value_text(a.value, &book.labels),
                time_ms: a.time_ms,
            }
        })
        .collect();
    Ok(Json(serde_json::json!({
        "dataset": id.to_string(),
        "labels": book.labels,
        "annotations": views,
        "rejected": format!("{:?}", read.rejected),
        "conflicted_slots": read.conflicted_slots,
    })))
}
