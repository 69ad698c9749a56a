//! The aggregation part of the API: a dataset's label statistics, its consensus labels and its
//! raw signed annotations. The numbers come from [`swarmlabel_consensus`]; this file only reads the
//! label store and the manifest's gold labels.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use swarmlabel_crdt::{Annotations, SampleId};

use super::{ApiError, AppState, bad, book, labels_error, parse_id};
use swarmlabel_consensus::export::RawAnnotation;
use swarmlabel_consensus::{self as consensus, Method, SampleConsensus, Stats};
use swarmlabel_store::dataset::DatasetId;

/// The routes of this file, added to the API's router.
pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/api/v1/datasets/{id}/labels/stats", get(stats))
        .route("/api/v1/datasets/{id}/labels/consensus", get(consensus))
        .route("/api/v1/datasets/{id}/labels/raw", get(raw))
}

#[derive(Debug, Deserialize)]
pub(crate) struct MethodQuery {
    method: Option<String>,
}

impl MethodQuery {
    fn method(&self) -> Result<Method, ApiError> {
        self.method
            .as_deref()
            .map_or(Ok(Method::default()), str::parse)
            .map_err(|e: consensus::ParseMethodError| bad(StatusCode::BAD_REQUEST, e.to_string()))
    }
}

/// What the store holds for a dataset, with the manifest's label set and gold labels.
struct Snapshot {
    read: Annotations,
    labels: Vec<String>,
    gold: HashMap<SampleId, u16>,
}

/// The manifest's label set and gold labels of `id`, private ones included (blocking: reads the
/// manifest pages).
fn gold_labels(
    s: &AppState,
    id: DatasetId,
) -> Result<(Vec<String>, HashMap<SampleId, u16>), ApiError> {
    let catalog = swarmlabel_store::Catalog::of(s.node.home());
    let internal = |e: swarmlabel_store::dataset::CatalogError| {
        bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    };
    let listed = catalog.get(&id).map_err(internal)?;
    let root = listed.root.root();
    let gold = catalog
        .gold(&listed)
        .map_err(internal)?
        .into_iter()
        .collect();
    Ok((root.labels.clone(), gold))
}

/// Runs `f` on the dataset's snapshot off the async threads (the labels service reads, and
/// verifies every signature, on its own thread).
async fn with_snapshot<T: Send + 'static>(
    s: AppState,
    headers: &HeaderMap,
    id: &str,
    f: impl FnOnce(&AppState, DatasetId, Snapshot) -> Result<T, ApiError> + Send + 'static,
) -> Result<Json<T>, ApiError> {
    s.check(headers)?;
    let id = parse_id(id)?;
    book(&s, id).await?;
    let read = s.labels.read(id).await.map_err(labels_error)?;
    tokio::task::spawn_blocking(move || {
        let (labels, gold) = gold_labels(&s, id)?;
        f(&s, id, Snapshot { read, labels, gold })
    })
    .await
    .map_err(|e| bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map(Json)
}

/// The summary of `snapshot`, computed again only when its annotations, labels or gold changed
/// since the last request (see [`consensus::Memo`]).
fn summarise(
    s: &AppState,
    id: DatasetId,
    snapshot: &Snapshot,
    method: Method,
) -> Result<Arc<consensus::Summary>, ApiError> {
    let mut memos = s
        .consensus
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    memos
        .entry(id)
        .or_default()
        .summarise(&snapshot.read, &snapshot.labels, &snapshot.gold, method)
        .map_err(|e| bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

#[derive(Debug, Serialize)]
pub(crate) struct StatsView {
    dataset: DatasetId,
    #[serde(flatten)]
    stats: Stats,
}

async fn stats(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<MethodQuery>,
) -> Result<Json<StatsView>, ApiError> {
    let method = query.method()?;
    with_snapshot(s, &headers, &id, move |s, id, snapshot| {
        Ok(StatsView {
            dataset: id,
            stats: summarise(s, id, &snapshot, method)?.stats.clone(),
        })
    })
    .await
}

#[derive(Debug, Serialize)]
pub(crate) struct ConsensusView {
    dataset: DatasetId,
    method: Method,
    note: Option<String>,
    samples: Vec<SampleConsensus>,
}

async fn consensus(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<MethodQuery>,
) -> Result<Json<ConsensusView>, ApiError> {
    let method = query.method()?;
    with_snapshot(s, &headers, &id, move |s, id, snapshot| {
        let summary = summarise(s, id, &snapshot, method)?;
        Ok(ConsensusView {
            dataset: id,
            method: summary.stats.method,
            note: summary.stats.note.clone(),
            samples: summary.named(),
        })
    })
    .await
}

#[derive(Debug, Serialize)]
pub(crate) struct RawView {
    dataset: DatasetId,
    annotations: Vec<RawAnnotation>,
}

async fn raw(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<RawView>, ApiError> {
    with_snapshot(s, &headers, &id, move |_, id, snapshot| {
        Ok(RawView {
            dataset: id,
            annotations: snapshot
                .read
                .annotations
                .iter()
                .map(|a| RawAnnotation::new(a, &snapshot.labels))
                .collect(),
        })
    })
    .await
}
