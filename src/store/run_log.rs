//! Reading runs for people: the run log with filters and cursor pagination, and one run with
//! its steps and every attempt. Pagination walks run ids (UUIDv7, so time-ordered) downwards,
//! which never skips or repeats a run while new ones arrive.

use sea_orm::{ConnectionTrait, QueryResult, Statement, Value};

use crate::core::status::{RunStatus, StepStatus, WaitFacts, WaitingReason};
use crate::store::runs::ORDER_BLOCKED;
use crate::store::sql::{get, get_parsed, stmt};
use crate::store::{Backend, StoreError};

/// Filters of the run log; all optional.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// A flow key.
    pub flow: Option<String>,
    /// Only runs of this workspace.
    pub workspace: Option<String>,
    pub status: Option<RunStatus>,
    pub entity: Option<String>,
    pub entity_id: Option<String>,
    /// Created at or after (UTC millis).
    pub since: Option<i64>,
    /// Created before (UTC millis).
    pub until: Option<i64>,
    /// Only runs with an id below this one (the cursor).
    pub before_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RunRow {
    pub id: String,
    pub flow_id: String,
    pub revision: i64,
    pub status: RunStatus,
    pub trigger: String,
    pub attempt: i64,
    pub error: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub wake_at: Option<i64>,
    pub lease_owner: Option<String>,
    /// When the claim may take it.
    pub due_at: Option<i64>,
    /// The kind of the step it is at, once that step started (`delay` tells a delay from a
    /// retry backoff).
    pub step_kind: Option<String>,
    /// Whether its flow is paused now.
    pub flow_paused: bool,
    /// Whether it is pending behind an earlier unfinished run with the same order key.
    pub order_blocked: bool,
}

impl RunRow {
    /// Why it waits at `now` and until when (SPEC §5 `waiting_reason`); `flow_full`: its flow
    /// executes as many runs as its `concurrency` allows.
    pub fn waiting_reason(
        &self,
        now: i64,
        flow_full: bool,
    ) -> Option<(WaitingReason, Option<i64>)> {
        WaitFacts {
            status: self.status,
            due_at: self.due_at,
            wake_at: self.wake_at,
            step_kind: self.step_kind.as_deref(),
            flow_paused: self.flow_paused,
            order_blocked: self.order_blocked,
            flow_full,
        }
        .reason(now)
    }
}

/// The run's own columns, and the look-ups that tell why it waits: two by primary key, and
/// for a pending run with an order key one on the order index.
static RUN_COLUMNS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "id, flow_id, revision, status, trigger, attempt, error, created_at, started_at, finished_at, wake_at, lease_owner, due_at, \
         (SELECT s.kind FROM step_runs s WHERE s.run_id = runs.id AND s.step_index = runs.next_step) AS step_kind, \
         COALESCE((SELECT f.paused FROM flows f WHERE f.id = runs.flow_id), FALSE) AS flow_paused, \
         CASE WHEN runs.status = 'pending' AND {ORDER_BLOCKED} THEN TRUE ELSE FALSE END AS order_blocked"
    )
});

fn run_row(row: &QueryResult) -> Result<RunRow, StoreError> {
    Ok(RunRow {
        id: get(row, "id")?,
        flow_id: get(row, "flow_id")?,
        revision: get(row, "revision")?,
        status: get_parsed(row, "status")?,
        trigger: get(row, "trigger")?,
        attempt: get::<i32>(row, "attempt")?.into(),
        error: get(row, "error")?,
        created_at: get(row, "created_at")?,
        started_at: get(row, "started_at")?,
        finished_at: get(row, "finished_at")?,
        wake_at: get(row, "wake_at")?,
        lease_owner: get(row, "lease_owner")?,
        due_at: get(row, "due_at")?,
        step_kind: get(row, "step_kind")?,
        flow_paused: get(row, "flow_paused")?,
        order_blocked: get(row, "order_blocked")?,
    })
}

/// Runs matching `filter`, newest first, at most `limit`.
pub async fn list(
    conn: &impl ConnectionTrait,
    backend: Backend,
    filter: &RunFilter,
    limit: u64,
) -> Result<Vec<RunRow>, StoreError> {
    let rows = conn
        .query_all_raw(list_statement(backend, filter, limit))
        .await?;
    rows.iter().map(run_row).collect()
}

/// The run log's query for `filter`.
fn list_statement(backend: Backend, filter: &RunFilter, limit: u64) -> Statement {
    let mut conditions: Vec<&str> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    let mut add = |condition: &'static str, value: Option<Value>| {
        if let Some(v) = value {
            conditions.push(condition);
            values.push(v);
        }
    };
    add(
        workspace_condition(filter),
        filter.workspace.clone().map(Value::from),
    );
    add("flow_id = ?", filter.flow.clone().map(Value::from));
    add("status = ?", filter.status.map(|s| Value::from(s.as_str())));
    add("entity = ?", filter.entity.clone().map(Value::from));
    add("entity_id = ?", filter.entity_id.clone().map(Value::from));
    add("created_at >= ?", filter.since.map(Value::from));
    add("created_at < ?", filter.until.map(Value::from));
    add("id < ?", filter.before_id.clone().map(Value::from));
    let filter_sql = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT {} FROM runs {filter_sql} ORDER BY id DESC LIMIT ?",
        *RUN_COLUMNS
    );
    values.push((limit as i64).into());
    stmt(backend, &sql, values)
}

/// The workspace index `(workspace, id)` serves a workspace's whole run log. With a filter that
/// has an index of its own (flow, status, entity, creation time), SQLite, which keeps no
/// statistics here, still picked the workspace index and walked every run of the workspace for
/// the few that match; `workspace || ''` keeps the condition but takes it off the index, so the
/// filter's index is used as it was before workspaces.
fn workspace_condition(filter: &RunFilter) -> &'static str {
    let indexed_filter = filter.flow.is_some()
        || filter.status.is_some()
        || filter.entity.is_some()
        || filter.since.is_some()
        || filter.until.is_some();
    if indexed_filter {
        "workspace || '' = ?"
    } else {
        "workspace = ?"
    }
}

pub async fn get_run(
    conn: &impl ConnectionTrait,
    backend: Backend,
    id: &str,
) -> Result<Option<RunRow>, StoreError> {
    let sql = format!("SELECT {} FROM runs WHERE id = ?", *RUN_COLUMNS);
    let row = conn
        .query_one_raw(stmt(backend, &sql, vec![id.to_string().into()]))
        .await?;
    row.as_ref().map(run_row).transpose()
}

#[derive(Debug, Clone)]
pub struct StepDetail {
    pub step_index: i64,
    pub step_id: String,
    pub kind: String,
    pub status: StepStatus,
    pub output: Option<String>,
    pub error: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct AttemptDetail {
    pub step_index: i64,
    pub n: i64,
    pub node: String,
    pub started_at: i64,
    pub finished_at: i64,
    pub duration_ms: i64,
    pub request: Option<String>,
    pub response: Option<String>,
    pub error: Option<String>,
}

/// The step rows and attempts of one run, in order.
pub async fn steps_of(
    conn: &impl ConnectionTrait,
    backend: Backend,
    run_id: &str,
) -> Result<(Vec<StepDetail>, Vec<AttemptDetail>), StoreError> {
    let steps_sql = "SELECT step_index, step_id, kind, status, output, error, started_at, finished_at FROM step_runs WHERE run_id = ? ORDER BY step_index";
    let steps = conn
        .query_all_raw(stmt(backend, steps_sql, vec![run_id.to_string().into()]))
        .await?
        .iter()
        .map(|row| {
            Ok(StepDetail {
                step_index: get::<i32>(row, "step_index")?.into(),
                step_id: get(row, "step_id")?,
                kind: get(row, "kind")?,
                status: get_parsed(row, "status")?,
                output: get(row, "output")?,
                error: get(row, "error")?,
                started_at: get(row, "started_at")?,
                finished_at: get(row, "finished_at")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let attempts_sql = "SELECT step_index, n, node, started_at, finished_at, duration_ms, request, response, error FROM attempts WHERE run_id = ? ORDER BY step_index, n";
    let attempts = conn
        .query_all_raw(stmt(backend, attempts_sql, vec![run_id.to_string().into()]))
        .await?
        .iter()
        .map(|row| {
            Ok(AttemptDetail {
                step_index: get::<i32>(row, "step_index")?.into(),
                n: get::<i32>(row, "n")?.into(),
                node: get(row, "node")?,
                started_at: get(row, "started_at")?,
                finished_at: get(row, "finished_at")?,
                duration_ms: get(row, "duration_ms")?,
                request: get(row, "request")?,
                response: get(row, "response")?,
                error: get(row, "error")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok((steps, attempts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::TestDb;

    /// How SQLite's plan for the run log with `filter` reads `runs` itself (not the subqueries
    /// of the columns, which read `runs e`, `step_runs s` and `flows f`).
    async fn plan(db: &TestDb, filter: &RunFilter) -> String {
        let query = list_statement(Backend::Sqlite, filter, 50);
        let explain = sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Sqlite,
            format!("EXPLAIN QUERY PLAN {}", query.sql),
            query.values.map(|v| v.0).unwrap_or_default(),
        );
        let rows = db.store.reader().query_all_raw(explain).await.unwrap();
        let steps: Vec<String> = rows
            .iter()
            .map(|row| row.try_get_by_index::<String>(3).unwrap())
            .collect();
        steps
            .iter()
            .find(|step| step.starts_with("SEARCH runs ") || step.starts_with("SCAN runs"))
            .unwrap_or_else(|| panic!("no step reads runs: {steps:?}"))
            .clone()
    }

    #[tokio::test]
    async fn a_workspace_run_log_uses_the_filters_own_index() {
        let db = TestDb::sqlite().await;
        let scoped = |f: RunFilter| RunFilter {
            workspace: Some("acme".into()),
            ..f
        };
        let cases = [
            (RunFilter::default(), "idx_runs_workspace"),
            (
                RunFilter {
                    before_id: Some("0".into()),
                    ..RunFilter::default()
                },
                "idx_runs_workspace",
            ),
            (
                RunFilter {
                    flow: Some("acme/sync".into()),
                    ..RunFilter::default()
                },
                "idx_runs_flow_id",
            ),
            (
                RunFilter {
                    status: Some(RunStatus::Failed),
                    ..RunFilter::default()
                },
                "idx_runs_status",
            ),
            (
                RunFilter {
                    entity: Some("guest".into()),
                    entity_id: Some("7".into()),
                    ..RunFilter::default()
                },
                "idx_runs_entity",
            ),
            (
                RunFilter {
                    since: Some(1),
                    until: Some(2),
                    ..RunFilter::default()
                },
                "idx_runs_created_at",
            ),
        ];
        for (filter, index) in cases {
            let plan = plan(&db, &scoped(filter.clone())).await;
            assert!(
                plan.contains(index),
                "{filter:?} should use {index}: {plan}"
            );
        }
        db.cleanup().await;
    }
}
