//! `GET·PUT /api/v1/workspaces/{ws}/quotas`: a workspace's quotas (SPEC §11, `docs/quotas.md`):
//! runs per UTC day and HTTP attempts per minute; over them runs are held, never dropped.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{ApiPath, JsonBody};
use crate::core::time::rfc3339_ms;
use crate::core::workspace::Access;
use crate::engine::Engine;
use crate::engine::quotas::{QuotaError, WorkspaceQuotas, parse_quotas};

/// A workspace's quotas; null: no limit of that kind (the default).
#[derive(Debug, Serialize, ToSchema)]
pub struct QuotasOut {
    workspace: String,
    /// Runs that may start executing per UTC day; more are held until the next day.
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    runs_per_day: Option<i64>,
    /// HTTP attempts per minute; a run finding none left waits for the next minute without
    /// using an attempt of its retry budget.
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    http_attempts_per_minute: Option<i64>,
    /// When they were last set; null when the workspace never had a quota.
    #[schema(format = DateTime)]
    updated_at: Option<String>,
}

/// The body of a PUT: both quotas, a missing one meaning no limit.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // read from the JSON body by hand, to name what is wrong
pub struct QuotasIn {
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    runs_per_day: Option<i64>,
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    http_attempts_per_minute: Option<i64>,
}

/// The `{ws}` of a workspace.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct WorkspacePath {
    /// A workspace name: `[a-z0-9][a-z0-9_-]{0,63}`.
    #[param(pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$")]
    ws: String,
}

/// The quotas of a workspace.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/quotas", tag = "workspaces",
    params(WorkspacePath), responses(
        (status = 200, description = "the workspace's quotas; null: no limit", body = QuotasOut),
        (status = 404, description = "`workspace_not_found`: no such workspace, or not this key's", body = ErrorBody),
        (status = 422, description = "`invalid_workspace`: not a workspace name", body = ErrorBody),
    ))]
pub async fn get_quotas(
    State(engine): State<Engine>,
    access: Access,
    ApiPath(WorkspacePath { ws }): ApiPath<WorkspacePath>,
) -> Result<Json<QuotasOut>, ApiError> {
    Ok(Json(quotas_out(engine.quotas(&access, &ws).await?)))
}

/// Sets the quotas of a workspace; every node applies them within a second. Runs held by a
/// quota are let go at once and held again only if still over the new one.
#[utoipa::path(put, path = "/api/v1/workspaces/{ws}/quotas", tag = "workspaces",
    params(WorkspacePath), request_body = QuotasIn, responses(
        (status = 200, description = "the quotas as stored", body = QuotasOut),
        (status = 404, description = "`workspace_not_found`: no such workspace, or not this key's", body = ErrorBody),
        (status = 422, description = "`invalid_quota` naming each bad field in `details`, or `invalid_workspace`; nothing is stored", body = ErrorBody),
    ))]
pub async fn put_quotas(
    State(engine): State<Engine>,
    access: Access,
    ApiPath(WorkspacePath { ws }): ApiPath<WorkspacePath>,
    JsonBody(body): JsonBody,
) -> Result<Json<QuotasOut>, ApiError> {
    let quotas = parse_quotas(&body)?;
    Ok(Json(quotas_out(
        engine.set_quotas(&access, &ws, quotas).await?,
    )))
}

fn quotas_out(q: WorkspaceQuotas) -> QuotasOut {
    QuotasOut {
        workspace: q.workspace,
        runs_per_day: q.quotas.runs_per_day,
        http_attempts_per_minute: q.quotas.http_attempts_per_minute,
        updated_at: q.updated_at.map(rfc3339_ms),
    }
}

impl From<QuotaError> for ApiError {
    fn from(e: QuotaError) -> ApiError {
        match e {
            QuotaError::Workspace(message) => ApiError::Unprocessable {
                code: "invalid_workspace",
                message,
                details: Vec::new(),
            },
            QuotaError::UnknownWorkspace(ws) => crate::api::auth::workspace_not_found(&ws),
            QuotaError::Invalid(ref problems) => ApiError::Unprocessable {
                code: "invalid_quota",
                message: e.to_string(),
                details: problems
                    .iter()
                    .map(|(field, message)| json!({"field": field, "message": message}))
                    .collect(),
            },
            QuotaError::Engine(e) => e.into(),
        }
    }
}
