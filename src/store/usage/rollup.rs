//! The usage rollup (`usage_daily`): finished runs are folded into it in batches by a
//! background pass (`fold_finished`), and `runs.usage_folded` marks the runs already in it, so
//! the usage read counts live only the runs not folded yet (the partial index
//! `idx_runs_usage_unfolded` holds exactly those). A retried run is taken out again
//! (`unfold`) in the transaction that restarts it and folded anew when it ends, so it counts
//! once. Retention folds what is not folded yet before it deletes.

use sea_orm::{ConnectionTrait, Value};

use crate::store::StoreError;
use crate::store::sql::{get, placeholders, skip_locked, stmt};

use super::DAY_MS;
use crate::store::Backend;

/// Adds the usage of those of `ids` not folded yet to the rollup (it does not mark them: see
/// `fold_finished`). One statement for the whole batch, one upsert per flow and day.
pub async fn add_unfolded(
    conn: &impl ConnectionTrait,
    backend: Backend,
    ids: &[String],
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let sql = upsert_sql(
        "",
        &format!(
            "r.id IN ({}) AND r.usage_folded = FALSE",
            placeholders(ids.len())
        ),
    );
    let values = ids.iter().map(|id| Value::from(id.clone())).collect();
    conn.execute_raw(stmt(backend, &sql, values)).await?;
    Ok(())
}

/// Folds up to `limit` finished runs not folded yet into the rollup, oldest first, and marks
/// them folded. Returns how many. On PostgreSQL the batch is locked with `SKIP LOCKED`, so
/// nodes folding at once, or a retry restarting one of them, never count a run twice.
pub async fn fold_finished(
    conn: &impl ConnectionTrait,
    backend: Backend,
    limit: u64,
) -> Result<u64, StoreError> {
    let lock = skip_locked(backend);
    let sql = format!(
        "SELECT id FROM runs WHERE usage_folded = FALSE \
         AND status IN ('succeeded', 'failed', 'cancelled') ORDER BY created_at LIMIT ?{lock}"
    );
    let rows = conn
        .query_all_raw(stmt(backend, &sql, vec![(limit as i64).into()]))
        .await?;
    let ids = rows
        .iter()
        .map(|row| get(row, "id"))
        .collect::<Result<Vec<String>, StoreError>>()?;
    if ids.is_empty() {
        return Ok(0);
    }
    add_unfolded(conn, backend, &ids).await?;
    let mark = format!(
        "UPDATE runs SET usage_folded = TRUE WHERE id IN ({})",
        placeholders(ids.len())
    );
    let values = ids.iter().map(|id| Value::from(id.clone())).collect();
    let marked = conn.execute_raw(stmt(backend, &mark, values)).await?;
    Ok(marked.rows_affected())
}

/// Takes a failed or cancelled run that is about to be retried out of the rollup if it was
/// folded; the retry's own update then marks it not folded. Locks the run first on PostgreSQL,
/// so a fold of it in flight on another node is waited for and seen.
pub async fn unfold(
    conn: &impl ConnectionTrait,
    backend: Backend,
    run_id: &str,
) -> Result<(), StoreError> {
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let sql = format!("SELECT usage_folded FROM runs WHERE id = ?{lock}");
    let id = || vec![Value::from(run_id.to_string())];
    let Some(row) = conn.query_one_raw(stmt(backend, &sql, id())).await? else {
        return Ok(());
    };
    if !get::<bool>(&row, "usage_folded")? {
        return Ok(());
    }
    let sql = upsert_sql(
        "-",
        "r.id = ? AND r.usage_folded = TRUE AND r.status IN ('failed', 'cancelled')",
    );
    conn.execute_raw(stmt(backend, &sql, id())).await?;
    Ok(())
}

/// Adds (`sign` "") or subtracts (`sign` "-") the usage of the runs matching `runs_filter`
/// (over `runs r`) to or from their flow's and day's rollup row.
fn upsert_sql(sign: &str, runs_filter: &str) -> String {
    // PostgreSQL sums BIGINTs into NUMERIC: cast back so both backends store BIGINT.
    format!(
        "INSERT INTO usage_daily (flow_id, day, runs_started, runs_succeeded, runs_failed, http_attempts, rate_limited_waits) \
         SELECT r.flow_id, r.created_at / {DAY_MS}, {sign}COUNT(*), \
           {sign}CAST(SUM(CASE WHEN r.status = 'succeeded' THEN 1 ELSE 0 END) AS BIGINT), \
           {sign}CAST(SUM(CASE WHEN r.status = 'failed' THEN 1 ELSE 0 END) AS BIGINT), \
           {sign}CAST(SUM((SELECT COALESCE(SUM(s.attempts), 0) FROM step_runs s WHERE s.run_id = r.id AND s.kind = 'http')) AS BIGINT), \
           {sign}CAST(SUM(r.rate_limited_waits) AS BIGINT) \
         FROM runs r WHERE {runs_filter} GROUP BY r.flow_id, r.created_at / {DAY_MS} \
         ON CONFLICT (flow_id, day) DO UPDATE SET \
           runs_started = usage_daily.runs_started + excluded.runs_started, \
           runs_succeeded = usage_daily.runs_succeeded + excluded.runs_succeeded, \
           runs_failed = usage_daily.runs_failed + excluded.runs_failed, \
           http_attempts = usage_daily.http_attempts + excluded.http_attempts, \
           rate_limited_waits = usage_daily.rate_limited_waits + excluded.rate_limited_waits"
    )
}
