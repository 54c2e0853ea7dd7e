//! Our extractors, so that bad input gets our error shape instead of axum's plain-text
//! rejections: a body that is not JSON gets a 400 `invalid_json` naming the position, a body over
//! `FLOWD_MAX_BODY` a 413, a bad query or path parameter a 400 `bad_request` naming it.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde_json::Value;

use crate::api::error::ApiError;

/// A request body parsed as JSON (any shape; handlers check the shape and say what is wrong).
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<JsonBody, ApiError> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        if bytes.is_empty() {
            return Ok(JsonBody(Value::Null));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::InvalidJson(format!("the body is not valid JSON: {e}")))
    }
}

/// The request body as bytes; too large a body gets our 413.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<RawBody, ApiError> {
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::BadRequest(format!("cannot read the request body: {e}"))
                }
            })
    }
}

/// Query parameters; a bad one gets a 400 `bad_request` in our error shape, naming it.
pub struct ApiQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<ApiQuery<T>, ApiError> {
        // `?workspace=` belongs to every operation and is read by the auth layer.
        let query = without_workspace(parts.uri.query().unwrap_or_default());
        serde_urlencoded_query::<T>(&query)
            .map(ApiQuery)
            .map_err(|e| ApiError::BadRequest(query_problem(&e)))
    }
}

/// The query string without its `workspace` parameters.
fn without_workspace(query: &str) -> String {
    query
        .split('&')
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(name, _)| name);
            name != crate::api::auth::WORKSPACE_PARAM
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Deserializes a query string as axum's `Query` does, with its rejection's text.
fn serde_urlencoded_query<T: serde::de::DeserializeOwned>(query: &str) -> Result<T, String> {
    let uri: axum::http::Uri = format!("/?{query}")
        .parse()
        .map_err(|e| format!("Failed to deserialize query string: {e}"))?;
    axum::extract::Query::<T>::try_from_uri(&uri)
        .map(|q| q.0)
        .map_err(|e| e.body_text())
}

/// A person's message for a query string that does not deserialize, from the rejection's text
/// (`Failed to deserialize query string: <param>: <serde's message>`), naming the parameter and
/// what it takes in our words: serde's own wording never reaches the client.
fn query_problem(text: &str) -> String {
    let text = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(text);
    if let Some(name) = between(text, "duplicate field `", "`") {
        return format!("bad query parameter: `{name}` is given more than once");
    }
    let (name, problem) = text.split_once(": ").unwrap_or(("", text));
    let listed = |rest: &str| rest.split(", expected one of ").nth(1).map(str::to_string);
    let message = if let Some(field) = between(problem, "unknown field `", "`") {
        match listed(problem) {
            Some(known) => {
                format!("`{field}` is not a parameter of this request; it takes {known}")
            }
            None => format!("`{field}` is not a parameter of this request; it takes none"),
        }
    } else if let Some(value) = between(problem, "unknown variant `", "`") {
        let known = listed(problem).unwrap_or_default();
        format!("`{name}` cannot be `{value}`; use one of {known}")
    } else if problem.contains("`true` or `false`") {
        format!("`{name}` must be `true` or `false`")
    } else if problem.contains("digit") || problem.contains("number") || problem.contains("integer")
    {
        format!("`{name}` must be a whole number, 0 or more")
    } else if name.is_empty() {
        "the query string cannot be read".to_string()
    } else {
        format!("`{name}` has a value this request cannot use")
    };
    format!("bad query parameter: {message}")
}

/// The text between `start` and the next `end` in `text`.
fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let rest = &text[text.find(start)? + start.len()..];
    Some(&rest[..rest.find(end)?])
}

/// Path parameters; one that cannot be read (bad percent-encoding, not UTF-8) gets a 400
/// `bad_request` in our error shape instead of axum's plain-text rejection.
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<ApiPath<T>, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| ApiError::BadRequest(format!("bad path parameter: {}", e.body_text())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rejection texts axum gives for common mistakes become messages in our words.
    #[test]
    fn query_problems_name_the_parameter_without_serde_wording() {
        let prefix = "Failed to deserialize query string: ";
        let cases = [
            (
                "exceeded: provided string was not `true` or `false`",
                "bad query parameter: `exceeded` must be `true` or `false`",
            ),
            (
                "limit: invalid digit found in string",
                "bad query parameter: `limit` must be a whole number, 0 or more",
            ),
            (
                "bogus: unknown field `bogus`, expected one of `exceeded`, `limit`",
                "bad query parameter: `bogus` is not a parameter of this request; it takes `exceeded`, `limit`",
            ),
            (
                "bogus: unknown field `bogus`, there are no fields",
                "bad query parameter: `bogus` is not a parameter of this request; it takes none",
            ),
            (
                "status: unknown variant `nope`, expected one of `pending`, `held`",
                "bad query parameter: `status` cannot be `nope`; use one of `pending`, `held`",
            ),
            (
                "duplicate field `exceeded`",
                "bad query parameter: `exceeded` is given more than once",
            ),
            (
                "since: invalid type: map, expected a string",
                "bad query parameter: `since` has a value this request cannot use",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(query_problem(&format!("{prefix}{text}")), expected);
        }
    }
}
