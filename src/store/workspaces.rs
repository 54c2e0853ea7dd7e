//! Workspaces (SPEC §11): one row per workspace, `default` inserted by the migration. Names are
//! checked by the caller (`core::workspace::workspace_name_problem`); a name taken is
//! `StoreError::Conflict`.

use sea_orm::{ConnectionTrait, Value};

use crate::store::sql::{get, stmt};
use crate::store::{Backend, StoreError};

/// A workspace as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceRow {
    pub name: String,
    pub created_at: i64,
}

/// Creates workspace `name`; `Ok(false)` when it exists already.
pub async fn create(
    conn: &impl ConnectionTrait,
    backend: Backend,
    name: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let sql =
        "INSERT INTO workspaces (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING";
    let values = vec![name.to_string().into(), now.into()];
    let done = conn.execute_raw(stmt(backend, sql, values)).await?;
    Ok(done.rows_affected() > 0)
}

/// Every workspace, by name.
pub async fn list(
    conn: &impl ConnectionTrait,
    backend: Backend,
) -> Result<Vec<WorkspaceRow>, StoreError> {
    let sql = "SELECT name, created_at FROM workspaces ORDER BY name";
    let rows = conn.query_all_raw(stmt(backend, sql, Vec::new())).await?;
    rows.iter()
        .map(|row| {
            Ok(WorkspaceRow {
                name: get(row, "name")?,
                created_at: get(row, "created_at")?,
            })
        })
        .collect()
}

/// Whether workspace `name` exists.
pub async fn exists(
    conn: &impl ConnectionTrait,
    backend: Backend,
    name: &str,
) -> Result<bool, StoreError> {
    let sql = "SELECT name FROM workspaces WHERE name = ?";
    let values: Vec<Value> = vec![name.to_string().into()];
    Ok(conn
        .query_one_raw(stmt(backend, sql, values))
        .await?
        .is_some())
}
