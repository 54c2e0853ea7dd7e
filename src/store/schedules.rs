//! Once-only keys of schedule fires: one row per (flow, fire time). The primary key makes a
//! fire time start one run however many nodes see it.

use sea_orm::ConnectionTrait;

use crate::store::sql::{Conn, get, stmt};
use crate::store::{Backend, StoreError};

/// Records the fire of `flow_id` at `fire_at` as starting `run_id`, inside the caller's
/// transaction. False when another node (or an earlier pass) recorded that fire already.
pub async fn claim_fire(
    conn: &impl Conn,
    backend: Backend,
    flow_id: &str,
    fire_at: i64,
    run_id: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let sql = "INSERT INTO schedule_fires (flow_id, fire_at, run_id, created_at) VALUES (?, ?, ?, ?) \
               ON CONFLICT (flow_id, fire_at) DO NOTHING";
    let result = conn
        .execute_raw(stmt(
            backend,
            sql,
            vec![
                flow_id.to_string().into(),
                fire_at.into(),
                run_id.to_string().into(),
                now.into(),
            ],
        ))
        .await?;
    Ok(result.rows_affected() > 0)
}

/// The latest recorded fire time of `flow_id`.
pub async fn last_fire(
    conn: &impl ConnectionTrait,
    backend: Backend,
    flow_id: &str,
) -> Result<Option<i64>, StoreError> {
    let row = conn
        .query_one_raw(stmt(
            backend,
            "SELECT MAX(fire_at) AS last FROM schedule_fires WHERE flow_id = ?",
            vec![flow_id.to_string().into()],
        ))
        .await?;
    Ok(match row {
        Some(row) => get(&row, "last")?,
        None => None,
    })
}
