//! The labels part of the API: record a signed label, list a dataset's labels. The stores belong
//! to the node's labels service ([`crate::labels::Labels`]), which the network feeds too; the API
//! keeps only what validating a request needs.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use swarmlabel_crdt::{Annotation, AnnotatorKey, RecordError, SampleId, SignedAnnotation, Value};

use super::{ApiError, AppState};
use crate::dataset::DatasetId;
use crate::labels::{LabelStore, LabelStoreError, LabelsError};
use crate::store::BlobId;

pub(super) mod consensus;

/// What validating a label of a dataset needs: its label set and sample ids.
#[derive(Debug)]
pub(crate) struct Book {
    labels: Vec<String>,
    samples: HashSet<BlobId>,
}

/// The books of the datasets in the home, read on first use.
pub(crate) type Books = Arc<Mutex<HashMap<DatasetId, Arc<Book>>>>;

#[derive(Debug, Deserialize)]
pub(crate) struct LabelBody {
    sample: String,
    label: Option<String>,
    #[serde(default)]
    skip: bool,
    #[serde(default)]
    unsure: bool,
}

/// One annotation as the API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct LabelView {
    sample: String,
    annotator: String,
    value: String,
    time_ms: u64,
}

fn bad(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError(status, message.into())
}

/// The book of `id` and its crdt view, read from the catalog on first use (blocking).
fn open_book(
    s: &AppState,
    id: DatasetId,
) -> Result<(Arc<Book>, swarmlabel_crdt::Dataset), ApiError> {
    let mut books = s
        .books
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let home = s.node.home();
    let catalog = home.catalog();
    let listed = catalog.get(&id).map_err(|_| {
        bad(
            StatusCode::NOT_FOUND,
            format!("dataset {id} is not in this node's home; join it first"),
        )
    })?;
    let root = listed.root.root();
    let mut samples = HashSet::new();
    for index in 0..root.pages.len() {
        let page = catalog
            .page(&listed, index)
            .map_err(|e| bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        samples.extend(page.samples.iter().map(|e| e.id));
    }
    let dataset = LabelStore::crdt_dataset(&id, root.labels.len(), root.sample_count);
    let book = books
        .entry(id)
        .or_insert_with(|| {
            Arc::new(Book {
                labels: root.labels.clone(),
                samples,
            })
        })
        .clone();
    Ok((book, dataset))
}

/// The book of `id`, with its labels open in the labels service.
async fn book(s: &AppState, id: DatasetId) -> Result<Arc<Book>, ApiError> {
    let state = s.clone();
    let (book, dataset) = tokio::task::spawn_blocking(move || open_book(&state, id))
        .await
        .map_err(|e| bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    s.labels.open(dataset).await.map_err(labels_error)?;
    Ok(book)
}

fn labels_error(e: LabelsError) -> ApiError {
    bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn parse_id(text: &str) -> Result<DatasetId, ApiError> {
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
    Json(body): Json<LabelBody>,
) -> Result<Json<LabelView>, ApiError> {
    s.check(&headers)?;
    let id = parse_id(&id)?;
    let book = book(&s, id).await?;
    let sample: BlobId = body.sample.trim().parse().map_err(|_| {
        bad(
            StatusCode::BAD_REQUEST,
            format!("'{}' is not a sample id (64 hex characters)", body.sample),
        )
    })?;
    if !book.samples.contains(&sample) {
        return Err(bad(
            StatusCode::NOT_FOUND,
            format!("sample {sample} is not in dataset {id}"),
        ));
    }
    let value = match (body.label.as_deref(), body.skip, body.unsure) {
        (Some(name), false, false) => match book.labels.iter().position(|l| l == name.trim()) {
            Some(i) => Value::Label(i as u16),
            None => {
                return Err(bad(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "label '{name}' is not in the label set ({}); use one of them",
                        book.labels.join(",")
                    ),
                ));
            }
        },
        (None, true, false) => Value::Skip,
        (None, false, true) => Value::Unsure,
        _ => {
            return Err(bad(
                StatusCode::BAD_REQUEST,
                "give exactly one of a label, skip or unsure",
            ));
        }
    };
    let identity = &s.identity;
    let mut time_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    loop {
        let annotation = Annotation {
            dataset: swarmlabel_crdt::DatasetId(id.0.0),
            sample: SampleId(sample.0),
            annotator: AnnotatorKey(identity.public_key().0),
            time_ms,
            value,
            suggestion: None,
        };
        let signed = SignedAnnotation::sign(annotation, identity.as_ref())
            .map_err(|e| bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        match s.labels.record(signed).await {
            Ok(()) => break,
            // Two labels of one sample in the same millisecond (or a clock step back): the new
            // one must still replace the old, so it takes the next millisecond.
            Err(LabelsError::Store(LabelStoreError::Record(RecordError::NotNewer {
                existing_ms,
                ..
            }))) => {
                time_ms = existing_ms + 1;
            }
            Err(e) => return Err(labels_error(e)),
        }
    }
    Ok(Json(LabelView {
        sample: sample.to_hex(),
        annotator: identity.public_key().to_hex(),
        value: value_text(value, &book.labels),
        time_ms,
    }))
}

fn value_text(value: Value, labels: &[String]) -> String {
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
    let read = s
        .labels
        .read(swarmlabel_crdt::DatasetId(id.0.0))
        .await
        .map_err(labels_error)?;
    let views: Vec<LabelView> = read
        .annotations
        .iter()
        .map(|a| {
            let a = a.annotation();
            LabelView {
                sample: hex::encode(a.sample.0),
                annotator: hex::encode(a.annotator.0),
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
