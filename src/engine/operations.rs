//! Bulk retry and replay (SPEC §6): starting an operation over the runs a filter matches, and
//! reading its progress. The work itself is done by every node's runner
//! (`runner/operations.rs`), so it goes on after a restart and on whichever node is alive.

use serde::Serialize;
use utoipa::ToSchema;

use crate::core::id::new_id;
use crate::core::time::rfc3339_ms;
use crate::core::workspace::Access;
use crate::engine::audit::{self, Change};
use crate::engine::flows::key_of;
use crate::engine::{Engine, EngineError};
use crate::runner::operations::OperationKind;
use crate::store::StoreError;
use crate::store::audit::AuditAction;
use crate::store::operations::{self, OperationFilter, OperationRow};

/// A bulk operation as the API shows it. Times are RFC 3339 UTC.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OperationOut {
    pub id: String,
    /// `retry` or `replay`.
    pub kind: String,
    /// `running`, `done` or `failed`.
    pub state: String,
    /// The filter it was started with.
    #[schema(value_type = Object)]
    pub filter: serde_json::Value,
    /// Runs the filter matched when the operation started (at most 100,000).
    pub matched: i64,
    /// Runs retried, or replayed, so far.
    pub done: i64,
    /// Matched runs left alone: not failed or cancelled any more when their turn came (retry),
    /// or their flow was deleted (replay).
    pub skipped: i64,
    /// Why the operation failed, when it did.
    pub error: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    #[schema(format = DateTime)]
    pub updated_at: Option<String>,
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
}

impl Engine {
    /// Starts a bulk operation over the runs `filter` matches now (the oldest 100,000 at most);
    /// nodes' runners work on it in the background.
    /// `filter.flow` is a flow id of the access's workspace; the operation only ever touches
    /// runs of the workspaces `access` sees.
    pub async fn start_operation(
        &self,
        access: &Access,
        kind: OperationKind,
        filter: &OperationFilter,
    ) -> Result<OperationOut, EngineError> {
        let filter = &OperationFilter {
            flow: filter.flow.as_deref().map(|id| key_of(access, id)),
            workspace: (!access.all_workspaces).then(|| access.workspace.clone()),
            ..filter.clone()
        };
        let store = self.store();
        let now = chrono::Utc::now().timestamp_millis();
        let txn = store.begin_write().await?;
        let (id, backend) = (new_id(), store.backend());
        let row = operations::create(&txn, backend, &id, kind.as_str(), filter, now).await?;
        let out = operation_out(&row);
        let action = match kind {
            OperationKind::Retry => AuditAction::RunsRetried,
            OperationKind::Replay => AuditAction::RunsReplayed,
        };
        let detail = serde_json::json!({"filter": out.filter.clone(), "matched": out.matched});
        let change = Change::in_workspace(access, action, &id, detail);
        audit::record(&txn, backend, access, change, self.audit_now()).await?;
        txn.commit().await.map_err(StoreError::from)?;
        Ok(out)
    }

    /// One operation with its progress; `None` when there is no such operation `access` sees
    /// (one started in another workspace, or by an admin over every workspace, is not shown
    /// to a key of one workspace).
    pub async fn operation(
        &self,
        access: &Access,
        id: &str,
    ) -> Result<Option<OperationOut>, EngineError> {
        let store = self.store();
        let row = operations::get_operation(store.reader(), store.backend(), id).await?;
        let visible = |row: &OperationRow| match &row.filter.workspace {
            Some(ws) => access.sees(ws),
            None => access.all_workspaces,
        };
        Ok(row.as_ref().filter(|r| visible(r)).map(operation_out))
    }
}

fn operation_out(row: &OperationRow) -> OperationOut {
    let time = |ms: Option<i64>| ms.map(rfc3339_ms);
    OperationOut {
        id: row.id.clone(),
        kind: row.kind.clone(),
        state: row.state.clone(),
        filter: serde_json::to_value(&row.filter).unwrap_or_default(),
        matched: row.matched,
        done: row.done,
        skipped: row.skipped,
        error: row.error.clone(),
        created_at: time(Some(row.created_at)),
        updated_at: time(Some(row.updated_at)),
        finished_at: time(row.finished_at),
    }
}
