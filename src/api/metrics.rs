//! `GET /metrics`: Prometheus text format 0.0.4. It needs an API key once keys exist, like
//! `/api/v1`, because its labels name every flow; `/healthz` and `/readyz` stay open. The in-process
//! counters come from the engine; the run counts (`flowd_queue_depth`, `flowd_runs_active`)
//! are read from the database with one cheap query per scrape. When the database does not
//! answer, the scrape still succeeds without them: the process's own counters stay readable.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tracing::warn;

use crate::api::error::{ApiError, InternalError};
use crate::engine::Engine;
use crate::metrics::CONTENT_TYPE;
use crate::store::usage;

#[utoipa::path(get, path = "/metrics", tag = "health", responses(
    (status = 200, description = "Prometheus text format 0.0.4; metric names start with `flowd_`",
        body = String, content_type = "text/plain; version=0.0.4"),
))]
pub async fn metrics(State(engine): State<Engine>) -> Result<Response, ApiError> {
    let store = engine.store();
    let active = match usage::active_runs(store.reader(), store.backend()).await {
        Ok(active) => Some(active),
        Err(error) => {
            warn!(%error, "Counting runs for /metrics failed; the scrape leaves them out.");
            None
        }
    };
    let text = engine
        .metrics()
        .render(active.as_ref())
        .map_err(InternalError::Metrics)?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}
