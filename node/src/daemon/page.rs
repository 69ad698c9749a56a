//! The labeling page: plain HTML, CSS and JavaScript embedded in the binary (no CDN, no build
//! step), served at `/`. The page reads the API token from its URL's fragment (never sent to the
//! server or in a `Referer`) and talks to the API like any client.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{ApiError, AppState};

const INDEX: &str = include_str!("page/index.html");
const APP: &str = include_str!("page/app.js");
const STYLE: &str = include_str!("page/style.css");

/// The page allows only its own files and the API; images come as `blob:` URLs.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page's routes, added to the API's router.
pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/", get(index))
        .route("/app.js", get(app))
        .route("/style.css", get(style))
}

pub(super) fn asset(
    s: &AppState,
    headers: &HeaderMap,
    content_type: &'static str,
    body: &'static str,
) -> Result<Response, ApiError> {
    let get = |name: &str| headers.get(name).and_then(|h| h.to_str().ok());
    s.gate.check_origin(get("host"), None)?;
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response())
}

async fn index(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    asset(&s, &headers, "text/html; charset=utf-8", INDEX)
}

async fn app(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    asset(&s, &headers, "text/javascript; charset=utf-8", APP)
}

async fn style(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    asset(&s, &headers, "text/css; charset=utf-8", STYLE)
}
