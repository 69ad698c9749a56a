//! The labeling part of the API, what the labeling page reads: the datasets to label and their
//! progress, the human's queue, a sample's content, the human's own past answers, and the
//! progress figures (the human's labels, the network's, agreement, the model's accuracy, peers).

use std::collections::{HashMap, HashSet};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use swarmlabel_crdt::registry::WeightsHash;
use swarmlabel_crdt::{Annotations, AnnotatorKey, SampleId, Value};

use super::body::QueryParams;
use super::labels::{Book, LabelView, bad, book, labels_error, parse_id, parse_sample, value_text};
use super::queue::{AccuracyPoint, View};
use super::{ApiError, AppState};
use swarmlabel_consensus::{self as consensus, Method};
use swarmlabel_store::dataset::DatasetId;
use swarmlabel_store::dataset::manifest::{MediaType, Task};

/// Picks returned by one queue request at most.
pub(crate) const MAX_PICKS: usize = 64;
/// Sample ids the page may list as already held, at most.
pub(crate) const MAX_EXCLUDE: usize = 256;

/// A dataset as the page lists it.
#[derive(Debug, Serialize)]
pub(crate) struct DatasetView {
    id: DatasetId,
    name: String,
    /// The owner's description (plain text).
    description: String,
    /// The owner's labeling instructions (markdown: the page renders it as text, see app.js).
    instructions: String,
    /// `images`, `text` or `csv`.
    kind: &'static str,
    labels: Vec<String>,
    samples: u64,
    /// Samples with at least one label vote, from anyone.
    samples_labelled: u64,
    /// Samples the human answered (label or unsure).
    mine: u64,
    /// Whether this node's key signed the dataset (its owner's console shows it).
    owned: bool,
    /// Labels wanted per sample (the owner's redundancy target).
    redundancy: u32,
}

/// Every dataset in the home (served or joined), with its progress.
pub(crate) async fn datasets(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Vec<DatasetView>>, ApiError> {
    s.check(&headers)?;
    let catalog = swarmlabel_store::Catalog::of(s.node.home());
    let listed = tokio::task::spawn_blocking(move || catalog.list())
        .await
        .map_err(|e| bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let me = s.me();
    let mut out = Vec::new();
    for l in listed {
        let book = book(&s, l.id).await?;
        let read = read(&s, l.id).await?;
        let counts = Counts::of(&read, me);
        out.push(DatasetView {
            id: l.id,
            name: book.name.clone(),
            description: book.description.clone(),
            instructions: book.instructions.clone(),
            kind: book.task.kind(),
            labels: book.labels.clone(),
            samples: book.order.len() as u64,
            samples_labelled: counts.samples_labelled,
            mine: counts.mine,
            owned: l.root.root().owner == me,
            redundancy: l.root.root().redundancy,
        });
    }
    Ok(Json(out))
}

async fn read(s: &AppState, id: DatasetId) -> Result<Annotations, ApiError> {
    s.labels.read(id).await.map_err(labels_error)
}

/// Counts of a dataset's annotations.
#[derive(Debug, Default)]
struct Counts {
    samples_labelled: u64,
    network_votes: u64,
    mine: u64,
    mine_since: u64,
}

impl Counts {
    fn of(read: &Annotations, me: AnnotatorKey) -> Counts {
        Counts::since(read, me, u64::MAX)
    }

    fn since(read: &Annotations, me: AnnotatorKey, since_ms: u64) -> Counts {
        let mut c = Counts::default();
        let mut labelled = HashSet::new();
        for a in read.annotations.iter().map(|a| a.annotation()) {
            if a.value.label().is_some() {
                c.network_votes += 1;
                labelled.insert(a.sample);
            }
            if a.annotator == me && a.value != Value::Skip {
                c.mine += 1;
                if a.time_ms >= since_ms {
                    c.mine_since += 1;
                }
            }
        }
        c.samples_labelled = labelled.len() as u64;
        c
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueueQuery {
    n: Option<usize>,
    /// Comma-separated sample ids the page already holds.
    exclude: Option<String>,
}

/// A pick as the page shows it: label names, not indices.
#[derive(Debug, Serialize)]
pub(crate) struct PickView {
    sample: SampleId,
    /// `image`, `text` or `row`.
    media: &'static str,
    strategy: String,
    score: Option<f64>,
    why: String,
    guesses: Vec<GuessView>,
    /// The human's current answer, when the sample comes back (a skipped one).
    mine: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct GuessView {
    label: String,
    probability: f64,
}

fn media_name(m: MediaType) -> &'static str {
    match m {
        MediaType::Png | MediaType::Jpeg => "image",
        MediaType::Text => "text",
        MediaType::Row => "row",
    }
}

/// The next samples of the human's queue.
pub(crate) async fn queue(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<QueueQuery>,
) -> Result<Json<Vec<PickView>>, ApiError> {
    s.check(&headers)?;
    let id = parse_id(&id)?;
    let n = q.n.unwrap_or(8);
    if n == 0 || n > MAX_PICKS {
        return Err(bad(
            StatusCode::BAD_REQUEST,
            format!("n={n} is not between 1 and {MAX_PICKS}; ask for fewer samples"),
        ));
    }
    let book = book(&s, id).await?;
    let mut exclude = HashSet::new();
    for text in q
        .exclude
        .iter()
        .flat_map(|e| e.split(','))
        .filter(|t| !t.is_empty())
    {
        if exclude.len() == MAX_EXCLUDE {
            return Err(bad(
                StatusCode::BAD_REQUEST,
                format!(
                    "exclude lists more than {MAX_EXCLUDE} samples; list only those the page holds"
                ),
            ));
        }
        exclude.insert(parse_sample(&book, id, text)?);
    }
    let read = read(&s, id).await?;
    let me = s.me();
    let view = View {
        dataset: id,
        samples: &book.order,
        annotations: &read,
        me,
    };
    let picks = s.queue.next(view, n, &exclude).await;
    let mine: HashMap<SampleId, Value> = read
        .annotations
        .iter()
        .map(|a| a.annotation())
        .filter(|a| a.annotator == me)
        .map(|a| (a.sample, a.value))
        .collect();
    let views = picks
        .into_iter()
        .filter_map(|p| {
            let media = *book.media.get(&p.sample)?;
            Some(PickView {
                sample: p.sample,
                media: media_name(media),
                strategy: p.strategy,
                score: p.score,
                why: p.why,
                guesses: p
                    .guesses
                    .iter()
                    .filter_map(|g| {
                        Some(GuessView {
                            label: book.labels.get(usize::from(g.label))?.clone(),
                            probability: g.probability,
                        })
                    })
                    .collect(),
                mine: mine.get(&p.sample).map(|v| value_text(*v, &book.labels)),
            })
        })
        .collect();
    Ok(Json(views))
}

/// A sample's content: image bytes, text, or a table row as JSON `{columns, values}`.
pub(crate) async fn sample(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((id, sample)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    s.check(&headers)?;
    let id = parse_id(&id)?;
    let book = book(&s, id).await?;
    let sample = parse_sample(&book, id, &sample)?;
    let media = book.media[&sample];
    let blobs = swarmlabel_store::Catalog::of(s.node.home()).blobs().clone();
    let bytes = tokio::task::spawn_blocking(move || blobs.get(&sample))
        .await
        .map_err(|e| bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| {
            bad(
                StatusCode::NOT_FOUND,
                format!("sample {sample} of dataset {id} is not stored on this node ({e}); wait for the dataset's fetch to finish"),
            )
        })?;
    let cache = (
        header::CACHE_CONTROL,
        "private, max-age=31536000, immutable",
    );
    Ok(match media {
        MediaType::Row => {
            let Task::TabularClassification { features } = &book.task else {
                return Err(bad(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("sample {sample} is a table row but dataset {id} is not a table"),
                ));
            };
            let values: Vec<f64> = bytes
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("invariant: chunks of 8")))
                .collect();
            (
                [cache],
                Json(serde_json::json!({ "columns": features, "values": values })),
            )
                .into_response()
        }
        other => ([cache, (header::CONTENT_TYPE, other.mime())], bytes).into_response(),
    })
}

/// The human's own answers in a dataset, newest first (the page's "previous").
pub(crate) async fn mine(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Vec<LabelView>>, ApiError> {
    s.check(&headers)?;
    let id = parse_id(&id)?;
    let book = book(&s, id).await?;
    let read = read(&s, id).await?;
    let me = s.me();
    let mut mine: Vec<LabelView> = read
        .annotations
        .iter()
        .map(|a| a.annotation())
        .filter(|a| a.annotator == me)
        .map(|a| LabelView {
            sample: a.sample,
            annotator: a.annotator,
            value: value_text(a.value, &book.labels),
            time_ms: a.time_ms,
        })
        .collect();
    mine.sort_by_key(|m| std::cmp::Reverse(m.time_ms));
    Ok(Json(mine))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProgressQuery {
    /// Count the human's answers since this time (the page sends its local midnight).
    since_ms: Option<u64>,
}

/// The progress figures of a dataset.
#[derive(Debug, Serialize)]
pub(crate) struct ProgressView {
    dataset: DatasetId,
    samples: u64,
    /// Samples with at least one label vote, from anyone.
    samples_labelled: u64,
    /// Label votes from everyone (the network's labels, as this node holds them).
    network_labels: u64,
    /// The human's answers (labels and unsure).
    my_labels: u64,
    /// The human's answers since `since_ms`.
    my_labels_since: u64,
    /// Krippendorff's alpha between annotators, when defined.
    agreement: Option<f64>,
    /// Why agreement is not given, when it is not.
    agreement_note: Option<String>,
    /// Share of the human's votes that match the consensus label, when there is one.
    my_agreement: Option<f64>,
    /// The model's accuracy over time; empty without a model.
    accuracy: Vec<AccuracyPoint>,
    /// Peers connected now. With none, labels are kept here and sync when one connects.
    peers_online: usize,
    /// The merged model this node holds, once there is one: nodes that agree hold the same.
    model: Option<ModelView>,
}

/// The merged model of a dataset, as the progress figures show it.
#[derive(Debug, Serialize)]
pub(crate) struct ModelView {
    /// BLAKE3 of its weights (hex in JSON): equal on every node that merged the same updates.
    hash: WeightsHash,
    /// How many peers' updates went in.
    peers: usize,
    /// The most labels any of them was trained on.
    labels_trained: u64,
}

impl ModelView {
    pub(crate) fn of(merged: &crate::models::MergedModel) -> Self {
        Self {
            hash: merged.hash,
            peers: merged.included.len(),
            labels_trained: merged.labels_trained,
        }
    }
}

pub(crate) async fn progress(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<ProgressQuery>,
) -> Result<Json<ProgressView>, ApiError> {
    s.check(&headers)?;
    let id = parse_id(&id)?;
    let book = book(&s, id).await?;
    let read = read(&s, id).await?;
    let me = s.me();
    let counts = Counts::since(&read, me, q.since_ms.unwrap_or(0));
    let accuracy = s.queue.accuracy(id).await;
    let peers_online = s.node.peers().await.map_or(0, |p| p.len());
    let model = s
        .joiner
        .datasets
        .models
        .merged(id)
        .await
        .ok()
        .flatten()
        .map(|m| ModelView::of(&m));
    let memos = s.consensus.clone();
    let agreement = tokio::task::spawn_blocking(move || agreement(&memos, id, &read, &book, me))
        .await
        .map_err(|e| bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(ProgressView {
        dataset: id,
        samples: agreement.samples,
        samples_labelled: counts.samples_labelled,
        network_labels: counts.network_votes,
        my_labels: counts.mine,
        my_labels_since: counts.mine_since,
        agreement: agreement.alpha,
        agreement_note: agreement.note,
        my_agreement: agreement.mine,
        accuracy,
        peers_online,
        model,
    }))
}

struct Agreement {
    samples: u64,
    alpha: Option<f64>,
    note: Option<String>,
    mine: Option<f64>,
}

/// The agreement figures of `read`, from the dataset's memo: the page polls every few seconds,
/// and the summary (Dawid–Skene included) runs again only when the labels changed.
fn agreement(
    memos: &std::sync::Mutex<std::collections::HashMap<DatasetId, consensus::Memo>>,
    id: DatasetId,
    read: &Annotations,
    book: &Book,
    me: AnnotatorKey,
) -> Agreement {
    let samples = book.order.len() as u64;
    let summary = memos
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(id)
        .or_default()
        .summarise(read, &book.labels, &book.gold, Method::Majority);
    match summary {
        Ok(summary) => {
            let alpha = summary.stats.agreement.krippendorff_alpha.clone();
            Agreement {
                samples,
                alpha: alpha.value,
                note: alpha.unavailable,
                mine: summary
                    .stats
                    .annotators
                    .iter()
                    .find(|a| a.annotator == me)
                    .and_then(|a| a.agrees_with_consensus),
            }
        }
        Err(e) => Agreement {
            samples,
            alpha: None,
            note: Some(e.to_string()),
            mine: None,
        },
    }
}
