//! `POST /hooks/{path}`: the webhook trigger. 202 `{"run_id"}` once the run is stored; a
//! repeated `webhook-id` answers the first run's id again.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{ApiPath, RawBody};
use crate::api::runs::RunAccepted;
use crate::engine::Engine;

/// The `{path}` of a webhook.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct HookPath {
    /// The webhook path a flow's trigger listens on; it may span segments (`shop/orders`).
    path: String,
}

/// The answer to a webhook request that started nothing.
#[derive(Debug, Serialize, ToSchema)]
pub struct HookAnswer {
    /// Always null: the request did not pass the trigger's filters.
    run_id: Option<String>,
}

/// Starts a run of the flow listening on this path.
///
/// The body becomes the run's `input`. With a secret the request must carry a valid Standard
/// Webhooks signature (`webhook-id`, `webhook-timestamp`, `webhook-signature`). No API key is
/// needed.
#[utoipa::path(post, path = "/hooks/{*path}", tag = "triggers", operation_id = "receive_webhook",
    params(HookPath),
    request_body(description = "JSON, a form, or any UTF-8 text; it becomes the run's `input`", content(
        (serde_json::Value = "application/json"),
        (Object = "application/x-www-form-urlencoded"),
        (String = "*/*"),
    )),
    responses(
        (status = 202, description = "the run (the first run's, for a repeated `webhook-id`)", body = RunAccepted),
        (status = 200, description = "the request does not pass the trigger's `match` or `if`: nothing started, `run_id` is null", body = HookAnswer),
        (status = 400, description = "the body does not parse as what it says it is", body = ErrorBody),
        (status = 401, description = "`invalid_signature`", body = ErrorBody),
        (status = 404, description = "no flow listens on this path", body = ErrorBody),
        (status = 409, description = "`flow_paused`", body = ErrorBody),
    ))]
pub async fn receive(
    State(engine): State<Engine>,
    ApiPath(HookPath { path }): ApiPath<HookPath>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let received = engine.receive_webhook(&path, &headers, &body).await?;
    Ok(match received.run_id {
        Some(run_id) => (StatusCode::ACCEPTED, Json(RunAccepted { run_id })).into_response(),
        None => (StatusCode::OK, Json(HookAnswer { run_id: None })).into_response(),
    })
}
