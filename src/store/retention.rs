//! Retention: finished runs older than the retention are deleted with their steps and
//! attempts, a small batch per transaction, and the usage of those of a batch not folded into
//! the daily rollup yet (`usage_daily`, see `store/usage/rollup.rs`) is first added to it in the
//! same transaction, so usage stays exact after pruning and no run is counted twice. Old
//! events go the same way. On PostgreSQL the batch is locked with `SKIP LOCKED`, so nodes
//! pruning at once never fold a run twice.

use sea_orm::{ConnectionTrait, Value};

use crate::store::sql::{get, placeholders, skip_locked, stmt};
use crate::store::usage::rollup;
use crate::store::{Backend, StoreError};

/// Which runs one pass prunes: finished ones created and finished before `cutoff`, of one
/// flow, or of every flow except `except` (flows with their own retention).
#[derive(Debug, Clone)]
pub enum Scope<'a> {
    Flow(&'a str),
    AllBut(&'a [String]),
}

/// Prunes up to `limit` runs of `scope` finished before `cutoff`: folds their usage into the
/// rollup, deletes their attempts, steps and the runs. Returns how many runs it deleted.
pub async fn prune_runs(
    conn: &impl ConnectionTrait,
    backend: Backend,
    scope: &Scope<'_>,
    cutoff: i64,
    limit: u64,
) -> Result<u64, StoreError> {
    let ids = old_runs(conn, backend, scope, cutoff, limit).await?;
    if ids.is_empty() {
        return Ok(0);
    }
    let list = placeholders(ids.len());
    let id_values = || {
        ids.iter()
            .map(|id| Value::from(id.clone()))
            .collect::<Vec<_>>()
    };
    // Runs the background fold has not reached yet are added now; the others are in already.
    rollup::add_unfolded(conn, backend, &ids).await?;
    for table in ["attempts", "step_runs"] {
        let sql = format!("DELETE FROM {table} WHERE run_id IN ({list})");
        conn.execute_raw(stmt(backend, &sql, id_values())).await?;
    }
    let sql = format!("DELETE FROM runs WHERE id IN ({list})");
    let deleted = conn.execute_raw(stmt(backend, &sql, id_values())).await?;
    Ok(deleted.rows_affected())
}

/// The ids of up to `limit` finished runs of `scope` created and finished before `cutoff`,
/// oldest first, locked for this transaction on PostgreSQL (others skip them).
async fn old_runs(
    conn: &impl ConnectionTrait,
    backend: Backend,
    scope: &Scope<'_>,
    cutoff: i64,
    limit: u64,
) -> Result<Vec<String>, StoreError> {
    let (flow_filter, mut values): (String, Vec<Value>) = match scope {
        Scope::Flow(flow) => ("flow_id = ?".into(), vec![flow.to_string().into()]),
        Scope::AllBut([]) => ("1 = 1".into(), Vec::new()),
        Scope::AllBut(except) => (
            format!("flow_id NOT IN ({})", placeholders(except.len())),
            except.iter().map(|f| Value::from(f.clone())).collect(),
        ),
    };
    let lock = skip_locked(backend);
    let sql = format!(
        "SELECT id FROM runs WHERE {flow_filter} AND created_at < ? AND finished_at < ? \
         AND status IN ('succeeded', 'failed', 'cancelled') ORDER BY created_at LIMIT ?{lock}"
    );
    values.extend([cutoff.into(), cutoff.into(), (limit as i64).into()]);
    let rows = conn.query_all_raw(stmt(backend, &sql, values)).await?;
    rows.iter().map(|row| get(row, "id")).collect()
}

/// Deletes up to `limit` events received before `cutoff`. Returns how many.
pub async fn prune_events(
    conn: &impl ConnectionTrait,
    backend: Backend,
    cutoff: i64,
    limit: u64,
) -> Result<u64, StoreError> {
    let sql = "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE created_at < ? ORDER BY created_at LIMIT ?)";
    let result = conn
        .execute_raw(stmt(
            backend,
            sql,
            vec![cutoff.into(), (limit as i64).into()],
        ))
        .await?;
    Ok(result.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::runs::insert_runs;
    use crate::store::testing::{TestDb, pending_run};
    use crate::store::usage::{UsageFilter, usage};

    const DAY_MS: i64 = 86_400_000;

    #[tokio::test]
    async fn pruned_runs_stay_counted_in_usage() {
        for db in TestDb::all().await {
            let (conn, backend) = (db.store.writer(), db.store.backend());
            let runs: Vec<_> = (0..5)
                .map(|i| pending_run(&format!("r{i}"), 1_000 + i))
                .collect();
            insert_runs(conn, backend, &runs).await.unwrap();
            let finish = "UPDATE runs SET status = 'succeeded', finished_at = created_at + 10 WHERE id <> 'r4'";
            conn.execute_raw(stmt(backend, finish, vec![]))
                .await
                .unwrap();
            let window = UsageFilter {
                flow: Some("f".into()),
                since: 0,
                until: DAY_MS,
            };
            let before = usage(conn, backend, &window).await.unwrap();
            // Two batches of three and one, then nothing: the unfinished run stays.
            let scope = Scope::AllBut(&[]);
            assert_eq!(
                prune_runs(conn, backend, &scope, 5_000, 3).await.unwrap(),
                3
            );
            assert_eq!(
                prune_runs(conn, backend, &scope, 5_000, 3).await.unwrap(),
                1
            );
            assert_eq!(
                prune_runs(conn, backend, &scope, 5_000, 3).await.unwrap(),
                0
            );
            assert_eq!(usage(conn, backend, &window).await.unwrap(), before);
            assert_eq!((before[0].runs_started, before[0].runs_succeeded), (5, 4));
            let left = conn
                .query_all_raw(stmt(backend, "SELECT id FROM runs", vec![]))
                .await
                .unwrap();
            assert_eq!(left.len(), 1);
            db.cleanup().await;
        }
    }
}
