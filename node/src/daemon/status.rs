//! What the node is doing, for `swarmlabel status`, `peers` and `dataset search`: its network
//! status with joins, merged models and the rollout guard's refusals; its peers; the datasets it
//! heard of.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;
use swarmlabel_net::swarm;

use super::{ApiError, AppState, body, labeling, net_error};

pub(super) async fn status(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    s.check(&headers)?;
    let status = s.node.status().await.map_err(net_error)?;
    let joins = s
        .joins
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let mut models = BTreeMap::new();
    for &dataset in &status.serving {
        if let Ok(Some(merged)) = s.joiner.datasets.models.merged(dataset).await {
            models.insert(dataset, labeling::ModelView::of(&merged));
        }
    }
    // What the rollout guard keeps out of each dataset's ranking, where it does.
    let mut guard = BTreeMap::new();
    for &dataset in &status.serving {
        if let Some(learners) = &s.joiner.datasets.learners
            && let Some(refusal) = learners.get(dataset).and_then(|l| l.progress().guard)
        {
            guard.insert(dataset, refusal);
        }
    }
    let mut value = serde_json::to_value(status).expect("invariant: Status serialises");
    value["guard"] = serde_json::to_value(guard).expect("invariant: Refusal serialises");
    value["joins"] = serde_json::to_value(joins).expect("invariant: JoinState serialises");
    // The merged model of each dataset served, once there is one.
    value["models"] = serde_json::to_value(models).expect("invariant: ModelView serialises");
    Ok(Json(value))
}

pub(super) async fn peers(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Vec<swarm::PeerInfo>>, ApiError> {
    s.check(&headers)?;
    Ok(Json(s.node.peers().await.map_err(net_error)?))
}

#[derive(Debug, Deserialize)]
pub(super) struct Search {
    q: Option<String>,
}

pub(super) async fn known(
    State(s): State<AppState>,
    headers: HeaderMap,
    body::QueryParams(search): body::QueryParams<Search>,
) -> Result<Json<Vec<swarm::KnownDataset>>, ApiError> {
    s.check(&headers)?;
    let mut known = s.node.known_datasets().await.map_err(net_error)?;
    if let Some(q) = search.q.map(|q| q.to_lowercase()).filter(|q| !q.is_empty()) {
        known.retain(|k| {
            k.name.to_lowercase().contains(&q)
                || k.description.to_lowercase().contains(&q)
                || k.labels.iter().any(|l| l.to_lowercase().contains(&q))
                || k.id.to_hex().starts_with(&q)
        });
    }
    Ok(Json(known))
}
