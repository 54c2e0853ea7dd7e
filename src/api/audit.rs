//! The audit log: `GET /api/v1/audit`, who (an API key, a portal link, or the local
//! administrator) changed what, when, in which workspace; filtered, newest first, paged.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::ApiQuery;
use crate::api::page::{Page, page_limit, time_id_cursor};
use crate::api::runs::parse_time;
use crate::core::time::rfc3339_ms;
use crate::core::workspace::Access;
use crate::engine::Engine;
use crate::store::audit::{AuditAction, AuditEntry, AuditFilter, Cursor};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only changes by this actor: `key:<id>`, `portal:<id>` or `local`.
    actor: Option<String>,
    /// Only this kind of change, e.g. `flow.created` or `secret.set`.
    #[param(schema_with = action_names)]
    action: Option<String>,
    /// Only changes to this object: a flow id, a secret name, a key id, a run id, an
    /// operation id.
    target: Option<String>,
    /// Only changes made at or after this time (RFC 3339).
    #[param(format = DateTime)]
    since: Option<String>,
    /// Only changes made before this time (RFC 3339).
    #[param(format = DateTime)]
    until: Option<String>,
    /// Page size: 50 unless given, at most 500.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u64>,
    /// `next_cursor` of the page before.
    #[param(pattern = r"^[+-]?[0-9]{1,18}\..+$")]
    cursor: Option<String>,
}

/// The schema of `action`: one of the actions recorded.
fn action_names() -> utoipa::openapi::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(AuditAction::ALL.iter().map(|a| a.as_str())))
        .into()
}

/// One recorded change. Times are RFC 3339 UTC.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryOut {
    id: String,
    #[schema(format = DateTime)]
    at: String,
    workspace: String,
    /// Who made it: `key:<id>`, `portal:<id>` or `local` (the command line, flow files, a
    /// server without keys).
    #[schema(example = "key:0193a5c2-7d1e-7c3a-9f00-2b1c3d4e5f60")]
    actor: String,
    /// What was done, e.g. `flow.created`, `flow.paused`, `secret.set`, `run.retried`.
    #[schema(example = "flow.updated")]
    action: String,
    /// What it was done to: a flow id, a secret name, a key id, a run id, an operation id.
    target: String,
    /// A few facts about the change (a revision, a reason); never a secret value.
    #[schema(value_type = Object)]
    detail: Value,
}

/// Changes, newest first, filtered.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery), responses(
    (status = 200, description = "a page of audit entries", body = Page<AuditEntryOut>),
    (status = 400, description = "a bad filter, limit or cursor", body = ErrorBody),
))]
pub async fn list_audit(
    State(engine): State<Engine>,
    access: Access,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<Page<AuditEntryOut>>, ApiError> {
    let limit = page_limit(q.limit)?;
    let after = q.cursor.as_deref().map(parse_cursor).transpose()?;
    let filter = audit_filter(q)?;
    let rows = engine
        .audit_log(&access, &filter, after.as_ref(), limit + 1)
        .await?;
    let page = Page::cut(rows, limit, |e| format!("{}.{}", e.at, e.id));
    Ok(Json(page.map(entry_out)))
}

fn audit_filter(q: AuditQuery) -> Result<AuditFilter, ApiError> {
    if let Some(action) = q.action.as_deref()
        && AuditAction::parse(action).is_none()
    {
        let known: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
        return Err(ApiError::BadRequest(format!(
            "unknown `action` `{action}`; use one of {}",
            known.join(", ")
        )));
    }
    let time =
        |name: &str, text: Option<String>| text.as_deref().map(|t| parse_time(name, t)).transpose();
    Ok(AuditFilter {
        since: time("since", q.since)?,
        until: time("until", q.until)?,
        // `?workspace=` is the request's own (the auth layer's): the access narrows to it.
        workspace: None,
        actor: q.actor,
        action: q.action,
        target: q.target,
    })
}

fn entry_out(e: &AuditEntry) -> AuditEntryOut {
    AuditEntryOut {
        id: e.id.clone(),
        at: rfc3339_ms(e.at),
        workspace: e.workspace.clone(),
        actor: e.actor.clone(),
        action: e.action.clone(),
        target: e.target.clone(),
        detail: serde_json::from_str(&e.detail).unwrap_or(Value::Null),
    }
}

fn parse_cursor(text: &str) -> Result<Cursor, ApiError> {
    let (at, id) = time_id_cursor(text)?;
    Ok(Cursor { at, id })
}
