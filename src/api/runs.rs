//! The run log: `GET /api/v1/runs` with filters and cursor pagination, and
//! `GET /api/v1/runs/{id}` with every step and attempt (request, response, copy-as-curl).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::error::ApiError;
use crate::api::extract::ApiQuery;
use crate::api::page::{Page, page_limit};
use crate::engine::Engine;
use crate::engine::runs::Cancelled;
use crate::runner::context::rfc3339;
use crate::step::http::record::{RecordedRequest, curl_command};
use crate::store::run_log::{self, AttemptDetail, RunFilter, RunRow, StepDetail};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    flow: Option<String>,
    status: Option<String>,
    entity: Option<String>,
    entity_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<u64>,
    cursor: Option<String>,
}

pub async fn list_runs(
    State(engine): State<Engine>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    if let Some(status) = &q.status
        && status.parse::<crate::runner::status::RunStatus>().is_err()
    {
        return Err(ApiError::BadRequest(format!(
            "unknown status `{status}`; use pending, running, waiting, succeeded, failed or cancelled"
        )));
    }
    let limit = page_limit(q.limit);
    let filter = RunFilter {
        flow: q.flow,
        status: q.status,
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
        before_id: q.cursor,
    };
    let store = engine.store();
    let rows = run_log::list(store.reader(), store.backend(), &filter, limit + 1).await?;
    let page = Page::cut(rows, limit, |r| r.id.clone());
    let redactor = &engine.step_env().redactor;
    Ok(Json(redactor.redact_value(&page.into_json(run_json))))
}

pub async fn get_run(
    State(engine): State<Engine>,
    Path(id): Path<String>,
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
    let mut body = run_json(&run);
    body["steps"] = flow_steps
        .iter()
        .enumerate()
        .map(|(i, (step_id, kind))| step_json(i as i64, step_id, kind, &steps, &attempts))
        .collect();
    // Outputs may hold a secret a step copied (SPEC §2: API output shows `***`).
    Ok(Some(engine.step_env().redactor.redact_value(&body)))
}

fn run_json(run: &RunRow) -> Value {
    json!({
        "id": run.id,
        "flow": run.flow_id,
        "revision": run.revision,
        "status": run.status,
        "trigger": serde_json::from_str::<Value>(&run.trigger).unwrap_or(Value::Null),
        "attempt": run.attempt,
        "created_at": time(Some(run.created_at)),
        "started_at": time(run.started_at),
        "finished_at": time(run.finished_at),
        "wake_at": time(run.wake_at),
        "node": run.lease_owner,
        "error": run.error,
    })
}

fn step_json(
    index: i64,
    step_id: &str,
    kind: &str,
    steps: &[StepDetail],
    attempts: &[AttemptDetail],
) -> Value {
    let row = steps.iter().find(|s| s.step_index == index);
    let attempts: Vec<Value> = attempts
        .iter()
        .filter(|a| a.step_index == index)
        .map(attempt_json)
        .collect();
    json!({
        "id": step_id,
        "kind": kind,
        "status": row.map_or("pending", |r| r.status.as_str()),
        "output": row.and_then(|r| r.output.as_deref()).and_then(|o| serde_json::from_str::<Value>(o).ok()),
        "error": row.and_then(|r| r.error.clone()),
        "started_at": time(row.and_then(|r| r.started_at)),
        "finished_at": time(row.and_then(|r| r.finished_at)),
        "attempts": attempts,
    })
}

fn attempt_json(a: &AttemptDetail) -> Value {
    let request: Option<Value> = a
        .request
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok());
    let curl = request
        .as_ref()
        .and_then(|r| serde_json::from_value::<RecordedRequest>(r.clone()).ok())
        .map(|r| curl_command(&r));
    json!({
        "n": a.n,
        "node": a.node,
        "started_at": time(Some(a.started_at)),
        "finished_at": time(Some(a.finished_at)),
        "duration_ms": a.duration_ms,
        "request": request,
        "response": a.response.as_deref().and_then(|r| serde_json::from_str::<Value>(r).ok()),
        "error": a.error,
        "curl": curl,
    })
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

/// `POST /api/v1/runs/{id}/cancel`: 202, the run stops after the step in flight.
pub async fn cancel_run(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let status = match engine.cancel_run(&id).await? {
        Cancelled::Now => "cancelled",
        Cancelled::AfterCurrentStep => "cancelling",
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "run_id": id, "status": status })),
    ))
}

/// `POST /api/v1/runs/{id}/retry`: 202, a failed or cancelled run resumes.
pub async fn retry_run(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    engine.retry_run(&id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "run_id": id, "status": "pending" })),
    ))
}

/// `POST /api/v1/runs/{id}/replay`: 202 with the new run's id.
pub async fn replay_run(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let run_id = engine.replay_run(&id).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "run_id": run_id }))))
}
