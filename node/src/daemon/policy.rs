//! The owner's policy in the API: `GET /api/v1/datasets/{id}/policy` shows the policy in force,
//! `POST` the same path changes it (ban, unban, admit, unadmit, open), signed with this node's
//! key, which must be the dataset's owner. What `swarmlabel dataset ban|admit|policy` calls.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use swarmlabel_crdt::AnnotatorKey;
use swarmlabel_crdt::policy::{Admission, Policy};

use super::body::parse_json;
use super::labels::{bad, now_ms, parse_id};
use super::{ApiError, AppState};
use crate::policy::{Change, PolicyError, edit};

/// The policy as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PolicyView {
    /// The owner's version (0: the owner never signed one; open).
    pub version: u64,
    /// `open` or `allowlist`.
    pub admission: String,
    /// Admitted keys (hex), for an allowlist.
    pub allowed: Vec<String>,
    /// Banned keys with reasons.
    pub banned: Vec<BanView>,
}

/// One ban.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BanView {
    /// The key (hex in JSON).
    pub key: AnnotatorKey,
    /// The owner's reason.
    pub reason: String,
}

impl PolicyView {
    fn of(policy: Option<&Policy>) -> Self {
        let Some(p) = policy else {
            return PolicyView {
                version: 0,
                admission: "open".into(),
                allowed: Vec::new(),
                banned: Vec::new(),
            };
        };
        let (admission, allowed) = match &p.admission {
            Admission::Open => ("open", Vec::new()),
            Admission::Allowlist(keys) => {
                ("allowlist", keys.iter().map(|k| hex::encode(k.0)).collect())
            }
        };
        PolicyView {
            version: p.version,
            admission: admission.into(),
            allowed,
            banned: p
                .banned
                .iter()
                .map(|(k, reason)| BanView {
                    key: *k,
                    reason: reason.clone(),
                })
                .collect(),
        }
    }
}

/// A change, as posted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeBody {
    /// `ban`, `unban`, `admit`, `unadmit` or `open`.
    change: String,
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    reason: String,
}

fn keys(hexes: &[String]) -> Result<Vec<AnnotatorKey>, ApiError> {
    hexes
        .iter()
        .map(|h| {
            hex::decode(h)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .map(AnnotatorKey)
                .ok_or_else(|| {
                    bad(
                        StatusCode::BAD_REQUEST,
                        format!("{h:?} is not an annotator key; give 64 hex digits, as `labels --json` shows them"),
                    )
                })
        })
        .collect()
}

fn policy_error(e: PolicyError) -> ApiError {
    let status = match e {
        PolicyError::NotOwner => StatusCode::FORBIDDEN,
        PolicyError::NotOpen(_) => StatusCode::NOT_FOUND,
        PolicyError::NotNewer => StatusCode::CONFLICT,
        PolicyError::Invalid(_) | PolicyError::SelfBan => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    bad(status, e.to_string())
}

async fn show(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<PolicyView>, ApiError> {
    s.check(&headers)?;
    let id = parse_id(&id)?;
    let signed = s.policies.get(id).await.map_err(policy_error)?;
    Ok(Json(PolicyView::of(signed.as_ref().map(|p| p.policy()))))
}

async fn change(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<PolicyView>, ApiError> {
    s.change(&headers, async {
        let id = parse_id(&id)?;
        let body: ChangeBody = parse_json(&body)?;
        // The catalog reads files: off the runtime's threads.
        let catalog = swarmlabel_store::Catalog::of(s.node.home());
        let listed = tokio::task::spawn_blocking(move || catalog.get(&id))
            .await
            .map_err(|e| bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(|_| {
                bad(
                    StatusCode::NOT_FOUND,
                    format!("dataset {id} is not in this node's home"),
                )
            })?;
        if listed.root.root().owner != s.identity.public_key() {
            return Err(policy_error(PolicyError::NotOwner));
        }
        let keys = keys(&body.keys)?;
        let change = match body.change.as_str() {
            "ban" => Change::Ban(keys, body.reason),
            "unban" => Change::Unban(keys),
            "admit" => Change::Admit(keys),
            "unadmit" => Change::Unadmit(keys),
            "open" => Change::Open,
            other => {
                return Err(bad(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "{other:?} is not a policy change; give ban, unban, admit, unadmit or open"
                    ),
                ));
            }
        };
        // One change at a time, from reading the policy in force to setting the next.
        let _edit = s.policy_edits.lock().await;
        let current = s.policies.get(id).await.map_err(policy_error)?;
        let signed = edit(
            id,
            current.as_ref().map(|p| p.policy()),
            change,
            &s.identity,
            now_ms(),
        )
        .map_err(policy_error)?;
        let view = PolicyView::of(Some(signed.policy()));
        s.policies.set(signed).await.map_err(policy_error)?;
        Ok(Json(view))
    })
    .await
}

/// Adds the policy routes.
pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router.route("/api/v1/datasets/{id}/policy", get(show).post(change))
}
