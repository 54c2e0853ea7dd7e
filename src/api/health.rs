//! `/healthz` (the process answers) and `/readyz` (the database answers too, and this node's
//! heartbeat as the node registry has it).

use axum::Json;
use axum::extract::State;
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::error::{ApiError, ErrorBody, InternalError};
use crate::api::nodes::time;
use crate::engine::Engine;
use crate::store::nodes;

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
    /// This node's last heartbeat in the node registry (RFC 3339).
    heartbeat_at: Option<String>,
    /// `alive`, `stopped` or `lost`, as `GET /api/v1/nodes` shows it.
    node_status: Option<&'static str>,
}

/// Liveness: answers as long as the process serves requests.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "the process answers", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: reading this node's registry row proves the database answers. Uses the reader,
/// so that a long queue of SQLite writes does not make the node look unready.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "the database answers", body = Ready),
    (status = 500, description = "the database does not answer", body = ErrorBody),
))]
pub async fn readyz(State(engine): State<Engine>) -> Result<Json<Ready>, ApiError> {
    let store = engine.store();
    let now = Utc::now().timestamp_millis();
    let node = nodes::get_node(store.reader(), store.backend(), engine.node_id(), now)
        .await
        .map_err(InternalError::Unreachable)?;
    Ok(Json(Ready {
        status: "ready",
        node: engine.node_id().to_string(),
        heartbeat_at: node.as_ref().and_then(|n| time(n.heartbeat_at)),
        node_status: node.as_ref().map(|n| n.status.as_str()),
    }))
}
