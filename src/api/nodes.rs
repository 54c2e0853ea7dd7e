//! `GET /api/v1/nodes`: the `flowd serve` nodes sharing this database, each alive, stopped or
//! lost, with its last heartbeat and the runs it holds now. `/readyz` shows this node's own row.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::error::ApiError;
use crate::api::page::Items;
use crate::core::time::rfc3339;
use crate::engine::Engine;
use crate::store::nodes::NodeRow;

/// One `flowd serve` node that used this database. Times are RFC 3339 UTC.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeOut {
    pub id: String,
    pub hostname: String,
    pub version: String,
    pub started_at: Option<String>,
    pub heartbeat_at: Option<String>,
    /// Its lease: a node with no heartbeat for longer is `lost`.
    pub lease_ms: i64,
    /// `alive`, `stopped` (an orderly stop) or `lost`.
    #[schema(example = "alive")]
    pub status: &'static str,
    pub stopped_at: Option<String>,
    /// Runs executing under its unexpired lease.
    pub runs_held: u64,
}

#[utoipa::path(get, path = "/api/v1/nodes", tag = "nodes", responses(
    (status = 200, description = "every node, newest start first", body = Items<NodeOut>),
))]
pub async fn list_nodes(State(engine): State<Engine>) -> Result<Json<Items<NodeOut>>, ApiError> {
    let rows = engine.nodes().await?;
    Ok(Json(Items {
        items: rows.iter().map(node_out).collect(),
    }))
}

fn node_out(node: &NodeRow) -> NodeOut {
    NodeOut {
        id: node.id.clone(),
        hostname: node.hostname.clone(),
        version: node.version.clone(),
        started_at: time(node.started_at),
        heartbeat_at: time(node.heartbeat_at),
        lease_ms: node.lease_ms,
        status: node.status.as_str(),
        stopped_at: node.stopped_at.and_then(time),
        runs_held: node.runs_held,
    }
}

/// RFC 3339 of stored unix milliseconds.
pub fn time(millis: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp_millis(millis).map(rfc3339)
}
