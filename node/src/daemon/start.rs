//! The steps of [`Daemon::start`](super::Daemon::start): the home's locks, the datasets to
//! serve, the replicated services, and the API.

use std::net::SocketAddr;

use swarmlabel_net::swarm::Node;
use swarmlabel_store::dataset::{DatasetId, Listed};
use swarmlabel_store::home::{Home, HomeLock};
use tokio::sync::oneshot;

use super::{ApiInfo, AppState, DaemonError, Options, bind_api, last_api_path, router, token};

/// The home's locks for one run: the run lock (one `run` per home) and the shared lock (`gc`
/// waits for it).
pub(super) async fn lock(home: &Home) -> Result<(HomeLock, HomeLock), DaemonError> {
    let home = home.clone();
    let locked = tokio::task::spawn_blocking(move || {
        let run = home.try_lock_run()?;
        home.lock_shared().map(|shared| (run, shared))
    })
    .await??;
    Ok(locked)
}

/// The datasets of the home (a damaged listing is logged and left out: the others are served,
/// and fetching it again replaces it); every id of `serve` must be among them.
pub(super) async fn listed(home: &Home, serve: &[DatasetId]) -> Result<Vec<Listed>, DaemonError> {
    let catalog = swarmlabel_store::Catalog::of(home);
    let (listed, damaged) = tokio::task::spawn_blocking(move || catalog.list_checked()).await??;
    for e in &damaged {
        tracing::warn!("{e}");
    }
    for id in serve {
        if !listed.iter().any(|l| l.id == *id) {
            return Err(swarmlabel_store::dataset::CatalogError::NotFound(id.to_string()).into());
        }
    }
    Ok(listed)
}

/// The replicated services of a node: policies, models and labels (the datasets open in them
/// through [`super::datasets::Datasets`]).
pub(super) struct Services {
    pub(super) policies: crate::policy::Policies,
    pub(super) models: crate::models::Models,
    pub(super) labels: crate::labels::Labels,
}

impl Services {
    pub(super) async fn start(
        home: &Home,
        node: &Node,
        options: &Options,
    ) -> Result<Self, DaemonError> {
        let policies = crate::policy::Policies::start(
            home.clone(),
            Some(node.clone()),
            options.labels.anti_entropy.clone(),
        )
        .await?;
        let models =
            crate::models::Models::start(home.clone(), Some(node.clone()), options.models.clone())
                .await?;
        let labels =
            crate::labels::Labels::start(home.clone(), Some(node.clone()), options.labels.clone())
                .await?;
        Ok(Self {
            policies,
            models,
            labels,
        })
    }
}

/// The API as it runs.
pub(super) struct ServedApi {
    pub(super) addr: SocketAddr,
    pub(super) moved_from: Option<SocketAddr>,
    pub(super) info: ApiInfo,
    pub(super) stop: oneshot::Sender<()>,
}

/// Binds the API (at `addr`, or elsewhere when `fallback` allows and it is taken), makes this
/// run's token, serves the router over `state`, and writes `api.json` and the address for the
/// next start.
pub(super) async fn serve_api(
    home: &Home,
    addr: SocketAddr,
    fallback: bool,
    state: impl FnOnce(token::Gate) -> AppState,
) -> Result<ServedApi, DaemonError> {
    let (listener, moved_from) = bind_api(addr, fallback).await?;
    let api = listener
        .local_addr()
        .map_err(|source| DaemonError::Api { addr, source })?;
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| DaemonError::Api {
        addr: api,
        source: std::io::Error::other(e.to_string()),
    })?;
    let run_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let gate = token::Gate::new(run_ms, &secret, api.port());
    let token = gate.token().to_owned();
    let app = router(state(gate));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    let info = ApiInfo {
        url: format!("http://{api}"),
        page: format!("http://{api}/#token={token}"),
        token,
        pid: std::process::id(),
    };
    let json = serde_json::to_vec_pretty(&info).expect("invariant: ApiInfo serialises");
    swarmlabel_store::fs::write_atomic(&ApiInfo::path(home), &json)
        .map_err(|source| DaemonError::Api { addr: api, source })?;
    // Remembered for the next start: the page keeps its address, so what the browser holds
    // for it (the outbox of answers not yet sent, remapped keys) is found again.
    swarmlabel_store::fs::write_atomic(&last_api_path(home), api.to_string().as_bytes())
        .map_err(|source| DaemonError::Api { addr: api, source })?;
    Ok(ServedApi {
        addr: api,
        moved_from,
        info,
        stop,
    })
}
