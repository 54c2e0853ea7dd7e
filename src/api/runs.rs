//! The run log: `GET /api/v1/runs` with filters and cursor pagination, and
//! `GET /api/v1/runs/{id}` with every step and attempt (request, response, copy-as-curl), and the
//! controls: cancel, retry, replay.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::DateTime;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::api::error::{ApiError, ErrorBody, InternalError};
use crate::api::extract::{ApiPath, ApiQuery};
use crate::api::page::{Page, page_limit};
use crate::core::status::RunStatus;
use crate::core::workspace::Access;
use crate::engine::Engine;
use crate::runner::control::Cancelled;
use crate::store::run_log::RunFilter;

pub use crate::engine::run_view::{AttemptOut, RunDetail, RunOut, StepOut};

/// A run was stored and will start shortly.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunAccepted {
    pub run_id: String,
}

/// The state a run control left the run in.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunControlled {
    run_id: String,
    /// `cancelled`, `cancelling` (after the step in flight) or `pending` (retried).
    #[schema(example = "cancelling")]
    status: &'static str,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only runs of this flow.
    flow: Option<String>,
    /// Only runs in this state.
    #[param(value_type = Option<RunStatus>)]
    status: Option<String>,
    /// Only runs started for this entity type.
    entity: Option<String>,
    /// Only runs started for this entity id.
    entity_id: Option<String>,
    /// Only runs created at or after this time (RFC 3339).
    #[param(format = DateTime)]
    since: Option<String>,
    /// Only runs created before this time (RFC 3339).
    #[param(format = DateTime)]
    until: Option<String>,
    /// Page size: 50 unless given, at most 500.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u64>,
    /// `next_cursor` of the page before (a run id).
    #[param(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    cursor: Option<String>,
}

/// Runs, newest first, filtered.
#[utoipa::path(get, path = "/api/v1/runs", tag = "runs", params(ListQuery), responses(
    (status = 200, description = "a page of runs", body = Page<RunOut>),
    (status = 400, description = "a bad filter, limit or cursor", body = ErrorBody),
))]
pub async fn list_runs(
    State(engine): State<Engine>,
    access: Access,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<RunOut>>, ApiError> {
    let status = q
        .status
        .as_deref()
        .map(|status| {
            status.parse::<RunStatus>().map_err(|_| {
                ApiError::BadRequest(format!(
                    "unknown status `{status}`; use pending, running, waiting, succeeded, failed or cancelled"
                ))
            })
        })
        .transpose()?;
    let limit = page_limit(q.limit)?;
    let filter = RunFilter {
        flow: q.flow,
        status,
        entity: q.entity,
        entity_id: q.entity_id,
        since: q
            .since
            .as_deref()
            .map(|t| parse_time("since", t))
            .transpose()?,
        until: q
            .until
            .as_deref()
            .map(|t| parse_time("until", t))
            .transpose()?,
        before_id: q.cursor.map(check_cursor).transpose()?,
        workspace: None,
    };
    let rows = engine.list_runs(&access, &filter, limit + 1).await?;
    Ok(Json(Page::cut(rows, limit, |r| r.id.clone())))
}

/// A run with its steps and attempts.
#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "runs", params(RunId), responses(
    (status = 200, description = "the run", body = RunDetail),
    (status = 404, description = "no such run", body = ErrorBody),
))]
pub async fn get_run(
    State(engine): State<Engine>,
    access: Access,
    ApiPath(RunId { id }): ApiPath<RunId>,
) -> Result<Json<RunDetail>, ApiError> {
    engine
        .run_detail(&access, &id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no run `{id}`")))
}

/// The run with every step and attempt, as `GET /api/v1/runs/{id}` answers it.
pub async fn run_detail(
    engine: &Engine,
    access: &Access,
    id: &str,
) -> Result<Option<Value>, ApiError> {
    let Some(detail) = engine.run_detail(access, id).await? else {
        return Ok(None);
    };
    Ok(Some(
        serde_json::to_value(detail).map_err(InternalError::RunJson)?,
    ))
}

pub(crate) fn parse_time(name: &str, text: &str) -> Result<i64, ApiError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            ApiError::BadRequest(format!(
                "`{name}` must be an RFC 3339 time, e.g. 2026-01-31T09:00:00Z"
            ))
        })
}

/// A run cursor is a run id; anything else was not given out by this API.
fn check_cursor(cursor: String) -> Result<String, ApiError> {
    match uuid::Uuid::try_parse(&cursor) {
        Ok(_) => Ok(cursor),
        Err(_) => Err(ApiError::BadRequest(format!(
            "`cursor` `{cursor}` is not a cursor this API gave out"
        ))),
    }
}

/// The `{id}` of a run.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RunId {
    /// The run's id (UUIDv7).
    id: String,
}

/// Stops the run after the step in flight.
#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel", tag = "runs", params(RunId), responses(
    (status = 202, description = "cancelled, or cancelling after the step in flight", body = RunControlled),
    (status = 404, description = "no such run", body = ErrorBody),
    (status = 409, description = "`run_finished`: the run already ended", body = ErrorBody),
))]
pub async fn cancel_run(
    State(engine): State<Engine>,
    access: Access,
    ApiPath(RunId { id }): ApiPath<RunId>,
) -> Result<(StatusCode, Json<RunControlled>), ApiError> {
    let status = match engine.cancel_run(&access, &id).await? {
        Cancelled::Now => "cancelled",
        Cancelled::AfterCurrentStep => "cancelling",
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(RunControlled { run_id: id, status }),
    ))
}

/// Resumes a failed or cancelled run at its first step that did not succeed.
#[utoipa::path(post, path = "/api/v1/runs/{id}/retry", tag = "runs", params(RunId), responses(
    (status = 202, description = "the run is pending again", body = RunControlled),
    (status = 404, description = "no such run", body = ErrorBody),
    (status = 409, description = "`run_not_retryable` (not failed or cancelled) or `flow_gone`", body = ErrorBody),
))]
pub async fn retry_run(
    State(engine): State<Engine>,
    access: Access,
    ApiPath(RunId { id }): ApiPath<RunId>,
) -> Result<(StatusCode, Json<RunControlled>), ApiError> {
    engine.retry_run(&access, &id).await?;
    let status = "pending";
    Ok((
        StatusCode::ACCEPTED,
        Json(RunControlled { run_id: id, status }),
    ))
}

/// Starts a new run with the same trigger data on the flow's current revision.
#[utoipa::path(post, path = "/api/v1/runs/{id}/replay", tag = "runs", params(RunId), responses(
    (status = 202, description = "the new run", body = RunAccepted),
    (status = 404, description = "no such run", body = ErrorBody),
    (status = 409, description = "`flow_gone`: the flow was deleted", body = ErrorBody),
))]
pub async fn replay_run(
    State(engine): State<Engine>,
    access: Access,
    ApiPath(RunId { id }): ApiPath<RunId>,
) -> Result<(StatusCode, Json<RunAccepted>), ApiError> {
    let run_id = engine.replay_run(&access, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(RunAccepted { run_id })))
}
