//! The notification inbox: what `notify` steps with `channel: inbox` store for people to read
//! through the API.

use sea_orm::{ConnectionTrait, Value};

use crate::core::workspace::split_flow_key;
use crate::store::sql::{get, stmt};
use crate::store::{Backend, StoreError};

#[derive(Debug, Clone)]
pub struct NewNotification {
    /// `<run_id>_<step_id>`: a retried step stores its notification once.
    pub id: String,
    pub flow_id: String,
    pub run_id: String,
    pub step_id: String,
    pub title: String,
    pub text: String,
    pub created_at: i64,
}

/// Stores a notification; storing the same id again (a retried step) changes nothing.
pub async fn insert(
    conn: &impl ConnectionTrait,
    backend: Backend,
    n: &NewNotification,
) -> Result<(), StoreError> {
    let sql = "INSERT INTO notifications (id, flow_id, workspace, run_id, step_id, title, text, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
               ON CONFLICT (id) DO NOTHING";
    // The workspace of its flow: the inbox is per workspace.
    let (workspace, _) = split_flow_key(&n.flow_id);
    let values: Vec<Value> = vec![
        n.id.clone().into(),
        n.flow_id.clone().into(),
        workspace.to_string().into(),
        n.run_id.clone().into(),
        n.step_id.clone().into(),
        n.title.clone().into(),
        n.text.clone().into(),
        n.created_at.into(),
    ];
    conn.execute_raw(stmt(backend, sql, values)).await?;
    Ok(())
}

/// A stored notification.
pub use crate::store::entity::notifications::Model as Notification;

/// Where a page of the inbox starts: after (older than) this notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: i64,
    pub id: String,
}

/// Notifications newest first, at most `limit`, only unread ones when asked, only those of
/// `workspace` when given.
pub async fn list(
    conn: &impl ConnectionTrait,
    backend: Backend,
    workspace: Option<&str>,
    unread_only: bool,
    after: Option<&Cursor>,
    limit: u64,
) -> Result<Vec<Notification>, StoreError> {
    let mut sql = String::from(
        "SELECT id, flow_id, run_id, step_id, title, text, created_at, read_at, workspace FROM notifications WHERE 1 = 1",
    );
    let mut values: Vec<Value> = Vec::new();
    if let Some(workspace) = workspace {
        sql.push_str(" AND workspace = ?");
        values.push(workspace.to_string().into());
    }
    if unread_only {
        sql.push_str(" AND read_at IS NULL");
    }
    if let Some(c) = after {
        sql.push_str(" AND (created_at < ? OR (created_at = ? AND id < ?))");
        values.extend([
            c.created_at.into(),
            c.created_at.into(),
            c.id.clone().into(),
        ]);
    }
    sql.push_str(" ORDER BY created_at DESC, id DESC LIMIT ?");
    values.push((limit as i64).into());
    let rows = conn.query_all_raw(stmt(backend, &sql, values)).await?;
    rows.iter()
        .map(|row| {
            Ok(Notification {
                id: get(row, "id")?,
                flow_id: get(row, "flow_id")?,
                run_id: get(row, "run_id")?,
                step_id: get(row, "step_id")?,
                title: get(row, "title")?,
                text: get(row, "text")?,
                created_at: get(row, "created_at")?,
                read_at: get(row, "read_at")?,
                workspace: get(row, "workspace")?,
            })
        })
        .collect()
}

/// Marks a notification read (once: the first read time stays). False when it does not exist
/// (in `workspace`, when given).
pub async fn mark_read(
    conn: &impl ConnectionTrait,
    backend: Backend,
    workspace: Option<&str>,
    id: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let mut sql =
        String::from("UPDATE notifications SET read_at = COALESCE(read_at, ?) WHERE id = ?");
    let mut values: Vec<Value> = vec![now.into(), id.to_string().into()];
    if let Some(workspace) = workspace {
        sql.push_str(" AND workspace = ?");
        values.push(workspace.to_string().into());
    }
    let result = conn.execute_raw(stmt(backend, &sql, values)).await?;
    Ok(result.rows_affected() > 0)
}
