//! Request parts read so that every refusal is the API's JSON error with one sentence: JSON
//! bodies ([`parse_json`]) and query strings ([`QueryParams`]). axum's own extractors answer in
//! plain text, and before the token is even checked.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::ApiError;

/// Request bodies larger than this are refused (a label is well under 1 KiB).
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// Parses a JSON request body, after the token is checked (so the body of a refused request is
/// never read); a malformed one is a 400 naming what is wrong.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.len() > MAX_BODY {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is {} bytes; send JSON under {MAX_BODY} bytes",
                bytes.len()
            ),
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("the request body is not the JSON this request takes ({e}); see docs/api.md"),
        )
    })
}

/// A query string; a malformed one is a 400 naming what is wrong.
#[derive(Debug)]
pub(crate) struct QueryParams<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        parse_query(query).map(QueryParams)
    }
}

fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    axum::extract::Query::<T>::try_from_uri(
        &format!("/?{query}")
            .parse()
            .map_err(|_| bad_query("it is not a valid URI query"))?,
    )
    .map(|q| q.0)
    .map_err(|e| bad_query(&e.body_text()))
}

fn bad_query(why: &str) -> ApiError {
    ApiError(
        StatusCode::BAD_REQUEST,
        format!("the query string is not one this request takes ({why}); see docs/api.md"),
    )
}
