//! The node registry: every `flowd serve` sharing the database writes a row when it starts,
//! refreshes its heartbeat on each lease-renewal tick, and marks itself stopped when it stops in
//! an orderly way. Reading it tells alive, stopped and lost nodes apart and how many runs each
//! holds now, which is what an operator of several nodes needs to see (`GET /api/v1/nodes`).
//!
//! The registry is for people: nothing in the engine depends on it. Claims and takeovers rest on
//! the leases of the runs themselves, so a node whose row is stale or missing loses nothing.

use sea_orm::{ConnectionTrait, QueryResult};

use crate::store::sql::{get, stmt};
use crate::store::{Backend, StoreError};

/// Rows of nodes not heard from for this long are removed when a node starts: each start is a
/// new node id, and a week of history is enough to see what ran where.
pub const FORGET_AFTER_MS: i64 = 7 * 24 * 3600 * 1000;

/// What a node says about itself when it starts.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub id: String,
    pub hostname: String,
    pub version: String,
    pub lease_ms: i64,
}

/// Whether a node is still working, as the registry sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeStatus {
    /// Its heartbeat is younger than its lease.
    Alive,
    /// It stopped in an orderly way and gave its leases back.
    Stopped,
    /// No heartbeat for longer than its lease: it crashed, hangs or cannot reach the database.
    /// Its runs are taken over by other nodes once their leases expire.
    Lost,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Alive => "alive",
            NodeStatus::Stopped => "stopped",
            NodeStatus::Lost => "lost",
        }
    }

    /// The status at `now` of a node with these times.
    pub fn at(now: i64, heartbeat_at: i64, lease_ms: i64, stopped_at: Option<i64>) -> NodeStatus {
        if stopped_at.is_some() {
            NodeStatus::Stopped
        } else if now - heartbeat_at > lease_ms {
            NodeStatus::Lost
        } else {
            NodeStatus::Alive
        }
    }
}

/// A node as the registry lists it.
#[derive(Debug, Clone)]
pub struct NodeRow {
    pub id: String,
    pub hostname: String,
    pub version: String,
    pub started_at: i64,
    pub heartbeat_at: i64,
    pub lease_ms: i64,
    pub stopped_at: Option<i64>,
    pub status: NodeStatus,
    /// Runs executing under a lease of this node that has not expired.
    pub runs_held: u64,
}

/// Records a node that starts now (again, should its id repeat), and forgets nodes not heard
/// from for [`FORGET_AFTER_MS`].
pub async fn register(
    conn: &impl ConnectionTrait,
    backend: Backend,
    node: &NodeInfo,
    now: i64,
) -> Result<(), StoreError> {
    let sql = "INSERT INTO nodes (id, hostname, version, started_at, heartbeat_at, lease_ms, stopped_at) \
               VALUES (?, ?, ?, ?, ?, ?, NULL) ON CONFLICT (id) DO UPDATE SET hostname = excluded.hostname, \
               version = excluded.version, started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, \
               lease_ms = excluded.lease_ms, stopped_at = NULL";
    let values = vec![
        node.id.clone().into(),
        node.hostname.clone().into(),
        node.version.clone().into(),
        now.into(),
        now.into(),
        node.lease_ms.into(),
    ];
    conn.execute_raw(stmt(backend, sql, values)).await?;
    let forget = "DELETE FROM nodes WHERE heartbeat_at < ?";
    conn.execute_raw(stmt(backend, forget, vec![(now - FORGET_AFTER_MS).into()]))
        .await?;
    Ok(())
}

/// Refreshes a node's heartbeat; false when it has no row (it was never registered, or was
/// forgotten).
pub async fn heartbeat(
    conn: &impl ConnectionTrait,
    backend: Backend,
    id: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let sql = "UPDATE nodes SET heartbeat_at = ? WHERE id = ?";
    let result = conn
        .execute_raw(stmt(backend, sql, vec![now.into(), id.to_string().into()]))
        .await?;
    Ok(result.rows_affected() > 0)
}

/// Marks a node stopped (an orderly shutdown, after it gave its leases back).
pub async fn mark_stopped(
    conn: &impl ConnectionTrait,
    backend: Backend,
    id: &str,
    now: i64,
) -> Result<(), StoreError> {
    let sql = "UPDATE nodes SET stopped_at = ?, heartbeat_at = ? WHERE id = ?";
    let values = vec![now.into(), now.into(), id.to_string().into()];
    conn.execute_raw(stmt(backend, sql, values)).await?;
    Ok(())
}

const NODE_COLUMNS: &str =
    "n.id, n.hostname, n.version, n.started_at, n.heartbeat_at, n.lease_ms, n.stopped_at";

/// Every node, newest start first, with its status and the runs it holds at `now`.
pub async fn list(
    conn: &impl ConnectionTrait,
    backend: Backend,
    now: i64,
) -> Result<Vec<NodeRow>, StoreError> {
    let sql = format!(
        "SELECT {NODE_COLUMNS}, COALESCE(h.held, 0) AS runs_held FROM nodes n LEFT JOIN \
         (SELECT lease_owner, COUNT(*) AS held FROM runs WHERE status = 'running' AND lease_expires_at > ? \
         GROUP BY lease_owner) h ON h.lease_owner = n.id ORDER BY n.started_at DESC, n.id"
    );
    let rows = conn
        .query_all_raw(stmt(backend, &sql, vec![now.into()]))
        .await?;
    rows.iter().map(|row| node_row(row, now)).collect()
}

/// One node without its runs (for `/readyz`), or `None` when it has no row.
pub async fn get_node(
    conn: &impl ConnectionTrait,
    backend: Backend,
    id: &str,
    now: i64,
) -> Result<Option<NodeRow>, StoreError> {
    let sql = format!(
        "SELECT {NODE_COLUMNS}, CAST(0 AS BIGINT) AS runs_held FROM nodes n WHERE n.id = ?"
    );
    let row = conn
        .query_one_raw(stmt(backend, &sql, vec![id.to_string().into()]))
        .await?;
    row.as_ref().map(|row| node_row(row, now)).transpose()
}

fn node_row(row: &QueryResult, now: i64) -> Result<NodeRow, StoreError> {
    let heartbeat_at: i64 = get(row, "heartbeat_at")?;
    let lease_ms: i64 = get(row, "lease_ms")?;
    let stopped_at: Option<i64> = get(row, "stopped_at")?;
    let runs_held: i64 = get(row, "runs_held")?;
    Ok(NodeRow {
        id: get(row, "id")?,
        hostname: get(row, "hostname")?,
        version: get(row, "version")?,
        started_at: get(row, "started_at")?,
        heartbeat_at,
        lease_ms,
        stopped_at,
        status: NodeStatus::at(now, heartbeat_at, lease_ms, stopped_at),
        runs_held: runs_held.max(0) as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::runs::{Claim, claim, insert_runs};
    use crate::store::testing::{TestDb, pending_run};

    fn node(id: &str, lease_ms: i64) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            hostname: "box".into(),
            version: "0.1.0".into(),
            lease_ms,
        }
    }

    #[test]
    fn status_follows_heartbeat_lease_and_stop() {
        assert_eq!(
            NodeStatus::at(10_000, 9_000, 3_000, None),
            NodeStatus::Alive
        );
        assert_eq!(
            NodeStatus::at(10_000, 7_000, 3_000, None),
            NodeStatus::Alive
        );
        assert_eq!(NodeStatus::at(10_001, 7_000, 3_000, None), NodeStatus::Lost);
        assert_eq!(
            NodeStatus::at(10_000, 9_999, 3_000, Some(9_999)),
            NodeStatus::Stopped
        );
    }

    #[tokio::test]
    async fn registry_shows_status_and_runs_held() {
        for db in TestDb::all().await {
            let (store, backend) = (&db.store, db.store.backend());
            let w = store.writer();
            register(w, backend, &node("a", 3_000), 1_000)
                .await
                .unwrap();
            register(w, backend, &node("b", 3_000), 2_000)
                .await
                .unwrap();
            register(w, backend, &node("c", 3_000), 3_000)
                .await
                .unwrap();
            insert_runs(w, backend, &[pending_run("r1", 0), pending_run("r2", 0)])
                .await
                .unwrap();
            let claim_as = |owner, limit| Claim {
                owner,
                now: 3_000,
                lease_ms: 3_000,
                limit,
                skip_flows: &[],
                only_flow: None,
                started: None,
                ordered: false,
                workspaces: Default::default(),
            };
            assert_eq!(claim(w, backend, &claim_as("a", 2)).await.unwrap().len(), 2);
            assert!(heartbeat(w, backend, "a", 4_000).await.unwrap());
            assert!(!heartbeat(w, backend, "nobody", 4_000).await.unwrap());
            mark_stopped(w, backend, "c", 4_500).await.unwrap();

            let listed = list(store.reader(), backend, 5_500).await.unwrap();
            let seen: Vec<(&str, NodeStatus, u64)> = listed
                .iter()
                .map(|n| (n.id.as_str(), n.status, n.runs_held))
                .collect();
            assert_eq!(
                seen,
                [
                    ("c", NodeStatus::Stopped, 0),
                    ("b", NodeStatus::Lost, 0),
                    ("a", NodeStatus::Alive, 2),
                ]
            );
            // A lease that expired is not held any more.
            let later = list(store.reader(), backend, 6_001).await.unwrap();
            assert_eq!(later.iter().map(|n| n.runs_held).sum::<u64>(), 0);

            let a = get_node(store.reader(), backend, "a", 5_500).await.unwrap();
            assert_eq!(a.map(|n| n.heartbeat_at), Some(4_000));
            assert!(
                get_node(store.reader(), backend, "x", 0)
                    .await
                    .unwrap()
                    .is_none()
            );

            // Starting again under the same id clears the stop; long-gone nodes are forgotten.
            register(w, backend, &node("c", 5_000), FORGET_AFTER_MS + 2_500)
                .await
                .unwrap();
            let ids: Vec<String> = list(store.reader(), backend, FORGET_AFTER_MS + 2_500)
                .await
                .unwrap()
                .into_iter()
                .map(|n| format!("{}:{}", n.id, n.status.as_str()))
                .collect();
            assert_eq!(ids, ["c:alive", "a:lost"]);
            db.cleanup().await;
        }
    }
}
