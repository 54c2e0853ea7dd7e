//! Per-flow limits as the runner's claim sees them: how many runs of a flow execute now
//! (`concurrency`), how many started within the rate-limit window (`rate_limit`), and putting
//! off the new runs a rate limit holds back. Counted in the database, so limits hold across
//! every node on one database.

use sea_orm::ConnectionTrait;

use crate::store::sql::{advisory_xact_lock, get, stmt};
use crate::store::{Backend, StoreError};

/// A flow's current load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowLoad {
    /// Runs executing now under a live lease (a dead node's runs do not count: they are taken
    /// over).
    pub running: u64,
    /// Runs first started at or after the window start.
    pub started: u64,
    /// The earliest of those starts.
    pub oldest_start: Option<i64>,
}

/// Serializes the claims of one flow across nodes until the transaction ends, so two nodes
/// cannot both see room for the last slot. On SQLite the single writer already does this.
pub async fn lock_flow(
    conn: &impl ConnectionTrait,
    backend: Backend,
    flow_id: &str,
) -> Result<(), StoreError> {
    advisory_xact_lock(conn, backend, format!("flowd.flow.{flow_id}")).await
}

/// Counts the flow's runs executing at `now` and started since `window_start`.
pub async fn flow_load(
    conn: &impl ConnectionTrait,
    backend: Backend,
    flow_id: &str,
    now: i64,
    window_start: i64,
) -> Result<FlowLoad, StoreError> {
    let sql = "SELECT \
        (SELECT COUNT(*) FROM runs WHERE flow_id = ? AND status = 'running' AND lease_expires_at > ?) AS running, \
        (SELECT COUNT(*) FROM runs WHERE flow_id = ? AND started_at >= ?) AS started, \
        (SELECT MIN(started_at) FROM runs WHERE flow_id = ? AND started_at >= ?) AS oldest";
    let flow = || sea_orm::Value::from(flow_id.to_string());
    let values = vec![
        flow(),
        now.into(),
        flow(),
        window_start.into(),
        flow(),
        window_start.into(),
    ];
    let row = conn
        .query_one_raw(stmt(backend, sql, values))
        .await?
        .ok_or_else(|| StoreError::NotFound {
            what: "the load of a flow".into(),
        })?;
    Ok(FlowLoad {
        running: get::<i64>(&row, "running")?.max(0) as u64,
        started: get::<i64>(&row, "started")?.max(0) as u64,
        oldest_start: get(&row, "oldest")?,
    })
}

/// Puts off the flow's due runs that never started until `until`, counting the wait on each
/// (reported by usage as rate-limited waits). Returns how many were put off.
pub async fn defer_new_runs(
    conn: &impl ConnectionTrait,
    backend: Backend,
    flow_id: &str,
    now: i64,
    until: i64,
) -> Result<u64, StoreError> {
    let sql = "UPDATE runs SET due_at = ?, rate_limited_waits = rate_limited_waits + 1 \
               WHERE flow_id = ? AND status = 'pending' AND started_at IS NULL AND due_at <= ?";
    let result = conn
        .execute_raw(stmt(
            backend,
            sql,
            vec![until.into(), flow_id.to_string().into(), now.into()],
        ))
        .await?;
    Ok(result.rows_affected())
}
