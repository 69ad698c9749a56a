//! Fetching a dataset from its providers, trusting none of them.
//!
//! 1. Find providers on the DHT (and from gossip announcements), and reach each of them
//!    directly at once ([`reach`]); a provider no direct path reaches (NATs that hole punching
//!    does not get through) is fetched from over its relay, within the relay's budget.
//! 2. Get the signed root from the first one reached; it must hash to the dataset id and carry a
//!    valid signature.
//! 3. Get the manifest pages, then the samples (all, or a chosen subset), in parallel from every
//!    provider at once, as the [`Scheduler`] assigns them. Each blob is hashed before it is
//!    stored; a provider that sends bytes that do not match is banned and the blob asked of
//!    another. Blobs already in the store are not fetched again, so a fetch resumes where a
//!    crashed or stopped one left off.
//! 4. Make everything durable with one sync, then list the dataset.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use libp2p::PeerId;

mod reach;

use reach::Reach;

use super::blob::{Request, Response};
use super::schedule::Scheduler;
use super::{NetError, Node};
use swarmlabel_store::dataset::manifest::{Page, SignedRoot};
use swarmlabel_store::dataset::{CatalogError, DatasetId};
use swarmlabel_store::store::{BlobId, BlobStore, StoreError};

/// How to fetch.
#[derive(Debug, Clone)]
pub struct Options {
    /// Fetch only these samples (`None`: all of them).
    pub subset: Option<HashSet<BlobId>>,
    /// How many times to look for providers again when no known provider can deliver what is
    /// missing, before giving up.
    pub provider_rounds: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            subset: None,
            provider_rounds: 5,
        }
    }
}

/// What a fetch did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// The dataset.
    pub dataset: DatasetId,
    /// Samples wanted (all, or the subset).
    pub samples_wanted: u64,
    /// Blobs (pages and samples) downloaded and verified.
    pub fetched: u64,
    /// Blobs that were already stored and verified, so not downloaded again.
    pub already_stored: u64,
    /// Bytes downloaded and verified.
    pub bytes: u64,
    /// Blobs received with a wrong hash (and fetched again from another provider).
    pub rejected: u64,
    /// Providers banned for sending corrupt data.
    pub banned: Vec<PeerId>,
    /// Providers that delivered at least one blob or the root.
    pub providers: Vec<PeerId>,
    /// Providers no direct connection could be made to (behind a NAT hole punching did not
    /// get through), with why; they were asked over their relay instead.
    pub unreachable: Vec<String>,
    /// Providers that delivered over a relay (no direct path to them).
    pub relayed: Vec<PeerId>,
    /// The peers of `unreachable`.
    #[serde(skip)]
    unreachable_peers: HashSet<PeerId>,
}

impl Report {
    /// An empty report of fetching `dataset`.
    fn new(dataset: DatasetId) -> Report {
        Report {
            dataset,
            samples_wanted: 0,
            fetched: 0,
            already_stored: 0,
            bytes: 0,
            rejected: 0,
            banned: Vec::new(),
            providers: Vec::new(),
            unreachable: Vec::new(),
            relayed: Vec::new(),
            unreachable_peers: HashSet::new(),
        }
    }

    /// Notes that no direct connection to `peer` could be made, once per peer.
    /// (The node logged it when it gave up.)
    fn add_unreachable(&mut self, peer: PeerId, why: String) {
        if self.unreachable_peers.insert(peer) {
            let why = if why.contains(&peer.to_string()) {
                why
            } else {
                format!("peer {peer}: {why}")
            };
            self.unreachable.push(why);
        }
    }
}

/// Why a fetch failed. What was fetched and verified stays stored; fetching again resumes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// Nobody provides the dataset.
    #[error(
        "no provider of dataset {0} was found; check the id, and that a node serving it is running and reachable"
    )]
    NoProviders(DatasetId),
    /// No provider sent a root that hashes to the id and is validly signed.
    #[error("no provider sent a valid manifest for dataset {0}")]
    NoValidRoot(DatasetId),
    /// Some blobs could not be fetched from any provider.
    #[error(
        "{missing} blobs of dataset {dataset} could not be fetched from any provider; fetch again later to resume"
    )]
    Incomplete {
        /// The dataset.
        dataset: DatasetId,
        /// Blobs still missing.
        missing: usize,
    },
    /// A received page is damaged although it hashed right (the owner signed a bad manifest).
    #[error("manifest page {index} of dataset {dataset} is invalid: {reason}")]
    BadPage {
        /// The dataset.
        dataset: DatasetId,
        /// The page.
        index: usize,
        /// Why.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Listing failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The network failed.
    #[error(transparent)]
    Net(#[from] NetError),
}

impl FetchError {
    /// Whether trying again cannot help: the owner signed a manifest whose page is invalid.
    /// Everything else (no provider yet, providers that went away, a full disk, a damaged local
    /// file that a new fetch replaces) may pass.
    pub fn is_permanent(&self) -> bool {
        matches!(self, FetchError::BadPage { .. })
    }
}

enum Outcome {
    Stored(u64),
    Corrupt,
    NotFound,
    Failed,
    StoreFailed(StoreError),
}

/// Fetches `dataset` through `node` into its home.
pub async fn fetch(
    node: &Node,
    dataset: DatasetId,
    options: Options,
) -> Result<Report, FetchError> {
    let store = node.home().blobs();
    let catalog = swarmlabel_store::Catalog::of(node.home());
    let mut report = Report::new(dataset);
    let mut delivered: HashSet<PeerId> = HashSet::new();
    let mut sched = Scheduler::new(node.max_in_flight_per_provider());
    let mut reach = Reach::new(node);

    let root = match listed_root(&catalog, dataset)? {
        Some(root) => root,
        None => {
            let providers = look_for_providers(node, dataset, options.provider_rounds).await?;
            if providers.is_empty() {
                return Err(FetchError::NoProviders(dataset));
            }
            reach.add(providers);
            let (root, from) =
                fetch_root(node, dataset, &mut reach, &mut sched, &mut report).await?;
            delivered.insert(from);
            root
        }
    };
    if delivered.is_empty() {
        reach.add(node.find_providers(dataset).await?);
    }

    // Pages, then samples.
    // Each with its exact size from the root or the pages: no provider's answer is read past it.
    let page_blobs: Vec<(BlobId, u64)> = root
        .root()
        .pages
        .iter()
        .map(|p| (p.id, p.encoded_len()))
        .collect();
    sched.want_sized(unstored(&store, page_blobs, &mut report).await?);
    run(
        node,
        dataset,
        &mut sched,
        &mut reach,
        &mut report,
        &mut delivered,
        options.provider_rounds,
    )
    .await?;
    let pages = load_pages(&store, &root, dataset).await?;
    let wanted: Vec<(BlobId, u64)> = pages
        .iter()
        .flat_map(|p| p.samples.iter().map(|s| (s.id, s.size)))
        .filter(|(id, _)| {
            options
                .subset
                .as_ref()
                .is_none_or(|subset| subset.contains(id))
        })
        .collect();
    report.samples_wanted = wanted.len() as u64;
    sched.want_sized(unstored(&store, wanted, &mut report).await?);
    run(
        node,
        dataset,
        &mut sched,
        &mut reach,
        &mut report,
        &mut delivered,
        options.provider_rounds,
    )
    .await?;

    list(store, catalog, root).await?;
    report.set_providers(&delivered);
    Ok(report)
}

/// The root of `dataset` if this home lists it; a damaged listing is set aside and fetched again,
/// like one never listed.
fn listed_root(
    catalog: &swarmlabel_store::Catalog,
    dataset: DatasetId,
) -> Result<Option<SignedRoot>, FetchError> {
    match catalog.get(&dataset) {
        Ok(listed) => Ok(Some(listed.root)),
        Err(CatalogError::NotFound(_)) => Ok(None),
        Err(CatalogError::BadRoot { .. }) => {
            let aside = catalog.set_aside(&dataset)?;
            tracing::warn!(%dataset, aside = %aside.display(), "the listing was damaged; fetching it again");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Makes every fetched blob durable, then lists the dataset (a listed dataset is whole).
async fn list(
    store: BlobStore,
    catalog: swarmlabel_store::Catalog,
    root: SignedRoot,
) -> Result<(), FetchError> {
    tokio::task::spawn_blocking(move || -> Result<(), FetchError> {
        store.sync()?;
        catalog.add(&root)?;
        Ok(())
    })
    .await
    .map_err(|e| NetError::Build(e.to_string()))?
}

impl Report {
    /// Records the providers that delivered, sorted, and which of them came through a relay.
    fn set_providers(&mut self, delivered: &HashSet<PeerId>) {
        let mut providers: Vec<PeerId> = delivered.iter().copied().collect();
        providers.sort_by_cached_key(ToString::to_string);
        self.relayed = providers
            .iter()
            .filter(|p| self.unreachable_peers.contains(p))
            .copied()
            .collect();
        self.providers = providers;
    }
}

/// Gets the signed root from the providers as they are reached directly; each one reached joins
/// the scheduler, each one given up on is reported.
async fn fetch_root(
    node: &Node,
    dataset: DatasetId,
    reach: &mut Reach,
    sched: &mut Scheduler,
    report: &mut Report,
) -> Result<(SignedRoot, PeerId), FetchError> {
    while let Some((peer, reached)) = reach.next().await {
        if let Err(why) = reached {
            // Asked over its relay instead (a peer with no relayed path fails the request).
            report.add_unreachable(peer, why);
        }
        sched.add_provider(peer);
        if let Ok(Response::Found(bytes)) = node.request(peer, Request::Root(dataset.blob())).await
        {
            match SignedRoot::decode(&bytes) {
                Ok(root) if root.id() == dataset => return Ok((root, peer)),
                _ => {
                    report.rejected += 1;
                    node.metrics().blobs_rejected.inc();
                    node.ban(peer).await?;
                    sched.on_gone(peer);
                    report.banned.push(peer);
                }
            }
        }
    }
    Err(FetchError::NoValidRoot(dataset))
}

/// The blobs (id, size) in `ids` that the store does not hold intact (re-hashed off the async
/// threads).
async fn unstored(
    store: &BlobStore,
    ids: Vec<(BlobId, u64)>,
    report: &mut Report,
) -> Result<Vec<(BlobId, u64)>, FetchError> {
    let store = store.clone();
    let (missing, present) = tokio::task::spawn_blocking(move || {
        let mut missing = Vec::new();
        let mut present = 0u64;
        for (id, size) in ids {
            match store.check(&id) {
                Ok(()) => present += 1,
                Err(_) => missing.push((id, size)),
            }
        }
        (missing, present)
    })
    .await
    .map_err(|e| NetError::Build(e.to_string()))?;
    report.already_stored += present;
    Ok(missing)
}

async fn load_pages(
    store: &BlobStore,
    root: &SignedRoot,
    dataset: DatasetId,
) -> Result<Vec<Page>, FetchError> {
    let store = store.clone();
    let root = root.clone();
    tokio::task::spawn_blocking(move || {
        root.root()
            .pages
            .iter()
            .enumerate()
            .map(|(index, page_ref)| {
                let bytes = store.get(&page_ref.id)?;
                Page::decode(&bytes, root.root(), index).map_err(|e| FetchError::BadPage {
                    dataset,
                    index,
                    reason: e.to_string(),
                })
            })
            .collect()
    })
    .await
    .map_err(|e| NetError::Build(e.to_string()))?
}

/// Drives requests until the scheduler has nothing left, looking for providers again (up to
/// `rounds` times) when nobody known can deliver what is missing.
async fn run(
    node: &Node,
    dataset: DatasetId,
    sched: &mut Scheduler,
    reach: &mut Reach,
    report: &mut Report,
    delivered: &mut HashSet<PeerId>,
    mut rounds: usize,
) -> Result<(), FetchError> {
    let store = node.home().blobs();
    enum Step {
        Blob((PeerId, BlobId, Outcome)),
        Reached(PeerId, Result<(), String>),
        Idle,
    }
    let metrics = node.metrics().clone();
    let mut running = FuturesUnordered::new();
    loop {
        while let Some((peer, id)) = sched.next_request() {
            let request = match sched.size_of(&id) {
                Some(size) => Request::SizedBlob(id, size),
                None => Request::Blob(id),
            };
            running.push(get_blob(node.clone(), store.clone(), peer, request));
        }
        metrics.fetch_remaining.set(sched.remaining() as i64);
        if sched.is_done() && running.is_empty() {
            return Ok(());
        }
        let step = tokio::select! {
            Some(done) = running.next(), if !running.is_empty() => Step::Blob(done),
            Some((peer, reached)) = reach.next(), if !reach.is_empty() => Step::Reached(peer, reached),
            else => Step::Idle,
        };
        match step {
            Step::Reached(peer, Ok(())) => sched.add_provider(peer),
            // Asked over its relay instead, within the relay's budget.
            Step::Reached(peer, Err(why)) => {
                report.add_unreachable(peer, why);
                sched.add_provider(peer);
            }
            Step::Blob((peer, id, outcome)) => match outcome {
                Outcome::Stored(len) => {
                    sched.on_verified(peer, id);
                    delivered.insert(peer);
                    report.fetched += 1;
                    report.bytes += len;
                    metrics.blobs_verified.inc();
                    metrics.fetched_bytes.inc_by(len);
                }
                Outcome::Corrupt => {
                    report.rejected += 1;
                    metrics.blobs_rejected.inc();
                    tracing::warn!(%peer, blob = %id, "a provider sent a blob that does not match its hash");
                    if sched.on_corrupt(peer, id) {
                        node.ban(peer).await?;
                        report.banned.push(peer);
                    }
                }
                Outcome::NotFound => sched.on_not_found(peer, id),
                Outcome::Failed => sched.on_failed(peer, id),
                Outcome::StoreFailed(e) => return Err(e.into()),
            },
            Step::Idle if rounds == 0 => {
                return Err(FetchError::Incomplete {
                    dataset,
                    missing: sched.remaining(),
                });
            }
            Step::Idle => {
                rounds -= 1;
                reach.add(look_for_providers(node, dataset, 1).await?);
            }
        }
    }
}

/// First wait before looking providers up again: a lookup that finds nobody may only have
/// raced the provider's announcement or a busy DHT (in a 100-node `sim`, a lookup that had just
/// found the owner found nobody the next time).
const LOOKUP_RETRY: Duration = Duration::from_millis(250);
/// Longest wait between two lookups of one fetch.
const LOOKUP_RETRY_MAX: Duration = Duration::from_secs(4);

/// Looks `dataset`'s providers up, and up to `retries` times again with a doubling wait while
/// nobody is found.
async fn look_for_providers(
    node: &Node,
    dataset: DatasetId,
    retries: usize,
) -> Result<Vec<PeerId>, FetchError> {
    let mut wait = LOOKUP_RETRY;
    for _ in 0..retries {
        let providers = node.find_providers(dataset).await?;
        if !providers.is_empty() {
            return Ok(providers);
        }
        tracing::debug!(%dataset, ?wait, "no provider found; looking again");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(LOOKUP_RETRY_MAX);
    }
    Ok(node.find_providers(dataset).await?)
}

async fn get_blob(
    node: Node,
    store: BlobStore,
    peer: PeerId,
    request: Request,
) -> (PeerId, BlobId, Outcome) {
    let (Request::Blob(id) | Request::SizedBlob(id, _) | Request::Root(id)) = request;
    let outcome = match node.request(peer, request).await {
        Ok(Response::Found(bytes)) => tokio::task::spawn_blocking(move || {
            if BlobId::of(&bytes) != id {
                return Outcome::Corrupt;
            }
            match store.put_hashed(id, &bytes) {
                Ok(_) => Outcome::Stored(bytes.len() as u64),
                Err(e) => Outcome::StoreFailed(e),
            }
        })
        .await
        .unwrap_or(Outcome::Failed),
        Ok(Response::NotFound) => Outcome::NotFound,
        Ok(Response::Refused) | Err(_) => Outcome::Failed,
    };
    (peer, id, outcome)
}
