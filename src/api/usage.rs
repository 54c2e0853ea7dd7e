//! `GET /api/v1/usage?flow=&since=&until=&exceeded=`: per flow and UTC day, the runs triggers started and
//! how they went (see `store::usage` for what is counted on which day).
//!
//! `since` and `until` take an RFC 3339 time or a date; a date means the whole day, so
//! `until=2026-11-23` includes 23 November. Without `since` the window is the 30 days that end
//! with `until`'s day, and without `until` it ends with today, so a day is never cut in two.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::ApiQuery;
use crate::api::page::Items;
use crate::engine::Engine;
use crate::store::usage::{self, DayUsage, UsageFilter};

/// Days in the window when `since` is not given.
pub const DEFAULT_DAYS: u64 = 30;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// Only this flow.
    flow: Option<String>,
    /// Runs started at or after: an RFC 3339 time, or a date (its midnight UTC).
    since: Option<String>,
    /// Runs started before: an RFC 3339 time, or a date (the whole day is included).
    until: Option<String>,
    /// `true`: only days on which a limit made runs wait; `false`: only the other days.
    exceeded: Option<bool>,
}

/// One flow on one UTC day: the runs its triggers started that day and how they went.
#[derive(Debug, Serialize, ToSchema)]
pub struct DayUsageOut {
    pub flow: String,
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub runs_started: i64,
    pub runs_succeeded: i64,
    pub runs_failed: i64,
    /// Requests made by the `http` steps of those runs, retries included.
    pub http_attempts: i64,
    /// How often a `rate_limit` put one of those runs off.
    pub rate_limited_waits: i64,
    /// A limit made runs wait that day (today: a `rate_limit` put runs off).
    pub exceeded: bool,
}

#[utoipa::path(get, path = "/api/v1/usage", tag = "usage", params(UsageQuery), responses(
    (status = 200, description = "per flow and day, newest day first", body = Items<DayUsageOut>),
    (status = 400, description = "a bad parameter", body = ErrorBody),
))]
pub async fn get_usage(
    State(engine): State<Engine>,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> Result<Json<Items<DayUsageOut>>, ApiError> {
    let filter = window(&q, Utc::now())?;
    let store = engine.store();
    let days = usage::usage(store.reader(), store.backend(), &filter).await?;
    let wanted = |day: &&DayUsage| q.exceeded.is_none_or(|exceeded| day.exceeded() == exceeded);
    Ok(Json(Items {
        items: days.iter().filter(wanted).map(day_out).collect(),
    }))
}

/// The filter a query asks for, with the default window around `now`.
fn window(q: &UsageQuery, now: DateTime<Utc>) -> Result<UsageFilter, ApiError> {
    let until = match q.until.as_deref() {
        Some(text) => parse_bound("until", text, Edge::End)?,
        None => midnight(now.date_naive()) + DAY_MS,
    };
    let since = match q.since.as_deref() {
        Some(text) => parse_bound("since", text, Edge::Start)?,
        None => default_since(until),
    };
    if since >= until {
        return Err(ApiError::BadRequest(format!(
            "`since` ({}) must be before `until` ({})",
            q.since.as_deref().unwrap_or_default(),
            q.until.as_deref().unwrap_or("the end of today"),
        )));
    }
    Ok(UsageFilter {
        flow: q.flow.clone(),
        since,
        until,
    })
}

const DAY_MS: i64 = 86_400_000;

/// Which end of the window a bound is: a date starts the window at its midnight and ends it
/// at the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edge {
    Start,
    End,
}

fn parse_bound(name: &str, text: &str, edge: Edge) -> Result<i64, ApiError> {
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(match edge {
            Edge::Start => midnight(date),
            Edge::End => midnight(date) + DAY_MS,
        });
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            ApiError::BadRequest(format!(
                "`{name}` must be an RFC 3339 time (2026-11-23T09:00:00Z) or a date (2026-11-23), got `{text}`"
            ))
        })
}

/// The start of the day [`DEFAULT_DAYS`] - 1 days before the day in which `until` falls.
fn default_since(until: i64) -> i64 {
    let last_day = DateTime::from_timestamp_millis(until - 1)
        .unwrap_or_default()
        .date_naive();
    let first_day = last_day
        .checked_sub_days(Days::new(DEFAULT_DAYS - 1))
        .unwrap_or(NaiveDate::MIN);
    midnight(first_day)
}

fn midnight(date: NaiveDate) -> i64 {
    date.and_time(NaiveTime::MIN).and_utc().timestamp_millis()
}

fn day_out(d: &DayUsage) -> DayUsageOut {
    DayUsageOut {
        flow: d.flow_id.clone(),
        day: d.day.format("%Y-%m-%d").to_string(),
        runs_started: d.runs_started,
        runs_succeeded: d.runs_succeeded,
        runs_failed: d.runs_failed,
        http_attempts: d.http_attempts,
        rate_limited_waits: d.rate_limited_waits,
        exceeded: d.exceeded(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(since: Option<&str>, until: Option<&str>) -> UsageQuery {
        UsageQuery {
            flow: None,
            since: since.map(str::to_owned),
            until: until.map(str::to_owned),
            exceeded: None,
        }
    }

    fn at(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T15:30:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn default_window_is_thirty_whole_days_ending_today() {
        let w = window(&query(None, None), now()).unwrap();
        assert_eq!(w.since, at("2026-10-25T00:00:00Z"));
        assert_eq!(w.until, at("2026-11-24T00:00:00Z"));
        assert_eq!((w.until - w.since) / DAY_MS, 30);
    }

    #[test]
    fn dates_cover_whole_days_and_times_are_exact() {
        let w = window(&query(Some("2026-11-01"), Some("2026-11-23")), now()).unwrap();
        assert_eq!(w.since, at("2026-11-01T00:00:00Z"));
        assert_eq!(w.until, at("2026-11-24T00:00:00Z"));
        let w = window(
            &query(
                Some("2026-11-01T08:00:00+01:00"),
                Some("2026-11-02T10:00:00Z"),
            ),
            now(),
        )
        .unwrap();
        assert_eq!(w.since, at("2026-11-01T07:00:00Z"));
        assert_eq!(w.until, at("2026-11-02T10:00:00Z"));
        // Only `until`: the thirty days up to it.
        let w = window(&query(None, Some("2026-02-28")), now()).unwrap();
        assert_eq!(w.since, at("2026-01-30T00:00:00Z"));
    }

    #[test]
    fn bad_bounds_name_the_parameter() {
        for (since, until, name) in [
            (Some("yesterday"), None, "`since`"),
            (None, Some("2026-13-01"), "`until`"),
            (Some("2026-11-23T25:00:00Z"), None, "`since`"),
            (Some("2026-11-24"), Some("2026-11-23T00:00:00Z"), "`since`"),
        ] {
            let Err(ApiError::BadRequest(message)) = window(&query(since, until), now()) else {
                panic!("{since:?} {until:?} must be refused");
            };
            assert!(message.contains(name), "{message}");
        }
    }
}
