//! The long-running node behind `swarmlabel run`: the network [`Node`], the datasets it serves and
//! joins, the loopback HTTP API the CLI and the labeling page talk to, and the labeling page.
//!
//! The API listens on 127.0.0.1 only. Every `/api` request needs the token of this run, written
//! with the API's address to `HOME/api.json` (mode 0600) and given to the page in its URL's
//! fragment, and a `Host` header naming the loopback address (no DNS rebinding); a request from
//! another web origin is refused. Every change also carries an `X-Request-Id` that is accepted
//! once. `/metrics`, `/healthz` and the page's static files need no token: they are read-only,
//! hold no secret and are loopback-only; `/metrics` and `/healthz` still check the `Host` header
//! (a rebinding page must not read dataset ids and activity through a visitor's browser). `docs/api.md` documents every request and error.
//!
//! [`Daemon::start`] starts a whole node (network, labels service, API) from a home and
//! [`Options`]; several can run in one process.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

mod body;
mod console;
pub mod datasets;
mod join;
mod labeling;
mod labels;
pub mod learning;
mod page;
pub mod policy;
pub mod queue;
mod replay;
mod start;
mod status;
mod token;

use swarmlabel_net::swarm::{self, Node, fetch};
use swarmlabel_store::dataset::DatasetId;
use swarmlabel_store::home::Home;
use swarmlabel_store::identity::Identity;

use datasets::Datasets;
pub use join::JoinState;
use join::{Joiner, spawn_join};
use start::{Services, listed, lock, serve_api};

/// Where a running daemon's API is, as written to `HOME/api.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiInfo {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// The bearer token every `/api` request needs.
    pub token: String,
    /// The daemon's process id.
    pub pid: u32,
    /// The labeling page's address, with the token in its fragment.
    #[serde(default)]
    pub page: String,
}

impl ApiInfo {
    /// The file in `home` that holds it.
    pub fn path(home: &Home) -> PathBuf {
        home.root().join("api.json")
    }

    /// Reads it from `home`, if a daemon wrote one.
    pub fn read(home: &Home) -> Option<ApiInfo> {
        let text = std::fs::read_to_string(Self::path(home)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// The port of the local API and the labeling page when the user names none: unassigned by
/// IANA and below Linux's ephemeral range, so neither common tools nor outgoing connections take
/// it. A fixed port gives the page a fixed address, and the browser keeps the page's storage
/// (its outbox of answers not yet sent) by address.
pub const DEFAULT_API_PORT: u16 = 7734;

/// The default API address: loopback, [`DEFAULT_API_PORT`].
pub fn default_api() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], DEFAULT_API_PORT))
}

fn last_api_path(home: &Home) -> PathBuf {
    home.root().join("api-addr")
}

/// The address the API of this home's node listened on last (kept across runs, unlike
/// `api.json`): a node started again without `--api` tries it first, so its page keeps its
/// address even when it had to move off [`DEFAULT_API_PORT`].
pub fn last_api(home: &Home) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(last_api_path(home)).ok()?;
    text.trim()
        .parse::<SocketAddr>()
        .ok()
        .filter(|a| a.ip().is_loopback() && a.port() != 0)
}

/// Binds the API at `addr`, or with `fallback` at a free port of its address when `addr` is
/// taken; returns the listener and, if it moved, `addr`.
async fn bind_api(
    addr: SocketAddr,
    fallback: bool,
) -> Result<(tokio::net::TcpListener, Option<SocketAddr>), DaemonError> {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => Ok((listener, None)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && fallback && addr.port() != 0 => {
            let any = SocketAddr::new(addr.ip(), 0);
            let listener = tokio::net::TcpListener::bind(any)
                .await
                .map_err(|source| DaemonError::Api { addr: any, source })?;
            Ok((listener, Some(addr)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(DaemonError::ApiInUse(addr)),
        Err(source) => Err(DaemonError::Api { addr, source }),
    }
}

/// Settings of a daemon.
#[derive(Debug, Clone)]
pub struct Options {
    /// The network.
    pub net: swarm::Config,
    /// Serve these listed datasets (all listed datasets are served anyway).
    pub serve: Vec<DatasetId>,
    /// Fetch and then serve these datasets.
    pub join: Vec<DatasetId>,
    /// Where the API listens (a loopback address; port 0 picks one).
    pub api: SocketAddr,
    /// When `api` is taken, listen on a free port of the same address instead (and say so in
    /// [`Daemon::api_moved_from`]) rather than fail: for the default address, not one the user
    /// asked for.
    pub api_fallback: bool,
    /// The labels service: sync and gossip of labels.
    pub labels: crate::labels::Config,
    /// Where the human's queue comes from; `None`: the learning loops ([`learning::Learners`])
    /// when `learn` is set, else [`queue::Fallback`], which needs no model.
    pub queue: Option<Arc<dyn queue::Source>>,
    /// The models service: gossip of model updates and the merged model.
    pub models: crate::models::Config,
    /// The learning loop of each dataset; `None`: no loop (no training, no model published).
    pub learn: Option<crate::learn::Config>,
}

impl Options {
    /// Options with the defaults of `swarmlabel run` for everything but the network.
    pub fn new(net: swarm::Config) -> Self {
        Self {
            net,
            serve: Vec::new(),
            join: Vec::new(),
            api: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_fallback: false,
            labels: crate::labels::Config::default(),
            queue: None,
            models: crate::models::Config::default(),
            learn: Some(crate::learn::Config::default()),
        }
    }
}

/// Why a daemon could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The network failed to start.
    #[error(transparent)]
    Net(#[from] swarm::NetError),
    /// The API address is not loopback.
    #[error("the API address {0} is not a loopback address; use 127.0.0.1:PORT")]
    NotLoopback(SocketAddr),
    /// The API's address is taken and no other was allowed.
    #[error(
        "{0} is taken (another swarmlabel node, or another program); stop it or give --api 127.0.0.1:PORT"
    )]
    ApiInUse(SocketAddr),
    /// The API could not listen or its file could not be written.
    #[error("cannot start the API on {addr}: {source}")]
    Api {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Listing or reading the datasets failed.
    #[error(transparent)]
    Catalog(#[from] swarmlabel_store::dataset::CatalogError),
    /// The home could not be locked, or its key read.
    #[error(transparent)]
    Home(#[from] swarmlabel_store::home::HomeError),
    /// The policy service failed to start.
    #[error("the policy service did not start: {0}")]
    Policies(#[from] crate::policy::PolicyError),
    /// The model service failed to start.
    #[error("the model service did not start: {0}")]
    Models(#[from] crate::models::ModelsError),
    /// The label service failed to start.
    #[error("the label service did not start: {0}")]
    Labels(#[from] crate::labels::LabelsError),
    /// A listed dataset could not be opened (labels, policy, models).
    #[error("cannot open dataset {dataset}: {source}")]
    Open {
        /// The dataset.
        dataset: DatasetId,
        /// Why.
        source: datasets::OpenError,
    },
    /// A start-up task on the blocking pool failed (it panicked or was cancelled).
    #[error("a start-up task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

#[derive(Clone)]
struct AppState {
    node: Node,
    // Signs labels.
    identity: Arc<Identity>,
    gate: Arc<token::Gate>,
    replays: Arc<Mutex<replay::Replays>>,
    joins: Arc<Mutex<BTreeMap<DatasetId, JoinState>>>,
    books: labels::Books,
    labels: crate::labels::Labels,
    policies: crate::policy::Policies,
    joiner: Joiner,
    queue: Arc<dyn queue::Source>,
    /// The last consensus of each dataset, by method (Dawid–Skene runs again only on change).
    consensus: Arc<Mutex<HashMap<DatasetId, swarmlabel_consensus::Memo>>>,
    /// Held while a policy change reads, edits and signs the policy in force: two changes at
    /// once would both build on the same version, and one would silently replace the other.
    policy_edits: Arc<tokio::sync::Mutex<()>>,
}

/// A running daemon.
#[derive(Debug)]
pub struct Daemon {
    node: Node,
    api: SocketAddr,
    api_moved_from: Option<SocketAddr>,
    info: ApiInfo,
    stop_api: Option<oneshot::Sender<()>>,
    api_file: PathBuf,
    models: crate::models::Models,
    policies: crate::policy::Policies,
    learners: Option<learning::Learners>,
    /// The home's lock, shared for as long as the node runs: `gc` (which takes it alone) cannot
    /// delete the blobs of a join in progress or the weights of a model meanwhile.
    _lock: (
        swarmlabel_store::home::HomeLock,
        swarmlabel_store::home::HomeLock,
    ),
}

impl Daemon {
    /// Starts the node, serves every listed dataset and `options.serve`, starts joining
    /// `options.join`, and starts the API.
    pub async fn start(home: Home, options: Options) -> Result<Daemon, DaemonError> {
        if !options.api.ip().is_loopback() {
            return Err(DaemonError::NotLoopback(options.api));
        }
        let lock = lock(&home).await?;
        let listed = listed(&home, &options.serve).await?;
        let node = Node::start(home.clone(), options.net.clone()).await?;
        for l in &listed {
            node.serve(l.id).await?;
        }
        let services = Services::start(&home, &node, &options).await?;
        let identity = home.identity()?;
        let learners = options.learn.clone().map(|config| {
            node.with_registry(|r| config.vitals.register(r));
            learning::Learners::new(
                services.models.clone(),
                services.labels.clone(),
                swarmlabel_store::Catalog::of(&home),
                identity.public_key(),
                config,
            )
        });
        let datasets = Datasets {
            labels: services.labels.clone(),
            policies: services.policies.clone(),
            models: services.models.clone(),
            learners: learners.clone(),
            opened: Arc::default(),
        };
        // Every listed dataset is open from the start, so peers sync it with us whether or not
        // anyone labels here.
        for l in &listed {
            datasets
                .open(&home, l.id)
                .await
                .map_err(|source| DaemonError::Open {
                    dataset: l.id,
                    source,
                })?;
        }
        let joins = Arc::new(Mutex::new(BTreeMap::new()));
        let joiner = Joiner {
            node: node.clone(),
            joins: joins.clone(),
            datasets,
        };
        for id in &options.join {
            spawn_join(joiner.clone(), *id);
        }
        let queue = match (&options.queue, &learners) {
            (Some(queue), _) => queue.clone(),
            (None, Some(learners)) => Arc::new(learners.clone()),
            (None, None) => Arc::new(queue::Fallback::default()),
        };
        let state = |gate: token::Gate| AppState {
            node: node.clone(),
            identity: Arc::new(identity),
            gate: Arc::new(gate),
            replays: Arc::new(Mutex::new(replay::Replays::default())),
            joins,
            books: labels::Books::default(),
            labels: services.labels.clone(),
            policies: services.policies.clone(),
            joiner: joiner.clone(),
            consensus: Arc::default(),
            policy_edits: Arc::default(),
            queue,
        };
        let served = serve_api(&home, options.api, options.api_fallback, state).await?;
        Ok(Daemon {
            node,
            api: served.addr,
            api_moved_from: served.moved_from,
            info: served.info,
            stop_api: Some(served.stop),
            api_file: ApiInfo::path(&home),
            models: services.models,
            policies: services.policies,
            learners,
            _lock: lock,
        })
    }

    /// The network node.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Where the API listens.
    pub fn api_addr(&self) -> SocketAddr {
        self.api
    }

    /// The address the API was asked to listen on when it was taken, so the API (and the page)
    /// listen on another port for this run.
    pub fn api_moved_from(&self) -> Option<SocketAddr> {
        self.api_moved_from
    }

    /// The API's address, token and page URL, as written to `api.json`.
    pub fn api_info(&self) -> &ApiInfo {
        &self.info
    }

    /// The models service (model updates of every dataset, the merged models).
    pub fn models(&self) -> &crate::models::Models {
        &self.models
    }

    /// The learning loop of `dataset`, once it runs.
    pub fn learner(&self, dataset: DatasetId) -> Option<crate::learn::Learner> {
        self.learners.as_ref()?.get(dataset)
    }

    /// Stops the API, the learning loops and the node, and removes `api.json`.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop_api.take() {
            let _ = stop.send(());
        }
        {
            if let Some(learners) = &self.learners {
                learners.shutdown().await;
            }
            self.models.shutdown().await;
            self.policies.shutdown().await;
        }
        let _ = std::fs::remove_file(&self.api_file);
        self.node.shutdown().await;
    }
}

fn router(state: AppState) -> Router {
    let router = Router::new()
        .route(
            "/api/v1/datasets/{id}/labels",
            post(labels::record).get(labels::list),
        )
        .route("/api/v1/datasets", get(labeling::datasets))
        .route("/api/v1/datasets/{id}/queue", get(labeling::queue))
        .route(
            "/api/v1/datasets/{id}/samples/{sample}",
            get(labeling::sample),
        )
        .route("/api/v1/datasets/{id}/mine", get(labeling::mine))
        .route("/api/v1/datasets/{id}/progress", get(labeling::progress))
        .route("/api/v1/datasets/{id}/undo", post(labels::undo));
    let router = labels::consensus::routes(router);
    let router = policy::routes(router);
    let router = console::routes(router);
    page::routes(router)
        .route("/api/v1/status", get(status::status))
        .route("/api/v1/peers", get(status::peers))
        .route("/api/v1/datasets/known", get(status::known))
        .route("/api/v1/join", post(join))
        .route("/api/v1/fetch", post(fetch_now))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!(
            "there is no {} here; docs/api.md lists the requests",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} does not take {method}; docs/api.md lists the requests",
            uri.path()
        ),
    )
}

/// An API error: a status and one sentence.
#[derive(Debug)]
pub(crate) struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl AppState {
    /// Checks the Host and Origin headers and the token.
    fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let get = |name: &str| headers.get(name).and_then(|h| h.to_str().ok());
        self.gate.check_origin(get("host"), get("origin"))?;
        self.gate.check_token(get("authorization"))
    }

    /// Runs the change `apply` if the request passes [`AppState::check`] and its `X-Request-Id`
    /// was not seen in this run. A refused change can be sent again with the same id.
    async fn change<T>(
        &self,
        headers: &HeaderMap,
        apply: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        self.check(headers)?;
        let id = headers.get("x-request-id").and_then(|h| h.to_str().ok());
        self.replays
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .admit(id)?;
        let result = apply.await;
        if result.is_err() {
            self.replays
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .forget(id);
        }
        result
    }

    /// The human's key: the node's identity signs their labels.
    fn me(&self) -> swarmlabel_crdt::AnnotatorKey {
        self.identity.public_key()
    }
}

fn net_error(e: swarm::NetError) -> ApiError {
    ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DatasetBody {
    dataset: String,
}

fn parse_dataset(body: &DatasetBody) -> Result<DatasetId, ApiError> {
    body.dataset.parse().map_err(|_| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("'{}' is not a dataset id (64 hex characters)", body.dataset),
        )
    })
}

async fn join(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    s.change(&headers, async {
        let id = parse_dataset(&body::parse_json(&body)?)?;
        spawn_join(s.joiner.clone(), id);
        Ok((
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "dataset": id.to_string(), "state": "fetching" })),
        ))
    })
    .await
}

async fn fetch_now(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<fetch::Report>, ApiError> {
    s.change(&headers, async {
        let id = parse_dataset(&body::parse_json(&body)?)?;
        let report = s
            .node
            .fetch(id, fetch::Options::default())
            .await
            .map_err(|e| ApiError(StatusCode::BAD_GATEWAY, e.to_string()))?;
        s.node.serve(id).await.map_err(net_error)?;
        Ok(Json(report))
    })
    .await
}

/// The Host check of the token-free routes: a web page that rebinds its own name to 127.0.0.1
/// must not read the node's metrics (dataset ids, activity) through the visitor's browser.
fn loopback_host(s: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let host = headers.get("host").and_then(|h| h.to_str().ok());
    s.gate.check_origin(host, None)
}

async fn metrics(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    loopback_host(&s, &headers)?;
    Ok((
        [("content-type", swarmlabel_net::swarm::metrics::CONTENT_TYPE)],
        s.node.encode_metrics(),
    ))
}

/// `GET /healthz`: `ok` while the node's actor answers (a load balancer's or systemd watchdog's
/// liveness check); 503 with the reason once it does not.
async fn healthz(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    loopback_host(&s, &headers)?;
    let text = [("content-type", "text/plain; charset=utf-8")];
    Ok(match s.node.listen_addrs().await {
        Ok(_) => (StatusCode::OK, text, "ok\n".to_owned()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, text, format!("{e}\n")),
    })
}
