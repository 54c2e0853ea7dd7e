//! Workspaces (SPEC §11): create and list them. `default` always exists; a workspace named by a
//! flow file is created when the flows load. Creating one needs the `admin` role (checked at
//! the route table); listing shows an admin every workspace and any other key its own.

use chrono::Utc;

use crate::core::workspace::{Access, workspace_name_problem};
use crate::engine::audit::{self, Change};
use crate::engine::{Engine, EngineError};
use crate::store::audit::AuditAction;
use crate::store::workspaces::{self, WorkspaceRow};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("{0}")]
    BadName(String),
    #[error("a workspace `{0}` exists already")]
    Taken(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<crate::store::StoreError> for WorkspaceError {
    fn from(e: crate::store::StoreError) -> WorkspaceError {
        WorkspaceError::Engine(e.into())
    }
}

/// Creates workspace `name` made by `access`, with its `workspace.created` audit entry (in the
/// new workspace) in the same transaction; false, and nothing recorded, when it exists already.
/// The caller checks the name.
pub async fn create_recorded(
    store: &Store,
    access: &Access,
    name: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let (txn, backend) = (store.begin_write().await?, store.backend());
    if !workspaces::create(&txn, backend, name, now).await? {
        return Ok(false);
    }
    let change = Change {
        action: AuditAction::WorkspaceCreated,
        target: name.to_string(),
        workspace: name.to_string(),
        detail: serde_json::json!({}),
    };
    audit::record(&txn, backend, access, change, now).await?;
    txn.commit().await.map_err(StoreError::from)?;
    Ok(true)
}

impl Engine {
    /// Creates workspace `name`; refused when the name is not one or is taken.
    pub async fn create_workspace(
        &self,
        access: &Access,
        name: &str,
    ) -> Result<WorkspaceRow, WorkspaceError> {
        if let Some(problem) = workspace_name_problem(name) {
            return Err(WorkspaceError::BadName(problem));
        }
        let now = Utc::now().timestamp_millis();
        if !create_recorded(self.store(), access, name, now).await? {
            return Err(WorkspaceError::Taken(name.to_string()));
        }
        self.refresh_api_keys().await?;
        Ok(WorkspaceRow {
            name: name.to_string(),
            created_at: now,
        })
    }

    /// The workspaces `access` sees, by name.
    pub async fn list_workspaces(&self, access: &Access) -> Result<Vec<WorkspaceRow>, EngineError> {
        let store = self.store();
        let all = workspaces::list(store.reader(), store.backend()).await?;
        Ok(all.into_iter().filter(|w| access.sees(&w.name)).collect())
    }

    /// Makes sure the workspaces named by flow files exist (created quietly when they do not).
    pub(crate) async fn ensure_workspaces(&self, names: Vec<String>) -> Result<(), EngineError> {
        let store = self.store();
        let now = Utc::now().timestamp_millis();
        let mut created = false;
        for name in names {
            if !self.workspace_exists(&name) {
                created |= workspaces::create(store.writer(), store.backend(), &name, now).await?;
            }
        }
        if created {
            self.refresh_api_keys().await?;
        }
        Ok(())
    }
}
