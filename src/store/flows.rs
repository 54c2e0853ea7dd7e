//! Flows and their revisions. A flow row points at its current revision; every change of its
//! source adds a revision, and runs keep executing the revision they were created with.

use sea_orm::{ConnectionTrait, Value};

use crate::store::sql::{get, get_parsed, stmt};
use crate::store::{Backend, StoreError};

/// Where a flow is managed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowSource {
    File,
    Api,
}

impl FlowSource {
    pub fn as_str(self) -> &'static str {
        match self {
            FlowSource::File => "file",
            FlowSource::Api => "api",
        }
    }
}

/// A stored flow source that is neither `file` nor `api`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown flow source `{0}`")]
pub struct UnknownSource(pub String);

impl std::str::FromStr for FlowSource {
    type Err = UnknownSource;

    fn from_str(text: &str) -> Result<FlowSource, UnknownSource> {
        [FlowSource::File, FlowSource::Api]
            .into_iter()
            .find(|source| source.as_str() == text)
            .ok_or_else(|| UnknownSource(text.to_string()))
    }
}

impl std::fmt::Display for FlowSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A flow definition to store.
#[derive(Debug, Clone)]
pub struct FlowInput {
    pub id: String,
    pub name: String,
    pub source: FlowSource,
    pub path: Option<String>,
    /// The YAML as written.
    pub yaml: String,
    /// The definition as JSON.
    pub definition: String,
    pub sha256: String,
    pub enabled: bool,
}

/// A flow row with its current revision's definition.
#[derive(Debug, Clone)]
pub struct FlowRow {
    pub id: String,
    pub name: String,
    pub source: FlowSource,
    pub path: Option<String>,
    pub revision: i64,
    pub enabled: bool,
    pub paused: bool,
    pub load_error: Option<String>,
    pub definition: String,
    pub yaml: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const FLOW_COLUMNS: &str = "f.id, f.name, f.source, f.path, f.revision, f.enabled, f.paused, f.load_error, \
                            r.definition, r.source AS yaml, f.created_at, f.updated_at";

fn flow_row(row: &sea_orm::QueryResult) -> Result<FlowRow, StoreError> {
    Ok(FlowRow {
        id: get(row, "id")?,
        name: get(row, "name")?,
        source: get_parsed(row, "source")?,
        path: get(row, "path")?,
        revision: get(row, "revision")?,
        enabled: get(row, "enabled")?,
        paused: get(row, "paused")?,
        load_error: get(row, "load_error")?,
        definition: get(row, "definition")?,
        yaml: get(row, "yaml")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

/// Every flow with its current definition.
pub async fn list(
    conn: &impl ConnectionTrait,
    backend: Backend,
) -> Result<Vec<FlowRow>, StoreError> {
    let sql = format!(
        "SELECT {FLOW_COLUMNS} FROM flows f JOIN flow_revisions r ON r.flow_id = f.id AND r.revision = f.revision ORDER BY f.id"
    );
    let rows = conn.query_all_raw(stmt(backend, &sql, vec![])).await?;
    rows.iter().map(flow_row).collect()
}

/// One flow with its current definition.
pub async fn get_flow(
    conn: &impl ConnectionTrait,
    backend: Backend,
    id: &str,
) -> Result<Option<FlowRow>, StoreError> {
    let sql = format!(
        "SELECT {FLOW_COLUMNS} FROM flows f JOIN flow_revisions r ON r.flow_id = f.id AND r.revision = f.revision WHERE f.id = ?"
    );
    let row = conn
        .query_one_raw(stmt(backend, &sql, vec![id.to_string().into()]))
        .await?;
    row.as_ref().map(flow_row).transpose()
}

/// The definition (JSON) of one revision of a flow.
pub async fn revision_definition(
    conn: &impl ConnectionTrait,
    backend: Backend,
    flow_id: &str,
    revision: i64,
) -> Result<Option<String>, StoreError> {
    let sql = "SELECT definition FROM flow_revisions WHERE flow_id = ? AND revision = ?";
    let row = conn
        .query_one_raw(stmt(
            backend,
            sql,
            vec![flow_id.to_string().into(), revision.into()],
        ))
        .await?;
    row.map(|r| get(&r, "definition")).transpose()
}

/// Stores a flow: creates it, or adds a revision when its source changed. Returns the current
/// revision. A flow managed elsewhere (file vs API) is a conflict.
pub async fn save(
    conn: &impl ConnectionTrait,
    backend: Backend,
    flow: &FlowInput,
    now: i64,
) -> Result<i64, StoreError> {
    let existing = conn
        .query_one_raw(stmt(
            backend,
            "SELECT f.revision, f.source, r.sha256 FROM flows f JOIN flow_revisions r ON r.flow_id = f.id AND r.revision = f.revision WHERE f.id = ?",
            vec![flow.id.clone().into()],
        ))
        .await?;
    let Some(row) = existing else {
        // A flow deleted earlier left its revisions for its runs' history: number on from them.
        let revision = last_revision(conn, backend, &flow.id).await? + 1;
        insert_revision(conn, backend, flow, revision, now).await?;
        let sql = "INSERT INTO flows (id, name, source, path, revision, enabled, paused, load_error, created_at, updated_at) \
                   VALUES (?, ?, ?, ?, ?, ?, FALSE, NULL, ?, ?)";
        let values: Vec<Value> = vec![
            flow.id.clone().into(),
            flow.name.clone().into(),
            flow.source.as_str().into(),
            flow.path.clone().into(),
            revision.into(),
            flow.enabled.into(),
            now.into(),
            now.into(),
        ];
        conn.execute_raw(stmt(backend, sql, values)).await?;
        return Ok(revision);
    };
    let (revision, source, sha): (i64, String, String) = (
        get(&row, "revision")?,
        get(&row, "source")?,
        get(&row, "sha256")?,
    );
    if source != flow.source.as_str() {
        return Err(StoreError::Conflict {
            what: format!("flow `{}` is managed by {source}", flow.id),
        });
    }
    let next = if sha == flow.sha256 {
        revision
    } else {
        revision + 1
    };
    if next != revision {
        insert_revision(conn, backend, flow, next, now).await?;
    }
    let sql = "UPDATE flows SET name = ?, path = ?, revision = ?, enabled = ?, load_error = NULL, updated_at = ? WHERE id = ?";
    let values: Vec<Value> = vec![
        flow.name.clone().into(),
        flow.path.clone().into(),
        next.into(),
        flow.enabled.into(),
        now.into(),
        flow.id.clone().into(),
    ];
    conn.execute_raw(stmt(backend, sql, values)).await?;
    Ok(next)
}

async fn insert_revision(
    conn: &impl ConnectionTrait,
    backend: Backend,
    flow: &FlowInput,
    revision: i64,
    now: i64,
) -> Result<(), StoreError> {
    let sql = "INSERT INTO flow_revisions (flow_id, revision, sha256, source, definition, created_at) VALUES (?, ?, ?, ?, ?, ?)";
    let values: Vec<Value> = vec![
        flow.id.clone().into(),
        revision.into(),
        flow.sha256.clone().into(),
        flow.yaml.clone().into(),
        flow.definition.clone().into(),
        now.into(),
    ];
    conn.execute_raw(stmt(backend, sql, values)).await?;
    Ok(())
}

/// Records (or clears) the last load problem of a file flow; the last good revision keeps running.
pub async fn set_load_error(
    conn: &impl ConnectionTrait,
    backend: Backend,
    id: &str,
    error: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    let sql = "UPDATE flows SET load_error = ?, updated_at = ? WHERE id = ?";
    conn.execute_raw(stmt(
        backend,
        sql,
        vec![
            error.map(str::to_string).into(),
            now.into(),
            id.to_string().into(),
        ],
    ))
    .await?;
    Ok(())
}

/// An arbitrary constant naming flowd's PostgreSQL advisory lock for loading flow files
/// ("flowd_ff").
const FILE_LOADING_LOCK_KEY: i64 = 0x666c_6f77_645f_6666;

/// Serialises the loading of flow files across nodes until the transaction ends. Nodes started
/// together with the same files would otherwise insert the same new flow at once, and the loser's
/// unique-key violation would abort its whole transaction (on PostgreSQL, the rest of its files
/// with it). Waiting, the second node finds the flows stored and unchanged. On SQLite the write
/// transaction (`BEGIN IMMEDIATE`) already does this.
pub async fn lock_file_loading(
    conn: &impl ConnectionTrait,
    backend: Backend,
) -> Result<(), StoreError> {
    if backend == Backend::Postgres {
        let sql = format!("SELECT pg_advisory_xact_lock({FILE_LOADING_LOCK_KEY})");
        conn.execute_raw(stmt(backend, &sql, vec![])).await?;
    }
    Ok(())
}

/// Pauses or resumes a flow; false when there is no such flow.
pub async fn set_paused(
    conn: &impl ConnectionTrait,
    backend: Backend,
    id: &str,
    paused: bool,
    now: i64,
) -> Result<bool, StoreError> {
    let sql = "UPDATE flows SET paused = ?, updated_at = ? WHERE id = ?";
    let result = conn
        .execute_raw(stmt(
            backend,
            sql,
            vec![paused.into(), now.into(), id.to_string().into()],
        ))
        .await?;
    Ok(result.rows_affected() > 0)
}

async fn last_revision(
    conn: &impl ConnectionTrait,
    backend: Backend,
    flow_id: &str,
) -> Result<i64, StoreError> {
    let row = conn
        .query_one_raw(stmt(
            backend,
            "SELECT MAX(revision) AS last FROM flow_revisions WHERE flow_id = ?",
            vec![flow_id.to_string().into()],
        ))
        .await?;
    Ok(match row {
        Some(row) => get::<Option<i64>>(&row, "last")?.unwrap_or(0),
        None => 0,
    })
}

/// Deletes a flow; its revisions stay, for the history of its runs. False when there is none.
pub async fn delete(
    conn: &impl ConnectionTrait,
    backend: Backend,
    id: &str,
) -> Result<bool, StoreError> {
    let result = conn
        .execute_raw(stmt(
            backend,
            "DELETE FROM flows WHERE id = ?",
            vec![id.to_string().into()],
        ))
        .await?;
    Ok(result.rows_affected() > 0)
}

/// One stored revision of a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionRow {
    pub revision: i64,
    pub sha256: String,
    pub created_at: i64,
}

/// The revisions of a flow, newest first.
pub async fn revisions(
    conn: &impl ConnectionTrait,
    backend: Backend,
    flow_id: &str,
) -> Result<Vec<RevisionRow>, StoreError> {
    let rows = conn
        .query_all_raw(stmt(
            backend,
            "SELECT revision, sha256, created_at FROM flow_revisions WHERE flow_id = ? ORDER BY revision DESC",
            vec![flow_id.to_string().into()],
        ))
        .await?;
    rows.iter()
        .map(|row| {
            Ok(RevisionRow {
                revision: get(row, "revision")?,
                sha256: get(row, "sha256")?,
                created_at: get(row, "created_at")?,
            })
        })
        .collect()
}

/// A short summary that changes whenever any flow is created, changed, paused or deleted: nodes
/// compare it to notice changes made through another node. It sums every flow's `updated_at`
/// rather than taking the latest: nodes write `updated_at` with their own clocks, and a change
/// made on a node whose clock lags behind would not move a maximum.
pub async fn fingerprint(
    conn: &impl ConnectionTrait,
    backend: Backend,
) -> Result<String, StoreError> {
    let sql = "SELECT COUNT(*) AS n, CAST(SUM(updated_at) AS BIGINT) AS changed, \
               CAST(SUM(revision) AS BIGINT) AS revisions, \
               CAST(SUM(CASE WHEN paused THEN 1 ELSE 0 END) AS BIGINT) AS paused FROM flows";
    let row = conn.query_one_raw(stmt(backend, sql, vec![])).await?;
    let Some(row) = row else {
        return Ok(String::new());
    };
    let n: i64 = get(&row, "n")?;
    let sum = |column| get::<Option<i64>>(&row, column).map(|v| v.unwrap_or(0));
    Ok(format!(
        "{n}:{}:{}:{}",
        sum("changed")?,
        sum("revisions")?,
        sum("paused")?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::TestDb;

    fn input(id: &str) -> FlowInput {
        FlowInput {
            id: id.into(),
            name: id.into(),
            source: FlowSource::Api,
            path: None,
            yaml: format!("id: {id}"),
            definition: "{}".into(),
            sha256: format!("sha-{id}"),
            enabled: true,
        }
    }

    /// Node B's clock is behind node A's: its pause of `b` is stamped earlier than A's last
    /// change of `a`, and the other nodes must notice it all the same.
    #[tokio::test]
    async fn fingerprint_notices_a_change_stamped_by_a_lagging_clock() {
        for db in TestDb::all().await {
            let (w, backend) = (db.store.writer(), db.store.backend());
            save(w, backend, &input("a"), 2_000).await.unwrap();
            save(w, backend, &input("b"), 1_000).await.unwrap();
            let before = fingerprint(db.store.reader(), backend).await.unwrap();
            assert!(set_paused(w, backend, "b", true, 1_500).await.unwrap());
            let paused = fingerprint(db.store.reader(), backend).await.unwrap();
            assert_ne!(before, paused, "{}", db.url);
            assert!(set_paused(w, backend, "b", false, 1_500).await.unwrap());
            let resumed = fingerprint(db.store.reader(), backend).await.unwrap();
            assert_ne!(paused, resumed, "{}", db.url);
            db.cleanup().await;
        }
    }
}
