//! Prometheus metrics of a node: libp2p's own (connections, bandwidth, Kademlia, gossipsub,
//! identify, ping) and ours (blobs verified and rejected, bytes fetched, fetch progress).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The node's own series, registered under the `swarmlabel` prefix.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Fetched blobs whose hash matched.
    pub blobs_verified: Counter,
    /// Fetched blobs whose hash did not match (the provider is penalised).
    pub blobs_rejected: Counter,
    /// Bytes of verified blobs fetched.
    pub fetched_bytes: Counter,
    /// Blobs served to peers.
    pub blobs_served: Counter,
    /// Blobs that running fetches still need.
    pub fetch_remaining: Gauge,
    /// Peers connected now.
    pub peers: Gauge,
    /// Peers banned for sending corrupt data.
    pub peers_banned: Counter,
    /// Provider record publications that failed (each is retried later).
    pub dht_publications_failed: Counter,
}

impl Metrics {
    /// Registers the series in `registry` (under `swarmlabel_`).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("swarmlabel");
        r.register(
            "blobs_verified",
            "Fetched blobs whose hash matched",
            self.blobs_verified.clone(),
        );
        r.register(
            "blobs_rejected",
            "Fetched blobs whose hash did not match",
            self.blobs_rejected.clone(),
        );
        r.register(
            "fetched_bytes",
            "Bytes of verified blobs fetched",
            self.fetched_bytes.clone(),
        );
        r.register(
            "blobs_served",
            "Blobs served to peers",
            self.blobs_served.clone(),
        );
        r.register(
            "fetch_remaining_blobs",
            "Blobs that running fetches still need",
            self.fetch_remaining.clone(),
        );
        r.register("peers", "Peers connected now", self.peers.clone());
        r.register(
            "peers_banned",
            "Peers banned for sending corrupt data",
            self.peers_banned.clone(),
        );
        r.register(
            "dht_publications_failed",
            "Provider record publications that failed and will be retried",
            self.dht_publications_failed.clone(),
        );
    }
}

/// Registers `swarmlabel_build_info{component, version} 1`: which build of which program is
/// running, the usual way to join a version onto other series (`* on (instance) group_left(version)
/// swarmlabel_build_info`).
pub fn register_build_info(registry: &mut Registry, component: &str) {
    use prometheus_client::metrics::family::Family;
    let family = Family::<Vec<(String, String)>, Gauge>::default();
    family
        .get_or_create(&vec![
            ("component".to_owned(), component.to_owned()),
            ("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned()),
        ])
        .set(1);
    registry.sub_registry_with_prefix("swarmlabel").register(
        "build_info",
        "The running build: its component and version",
        family,
    );
}

/// Encodes `registry` in the Prometheus text format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)
        .expect("invariant: writing to a String cannot fail");
    out
}

/// The content type of [`encode`]'s output: prometheus-client writes OpenMetrics text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `GET /metrics` (the registry, OpenMetrics text) and `GET /healthz` (`ok` while the
/// process runs) on `listener` until the task is dropped. For the bootstrap peer; the node
/// serves the same two paths beside its API.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: std::sync::Arc<std::sync::Mutex<Registry>>,
) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::{Method, Response, StatusCode};

    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
                let registry = registry.clone();
                async move {
                    let (status, content_type, body) =
                        match (request.method(), request.uri().path()) {
                            (&Method::GET, "/metrics") => {
                                let text = encode(
                                    &registry
                                        .lock()
                                        .unwrap_or_else(std::sync::PoisonError::into_inner),
                                );
                                (StatusCode::OK, CONTENT_TYPE, text)
                            }
                            (&Method::GET, "/healthz") => {
                                (StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into())
                            }
                            _ => (
                                StatusCode::NOT_FOUND,
                                "text/plain; charset=utf-8",
                                "only /metrics and /healthz are served here\n".into(),
                            ),
                        };
                    Response::builder()
                        .status(status)
                        .header("content-type", content_type)
                        .body(Full::new(Bytes::from(body)))
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}
