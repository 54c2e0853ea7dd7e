//! The notification inbox: what `notify` steps with `channel: inbox` store for people to read
//! through the API.

use sea_orm::Value;

use crate::store::sql::stmt;
use crate::store::{Store, StoreError};

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
pub async fn insert(store: &Store, n: &NewNotification) -> Result<(), StoreError> {
    use sea_orm::ConnectionTrait;
    let sql = "INSERT INTO notifications (id, flow_id, run_id, step_id, title, text, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) \
               ON CONFLICT (id) DO NOTHING";
    let values: Vec<Value> = vec![
        n.id.clone().into(),
        n.flow_id.clone().into(),
        n.run_id.clone().into(),
        n.step_id.clone().into(),
        n.title.clone().into(),
        n.text.clone().into(),
        n.created_at.into(),
    ];
    store
        .writer()
        .execute_raw(stmt(store.backend(), sql, values))
        .await?;
    Ok(())
}
