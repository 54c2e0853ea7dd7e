//! `POST /hooks/{path}`: the webhook trigger. 202 `{"run_id"}` once the run is stored; a
//! repeated `webhook-id` answers the first run's id again.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::api::error::ApiError;
use crate::api::extract::RawBody;
use crate::engine::Engine;

pub async fn receive(
    State(engine): State<Engine>,
    Path(path): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let received = engine.receive_webhook(&path, &headers, &body).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "run_id": received.run_id })),
    ))
}
