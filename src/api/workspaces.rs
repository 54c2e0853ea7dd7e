//! Workspaces (SPEC §11): `GET /api/v1/workspaces` (an admin key sees every workspace, any
//! other key its own) and `POST /api/v1/workspaces {"name"}` (admin keys).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::JsonBody;
use crate::api::page::Items;
use crate::core::time::rfc3339;
use crate::core::workspace::Access;
use crate::engine::Engine;
use crate::engine::workspaces::WorkspaceError;
use crate::store::workspaces::WorkspaceRow;

/// One workspace.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkspaceOut {
    #[schema(pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$")]
    name: String,
    #[schema(format = DateTime)]
    created_at: String,
}

/// The body of a POST.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceIn {
    /// Lower-case letters, digits, `_` and `-`, at most 64 characters.
    #[schema(pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$")]
    name: String,
}

/// The workspaces the key sees: all of them for an admin key, else its own.
#[utoipa::path(get, path = "/api/v1/workspaces", tag = "workspaces", responses(
    (status = 200, description = "the workspaces, by name", body = Items<WorkspaceOut>),
))]
pub async fn list_workspaces(
    State(engine): State<Engine>,
    access: Access,
) -> Result<Json<Items<WorkspaceOut>>, ApiError> {
    let rows = engine.list_workspaces(&access).await?;
    Ok(Json(Items {
        items: rows.iter().map(workspace_out).collect(),
    }))
}

/// Creates a workspace (admin keys).
#[utoipa::path(post, path = "/api/v1/workspaces", tag = "workspaces", request_body = WorkspaceIn,
    responses(
        (status = 201, description = "created", body = WorkspaceOut),
        (status = 409, description = "`workspace_taken`: the name is taken", body = ErrorBody),
        (status = 422, description = "`invalid_workspace`: not a workspace name, or not `{\"name\"}`", body = ErrorBody),
    ))]
pub async fn create_workspace(
    State(engine): State<Engine>,
    access: Access,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<WorkspaceOut>), ApiError> {
    let WorkspaceIn { name } = serde_json::from_value(body).map_err(|e| invalid(e.to_string()))?;
    let row = engine.create_workspace(&access, &name).await?;
    Ok((StatusCode::CREATED, Json(workspace_out(&row))))
}

fn invalid(message: String) -> ApiError {
    ApiError::Unprocessable {
        code: "invalid_workspace",
        message: format!("the body must be {{\"name\": \"…\"}}: {message}"),
        details: Vec::new(),
    }
}

fn workspace_out(row: &WorkspaceRow) -> WorkspaceOut {
    WorkspaceOut {
        name: row.name.clone(),
        created_at: DateTime::<Utc>::from_timestamp_millis(row.created_at)
            .map(rfc3339)
            .unwrap_or_default(),
    }
}

impl From<WorkspaceError> for ApiError {
    fn from(e: WorkspaceError) -> ApiError {
        let message = e.to_string();
        match e {
            WorkspaceError::BadName(_) => ApiError::Unprocessable {
                code: "invalid_workspace",
                message,
                details: Vec::new(),
            },
            WorkspaceError::Taken(_) => ApiError::Conflict {
                code: "workspace_taken",
                message,
            },
            WorkspaceError::Engine(e) => e.into(),
        }
    }
}
