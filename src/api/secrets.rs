//! The secret store: `GET /api/v1/secrets`, `PUT /api/v1/secrets/{name}` (the value is
//! write-only) and `DELETE /api/v1/secrets/{name}`, of the key's workspace (SPEC §11). No answer
//! ever carries a value.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{ApiPath, JsonBody};
use crate::api::page::Items;
use crate::core::time::rfc3339;
use crate::core::workspace::Access;
use crate::engine::Engine;
use crate::engine::secrets::{SecretError, SecretInfo};
use crate::secrets::Source;

/// One secret: never its value. Times are RFC 3339 UTC, null for a secret set only by the
/// environment.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretOut {
    /// The workspace it belongs to.
    workspace: String,
    name: String,
    #[schema(format = DateTime)]
    created_at: Option<String>,
    #[schema(format = DateTime)]
    updated_at: Option<String>,
    /// Where the value in effect comes from: `environment` (`FLOWD_SECRET_<NAME>`) wins over
    /// `store`.
    source: Source,
    /// Flows whose templates read it.
    used_by: Vec<String>,
    /// False when the stored value cannot be decrypted with this node's master key: set it
    /// again.
    readable: bool,
}

/// The body of a PUT: the value, at most 64 KiB.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretIn {
    /// Write-only: never shown again.
    #[allow(dead_code)] // read from the JSON body by hand, to name what is wrong
    value: String,
}

/// The `{name}` of a secret.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SecretName {
    /// `[A-Z][A-Z0-9_]{0,63}`, as templates write it: `{{secrets.NAME}}`.
    #[param(pattern = r"^[A-Z][A-Z0-9_]{0,63}$")]
    name: String,
}

/// Every secret, by name, with where it is set and which flows use it.
#[utoipa::path(get, path = "/api/v1/secrets", tag = "secrets", responses(
    (status = 200, description = "the secrets, by name; never their values", body = Items<SecretOut>),
))]
pub async fn list_secrets(
    State(engine): State<Engine>,
    access: Access,
) -> Result<Json<Items<SecretOut>>, ApiError> {
    let items = engine.list_secrets(&access).await?;
    Ok(Json(Items {
        items: items.iter().map(secret_out).collect(),
    }))
}

/// Sets a secret (creates or replaces it), encrypted at rest; the next attempt of every node
/// uses it, within a second, without a restart.
#[utoipa::path(put, path = "/api/v1/secrets/{name}", tag = "secrets", params(SecretName),
    request_body = SecretIn, responses(
        (status = 200, description = "the secret as listed; `source: environment` means FLOWD_SECRET_<NAME> is set and still wins", body = SecretOut),
        (status = 422, description = "`invalid_secret`: a bad name, an empty value or one over 64 KiB", body = ErrorBody),
        (status = 503, description = "`no_master_key`: the server has no key to encrypt with", body = ErrorBody),
    ))]
pub async fn put_secret(
    State(engine): State<Engine>,
    access: Access,
    ApiPath(SecretName { name }): ApiPath<SecretName>,
    JsonBody(body): JsonBody,
) -> Result<Json<SecretOut>, ApiError> {
    let value = read_value(body)?;
    let info = engine.set_secret(&access, &name, &value).await?;
    Ok(Json(secret_out(&info)))
}

/// Deletes a stored secret; one set by the environment stays until its variable goes.
#[utoipa::path(delete, path = "/api/v1/secrets/{name}", tag = "secrets", params(SecretName),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, description = "no stored secret by that name", body = ErrorBody),
        (status = 422, description = "`invalid_secret`: a bad name", body = ErrorBody),
    ))]
pub async fn delete_secret(
    State(engine): State<Engine>,
    access: Access,
    ApiPath(SecretName { name }): ApiPath<SecretName>,
) -> Result<StatusCode, ApiError> {
    engine.delete_secret(&access, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The `value` of `{"value": "…"}`; anything else is named, the value never echoed.
fn read_value(body: Value) -> Result<String, ApiError> {
    let invalid = |message: &str| ApiError::Unprocessable {
        code: "invalid_secret",
        message: message.to_string(),
        details: Vec::new(),
    };
    let Value::Object(mut fields) = body else {
        return Err(invalid("the body must be {\"value\": \"…\"}"));
    };
    if let Some(other) = fields.keys().find(|k| *k != "value") {
        return Err(invalid(&format!(
            "unknown field `{other}`: the body is {{\"value\": \"…\"}}"
        )));
    }
    match fields.remove("value") {
        Some(Value::String(value)) => Ok(value),
        Some(_) => Err(invalid("`value` must be a string")),
        None => Err(invalid(
            "`value` is missing: the body is {\"value\": \"…\"}",
        )),
    }
}

fn secret_out(info: &SecretInfo) -> SecretOut {
    let time = |t: Option<i64>| {
        t.and_then(DateTime::<Utc>::from_timestamp_millis)
            .map(rfc3339)
    };
    SecretOut {
        workspace: info.workspace.clone(),
        name: info.name.clone(),
        created_at: time(info.created_at),
        updated_at: time(info.updated_at),
        source: info.source,
        used_by: info.used_by.clone(),
        readable: info.readable,
    }
}

impl From<SecretError> for ApiError {
    fn from(e: SecretError) -> ApiError {
        let message = e.to_string();
        match e {
            SecretError::Invalid(_) => ApiError::Unprocessable {
                code: "invalid_secret",
                message,
                details: Vec::new(),
            },
            SecretError::NoMasterKey => ApiError::Unavailable {
                code: "no_master_key",
                message,
            },
            SecretError::NotFound(_) => ApiError::NotFound(message),
            SecretError::Store(e) => e.into(),
        }
    }
}
