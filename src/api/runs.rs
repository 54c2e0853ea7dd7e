//! The run log: `GET /api/v1/runs` with filters and cursor pagination, and
//! `GET /api/v1/runs/{id}` with every step and attempt (request, response, copy-as-curl), and the
//! controls: cancel, retry, replay.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::api::error::{ApiError, ErrorBody, InternalError};
use crate::api::extract::{ApiPath, ApiQuery};
use crate::api::page::{Page, page_limit};
use crate::core::status::{RunStatus, StepStatus, WaitingReason};
use crate::core::time::rfc3339;
use crate::engine::Engine;
use crate::outbound::record::{RecordedRequest, curl_command};
use crate::runner::control::Cancelled;
use crate::store::run_log::{self, AttemptDetail, RunFilter, RunRow, StepDetail};

/// A run as lists show it. Times are RFC 3339 UTC.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunOut {
    /// UUIDv7: ids sort by creation time.
    id: String,
    flow: String,
    /// The flow revision the run executes.
    revision: i64,
    status: RunStatus,
    /// Why a run that is not finished waits: `held` (its flow is paused), `rate_limited`,
    /// `backoff` (a retry), `delay`; null when it executes or is about to.
    waiting_reason: Option<WaitingReason>,
    /// What started the run (`kind`: `entity`, `manual`, `schedule` or `webhook`, and its data).
    trigger: Value,
    /// How many times the run was started (retries count).
    attempt: i64,
    #[schema(format = DateTime)]
    created_at: Option<String>,
    #[schema(format = DateTime)]
    started_at: Option<String>,
    #[schema(format = DateTime)]
    finished_at: Option<String>,
    /// When a waiting run wakes up (a delay, a retry backoff, the end of a rate-limit wait);
    /// null when unknown (a held run waits for the resume).
    #[schema(format = DateTime)]
    wake_at: Option<String>,
    /// The node that holds, or last held, the run.
    node: Option<String>,
    error: Option<String>,
}

/// A run with every step of its flow revision, in order.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunDetail {
    #[serde(flatten)]
    run: RunOut,
    steps: Vec<StepOut>,
}

/// One step of a run.
#[derive(Debug, Serialize, ToSchema)]
pub struct StepOut {
    id: String,
    /// The step kind: `map`, `http`, `notify` or `delay`.
    kind: String,
    status: StepStatus,
    /// What the step produced (secrets shown as `***`).
    output: Option<Value>,
    error: Option<String>,
    #[schema(format = DateTime)]
    started_at: Option<String>,
    #[schema(format = DateTime)]
    finished_at: Option<String>,
    attempts: Vec<AttemptOut>,
}

/// One attempt of a step: what was sent and received.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptOut {
    /// 1 for the first attempt.
    n: i64,
    node: String,
    #[schema(format = DateTime)]
    started_at: Option<String>,
    #[schema(format = DateTime)]
    finished_at: Option<String>,
    duration_ms: i64,
    /// The request as sent: `{method, url, headers: [{name, value}], body}`.
    request: Option<Value>,
    /// The response as received: `{status, headers, body}`.
    response: Option<Value>,
    error: Option<String>,
    /// The request as a copy-and-paste command line, secrets redacted.
    curl: Option<String>,
}

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
    limit: Option<u64>,
    /// `next_cursor` of the page before.
    cursor: Option<String>,
}

/// Runs, newest first, filtered.
#[utoipa::path(get, path = "/api/v1/runs", tag = "runs", params(ListQuery), responses(
    (status = 200, description = "a page of runs", body = Page<RunOut>),
    (status = 400, description = "a bad filter, limit or cursor", body = ErrorBody),
))]
pub async fn list_runs(
    State(engine): State<Engine>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
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
    let limit = page_limit(q.limit);
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
    };
    let store = engine.store();
    let rows = run_log::list(store.reader(), store.backend(), &filter, limit + 1).await?;
    let page = Page::cut(rows, limit, |r| r.id.clone()).map(run_out);
    Ok(Json(redacted(&engine, &page)?))
}

/// A run with its steps and attempts.
#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "runs", params(RunId), responses(
    (status = 200, description = "the run", body = RunDetail),
    (status = 404, description = "no such run", body = ErrorBody),
))]
pub async fn get_run(
    State(engine): State<Engine>,
    ApiPath(RunId { id }): ApiPath<RunId>,
) -> Result<Json<Value>, ApiError> {
    run_detail(&engine, &id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no run `{id}`")))
}

/// The run with every step and attempt, as `GET /api/v1/runs/{id}` answers it.
pub async fn run_detail(engine: &Engine, id: &str) -> Result<Option<Value>, ApiError> {
    let store = engine.store();
    let Some(run) = run_log::get_run(store.reader(), store.backend(), id).await? else {
        return Ok(None);
    };
    let (steps, attempts) = run_log::steps_of(store.reader(), store.backend(), id).await?;
    let flow_steps: Vec<(String, String)> = match engine.compiled(&run.flow_id, run.revision).await
    {
        Ok(flow) => flow
            .steps
            .iter()
            .map(|s| (s.id.clone(), s.action.kind().to_string()))
            .collect(),
        Err(_) => steps
            .iter()
            .map(|s| (s.step_id.clone(), s.kind.clone()))
            .collect(),
    };
    let detail = RunDetail {
        run: run_out(&run),
        steps: flow_steps
            .iter()
            .enumerate()
            .map(|(i, (step_id, kind))| step_out(i as i64, step_id, kind, &steps, &attempts))
            .collect(),
    };
    Ok(Some(redacted(engine, &detail)?))
}

/// The answer as JSON with secrets shown as `***`: outputs and trigger data may hold a secret a
/// step copied (SPEC §2).
fn redacted(engine: &Engine, answer: &impl Serialize) -> Result<Value, ApiError> {
    let value = serde_json::to_value(answer).map_err(InternalError::RunJson)?;
    Ok(engine.step_env().redactor.redact_value(&value))
}

fn run_out(run: &RunRow) -> RunOut {
    let waiting = run.waiting_reason(chrono::Utc::now().timestamp_millis());
    RunOut {
        waiting_reason: waiting.map(|(reason, _)| reason),
        id: run.id.clone(),
        flow: run.flow_id.clone(),
        revision: run.revision,
        status: run.status,
        trigger: serde_json::from_str::<Value>(&run.trigger).unwrap_or(Value::Null),
        attempt: run.attempt,
        created_at: time(Some(run.created_at)),
        started_at: time(run.started_at),
        finished_at: time(run.finished_at),
        wake_at: time(waiting.and_then(|(_, until)| until)),
        node: run.lease_owner.clone(),
        error: run.error.clone(),
    }
}

fn step_out(
    index: i64,
    step_id: &str,
    kind: &str,
    steps: &[StepDetail],
    attempts: &[AttemptDetail],
) -> StepOut {
    let row = steps.iter().find(|s| s.step_index == index);
    StepOut {
        id: step_id.to_string(),
        kind: kind.to_string(),
        status: row.map_or(StepStatus::Pending, |r| r.status),
        output: row
            .and_then(|r| r.output.as_deref())
            .and_then(|o| serde_json::from_str::<Value>(o).ok()),
        error: row.and_then(|r| r.error.clone()),
        started_at: time(row.and_then(|r| r.started_at)),
        finished_at: time(row.and_then(|r| r.finished_at)),
        attempts: attempts
            .iter()
            .filter(|a| a.step_index == index)
            .map(attempt_out)
            .collect(),
    }
}

fn attempt_out(a: &AttemptDetail) -> AttemptOut {
    let request: Option<Value> = a
        .request
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok());
    let curl = request
        .as_ref()
        .and_then(|r| serde_json::from_value::<RecordedRequest>(r.clone()).ok())
        .map(|r| curl_command(&r));
    AttemptOut {
        n: a.n,
        node: a.node.clone(),
        started_at: time(Some(a.started_at)),
        finished_at: time(Some(a.finished_at)),
        duration_ms: a.duration_ms,
        request,
        response: a
            .response
            .as_deref()
            .and_then(|r| serde_json::from_str::<Value>(r).ok()),
        error: a.error.clone(),
        curl,
    }
}

fn time(millis: Option<i64>) -> Option<String> {
    millis
        .and_then(DateTime::<Utc>::from_timestamp_millis)
        .map(rfc3339)
}

fn parse_time(name: &str, text: &str) -> Result<i64, ApiError> {
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
    ApiPath(RunId { id }): ApiPath<RunId>,
) -> Result<(StatusCode, Json<RunControlled>), ApiError> {
    let status = match engine.cancel_run(&id).await? {
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
    ApiPath(RunId { id }): ApiPath<RunId>,
) -> Result<(StatusCode, Json<RunControlled>), ApiError> {
    engine.retry_run(&id).await?;
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
    ApiPath(RunId { id }): ApiPath<RunId>,
) -> Result<(StatusCode, Json<RunAccepted>), ApiError> {
    let run_id = engine.replay_run(&id).await?;
    Ok((StatusCode::ACCEPTED, Json(RunAccepted { run_id })))
}
