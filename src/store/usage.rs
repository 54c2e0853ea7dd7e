//! Usage per flow and UTC day (`GET /api/v1/usage`) and the run counts `/metrics` reads at
//! scrape time.
//!
//! Usage groups runs by the day they were created (a trigger started them) and counts, for
//! those runs, how many succeeded and failed, the attempts of their `http` steps (attempts of
//! `notify` steps are not HTTP usage, even when Slack is called over HTTP) and their
//! rate-limited waits. A day's row therefore only grows while its runs finish. It is the daily
//! rollup (`usage_daily`, where finished runs are folded shortly after they end, see `rollup`)
//! of the whole days in the window, plus a count of the runs not folded yet: a range of the partial index that holds only those
//! (the runs in flight and the few finished since the last fold), with a primary-key lookup of
//! each one's step rows. Its cost therefore follows the flows and days in the window and the
//! runs in flight, not the history. Days the window cuts (an RFC 3339 bound that is not a
//! midnight) are counted from the runs kept in the cut part instead, at most two days' runs.

use chrono::NaiveDate;
use sea_orm::{ConnectionTrait, Value};

use crate::store::sql::{get, stmt};
use crate::store::{Backend, StoreError};

const DAY_MS: i64 = 86_400_000;

pub mod rollup;

/// Which runs to count: created in `[since, until)` (unix milliseconds), of one flow or all.
/// On days the window cuts (bounds that are not midnights), runs pruned by retention are not
/// counted: the rollup keeps whole days only.
#[derive(Debug, Clone)]
pub struct UsageFilter {
    pub flow: Option<String>,
    pub since: i64,
    pub until: i64,
}

/// The usage of one flow on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayUsage {
    pub flow_id: String,
    pub day: NaiveDate,
    pub runs_started: i64,
    pub runs_succeeded: i64,
    pub runs_failed: i64,
    pub http_attempts: i64,
    pub rate_limited_waits: i64,
    /// Runs a workspace quota held that day (`store::quotas`), counted on the day of the hold.
    pub quota_held: i64,
}

impl DayUsage {
    /// Whether a limit made runs wait that day (`exceeded`): a rate limit put runs off, or a
    /// workspace quota held some.
    pub fn exceeded(&self) -> bool {
        self.rate_limited_waits > 0 || self.quota_held > 0
    }
}

/// Usage per flow and day, newest day first, then by flow id.
pub async fn usage(
    conn: &impl ConnectionTrait,
    backend: Backend,
    filter: &UsageFilter,
) -> Result<Vec<DayUsage>, StoreError> {
    let with_flow = |mut values: Vec<Value>| {
        if let Some(flow) = &filter.flow {
            values.push(flow.clone().into());
        }
        values
    };
    let window = Window::of(filter.since, filter.until);
    let mut rows = Vec::new();
    // Days cut by the window are counted from the runs still kept: the rollup cannot split one.
    for (since, until) in window.cut_parts() {
        let sql = usage_sql(filter.flow.is_some(), false);
        let values = with_flow(vec![since.into(), until.into()]);
        rows.extend(conn.query_all_raw(stmt(backend, &sql, values)).await?);
    }
    if let Some((first, end)) = window.whole_days {
        // Whole days: the rollup, plus the runs not folded into it yet.
        let sql = usage_sql(filter.flow.is_some(), true);
        let values = with_flow(vec![(first * DAY_MS).into(), (end * DAY_MS).into()]);
        rows.extend(conn.query_all_raw(stmt(backend, &sql, values)).await?);
        let flow = if filter.flow.is_some() {
            " AND flow_id = ?"
        } else {
            ""
        };
        let rollup = format!(
            "SELECT flow_id, day, runs_started, runs_succeeded, runs_failed, http_attempts, rate_limited_waits \
             FROM usage_daily WHERE day >= ? AND day < ?{flow}"
        );
        let values = with_flow(vec![first.into(), end.into()]);
        rows.extend(conn.query_all_raw(stmt(backend, &rollup, values)).await?);
    }
    let parts = rows
        .iter()
        .map(|row| {
            let day: i64 = get(row, "day")?;
            Ok(DayUsage {
                flow_id: get(row, "flow_id")?,
                day: day_date(day),
                runs_started: get(row, "runs_started")?,
                runs_succeeded: get(row, "runs_succeeded")?,
                runs_failed: get(row, "runs_failed")?,
                http_attempts: get(row, "http_attempts")?,
                rate_limited_waits: get(row, "rate_limited_waits")?,
                quota_held: 0,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let mut parts = parts;
    parts.extend(quota_parts(conn, backend, filter).await?);
    let mut days = merge_days(parts);
    // Sorted here: PostgreSQL's collation may order flow ids differently from SQLite's bytes.
    days.sort_by(|a, b| b.day.cmp(&a.day).then_with(|| a.flow_id.cmp(&b.flow_id)));
    Ok(days)
}

/// A usage window split into the whole UTC days it holds (day numbers `[first, end)`) and the
/// cut days at its edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    since: i64,
    until: i64,
    whole_days: Option<(i64, i64)>,
}

impl Window {
    fn of(since: i64, until: i64) -> Window {
        let first = (since + DAY_MS - 1).div_euclid(DAY_MS);
        let end = until.div_euclid(DAY_MS);
        Window {
            since,
            until,
            whole_days: (first < end).then_some((first, end)),
        }
    }

    /// The parts of the window outside its whole days, as `[since, until)` milliseconds.
    fn cut_parts(&self) -> Vec<(i64, i64)> {
        let Some((first, end)) = self.whole_days else {
            return vec![(self.since, self.until)];
        };
        [(self.since, first * DAY_MS), (end * DAY_MS, self.until)]
            .into_iter()
            .filter(|(since, until)| since < until)
            .collect()
    }
}

/// The live part: one pass over the runs created in a range, all of them (`only_unfolded`
/// false, for cut days) or those not folded yet (the partial index
/// `idx_runs_usage_unfolded`), with each run's `http` attempts read from its step rows (`step_runs.attempts` is the number
/// of attempts recorded for the step, so the attempts table itself is not read).
fn usage_sql(one_flow: bool, only_unfolded: bool) -> String {
    let flow = if one_flow { " AND r.flow_id = ?" } else { "" };
    let unfolded = if only_unfolded {
        "r.usage_folded = FALSE AND "
    } else {
        ""
    };
    // PostgreSQL sums BIGINTs into NUMERIC: cast back so both backends answer BIGINT.
    format!(
        "SELECT flow_id, day, COUNT(*) AS runs_started, \
         CAST(SUM(CASE WHEN status = 'succeeded' THEN 1 ELSE 0 END) AS BIGINT) AS runs_succeeded, \
         CAST(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS BIGINT) AS runs_failed, \
         CAST(SUM(http) AS BIGINT) AS http_attempts, \
         CAST(SUM(rate_limited_waits) AS BIGINT) AS rate_limited_waits \
         FROM (SELECT r.flow_id, r.created_at / {DAY_MS} AS day, r.status, r.rate_limited_waits, \
           (SELECT COALESCE(SUM(s.attempts), 0) FROM step_runs s \
             WHERE s.run_id = r.id AND s.kind = 'http') AS http \
           FROM runs r WHERE {unfolded}r.created_at >= ? AND r.created_at < ?{flow}) u \
         GROUP BY flow_id, day"
    )
}

/// Adds up the parts of one flow and day (live runs and the rollup of pruned ones).
fn merge_days(parts: Vec<DayUsage>) -> Vec<DayUsage> {
    let mut days: std::collections::HashMap<(String, NaiveDate), DayUsage> =
        std::collections::HashMap::with_capacity(parts.len());
    for part in parts {
        match days.get_mut(&(part.flow_id.clone(), part.day)) {
            Some(day) => {
                day.runs_started += part.runs_started;
                day.runs_succeeded += part.runs_succeeded;
                day.runs_failed += part.runs_failed;
                day.http_attempts += part.http_attempts;
                day.rate_limited_waits += part.rate_limited_waits;
                day.quota_held += part.quota_held;
            }
            None => {
                days.insert((part.flow_id.clone(), part.day), part);
            }
        }
    }
    days.into_values().collect()
}

/// The quota holds of the days the window touches (kept per whole day: a cut day counts its
/// holds whole), as parts with only `quota_held` set.
async fn quota_parts(
    conn: &impl ConnectionTrait,
    backend: Backend,
    filter: &UsageFilter,
) -> Result<Vec<DayUsage>, StoreError> {
    let first = filter.since.div_euclid(DAY_MS);
    let end = (filter.until + DAY_MS - 1).div_euclid(DAY_MS);
    let holds =
        crate::store::quotas::holds(conn, backend, filter.flow.as_deref(), first, end).await?;
    Ok(holds
        .into_iter()
        .map(|(flow_id, day, held)| DayUsage {
            flow_id,
            day: day_date(day),
            runs_started: 0,
            runs_succeeded: 0,
            runs_failed: 0,
            http_attempts: 0,
            rate_limited_waits: 0,
            quota_held: held,
        })
        .collect())
}

/// The date of a day number (days since 1970-01-01).
fn day_date(day: i64) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1)
        .and_then(|epoch| epoch.checked_add_signed(chrono::Duration::days(day)))
        .unwrap_or_default()
}

/// Runs not finished yet, by status, on every node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActiveRuns {
    pub pending: i64,
    pub running: i64,
    pub waiting: i64,
    /// Kept while their flow is paused.
    pub held: i64,
}

/// Counts the runs not finished yet: a range of the `(status, id)` index, so its cost follows
/// the runs in flight, not the history.
pub async fn active_runs(
    conn: &impl ConnectionTrait,
    backend: Backend,
) -> Result<ActiveRuns, StoreError> {
    let sql = "SELECT status, COUNT(*) AS n FROM runs \
               WHERE status IN ('pending', 'running', 'waiting', 'held') GROUP BY status";
    let mut active = ActiveRuns::default();
    for row in conn.query_all_raw(stmt(backend, sql, Vec::new())).await? {
        let n: i64 = get(&row, "n")?;
        match get::<String>(&row, "status")?.as_str() {
            "pending" => active.pending = n,
            "running" => active.running = n,
            "held" => active.held = n,
            _ => active.waiting = n,
        }
    }
    Ok(active)
}

#[cfg(test)]
mod tests;
