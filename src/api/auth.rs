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
        .and_then(bearer_token);
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

/// The token of `Authorization: Bearer <token>`. The scheme is case-insensitive (RFC 9110 §11.1),
/// so `BEARER` and `bearer` work as well as `Bearer`.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for header in ["Bearer k1", "bearer k1", "BEARER k1", "BeArEr   k1 "] {
            assert_eq!(bearer_token(header), Some("k1"), "{header}");
        }
        for header in ["Basic k1", "Bearerk1", "k1", ""] {
            assert_eq!(bearer_token(header), None, "{header}");
        }
    }
}
