//! Reads the API and the console share: usage per flow and day, the nodes, the inbox.

use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};

use crate::core::workspace::{Access, split_flow_key};
use crate::engine::flows::key_of;
use crate::engine::{Engine, EngineError};
use crate::store::StoreError;
use crate::store::nodes::{self, NodeRow};
use crate::store::notifications::{self, Cursor, Notification};
use crate::store::usage::{self, DayUsage, UsageFilter};

/// Days in the usage window when `since` is not given.
pub const DEFAULT_USAGE_DAYS: u64 = 30;

const DAY_MS: i64 = 86_400_000;

impl Engine {
    /// Usage per flow and day, newest day first; with `exceeded: Some(true)` only the days on
    /// which a limit made runs wait, with `Some(false)` only the other days.
    /// Only the flows `access` sees; `filter.flow` is a flow id of its workspace. Rows keep
    /// the flow key in `flow_id` (split it with `core::workspace::split_flow_key`).
    pub async fn usage(
        &self,
        access: &Access,
        filter: &UsageFilter,
        exceeded: Option<bool>,
    ) -> Result<Vec<DayUsage>, EngineError> {
        let store = self.store();
        let filter = UsageFilter {
            flow: filter.flow.as_deref().map(|id| key_of(access, id)),
            ..filter.clone()
        };
        let snapshot = store.begin_snapshot().await?;
        let mut days = usage::usage(&snapshot, store.backend(), &filter).await?;
        snapshot.commit().await.map_err(StoreError::from)?;
        days.retain(|day| access.sees(split_flow_key(&day.flow_id).0));
        if let Some(wanted) = exceeded {
            days.retain(|day| day.exceeded() == wanted);
        }
        Ok(days)
    }

    /// Every node sharing this database, newest start first.
    pub async fn nodes(&self) -> Result<Vec<NodeRow>, EngineError> {
        let store = self.store();
        let now = Utc::now().timestamp_millis();
        Ok(nodes::list(store.reader(), store.backend(), now).await?)
    }

    /// Notifications, newest first, after `after`, at most `limit`.
    /// Notifications of the workspaces `access` sees, newest first, after `after`, at most
    /// `limit`.
    pub async fn notifications(
        &self,
        access: &Access,
        unread_only: bool,
        after: Option<&Cursor>,
        limit: u64,
    ) -> Result<Vec<Notification>, EngineError> {
        let store = self.store();
        let workspace = (!access.all_workspaces).then_some(access.workspace.as_str());
        let (reader, backend) = (store.reader(), store.backend());
        Ok(notifications::list(reader, backend, workspace, unread_only, after, limit).await?)
    }

    /// Marks a notification read; false when there is no such notification `access` sees.
    pub async fn mark_notification_read(
        &self,
        access: &Access,
        id: &str,
    ) -> Result<bool, EngineError> {
        let store = self.store();
        let now = Utc::now().timestamp_millis();
        let workspace = (!access.all_workspaces).then_some(access.workspace.as_str());
        let (writer, backend) = (store.writer(), store.backend());
        Ok(notifications::mark_read(writer, backend, workspace, id, now).await?)
    }
}

/// The usage window a request asks for. `since` and `until` take an RFC 3339 time or a date; a
/// date means the whole day, so `until=2026-11-23` includes 23 November. Without `since` the
/// window is the [`DEFAULT_USAGE_DAYS`] days that end with `until`'s day, and without `until` it
/// ends with today, so a day is never cut in two. The error names the bad parameter.
pub fn usage_window(
    flow: Option<String>,
    since: Option<&str>,
    until: Option<&str>,
    now: DateTime<Utc>,
) -> Result<UsageFilter, String> {
    let until_ms = match until {
        Some(text) => parse_bound("until", text, Edge::End)?,
        None => midnight(now.date_naive()) + DAY_MS,
    };
    let since_ms = match since {
        Some(text) => parse_bound("since", text, Edge::Start)?,
        None => default_since(until_ms),
    };
    if since_ms >= until_ms {
        return Err(format!(
            "`since` ({}) must be before `until` ({})",
            since.unwrap_or_default(),
            until.unwrap_or("the end of today"),
        ));
    }
    Ok(UsageFilter {
        flow,
        since: since_ms,
        until: until_ms,
    })
}

/// Which end of a time window a bound is: a date starts the window at its midnight and ends it
/// at the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    Start,
    End,
}

pub fn parse_bound(name: &str, text: &str, edge: Edge) -> Result<i64, String> {
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(match edge {
            Edge::Start => midnight(date),
            Edge::End => midnight(date) + DAY_MS,
        });
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            format!(
                "`{name}` must be an RFC 3339 time (2026-11-23T09:00:00Z) or a date (2026-11-23), got `{text}`"
            )
        })
}

/// The start of the day [`DEFAULT_USAGE_DAYS`] - 1 days before the day in which `until` falls.
fn default_since(until: i64) -> i64 {
    let last_day = DateTime::from_timestamp_millis(until - 1)
        .unwrap_or_default()
        .date_naive();
    let first_day = last_day
        .checked_sub_days(Days::new(DEFAULT_USAGE_DAYS - 1))
        .unwrap_or(NaiveDate::MIN);
    midnight(first_day)
}

fn midnight(date: NaiveDate) -> i64 {
    date.and_time(NaiveTime::MIN).and_utc().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(since: Option<&str>, until: Option<&str>) -> Result<UsageFilter, String> {
        usage_window(None, since, until, now())
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
        let w = window(None, None).unwrap();
        assert_eq!(w.since, at("2026-10-25T00:00:00Z"));
        assert_eq!(w.until, at("2026-11-24T00:00:00Z"));
        assert_eq!((w.until - w.since) / DAY_MS, 30);
    }

    #[test]
    fn dates_cover_whole_days_and_times_are_exact() {
        let w = window(Some("2026-11-01"), Some("2026-11-23")).unwrap();
        assert_eq!(w.since, at("2026-11-01T00:00:00Z"));
        assert_eq!(w.until, at("2026-11-24T00:00:00Z"));
        let w = window(
            Some("2026-11-01T08:00:00+01:00"),
            Some("2026-11-02T10:00:00Z"),
        )
        .unwrap();
        assert_eq!(w.since, at("2026-11-01T07:00:00Z"));
        assert_eq!(w.until, at("2026-11-02T10:00:00Z"));
        // Only `until`: the thirty days up to it.
        let w = window(None, Some("2026-02-28")).unwrap();
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
            let Err(message) = window(since, until) else {
                panic!("{since:?} {until:?} must be refused");
            };
            assert!(message.contains(name), "{message}");
        }
    }
}
