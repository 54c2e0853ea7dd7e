//! `Authorization: Bearer <key>` on every `/api/v1` request once any API key exists.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;

use crate::api::error::ApiError;
use crate::engine::Engine;

pub async fn require_key(
    State(engine): State<Engine>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if !engine.auth_required() {
        return Ok(next.run(request).await);
    }
    let key = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match key {
        Some(key) if engine.key_is_valid(key) => Ok(next.run(request).await),
        Some(_) => Err(ApiError::Unauthorized {
            code: "unauthorized",
            message: "the API key is not valid (revoked or mistyped)".into(),
        }),
        None => Err(ApiError::Unauthorized {
            code: "unauthorized",
            message: "send `Authorization: Bearer <API key>`".into(),
        }),
    }
}
