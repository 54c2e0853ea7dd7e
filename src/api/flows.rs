//! Flow management: list, create (YAML or JSON), read (JSON, or the YAML source with
//! `Accept: application/yaml`), replace, delete, pause and resume, revisions, validate.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::api::error::ApiError;
use crate::api::extract::RawBody;
use crate::engine::Engine;
use crate::engine::flows::body_problem;
use crate::runner::context::rfc3339;
use crate::store::flows::{FlowRow, RevisionRow};

pub async fn list_flows(State(engine): State<Engine>) -> Result<Json<Value>, ApiError> {
    let flows = engine.flows().await?;
    let items: Vec<Value> = flows.iter().map(flow_json).collect();
    Ok(Json(json!({ "items": items, "next_cursor": null })))
}

pub async fn create_flow(
    State(engine): State<Engine>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let source = flow_source(&headers, &body)?;
    let flow = engine.create_flow(&source).await?;
    Ok((StatusCode::CREATED, Json(flow_detail(&flow))))
}

pub async fn get_flow(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let flow = engine.flow(&id).await?;
    if wants_yaml(&headers) {
        return Ok(([(CONTENT_TYPE, "application/yaml")], flow.yaml).into_response());
    }
    Ok(Json(flow_detail(&flow)).into_response())
}

pub async fn replace_flow(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<Value>, ApiError> {
    let source = flow_source(&headers, &body)?;
    let flow = engine.replace_flow(&id, &source).await?;
    Ok(Json(flow_detail(&flow)))
}

pub async fn delete_flow(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    engine.delete_flow(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn pause_flow(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(flow_json(&engine.set_flow_paused(&id, true).await?)))
}

pub async fn resume_flow(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(flow_json(&engine.set_flow_paused(&id, false).await?)))
}

pub async fn list_revisions(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let revisions = engine.flow_revisions(&id).await?;
    let items: Vec<Value> = revisions.iter().map(revision_json).collect();
    Ok(Json(json!({ "items": items, "next_cursor": null })))
}

pub async fn validate_flow(
    State(engine): State<Engine>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<Value>, ApiError> {
    let source = flow_source(&headers, &body)?;
    let checked = engine.check_flow(&source, None)?;
    Ok(Json(json!({ "valid": true, "warnings": checked.warnings })))
}

/// The body as flow source text: JSON when it says so (checked, for a precise error), else YAML.
fn flow_source(headers: &HeaderMap, body: &[u8]) -> Result<String, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::from(body_problem("the body is not UTF-8 text")))?;
    if text.trim().is_empty() {
        return Err(body_problem("the body is empty: send the flow as YAML or JSON").into());
    }
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            t.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .ends_with("json")
        });
    if json {
        serde_json::from_str::<Value>(text)
            .map_err(|e| ApiError::InvalidJson(format!("the body is not valid JSON: {e}")))?;
    }
    Ok(text.to_string())
}

fn wants_yaml(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("yaml"))
}

fn time(millis: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp_millis(millis).map(rfc3339)
}

fn flow_json(flow: &FlowRow) -> Value {
    let definition: Value = serde_json::from_str(&flow.definition).unwrap_or(Value::Null);
    json!({
        "id": flow.id,
        "name": flow.name,
        "enabled": flow.enabled,
        "paused": flow.paused,
        "source": flow.source,
        "path": flow.path,
        "revision": flow.revision,
        "triggers": definition.get("triggers").cloned().unwrap_or(Value::Array(Vec::new())),
        "load_error": flow.load_error,
        "created_at": time(flow.created_at),
        "updated_at": time(flow.updated_at),
    })
}

fn flow_detail(flow: &FlowRow) -> Value {
    let mut body = flow_json(flow);
    body["definition"] = serde_json::from_str(&flow.definition).unwrap_or(Value::Null);
    body
}

fn revision_json(r: &RevisionRow) -> Value {
    json!({ "revision": r.revision, "sha256": r.sha256, "created_at": time(r.created_at) })
}
