//! Once-only keys of inbound webhooks: one row per (path, `webhook-id`), holding the run the
//! first request started, so a sender's retry gets that run instead of starting another.

use crate::store::sql::{Conn, get, stmt};
use crate::store::{Backend, StoreError};

/// Records that `webhook_id` on `path` started `run_id`, inside the caller's transaction.
/// Returns the run of an earlier request with the same id instead, recording nothing.
pub async fn remember(
    conn: &impl Conn,
    backend: Backend,
    path: &str,
    webhook_id: &str,
    run_id: &str,
    now: i64,
) -> Result<Option<String>, StoreError> {
    let insert = "INSERT INTO webhook_requests (path, webhook_id, run_id, created_at) VALUES (?, ?, ?, ?) \
                  ON CONFLICT (path, webhook_id) DO NOTHING";
    let inserted = conn
        .execute_raw(stmt(
            backend,
            insert,
            vec![
                path.to_string().into(),
                webhook_id.to_string().into(),
                run_id.to_string().into(),
                now.into(),
            ],
        ))
        .await?;
    if inserted.rows_affected() > 0 {
        return Ok(None);
    }
    let first = conn
        .query_one_raw(stmt(
            backend,
            "SELECT run_id FROM webhook_requests WHERE path = ? AND webhook_id = ?",
            vec![path.to_string().into(), webhook_id.to_string().into()],
        ))
        .await?;
    first.map(|row| get(&row, "run_id")).transpose()
}
