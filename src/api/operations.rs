//! Bulk retry and replay: `POST /api/v1/runs/retry` and `/api/v1/runs/replay` start a
//! background operation over the runs a filter matches and answer 202 with its id;
//! `GET /api/v1/operations/{id}` shows its progress and outcome.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::DateTime;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{ApiPath, JsonBody};
use crate::core::status::RunStatus;
use crate::core::workspace::Access;
use crate::engine::Engine;
use crate::runner::operations::OperationKind;
use crate::store::operations::OperationFilter;

pub use crate::engine::operations::OperationOut;

/// The runs a bulk operation handles; every key optional, no other key. Documented shape
/// only: the handler reads the body itself to name what is wrong. `S` is the statuses the
/// operation takes (a retry only `failed` and `cancelled`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct BulkFilter<S: ToSchema> {
    /// Only runs of this flow.
    flow: Option<String>,
    /// A status or a list of statuses (any of). Retry: `failed` and/or `cancelled`, default
    /// both. Replay: any, default all.
    status: Option<Vec<S>>,
    /// Only runs started for this entity type.
    entity: Option<String>,
    /// Only runs started for this entity id.
    entity_id: Option<String>,
    /// Only runs created at or after this time (RFC 3339).
    #[schema(schema_with = time_or_null)]
    since: Option<String>,
    /// Only runs created before this time (RFC 3339).
    #[schema(schema_with = time_or_null)]
    until: Option<String>,
}

/// An RFC 3339 time or `null`. As one schema with `type: [string, null]` its `format` is lost
/// on contract tools that generate strings for a list of types (schemathesis sent `""`), so
/// the two are separate branches.
fn time_or_null() -> utoipa::openapi::Schema {
    use utoipa::openapi::schema::{AnyOfBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type};
    AnyOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        )
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some("An RFC 3339 time, e.g. 2026-01-31T09:00:00Z"))
        .into()
}

/// The statuses a bulk retry takes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum RetryableStatus {
    Failed,
    Cancelled,
}

/// A bulk operation was started.
#[derive(Debug, Serialize, ToSchema)]
pub struct OperationAccepted {
    pub operation_id: String,
    /// Runs it matched (at most 100,000).
    pub matched: i64,
}

/// The `{id}` of an operation.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct OperationId {
    /// The operation's id.
    id: String,
}

/// Retries every failed or cancelled run the filter matches (at most 100,000, oldest first),
/// in the background; each at most once, across restarts.
#[utoipa::path(post, path = "/api/v1/runs/retry", tag = "runs", request_body = BulkFilter<RetryableStatus>, responses(
    (status = 202, description = "the operation started; follow it at /api/v1/operations/{id}", body = OperationAccepted),
    (status = 400, description = "a bad filter", body = ErrorBody),
))]
pub async fn bulk_retry(
    State(engine): State<Engine>,
    access: Access,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<OperationAccepted>), ApiError> {
    start(&engine, &access, OperationKind::Retry, &body).await
}

/// Starts a new run, on the flow's current revision, for every run the filter matches (at most
/// 100,000, oldest first), in the background; each at most once, across restarts.
#[utoipa::path(post, path = "/api/v1/runs/replay", tag = "runs", request_body = BulkFilter<RunStatus>, responses(
    (status = 202, description = "the operation started; follow it at /api/v1/operations/{id}", body = OperationAccepted),
    (status = 400, description = "a bad filter", body = ErrorBody),
))]
pub async fn bulk_replay(
    State(engine): State<Engine>,
    access: Access,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<OperationAccepted>), ApiError> {
    start(&engine, &access, OperationKind::Replay, &body).await
}

/// A bulk operation with its progress.
#[utoipa::path(get, path = "/api/v1/operations/{id}", tag = "runs", params(OperationId), responses(
    (status = 200, description = "the operation", body = OperationOut),
    (status = 404, description = "no such operation", body = ErrorBody),
))]
pub async fn get_operation(
    State(engine): State<Engine>,
    access: Access,
    ApiPath(OperationId { id }): ApiPath<OperationId>,
) -> Result<Json<OperationOut>, ApiError> {
    engine
        .operation(&access, &id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no operation `{id}`")))
}

async fn start(
    engine: &Engine,
    access: &Access,
    kind: OperationKind,
    body: &Value,
) -> Result<(StatusCode, Json<OperationAccepted>), ApiError> {
    let filter = parse_filter(kind, body)?;
    let op = engine.start_operation(access, kind, &filter).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(OperationAccepted {
            operation_id: op.id,
            matched: op.matched,
        }),
    ))
}

const KEYS: [&str; 6] = ["flow", "status", "entity", "entity_id", "since", "until"];

/// Reads the filter, naming the key that is wrong. The body must be an object: `{}` asks for
/// every run on purpose, never a forgotten body.
fn parse_filter(kind: OperationKind, body: &Value) -> Result<OperationFilter, ApiError> {
    let Value::Object(object) = body else {
        return Err(bad(
            "the body must be a JSON object (the filter), e.g. {\"flow\": \"guest-to-crm\", \"status\": \"failed\"}; {} for every run",
        ));
    };
    if let Some(unknown) = object.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(bad(&format!(
            "unknown filter key `{unknown}`; use {}",
            KEYS.join(", ")
        )));
    }
    let text = |key: &str| -> Result<Option<String>, ApiError> {
        match object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(&format!("`{key}` must be a string"))),
        }
    };
    let time = |key: &str| -> Result<Option<i64>, ApiError> {
        text(key)?
            .map(|t| {
                DateTime::parse_from_rfc3339(&t)
                    .map(|t| t.timestamp_millis())
                    .map_err(|_| {
                        bad(&format!(
                            "`{key}` must be an RFC 3339 time, e.g. 2026-01-31T09:00:00Z"
                        ))
                    })
            })
            .transpose()
    };
    Ok(OperationFilter {
        flow: text("flow")?,
        status: statuses(kind, object.get("status"))?,
        entity: text("entity")?,
        entity_id: text("entity_id")?,
        since: time("since")?,
        until: time("until")?,
        workspace: None,
    })
}

/// `status`: one or a list; a retry only takes `failed` and `cancelled` (both by default).
fn statuses(kind: OperationKind, value: Option<&Value>) -> Result<Vec<RunStatus>, ApiError> {
    let names: Vec<&Value> = match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(one) => vec![one],
    };
    let mut statuses = Vec::with_capacity(names.len());
    for name in names {
        let status = name
            .as_str()
            .and_then(|s| s.parse::<RunStatus>().ok())
            .ok_or_else(|| {
                bad(&format!(
                    "`status` {name} is not a run status; use pending, running, waiting, held, succeeded, failed or cancelled"
                ))
            })?;
        if kind == OperationKind::Retry
            && !matches!(status, RunStatus::Failed | RunStatus::Cancelled)
        {
            return Err(bad(&format!(
                "`status` {status}: only failed or cancelled runs can be retried"
            )));
        }
        statuses.push(status);
    }
    if kind == OperationKind::Retry && statuses.is_empty() {
        statuses = vec![RunStatus::Failed, RunStatus::Cancelled];
    }
    Ok(statuses)
}

fn bad(message: &str) -> ApiError {
    ApiError::BadRequest(message.to_string())
}
