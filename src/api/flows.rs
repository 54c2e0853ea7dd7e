//! Flow management: list, create (YAML or JSON), read (JSON, or the YAML source with
//! `Accept: application/yaml`), replace, delete, pause and resume, revisions, validate.

use axum::Json;
use axum::extract::State;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{ApiPath, RawBody};
use crate::api::page::Page;
use crate::core::diagnostic::Diagnostic;
use crate::core::time::rfc3339;
use crate::engine::Engine;
use crate::engine::flows::body_problem;
use crate::store::flows::{FlowRow, RevisionRow};

/// A flow as lists show it. Times are RFC 3339 UTC.
#[derive(Debug, Serialize, ToSchema)]
pub struct FlowOut {
    id: String,
    name: String,
    /// `false` when the flow says `enabled: false`: it starts no runs.
    enabled: bool,
    /// Paused through the API: it starts no runs until resumed.
    paused: bool,
    /// `file` (from the flows folder: change the file, not the API) or `api`.
    #[schema(example = "api")]
    source: String,
    /// The file of a file flow.
    path: Option<String>,
    /// The current revision, from 1.
    revision: i64,
    /// The flow's triggers as defined.
    #[schema(value_type = Vec<Object>)]
    triggers: Value,
    /// Why the flow's file does not load (the last good revision keeps running).
    load_error: Option<String>,
    #[schema(format = DateTime)]
    created_at: Option<String>,
    #[schema(format = DateTime)]
    updated_at: Option<String>,
}

/// A flow with its definition.
#[derive(Debug, Serialize, ToSchema)]
pub struct FlowDetail {
    #[serde(flatten)]
    flow: FlowOut,
    /// The definition as JSON (`flowd schema` prints its JSON Schema).
    #[schema(value_type = Object)]
    definition: Value,
}

/// One stored revision of a flow.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevisionOut {
    revision: i64,
    /// SHA-256 of the revision's source, hex.
    sha256: String,
    #[schema(format = DateTime)]
    created_at: Option<String>,
}

/// A valid flow; warnings do not stop it from being saved.
#[derive(Debug, Serialize, ToSchema)]
pub struct Validated {
    valid: bool,
    warnings: Vec<Diagnostic>,
}

/// The `{id}` of a flow.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct FlowId {
    /// The flow's id.
    pub id: String,
}

/// A flow's source, as the flow endpoints take it.
const FLOW_EXAMPLE: &str = "id: greet\ntriggers:\n  - entity: contact\n    on: create\nsteps:\n  - id: hello\n    map: {text: \"hello {{entity.name}}\"}\n";

/// Every flow, whole (flows are few): `next_cursor` is always null.
#[utoipa::path(get, path = "/api/v1/flows", tag = "flows", responses(
    (status = 200, description = "every flow", body = Page<FlowOut>),
))]
pub async fn list_flows(State(engine): State<Engine>) -> Result<Json<Page<FlowOut>>, ApiError> {
    let flows = engine.flows().await?;
    Ok(Json(Page::whole(flows).map(flow_out)))
}

/// Creates a flow from YAML, or JSON with `Content-Type: application/json`.
#[utoipa::path(post, path = "/api/v1/flows", tag = "flows",
    request_body(description = "the flow: YAML, or JSON when the content type says so", content(
        (String = "application/yaml", example = json!(FLOW_EXAMPLE)),
        (Object = "application/json", example = json!({"id": "greet", "triggers": [{"entity": "contact", "on": "create"}], "steps": [{"id": "hello", "map": {"text": "hello {{entity.name}}"}}]})),
    )),
    responses(
        (status = 201, description = "the flow at revision 1", body = FlowDetail),
        (status = 400, description = "`invalid_json`: the JSON does not parse", body = ErrorBody),
        (status = 409, description = "`flow_exists`: the id is taken", body = ErrorBody),
        (status = 422, description = "`invalid_flow`, with every problem in `details`", body = ErrorBody),
    ))]
pub async fn create_flow(
    State(engine): State<Engine>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<FlowDetail>), ApiError> {
    let source = flow_source(&headers, &body)?;
    let flow = engine.create_flow(&source).await?;
    Ok((StatusCode::CREATED, Json(flow_detail(&flow))))
}

/// The flow with its definition; with `Accept: application/yaml` its YAML source as written.
#[utoipa::path(get, path = "/api/v1/flows/{id}", tag = "flows", params(FlowId), responses(
    (status = 200, description = "the flow", content(
        (FlowDetail = "application/json"),
        (String = "application/yaml"),
    )),
    (status = 404, description = "no such flow", body = ErrorBody),
))]
pub async fn get_flow(
    State(engine): State<Engine>,
    ApiPath(FlowId { id }): ApiPath<FlowId>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let flow = engine.flow(&id).await?;
    if wants_yaml(&headers) {
        return Ok(([(CONTENT_TYPE, "application/yaml")], flow.yaml).into_response());
    }
    Ok(Json(flow_detail(&flow)).into_response())
}

/// Replaces an API flow: a new revision; runs in flight keep theirs.
#[utoipa::path(put, path = "/api/v1/flows/{id}", tag = "flows", params(FlowId),
    request_body(description = "the flow: YAML, or JSON when the content type says so", content(
        (String = "application/yaml", example = json!(FLOW_EXAMPLE)),
        (Object = "application/json"),
    )),
    responses(
        (status = 200, description = "the flow at its new revision", body = FlowDetail),
        (status = 400, description = "`invalid_json`: the JSON does not parse", body = ErrorBody),
        (status = 404, description = "no such flow", body = ErrorBody),
        (status = 409, description = "`managed_by_file`: change the file instead", body = ErrorBody),
        (status = 422, description = "`invalid_flow`, with every problem in `details`", body = ErrorBody),
    ))]
pub async fn replace_flow(
    State(engine): State<Engine>,
    ApiPath(FlowId { id }): ApiPath<FlowId>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<FlowDetail>, ApiError> {
    let source = flow_source(&headers, &body)?;
    let flow = engine.replace_flow(&id, &source).await?;
    Ok(Json(flow_detail(&flow)))
}

/// Deletes an API flow; its runs stay in the log.
#[utoipa::path(delete, path = "/api/v1/flows/{id}", tag = "flows", params(FlowId), responses(
    (status = 204, description = "deleted"),
    (status = 404, description = "no such flow", body = ErrorBody),
    (status = 409, description = "`managed_by_file`: remove the file instead", body = ErrorBody),
))]
pub async fn delete_flow(
    State(engine): State<Engine>,
    ApiPath(FlowId { id }): ApiPath<FlowId>,
) -> Result<StatusCode, ApiError> {
    engine.delete_flow(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Pauses a flow (file flows too): it starts no runs until resumed.
#[utoipa::path(post, path = "/api/v1/flows/{id}/pause", tag = "flows", params(FlowId), responses(
    (status = 200, description = "the flow, paused", body = FlowOut),
    (status = 404, description = "no such flow", body = ErrorBody),
))]
pub async fn pause_flow(
    State(engine): State<Engine>,
    ApiPath(FlowId { id }): ApiPath<FlowId>,
) -> Result<Json<FlowOut>, ApiError> {
    Ok(Json(flow_out(&engine.set_flow_paused(&id, true).await?)))
}

/// Resumes a paused flow.
#[utoipa::path(post, path = "/api/v1/flows/{id}/resume", tag = "flows", params(FlowId), responses(
    (status = 200, description = "the flow, running again", body = FlowOut),
    (status = 404, description = "no such flow", body = ErrorBody),
))]
pub async fn resume_flow(
    State(engine): State<Engine>,
    ApiPath(FlowId { id }): ApiPath<FlowId>,
) -> Result<Json<FlowOut>, ApiError> {
    Ok(Json(flow_out(&engine.set_flow_paused(&id, false).await?)))
}

/// A flow's revisions, newest first, whole: `next_cursor` is always null.
#[utoipa::path(get, path = "/api/v1/flows/{id}/revisions", tag = "flows", params(FlowId), responses(
    (status = 200, description = "the revisions", body = Page<RevisionOut>),
    (status = 404, description = "no such flow", body = ErrorBody),
))]
pub async fn list_revisions(
    State(engine): State<Engine>,
    ApiPath(FlowId { id }): ApiPath<FlowId>,
) -> Result<Json<Page<RevisionOut>>, ApiError> {
    let revisions = engine.flow_revisions(&id).await?;
    Ok(Json(Page::whole(revisions).map(revision_out)))
}

/// Checks a flow without saving it.
#[utoipa::path(post, path = "/api/v1/flows/validate", tag = "flows",
    request_body(description = "the flow: YAML, or JSON when the content type says so", content(
        (String = "application/yaml", example = json!(FLOW_EXAMPLE)),
        (Object = "application/json"),
    )),
    responses(
        (status = 200, description = "the flow is valid", body = Validated),
        (status = 400, description = "`invalid_json`: the JSON does not parse", body = ErrorBody),
        (status = 422, description = "`invalid_flow`, with every problem in `details`", body = ErrorBody),
    ))]
pub async fn validate_flow(
    State(engine): State<Engine>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<Validated>, ApiError> {
    let source = flow_source(&headers, &body)?;
    let checked = engine.check_flow(&source, None)?;
    Ok(Json(Validated {
        valid: true,
        warnings: checked.warnings,
    }))
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

fn flow_out(flow: &FlowRow) -> FlowOut {
    flow_with_definition(flow).0
}

fn flow_detail(flow: &FlowRow) -> FlowDetail {
    let (flow, definition) = flow_with_definition(flow);
    FlowDetail { flow, definition }
}

fn flow_with_definition(flow: &FlowRow) -> (FlowOut, Value) {
    let definition: Value = serde_json::from_str(&flow.definition).unwrap_or(Value::Null);
    let out = FlowOut {
        id: flow.id.clone(),
        name: flow.name.clone(),
        enabled: flow.enabled,
        paused: flow.paused,
        source: flow.source.to_string(),
        path: flow.path.clone(),
        revision: flow.revision,
        triggers: definition
            .get("triggers")
            .cloned()
            .unwrap_or(Value::Array(Vec::new())),
        load_error: flow.load_error.clone(),
        created_at: time(flow.created_at),
        updated_at: time(flow.updated_at),
    };
    (out, definition)
}

fn revision_out(r: &RevisionRow) -> RevisionOut {
    RevisionOut {
        revision: r.revision,
        sha256: r.sha256.clone(),
        created_at: time(r.created_at),
    }
}
