//! The audit log at work (issue #19): the engine operations that change something record it
//! through [`record`], inside the change's own transaction where there is one (so a change that
//! fails records nothing), and [`Engine::audit_log`] lists the entries an access may see. The
//! entry's workspace is the changed object's (a flow's, from its flow key), else the access's.

use serde_json::Value;

use crate::core::id::new_id;
use crate::core::workspace::{Access, split_flow_key};
use crate::engine::{Engine, EngineError};
use crate::store::audit::{self, AuditAction, AuditEntry, AuditFilter, Cursor, NewAuditEntry};
use crate::store::{Backend, StoreError};

/// One change about to be recorded: what was done to what, in which workspace.
#[derive(Debug, Clone)]
pub struct Change {
    pub action: AuditAction,
    pub target: String,
    pub workspace: String,
    /// Names, ids, revisions, reasons: never a secret value or anything derived from one.
    pub detail: Value,
}

impl Change {
    /// A change to the flow with key `flow_key`, recorded in the flow's workspace with its id
    /// (as the API names flows: an id and a workspace, never the key).
    pub fn of_flow(action: AuditAction, flow_key: &str, detail: Value) -> Change {
        let (workspace, id) = split_flow_key(flow_key);
        Change {
            action,
            target: id.to_owned(),
            workspace: workspace.to_owned(),
            detail,
        }
    }

    /// A change to something of the access's own workspace (a secret, a key, an operation).
    pub fn in_workspace(
        access: &Access,
        action: AuditAction,
        target: &str,
        detail: Value,
    ) -> Change {
        Change {
            action,
            target: target.to_owned(),
            workspace: access.workspace.clone(),
            detail,
        }
    }
}

/// Records `change` made by `access` at `now`, on `conn` (the change's transaction when it has
/// one).
pub async fn record(
    conn: &impl sea_orm::ConnectionTrait,
    backend: Backend,
    access: &Access,
    change: Change,
    now: i64,
) -> Result<(), StoreError> {
    let entry = NewAuditEntry {
        id: new_id(),
        at: now,
        workspace: change.workspace,
        actor: access.actor.to_string(),
        action: change.action,
        target: change.target,
        detail: change.detail,
    };
    audit::record(conn, backend, &entry).await
}

impl Engine {
    /// The time an audit entry gets: the engine's clock.
    pub(crate) fn audit_now(&self) -> i64 {
        self.runner().now_ms()
    }

    /// Records a change that was committed already (one that is not a single transaction of
    /// its own, like a run control done by the runner).
    pub(crate) async fn record_after(
        &self,
        access: &Access,
        change: Change,
    ) -> Result<(), StoreError> {
        let store = self.store();
        record(
            store.writer(),
            store.backend(),
            access,
            change,
            self.audit_now(),
        )
        .await
    }

    /// Audit entries `filter` matches among those `access` sees, newest first: an access of one
    /// workspace sees only that workspace's entries, whatever workspace the filter names.
    pub async fn audit_log(
        &self,
        access: &Access,
        filter: &AuditFilter,
        after: Option<&Cursor>,
        limit: u64,
    ) -> Result<Vec<AuditEntry>, EngineError> {
        let mut filter = filter.clone();
        if !access.all_workspaces {
            if filter.workspace.as_ref().is_some_and(|w| !access.sees(w)) {
                return Ok(Vec::new());
            }
            filter.workspace = Some(access.workspace.clone());
        }
        let store = self.store();
        Ok(audit::list(store.reader(), store.backend(), &filter, after, limit).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::workspace::{Actor, Role};
    use crate::engine::EngineConfig;
    use crate::store::testing::TestDb;

    /// An access of one workspace sees that workspace's entries only, whatever it filters on;
    /// an access of every workspace sees all, and can narrow to one.
    #[tokio::test]
    async fn a_workspace_access_sees_its_own_entries_only() {
        let db = TestDb::sqlite().await;
        let engine = Engine::open(EngineConfig::new(db.url.clone(), "audit-test"))
            .await
            .unwrap();
        let local = Access::local();
        for key in ["guest", "acme/guest", "other/guest"] {
            let change = Change::of_flow(AuditAction::FlowPaused, key, Value::Null);
            engine.record_after(&local, change).await.unwrap();
        }
        let acme = Access {
            workspace: "acme".into(),
            all_workspaces: false,
            role: Role::Viewer,
            actor: Actor::Key { id: "k1".into() },
        };
        let targets = |rows: Vec<AuditEntry>| {
            rows.into_iter()
                .map(|r| format!("{}/{}", r.workspace, r.target))
                .collect::<Vec<_>>()
        };
        let all = AuditFilter::default();
        let other = AuditFilter {
            workspace: Some("other".into()),
            ..AuditFilter::default()
        };
        let seen = engine.audit_log(&acme, &all, None, 10).await.unwrap();
        assert_eq!(targets(seen), ["acme/guest"]);
        let seen = engine.audit_log(&acme, &other, None, 10).await.unwrap();
        assert_eq!(targets(seen), Vec::<String>::new());
        let seen = engine.audit_log(&local, &all, None, 10).await.unwrap();
        assert_eq!(seen.len(), 3);
        assert!(seen.iter().all(|e| e.actor == "local"));
        let seen = engine.audit_log(&local, &other, None, 10).await.unwrap();
        assert_eq!(targets(seen), ["other/guest"]);
        db.cleanup().await;
    }

    #[test]
    fn a_flow_change_lands_in_the_flow_workspace() {
        let change = Change::of_flow(AuditAction::FlowCreated, "acme/guest", Value::Null);
        assert_eq!(
            (change.workspace.as_str(), change.target.as_str()),
            ("acme", "guest")
        );
        let change = Change::of_flow(AuditAction::FlowCreated, "guest", Value::Null);
        assert_eq!(change.workspace, "default");
    }
}
