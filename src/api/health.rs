//! `/healthz` (the process answers) and `/readyz` (the database answers too, and this node's
//! heartbeat as the node registry has it).

use axum::Json;
use axum::extract::State;
use chrono::Utc;
use serde_json::{Value, json};

use crate::api::error::ApiError;
use crate::api::nodes::time;
use crate::engine::Engine;
use crate::store::nodes;

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Reading this node's row proves the database answers. Uses the reader, so that a long queue
/// of SQLite writes does not make the node look unready.
pub async fn readyz(State(engine): State<Engine>) -> Result<Json<Value>, ApiError> {
    let store = engine.store();
    let now = Utc::now().timestamp_millis();
    let node = nodes::get_node(store.reader(), store.backend(), engine.node_id(), now)
        .await
        .map_err(|e| ApiError::Internal(format!("database unreachable: {e}")))?;
    Ok(Json(json!({
        "status": "ready",
        "node": engine.node_id(),
        "heartbeat_at": node.as_ref().and_then(|n| time(n.heartbeat_at)),
        "node_status": node.as_ref().map(|n| n.status.as_str()),
    })))
}
