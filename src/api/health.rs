//! `/healthz` (the process answers) and `/readyz` (the database answers too).

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::error::{ApiError, ErrorBody};
use crate::engine::Engine;

/// The process answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    status: &'static str,
}

/// The process and its database answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    #[schema(example = "ready")]
    status: &'static str,
    /// This node's name (it owns the leases of the runs it executes).
    node: String,
}

/// Liveness: answers as long as the process serves requests.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "the process answers", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: the database answers too.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "the database answers", body = Ready),
    (status = 500, description = "the database does not answer", body = ErrorBody),
))]
pub async fn readyz(State(engine): State<Engine>) -> Result<Json<Ready>, ApiError> {
    engine
        .store()
        .ping()
        .await
        .map_err(|e| ApiError::Internal(format!("database unreachable: {e}")))?;
    Ok(Json(Ready {
        status: "ready",
        node: engine.node_id().to_string(),
    }))
}
