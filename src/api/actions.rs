//! Manual actions: `POST /api/v1/flows/{id}/trigger` (optionally `?wait=10s` for the finished
//! run) and `GET /api/v1/actions?entity=` (what to offer on an entity's page).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{ApiPath, ApiQuery, JsonBody};
use crate::api::flows::FlowId;
use crate::api::page::Items;
use crate::api::runs::{RunAccepted, RunDetail, run_detail};
use crate::core::duration::Duration;
use crate::core::workspace::{Access, Permission};
use crate::engine::Engine;
use crate::trigger::manual::{Action, ManualRequest};

/// The longest `?wait=` honoured; longer waits are cut to it.
const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TriggerQuery {
    /// Wait up to this long (`10s`, `2m`; at most 5 minutes) and answer 200 with the run once it
    /// is terminal; 202 as usual when it is not by then.
    #[param(example = "10s", pattern = r"^[0-9]{1,9}(\.[0-9]{1,6})?(ms|s|m|h|d)$")]
    wait: Option<String>,
}

/// Runs a flow by hand.
#[utoipa::path(post, path = "/api/v1/flows/{id}/trigger", tag = "triggers",
    params(FlowId, TriggerQuery),
    request_body(content = Option<ManualRequest>, description = "optional"),
    responses(
        (status = 200, description = "with `?wait=`: the run, terminal", body = RunDetail),
        (status = 202, description = "the run was stored and starts shortly", body = RunAccepted),
        (status = 400, description = "`invalid_json`, or a bad `wait`", body = ErrorBody),
        (status = 404, description = "no such flow", body = ErrorBody),
        (status = 409, description = "`flow_paused`, `flow_disabled`, or `not_applicable` (the manual trigger's `if` does not hold for this entity or input)", body = ErrorBody),
        (status = 422, description = "`no_manual_trigger`, `entity_mismatch` or `invalid_request`", body = ErrorBody),
    ))]
pub async fn trigger_flow(
    State(engine): State<Engine>,
    access: Access,
    ApiPath(FlowId { id }): ApiPath<FlowId>,
    ApiQuery(q): ApiQuery<TriggerQuery>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let wait = q.wait.as_deref().map(parse_wait).transpose()?;
    let invalid = |message: String| ApiError::Unprocessable {
        code: "invalid_request",
        message,
        details: Vec::new(),
    };
    // Only an object: serde would also read a struct from an array of its fields.
    let request: ManualRequest = match body {
        Value::Null => ManualRequest::default(),
        body @ Value::Object(_) => serde_json::from_value(body)
            .map_err(|e| invalid(format!("the trigger body is not valid: {e}")))?,
        _ => return Err(invalid("the trigger body must be a JSON object".into())),
    };
    let run_id = engine.trigger_manual(&access, &id, request).await?;
    if let Some(wait) = wait
        && engine.wait_for_run_end(&run_id, wait).await?
        && access.may(Permission::Read)
        && let Some(run) = run_detail(&engine, &access, &run_id).await?
    {
        return Ok((StatusCode::OK, Json(run)).into_response());
    }
    Ok((StatusCode::ACCEPTED, Json(RunAccepted { run_id })).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ActionsQuery {
    /// The entity type whose page shows the actions.
    #[param(example = "guest")]
    entity: String,
    /// One entity's id: only the actions whose `if` holds for it, judged on its last state
    /// flowd received in an event.
    #[param(example = "42")]
    entity_id: Option<String>,
}

/// The manual actions to offer on an entity type's page, or (with `entity_id`) on one entity's.
#[utoipa::path(get, path = "/api/v1/actions", tag = "triggers", params(ActionsQuery), responses(
    (status = 200, description = "the actions", body = Items<Action>),
    (status = 400, description = "`entity` is missing", body = ErrorBody),
))]
pub async fn list_actions(
    State(engine): State<Engine>,
    access: Access,
    ApiQuery(q): ApiQuery<ActionsQuery>,
) -> Result<Json<Items<Action>>, ApiError> {
    let items = match &q.entity_id {
        Some(id) => engine.actions_for(&access, &q.entity, id).await?,
        None => engine.actions(&access, &q.entity),
    };
    Ok(Json(Items { items }))
}

fn parse_wait(text: &str) -> Result<std::time::Duration, ApiError> {
    text.parse::<Duration>()
        .map(|d| d.to_std().min(MAX_WAIT))
        .map_err(|e| ApiError::BadRequest(format!("`wait`: {e}")))
}
