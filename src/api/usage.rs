//! `GET /api/v1/usage?flow=&since=&until=&exceeded=`: per flow and UTC day, the runs triggers
//! started and how they went (see `store::usage` for what is counted on which day, and
//! `engine::reads::usage_window` for the window `since` and `until` make).

use axum::Json;
use axum::extract::State;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::ApiQuery;
use crate::api::page::Items;
use crate::core::workspace::{Access, split_flow_key};
use crate::engine::Engine;
use crate::engine::reads::usage_window;
use crate::store::usage::DayUsage;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// Only this flow.
    flow: Option<String>,
    /// Runs started at or after: an RFC 3339 time, or a date (its midnight UTC).
    #[param(schema_with = time_or_date)]
    since: Option<String>,
    /// Runs started before: an RFC 3339 time, or a date (the whole day is included).
    #[param(schema_with = time_or_date)]
    until: Option<String>,
    /// `true`: only days on which a limit made runs wait; `false`: only the other days.
    exceeded: Option<bool>,
}

/// The schema of `since` and `until`: an RFC 3339 time or a date.
fn time_or_date() -> utoipa::openapi::Schema {
    use utoipa::openapi::schema::{AnyOfBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type};
    let string_in = |format| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(format)))
    };
    AnyOfBuilder::new()
        .item(string_in(KnownFormat::DateTime))
        .item(string_in(KnownFormat::Date))
        .into()
}

/// One flow on one UTC day: the runs its triggers started that day and how they went.
#[derive(Debug, Serialize, ToSchema)]
pub struct DayUsageOut {
    /// The flow's id within its workspace.
    pub flow: String,
    /// The workspace of the flow.
    pub workspace: String,
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub runs_started: i64,
    pub runs_succeeded: i64,
    pub runs_failed: i64,
    /// Requests made by the `http` steps of those runs, retries included.
    pub http_attempts: i64,
    /// How often a `rate_limit` put one of those runs off.
    pub rate_limited_waits: i64,
    /// Runs a workspace quota held that day (runs per day or HTTP attempts per minute); a run
    /// held again on a later day counts on that day too.
    pub quota_held: i64,
    /// Whether a limit made runs wait that day: a rate limit or a workspace quota.
    pub exceeded: bool,
}

#[utoipa::path(get, path = "/api/v1/usage", tag = "usage", params(UsageQuery), responses(
    (status = 200, description = "per flow and day, newest day first", body = Items<DayUsageOut>),
    (status = 400, description = "a bad parameter", body = ErrorBody),
))]
pub async fn get_usage(
    State(engine): State<Engine>,
    access: Access,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> Result<Json<Items<DayUsageOut>>, ApiError> {
    let filter = usage_window(q.flow, q.since.as_deref(), q.until.as_deref(), Utc::now())
        .map_err(ApiError::BadRequest)?;
    let days = engine.usage(&access, &filter, q.exceeded).await?;
    Ok(Json(Items {
        items: days.iter().map(day_out).collect(),
    }))
}

fn day_out(d: &DayUsage) -> DayUsageOut {
    DayUsageOut {
        flow: split_flow_key(&d.flow_id).1.to_string(),
        workspace: split_flow_key(&d.flow_id).0.to_string(),
        day: d.day.format("%Y-%m-%d").to_string(),
        runs_started: d.runs_started,
        runs_succeeded: d.runs_succeeded,
        runs_failed: d.runs_failed,
        http_attempts: d.http_attempts,
        rate_limited_waits: d.rate_limited_waits,
        quota_held: d.quota_held,
        exceeded: d.exceeded(),
    }
}
