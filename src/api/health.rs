//! `/healthz` (the process answers) and `/readyz` (the database answers too).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::api::error::ApiError;
use crate::engine::Engine;

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(State(engine): State<Engine>) -> Result<Json<Value>, ApiError> {
    engine
        .store()
        .ping()
        .await
        .map_err(|e| ApiError::Internal(format!("database unreachable: {e}")))?;
    Ok(Json(json!({"status": "ready", "node": engine.node_id()})))
}
