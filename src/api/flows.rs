//! Flow management: list (a grid row per flow), create (YAML or JSON), read (JSON, or the YAML
//! source with `Accept: application/yaml`), replace, delete, pause and resume, revisions (list,
//! read, restore), validate.

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
use crate::api::extract::{ApiPath, ApiQuery, JsonBody, RawBody};
use crate::api::page::Page;
use crate::core::diagnostic::Diagnostic;
use crate::core::time::rfc3339;
use crate::core::workspace::Access;
use crate::engine::Engine;
use crate::engine::flows::{FlowFilter, FlowSummary, FlowView, body_problem};
use crate::flow::summary::TriggerSummary;
use crate::store::flows::RevisionRow;

/// A flow as the list shows it: a grid row. Times are RFC 3339 UTC.
#[derive(Debug, Serialize, ToSchema)]
pub struct FlowOut {
    /// The flow's id within its workspace.
    id: String,
    /// The workspace it belongs to.
    workspace: String,
    name: String,
    /// The flow's `description`.
    description: Option<String>,
    /// `false` when the flow says `enabled: false`: it starts no runs.
    enabled: bool,
    /// Paused (by hand or by the failure breaker): nothing is sent until resumed.
    paused: bool,
    /// `file` (from the flows folder: change the file, not the API) or `api`.
    #[schema(example = "api")]
    source: String,
    /// The file of a file flow.
    path: Option<String>,
    /// The current revision, from 1.
    revision: i64,
    /// One line per trigger, with its filters.
    triggers: Vec<TriggerSummary>,
    /// The URLs its steps send to, as written, secrets shown as `***`.
    targets: Vec<String>,
    /// Why the flow's file does not load (the last good revision keeps running).
    load_error: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    #[schema(format = DateTime)]
    paused_at: Option<String>,
    /// `manual`, or `auto_paused` (the failure breaker tripped; `pause_detail` says why).
    #[schema(example = "manual")]
    pause_reason: Option<String>,
    pause_detail: Option<String>,
    /// Set on deleted flows, listed with `?include_deleted=true`.
    #[schema(format = DateTime)]
    deleted_at: Option<String>,
    /// When its latest run was created.
    #[schema(format = DateTime)]
    last_run_at: Option<String>,
    /// Runs created in the last 24 hours.
    runs_24h: u64,
    /// Of those, the ones that failed.
    failed_24h: u64,
}

/// A flow with its definition.
#[derive(Debug, Serialize, ToSchema)]
pub struct FlowDetail {
    #[serde(flatten)]
    flow: FlowOut,
    /// The definition as JSON (`flowd schema` prints its JSON Schema).
    #[schema(value_type = Object)]
    definition: Value,
    /// In the answer to a create or a replace: what validation warned about (a secret not set,
    /// a credential written in the flow, a client certificate that does not match its key).
    #[serde(skip_serializing_if = "Option::is_none")]
    warnings: Option<Vec<Diagnostic>>,
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

/// One revision with its definition.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevisionDetail {
    #[serde(flatten)]
    revision: RevisionOut,
    /// The definition as JSON.
    #[schema(value_type = Object)]
    definition: Value,
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

/// The `{id}` and `{revision}` of a flow's revision.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct FlowRevision {
    /// The flow's id.
    pub id: String,
    /// The revision, from 1.
    pub revision: i64,
}

/// Which flows the list shows.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListFlows {
    /// `true`: deleted flows too, with their `deleted_at`.
    #[serde(default)]
    pub include_deleted: bool,
}

/// A flow's source, as the flow endpoints take it.
const FLOW_EXAMPLE: &str = "id: greet\ntriggers:\n  - entity: contact\n    on: create\nsteps:\n  - id: hello\n    map: {text: \"hello {{entity.name}}\"}\n";

/// Every flow, whole (flows are few): `next_cursor` is always null. Each with its run figures,
/// all read in one query.
#[utoipa::path(get, path = "/api/v1/flows", tag = "flows", params(ListFlows), responses(
    (status = 200, description = "every flow", body = Page<FlowOut>),
    (status = 400, description = "`bad_request`: a bad query parameter", body = ErrorBody),
))]
pub async fn list_flows(
    State(engine): State<Engine>,
    access: Access,
    ApiQuery(q): ApiQuery<ListFlows>,
) -> Result<Json<Page<FlowOut>>, ApiError> {
    let filter = FlowFilter {
        include_deleted: q.include_deleted,
    };
    let flows = engine.flow_summaries(&access, filter).await?;
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
    access: Access,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<FlowDetail>), ApiError> {
    let source = flow_source(&headers, &body)?;
    let flow = engine.create_flow(&access, &source).await?;
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
    access: Access,
    ApiPath(FlowId { id }): ApiPath<FlowId>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let flow = engine.flow_view(&access, &id).await?;
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
    access: Access,
    ApiPath(FlowId { id }): ApiPath<FlowId>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<FlowDetail>, ApiError> {
    let source = flow_source(&headers, &body)?;
    let flow = engine.replace_flow(&access, &id, &source).await?;
    Ok(Json(flow_detail(&flow)))
}

/// Deletes an API flow; its runs stay in the log, and it stays listed with
/// `?include_deleted=true`.
#[utoipa::path(delete, path = "/api/v1/flows/{id}", tag = "flows", params(FlowId), responses(
    (status = 204, description = "deleted"),
    (status = 404, description = "no such flow", body = ErrorBody),
    (status = 409, description = "`managed_by_file`: remove the file instead", body = ErrorBody),
))]
pub async fn delete_flow(
    State(engine): State<Engine>,
    access: Access,
    ApiPath(FlowId { id }): ApiPath<FlowId>,
) -> Result<StatusCode, ApiError> {
    engine.delete_flow(&access, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Pauses a flow (file flows too): nothing is sent until it is resumed. Events and webhooks
/// make `held` runs meanwhile (`settings.on_pause: drop` ignores them instead).
#[utoipa::path(post, path = "/api/v1/flows/{id}/pause", tag = "flows", params(FlowId), responses(
    (status = 200, description = "the flow, paused", body = FlowOut),
    (status = 404, description = "no such flow", body = ErrorBody),
))]
pub async fn pause_flow(
    State(engine): State<Engine>,
    access: Access,
    ApiPath(FlowId { id }): ApiPath<FlowId>,
) -> Result<Json<FlowOut>, ApiError> {
    Ok(Json(flow_out(&engine.pause_flow(&access, &id).await?)))
}

/// What a resume does with the runs held while the flow was paused.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResumeIn {
    /// `true`: cancel the held runs (`discarded_on_resume`) instead of sending them.
    #[serde(default)]
    pub discard_held: bool,
}

/// Resumes a paused flow: its held runs are sent in creation order under the flow's limits, or
/// cancelled with `{"discard_held": true}`. The body is optional.
#[utoipa::path(post, path = "/api/v1/flows/{id}/resume", tag = "flows", params(FlowId),
    request_body(content = Option<ResumeIn>, content_type = "application/json"),
    responses(
        (status = 200, description = "the flow, running again", body = FlowOut),
        (status = 400, description = "`invalid_json` or `bad_request`: a body that is not `{\"discard_held\": bool}`", body = ErrorBody),
        (status = 404, description = "no such flow", body = ErrorBody),
    ))]
pub async fn resume_flow(
    State(engine): State<Engine>,
    access: Access,
    ApiPath(FlowId { id }): ApiPath<FlowId>,
    JsonBody(body): JsonBody,
) -> Result<Json<FlowOut>, ApiError> {
    let resume: ResumeIn = match body {
        Value::Null => ResumeIn::default(),
        Value::Object(_) => serde_json::from_value(body).map_err(|_| resume_problem())?,
        _ => return Err(resume_problem()),
    };
    Ok(Json(flow_out(
        &engine
            .resume_flow(&access, &id, resume.discard_held)
            .await?,
    )))
}

fn resume_problem() -> ApiError {
    ApiError::BadRequest(
        "the body must be {\"discard_held\": true} or {\"discard_held\": false}".into(),
    )
}

/// A flow's revisions, newest first, whole: `next_cursor` is always null.
#[utoipa::path(get, path = "/api/v1/flows/{id}/revisions", tag = "flows", params(FlowId), responses(
    (status = 200, description = "the revisions", body = Page<RevisionOut>),
    (status = 404, description = "no such flow", body = ErrorBody),
))]
pub async fn list_revisions(
    State(engine): State<Engine>,
    access: Access,
    ApiPath(FlowId { id }): ApiPath<FlowId>,
) -> Result<Json<Page<RevisionOut>>, ApiError> {
    let revisions = engine.flow_revisions(&access, &id).await?;
    Ok(Json(Page::whole(revisions).map(revision_out)))
}

/// One revision of a flow (deleted flows' too): JSON with its definition, or with
/// `Accept: application/yaml` its YAML source as written.
#[utoipa::path(get, path = "/api/v1/flows/{id}/revisions/{revision}", tag = "flows", params(FlowRevision), responses(
    (status = 200, description = "the revision", content(
        (RevisionDetail = "application/json"),
        (String = "application/yaml"),
    )),
    (status = 404, description = "no such flow or revision", body = ErrorBody),
))]
pub async fn get_revision(
    State(engine): State<Engine>,
    access: Access,
    ApiPath(FlowRevision { id, revision }): ApiPath<FlowRevision>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let revision = engine.flow_revision(&access, &id, revision).await?;
    if wants_yaml(&headers) {
        return Ok(([(CONTENT_TYPE, "application/yaml")], revision.yaml).into_response());
    }
    Ok(Json(RevisionDetail {
        definition: serde_json::from_str(&revision.definition).unwrap_or(Value::Null),
        revision: RevisionOut {
            revision: revision.revision,
            sha256: revision.sha256,
            created_at: time(revision.created_at),
        },
    })
    .into_response())
}

/// Makes an old revision of an API flow current again, as a new revision (history only grows).
#[utoipa::path(post, path = "/api/v1/flows/{id}/revisions/{revision}/restore", tag = "flows", params(FlowRevision), responses(
    (status = 200, description = "the flow at its new revision (unchanged when that revision is current)", body = FlowDetail),
    (status = 404, description = "no such flow or revision", body = ErrorBody),
    (status = 409, description = "`managed_by_file`: change the file instead", body = ErrorBody),
    (status = 422, description = "`invalid_flow`: the old revision does not pass today's checks (e.g. its webhook path is taken)", body = ErrorBody),
))]
pub async fn restore_revision(
    State(engine): State<Engine>,
    access: Access,
    ApiPath(FlowRevision { id, revision }): ApiPath<FlowRevision>,
) -> Result<Json<FlowDetail>, ApiError> {
    let flow = engine.restore_flow_revision(&access, &id, revision).await?;
    Ok(Json(flow_detail(&flow)))
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
    access: Access,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<Validated>, ApiError> {
    let source = flow_source(&headers, &body)?;
    let checked = engine.check_flow(&access, &source, None)?;
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

fn flow_out(flow: &FlowSummary) -> FlowOut {
    FlowOut {
        id: flow.id.clone(),
        workspace: flow.workspace.clone(),
        name: flow.name.clone(),
        description: flow.description.clone(),
        enabled: flow.enabled,
        paused: flow.paused,
        source: flow.source.to_string(),
        path: flow.path.clone(),
        revision: flow.revision,
        triggers: flow.triggers.clone(),
        targets: flow.targets.clone(),
        load_error: flow.load_error.clone(),
        created_at: rfc3339(flow.created_at),
        updated_at: rfc3339(flow.updated_at),
        paused_at: flow.paused_at.map(rfc3339),
        pause_reason: flow.pause_reason.map(|r| r.to_string()),
        pause_detail: flow.pause_detail.clone(),
        deleted_at: flow.deleted_at.map(rfc3339),
        last_run_at: flow.last_run_at.map(rfc3339),
        runs_24h: flow.runs_24h,
        failed_24h: flow.failed_24h,
    }
}

fn flow_detail(flow: &FlowView) -> FlowDetail {
    FlowDetail {
        flow: flow_out(&flow.summary),
        definition: serde_json::from_str(&flow.definition).unwrap_or(Value::Null),
        warnings: flow.warnings.clone(),
    }
}

fn revision_out(r: &RevisionRow) -> RevisionOut {
    RevisionOut {
        revision: r.revision,
        sha256: r.sha256.clone(),
        created_at: time(r.created_at),
    }
}
