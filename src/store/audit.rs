//! The audit log (issue #19): one row per change, with who made it (`Actor`'s text), when, in
//! which workspace, what was done (`AuditAction`) to what (`target`), and a small JSON detail.
//! [`record`] takes any connection, so a change that is one transaction records itself in that
//! transaction: if the change fails or rolls back, nothing is recorded. The detail never holds a
//! secret value or anything derived from one; callers put only names, ids, revisions and reasons
//! there.

use sea_orm::{ConnectionTrait, Value};

use crate::store::sql::{get, stmt};
use crate::store::{Backend, StoreError};

/// What was done. New kinds of change add a variant here and to [`AuditAction::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuditAction {
    FlowCreated,
    FlowUpdated,
    FlowPaused,
    FlowResumed,
    FlowDeleted,
    FlowRestored,
    SecretSet,
    SecretDeleted,
    KeyCreated,
    KeyRevoked,
    RunRetried,
    RunReplayed,
    RunCancelled,
    RunsRetried,
    RunsReplayed,
    PortalLinkIssued,
    PortalLinkRevoked,
    WorkspaceCreated,
    QuotasSet,
}

impl AuditAction {
    pub const ALL: [AuditAction; 19] = [
        AuditAction::FlowCreated,
        AuditAction::FlowUpdated,
        AuditAction::FlowPaused,
        AuditAction::FlowResumed,
        AuditAction::FlowDeleted,
        AuditAction::FlowRestored,
        AuditAction::SecretSet,
        AuditAction::SecretDeleted,
        AuditAction::KeyCreated,
        AuditAction::KeyRevoked,
        AuditAction::RunRetried,
        AuditAction::RunReplayed,
        AuditAction::RunCancelled,
        AuditAction::RunsRetried,
        AuditAction::RunsReplayed,
        AuditAction::PortalLinkIssued,
        AuditAction::PortalLinkRevoked,
        AuditAction::WorkspaceCreated,
        AuditAction::QuotasSet,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::FlowCreated => "flow.created",
            AuditAction::FlowUpdated => "flow.updated",
            AuditAction::FlowPaused => "flow.paused",
            AuditAction::FlowResumed => "flow.resumed",
            AuditAction::FlowDeleted => "flow.deleted",
            AuditAction::FlowRestored => "flow.restored",
            AuditAction::SecretSet => "secret.set",
            AuditAction::SecretDeleted => "secret.deleted",
            AuditAction::KeyCreated => "key.created",
            AuditAction::KeyRevoked => "key.revoked",
            AuditAction::RunRetried => "run.retried",
            AuditAction::RunReplayed => "run.replayed",
            AuditAction::RunCancelled => "run.cancelled",
            AuditAction::RunsRetried => "runs.retried",
            AuditAction::RunsReplayed => "runs.replayed",
            AuditAction::PortalLinkIssued => "portal_link.issued",
            AuditAction::PortalLinkRevoked => "portal_link.revoked",
            AuditAction::WorkspaceCreated => "workspace.created",
            AuditAction::QuotasSet => "quotas.set",
        }
    }

    pub fn parse(text: &str) -> Option<AuditAction> {
        AuditAction::ALL.into_iter().find(|a| a.as_str() == text)
    }
}

/// One change to record.
#[derive(Debug, Clone)]
pub struct NewAuditEntry {
    pub id: String,
    pub at: i64,
    pub workspace: String,
    pub actor: String,
    pub action: AuditAction,
    pub target: String,
    pub detail: serde_json::Value,
}

/// A recorded change.
pub use crate::store::entity::audit_log::Model as AuditEntry;

/// Which entries a listing shows; every field narrows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub workspace: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    /// From this time on (unix ms, inclusive).
    pub since: Option<i64>,
    /// Before this time (unix ms, exclusive).
    pub until: Option<i64>,
}

/// Where a page starts: after (older than) this entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub at: i64,
    pub id: String,
}

/// Records one change, in the caller's transaction when it has one.
pub async fn record(
    conn: &impl ConnectionTrait,
    backend: Backend,
    entry: &NewAuditEntry,
) -> Result<(), StoreError> {
    let sql = "INSERT INTO audit_log (id, at, workspace, actor, action, target, detail) \
               VALUES (?, ?, ?, ?, ?, ?, ?)";
    let values: Vec<Value> = vec![
        entry.id.clone().into(),
        entry.at.into(),
        entry.workspace.clone().into(),
        entry.actor.clone().into(),
        entry.action.as_str().into(),
        entry.target.clone().into(),
        entry.detail.to_string().into(),
    ];
    conn.execute_raw(stmt(backend, sql, values)).await?;
    Ok(())
}

/// Entries `filter` matches, newest first, at most `limit`, after `after`.
pub async fn list(
    conn: &impl ConnectionTrait,
    backend: Backend,
    filter: &AuditFilter,
    after: Option<&Cursor>,
    limit: u64,
) -> Result<Vec<AuditEntry>, StoreError> {
    let mut sql = String::from(
        "SELECT id, at, workspace, actor, action, target, detail FROM audit_log WHERE 1 = 1",
    );
    let mut values: Vec<Value> = Vec::new();
    let equal = [
        ("workspace", &filter.workspace),
        ("actor", &filter.actor),
        ("action", &filter.action),
        ("target", &filter.target),
    ];
    for (column, wanted) in equal {
        if let Some(wanted) = wanted {
            sql.push_str(&format!(" AND {column} = ?"));
            values.push(wanted.clone().into());
        }
    }
    if let Some(since) = filter.since {
        sql.push_str(" AND at >= ?");
        values.push(since.into());
    }
    if let Some(until) = filter.until {
        sql.push_str(" AND at < ?");
        values.push(until.into());
    }
    if let Some(c) = after {
        sql.push_str(" AND (at < ? OR (at = ? AND id < ?))");
        values.extend([c.at.into(), c.at.into(), c.id.clone().into()]);
    }
    sql.push_str(" ORDER BY at DESC, id DESC LIMIT ?");
    values.push((limit as i64).into());
    let rows = conn.query_all_raw(stmt(backend, &sql, values)).await?;
    rows.iter()
        .map(|row| {
            Ok(AuditEntry {
                id: get(row, "id")?,
                at: get(row, "at")?,
                workspace: get(row, "workspace")?,
                actor: get(row, "actor")?,
                action: get(row, "action")?,
                target: get(row, "target")?,
                detail: get(row, "detail")?,
            })
        })
        .collect()
}

/// Deletes up to `limit` entries recorded before `cutoff`, oldest first. Returns how many.
pub async fn prune(
    conn: &impl ConnectionTrait,
    backend: Backend,
    cutoff: i64,
    limit: u64,
) -> Result<u64, StoreError> {
    let sql = "DELETE FROM audit_log WHERE id IN \
               (SELECT id FROM audit_log WHERE at < ? ORDER BY at LIMIT ?)";
    let values = vec![cutoff.into(), (limit as i64).into()];
    let result = conn.execute_raw(stmt(backend, sql, values)).await?;
    Ok(result.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::TestDb;

    fn entry(id: &str, at: i64, workspace: &str, action: AuditAction) -> NewAuditEntry {
        NewAuditEntry {
            id: id.into(),
            at,
            workspace: workspace.into(),
            actor: "local".into(),
            action,
            target: format!("t-{id}"),
            detail: serde_json::json!({"n": id}),
        }
    }

    #[test]
    fn actions_parse_from_their_names() {
        for action in AuditAction::ALL {
            assert_eq!(AuditAction::parse(action.as_str()), Some(action));
        }
        assert_eq!(AuditAction::parse("flow.eaten"), None);
    }

    #[tokio::test]
    async fn lists_newest_first_with_filters_and_pages_then_prunes_in_batches() {
        for db in TestDb::all().await {
            let (conn, backend) = (db.store.writer(), db.store.backend());
            let entries = [
                entry("a", 1_000, "default", AuditAction::FlowCreated),
                entry("b", 2_000, "acme", AuditAction::FlowCreated),
                entry("c", 2_000, "default", AuditAction::SecretSet),
                entry("d", 3_000, "acme", AuditAction::FlowDeleted),
            ];
            for e in &entries {
                record(conn, backend, e).await.unwrap();
            }
            let ids = |rows: Vec<AuditEntry>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
            let all = AuditFilter::default();
            assert_eq!(
                ids(list(conn, backend, &all, None, 10).await.unwrap()),
                ["d", "c", "b", "a"]
            );
            let acme = AuditFilter {
                workspace: Some("acme".into()),
                ..AuditFilter::default()
            };
            assert_eq!(
                ids(list(conn, backend, &acme, None, 10).await.unwrap()),
                ["d", "b"]
            );
            let created_window = AuditFilter {
                action: Some("flow.created".into()),
                since: Some(1_500),
                until: Some(3_000),
                ..AuditFilter::default()
            };
            assert_eq!(
                ids(list(conn, backend, &created_window, None, 10)
                    .await
                    .unwrap()),
                ["b"]
            );
            // Two entries at the same time page by id without losing or repeating one.
            let first = list(conn, backend, &all, None, 2).await.unwrap();
            let last = &first[1];
            let after = Cursor {
                at: last.at,
                id: last.id.clone(),
            };
            assert_eq!(
                ids(list(conn, backend, &all, Some(&after), 10).await.unwrap()),
                ["b", "a"]
            );
            assert_eq!(first[0].detail, r#"{"n":"d"}"#);

            assert_eq!(prune(conn, backend, 2_500, 2).await.unwrap(), 2);
            assert_eq!(prune(conn, backend, 2_500, 2).await.unwrap(), 1);
            assert_eq!(prune(conn, backend, 2_500, 2).await.unwrap(), 0);
            assert_eq!(
                ids(list(conn, backend, &all, None, 10).await.unwrap()),
                ["d"]
            );
            db.cleanup().await;
        }
    }
}
