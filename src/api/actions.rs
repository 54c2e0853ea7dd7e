//! Manual actions: `POST /api/v1/flows/{id}/trigger` (optionally `?wait=10s` for the finished
//! run) and `GET /api/v1/actions?entity=` (what to offer on an entity's page).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::error::ApiError;
use crate::api::extract::{ApiQuery, JsonBody};
use crate::api::runs::run_detail;
use crate::engine::Engine;
use crate::flow::duration::Duration;
use crate::trigger::manual::ManualRequest;

/// The longest `?wait=` honoured; longer waits are cut to it.
const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerQuery {
    wait: Option<String>,
}

pub async fn trigger_flow(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<TriggerQuery>,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let wait = q.wait.as_deref().map(parse_wait).transpose()?;
    let request: ManualRequest = match body {
        Value::Null => ManualRequest::default(),
        body => serde_json::from_value(body).map_err(|e| ApiError::Unprocessable {
            code: "invalid_request",
            message: format!("the trigger body is not valid: {e}"),
            details: Vec::new(),
        })?,
    };
    let run_id = engine.trigger_manual(&id, request).await?;
    if let Some(wait) = wait
        && engine.wait_for_run_end(&run_id, wait).await?
        && let Some(run) = run_detail(&engine, &run_id).await?
    {
        return Ok((StatusCode::OK, Json(run)));
    }
    Ok((StatusCode::ACCEPTED, Json(json!({ "run_id": run_id }))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionsQuery {
    entity: String,
}

pub async fn list_actions(
    State(engine): State<Engine>,
    ApiQuery(q): ApiQuery<ActionsQuery>,
) -> Json<Value> {
    Json(json!({ "items": engine.actions(&q.entity) }))
}

fn parse_wait(text: &str) -> Result<std::time::Duration, ApiError> {
    text.parse::<Duration>()
        .map(|d| d.to_std().min(MAX_WAIT))
        .map_err(|e| ApiError::BadRequest(format!("`wait`: {e}")))
}
