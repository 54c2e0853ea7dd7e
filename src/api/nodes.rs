//! `GET /api/v1/nodes`: the `flowd serve` nodes sharing this database, each alive, stopped or
//! lost, with its last heartbeat and the runs it holds now. `/readyz` shows this node's own row.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::api::error::ApiError;
use crate::engine::Engine;
use crate::runner::context::rfc3339;
use crate::store::nodes::{self, NodeRow};

pub async fn list_nodes(State(engine): State<Engine>) -> Result<Json<Value>, ApiError> {
    let store = engine.store();
    let now = Utc::now().timestamp_millis();
    let rows = nodes::list(store.reader(), store.backend(), now).await?;
    let items: Vec<Value> = rows.iter().map(node_json).collect();
    Ok(Json(json!({ "items": items })))
}

fn node_json(node: &NodeRow) -> Value {
    json!({
        "id": node.id,
        "hostname": node.hostname,
        "version": node.version,
        "started_at": time(node.started_at),
        "heartbeat_at": time(node.heartbeat_at),
        "lease_ms": node.lease_ms,
        "status": node.status.as_str(),
        "stopped_at": node.stopped_at.and_then(time),
        "runs_held": node.runs_held,
    })
}

/// RFC 3339 of stored unix milliseconds.
pub fn time(millis: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp_millis(millis).map(rfc3339)
}
