//! The owner's console: plain HTML, CSS and JavaScript embedded in the binary, served at
//! `/console` with the labeling page's security (the token in the URL's fragment, only the
//! page's own files and the API allowed). It shows how the labelling of the datasets this node
//! owns goes and the annotators the screening flags; a ban goes through the owner's signed
//! policy (`POST /api/v1/datasets/{id}/policy`), as `swarmlabel dataset ban` does.

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;

use super::page::asset;
use super::{ApiError, AppState};

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");

/// The console's routes, added to the API's router.
pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/console", get(index))
        .route("/console.js", get(script))
        .route("/console.css", get(style))
}

async fn index(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    asset(&s, &headers, "text/html; charset=utf-8", INDEX)
}

async fn script(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    asset(&s, &headers, "text/javascript; charset=utf-8", SCRIPT)
}

async fn style(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    asset(&s, &headers, "text/css; charset=utf-8", STYLE)
}
