//! Bulk operations on runs (retry, replay): creating one with a snapshot of what it matches,
//! taking one to work on under a lease, reading the next page of its runs, and recording a
//! page's progress. The runner does the work (`runner/operations.rs`); a page's runs and the
//! operation's cursor are written in one transaction, so an operation resumes after a restart
//! exactly where it stopped and never handles a run twice.

use sea_orm::{ConnectionTrait, QueryResult, Value};

use crate::core::status::RunStatus;
use crate::store::sql::{get, skip_locked, stmt};
use crate::store::{Backend, StoreError};

/// The most runs one operation handles.
pub const MAX_RUNS: u64 = 100_000;

/// Which runs an operation handles; every part optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OperationFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    /// Run statuses (any of).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status: Vec<RunStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    /// Created at or after (UTC millis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// Created before (UTC millis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
    /// Only runs of this workspace: set from the access of whoever started the operation, so
    /// an operation never touches another workspace (`None`: an admin's, over every one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
}

impl OperationFilter {
    /// `WHERE` conditions (joined with `AND`, `TRUE` when there are none) and their values.
    fn sql(&self) -> (String, Vec<Value>) {
        let mut conditions: Vec<String> = Vec::new();
        let mut values: Vec<Value> = Vec::new();
        let mut add = |condition: &str, value: Option<Value>| {
            if let Some(v) = value {
                conditions.push(condition.to_string());
                values.push(v);
            }
        };
        add("workspace = ?", self.workspace.clone().map(Value::from));
        add("flow_id = ?", self.flow.clone().map(Value::from));
        add("entity = ?", self.entity.clone().map(Value::from));
        add("entity_id = ?", self.entity_id.clone().map(Value::from));
        add("created_at >= ?", self.since.map(Value::from));
        add("created_at < ?", self.until.map(Value::from));
        if !self.status.is_empty() {
            let list = crate::store::sql::placeholders(self.status.len());
            conditions.push(format!("status IN ({list})"));
            values.extend(self.status.iter().map(|s| Value::from(s.as_str())));
        }
        if conditions.is_empty() {
            conditions.push("1 = 1".into());
        }
        (conditions.join(" AND "), values)
    }
}

/// An operation as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationRow {
    pub id: String,
    pub kind: String,
    pub filter: OperationFilter,
    /// `running`, `done` or `failed`.
    pub state: String,
    pub upper_id: Option<String>,
    pub cursor: Option<String>,
    pub matched: i64,
    pub done: i64,
    pub skipped: i64,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

const COLUMNS: &str = "id, kind, filter, state, upper_id, cursor, matched, done, skipped, error, created_at, updated_at, finished_at";

fn operation_row(row: &QueryResult) -> Result<OperationRow, StoreError> {
    let filter: String = get(row, "filter")?;
    Ok(OperationRow {
        id: get(row, "id")?,
        kind: get(row, "kind")?,
        filter: serde_json::from_str(&filter).map_err(|_| StoreError::UnknownValue {
            column: "operations.filter".into(),
            value: filter,
        })?,
        state: get(row, "state")?,
        upper_id: get(row, "upper_id")?,
        cursor: get(row, "cursor")?,
        matched: get(row, "matched")?,
        done: get(row, "done")?,
        skipped: get(row, "skipped")?,
        error: get(row, "error")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
        finished_at: get(row, "finished_at")?,
    })
}

/// Creates an operation over the runs `filter` matches now, at most [`MAX_RUNS`] of them, the
/// oldest first: runs created afterwards are not part of it. Returns it.
pub async fn create(
    conn: &impl ConnectionTrait,
    backend: Backend,
    id: &str,
    kind: &str,
    filter: &OperationFilter,
    now: i64,
) -> Result<OperationRow, StoreError> {
    let (conditions, values) = filter.sql();
    let capped = format!(
        "SELECT COUNT(*) AS matched, MAX(id) AS upper_id FROM \
         (SELECT id FROM runs WHERE {conditions} ORDER BY id LIMIT {MAX_RUNS}) AS m"
    );
    let row = conn
        .query_one_raw(stmt(backend, &capped, values))
        .await?
        .ok_or_else(|| StoreError::NotFound {
            what: "the count of an operation's runs".into(),
        })?;
    let matched: i64 = get(&row, "matched")?;
    let upper_id: Option<String> = get(&row, "upper_id")?;
    let filter_json = serde_json::to_string(filter).unwrap_or_else(|_| "{}".into());
    let state = if matched == 0 { "done" } else { "running" };
    let insert = "INSERT INTO operations (id, kind, filter, state, upper_id, cursor, matched, done, skipped, created_at, updated_at, finished_at) \
                  VALUES (?, ?, ?, ?, ?, NULL, ?, 0, 0, ?, ?, ?)";
    let finished = (matched == 0).then_some(now);
    conn.execute_raw(stmt(
        backend,
        insert,
        vec![
            id.into(),
            kind.into(),
            filter_json.into(),
            state.into(),
            upper_id.into(),
            matched.into(),
            now.into(),
            now.into(),
            finished.into(),
        ],
    ))
    .await?;
    get_operation(conn, backend, id)
        .await?
        .ok_or_else(|| StoreError::NotFound {
            what: format!("operation {id}"),
        })
}

pub async fn get_operation(
    conn: &impl ConnectionTrait,
    backend: Backend,
    id: &str,
) -> Result<Option<OperationRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM operations WHERE id = ?");
    let row = conn
        .query_one_raw(stmt(backend, &sql, vec![id.into()]))
        .await?;
    row.as_ref().map(operation_row).transpose()
}

/// Takes the oldest running operation nobody works on (or whose node's lease expired, or that
/// `owner` held before a restart) and leases it to `owner` until `now + lease_ms`.
pub async fn take(
    conn: &impl ConnectionTrait,
    backend: Backend,
    owner: &str,
    now: i64,
    lease_ms: i64,
) -> Result<Option<OperationRow>, StoreError> {
    let lock = skip_locked(backend);
    let sql = format!(
        "UPDATE operations SET owner = ?, lease_expires_at = ? WHERE id IN \
         (SELECT id FROM operations WHERE state = 'running' \
          AND (owner IS NULL OR owner = ? OR lease_expires_at < ?) ORDER BY created_at LIMIT 1{lock}) \
         RETURNING {COLUMNS}"
    );
    let values: Vec<Value> = vec![
        owner.into(),
        (now + lease_ms).into(),
        owner.into(),
        now.into(),
    ];
    let row = conn.query_one_raw(stmt(backend, &sql, values)).await?;
    row.as_ref().map(operation_row).transpose()
}

/// A run an operation handles.
#[derive(Debug, Clone)]
pub struct OperationRun {
    pub id: String,
    pub flow_id: String,
    pub revision: i64,
    pub trigger: String,
}

/// The next `limit` runs of `op` after its cursor, oldest first.
pub async fn next_page(
    conn: &impl ConnectionTrait,
    backend: Backend,
    op: &OperationRow,
    limit: u64,
) -> Result<Vec<OperationRun>, StoreError> {
    let Some(upper_id) = &op.upper_id else {
        return Ok(Vec::new());
    };
    let (conditions, mut values) = op.filter.sql();
    values.push(upper_id.clone().into());
    values.push(op.cursor.clone().unwrap_or_default().into());
    values.push((limit as i64).into());
    let sql = format!(
        "SELECT id, flow_id, revision, trigger FROM runs WHERE {conditions} AND id <= ? AND id > ? \
         ORDER BY id LIMIT ?"
    );
    let rows = conn.query_all_raw(stmt(backend, &sql, values)).await?;
    rows.iter()
        .map(|row| {
            Ok(OperationRun {
                id: get(row, "id")?,
                flow_id: get(row, "flow_id")?,
                revision: get(row, "revision")?,
                trigger: get(row, "trigger")?,
            })
        })
        .collect()
}

/// What one page did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageOutcome {
    pub done: i64,
    pub skipped: i64,
}

/// An operation and the node that holds it.
#[derive(Debug, Clone, Copy)]
pub struct Held<'a> {
    pub op_id: &'a str,
    pub owner: &'a str,
}

/// Records a page handled up to run `cursor`, in the transaction that handled it, on condition
/// that the owner still holds the operation; its lease is extended. Returns whether it did (if
/// not, the caller rolls the page back).
pub async fn record_page(
    conn: &impl ConnectionTrait,
    backend: Backend,
    held: Held<'_>,
    cursor: &str,
    outcome: PageOutcome,
    now: i64,
    lease_ms: i64,
) -> Result<bool, StoreError> {
    let sql = "UPDATE operations SET cursor = ?, done = done + ?, skipped = skipped + ?, updated_at = ?, \
               lease_expires_at = ? WHERE id = ? AND owner = ? AND state = 'running'";
    let values: Vec<Value> = vec![
        cursor.into(),
        outcome.done.into(),
        outcome.skipped.into(),
        now.into(),
        (now + lease_ms).into(),
        held.op_id.into(),
        held.owner.into(),
    ];
    Ok(conn
        .execute_raw(stmt(backend, sql, values))
        .await?
        .rows_affected()
        == 1)
}

/// Ends an operation: `done`, with runs that no longer matched when their page came (retried
/// by hand meanwhile, say) counted as skipped; or `failed` with `error`.
pub async fn finish(
    conn: &impl ConnectionTrait,
    backend: Backend,
    op_id: &str,
    owner: &str,
    error: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    let sql = "UPDATE operations SET state = ?, error = ?, finished_at = ?, updated_at = ?, owner = NULL, \
               lease_expires_at = NULL, skipped = CASE WHEN matched > done + skipped AND ? = 'done' \
               THEN matched - done ELSE skipped END WHERE id = ? AND owner = ? AND state = 'running'";
    let state = if error.is_some() { "failed" } else { "done" };
    let values: Vec<Value> = vec![
        state.into(),
        error.map(str::to_string).into(),
        now.into(),
        now.into(),
        state.into(),
        op_id.into(),
        owner.into(),
    ];
    conn.execute_raw(stmt(backend, sql, values)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::runs::insert_runs;
    use crate::store::testing::{TestDb, pending_run};

    #[tokio::test]
    async fn an_operation_snapshots_its_runs_and_pages_after_its_cursor() {
        for db in TestDb::all().await {
            let (conn, backend) = (db.store.writer(), db.store.backend());
            let runs: Vec<_> = (0..5)
                .map(|i| pending_run(&format!("r{i}"), 100 + i))
                .collect();
            insert_runs(conn, backend, &runs).await.unwrap();
            let filter = OperationFilter {
                flow: Some("f".into()),
                status: vec![RunStatus::Pending],
                since: Some(101),
                ..OperationFilter::default()
            };
            let op = create(conn, backend, "op1", "retry", &filter, 1)
                .await
                .unwrap();
            assert_eq!((op.matched, op.state.as_str()), (4, "running"));
            // A run created afterwards is not part of it.
            insert_runs(conn, backend, &[pending_run("r9", 200)])
                .await
                .unwrap();
            let taken = take(conn, backend, "n1", 10, 1_000).await.unwrap().unwrap();
            assert!(
                take(conn, backend, "n2", 10, 1_000)
                    .await
                    .unwrap()
                    .is_none()
            );
            let page = next_page(conn, backend, &taken, 3).await.unwrap();
            let ids: Vec<&str> = page.iter().map(|r| r.id.as_str()).collect();
            assert_eq!(ids, ["r1", "r2", "r3"]);
            let outcome = PageOutcome {
                done: 3,
                skipped: 0,
            };
            assert!(
                record_page(
                    conn,
                    backend,
                    Held {
                        op_id: "op1",
                        owner: "n1"
                    },
                    "r3",
                    outcome,
                    11,
                    1_000
                )
                .await
                .unwrap()
            );
            assert!(
                !record_page(
                    conn,
                    backend,
                    Held {
                        op_id: "op1",
                        owner: "n2"
                    },
                    "r4",
                    outcome,
                    11,
                    1_000
                )
                .await
                .unwrap()
            );
            // Another node takes it over once the lease has expired, and goes on after r3.
            let again = take(conn, backend, "n2", 5_000, 1_000)
                .await
                .unwrap()
                .unwrap();
            let rest = next_page(conn, backend, &again, 3).await.unwrap();
            assert_eq!(
                rest.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
                ["r4"]
            );
            finish(conn, backend, "op1", "n2", None, 5_001)
                .await
                .unwrap();
            let end = get_operation(conn, backend, "op1").await.unwrap().unwrap();
            assert_eq!((end.state.as_str(), end.done, end.skipped), ("done", 3, 1));
            db.cleanup().await;
        }
    }
}
