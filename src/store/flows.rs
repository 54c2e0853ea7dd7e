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

/// Why a flow is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseReason {
    /// Paused by a person, through the API, the console or the command line.
    Manual,
    /// Paused by the failure breaker (`settings.auto_pause`).
    AutoPaused,
}

impl PauseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            PauseReason::Manual => "manual",
            PauseReason::AutoPaused => "auto_paused",
        }
    }
}

impl PauseReason {
    /// The reason stored as `text`, if it is one.
    pub fn parse(text: &str) -> Option<PauseReason> {
        [PauseReason::Manual, PauseReason::AutoPaused]
            .into_iter()
            .find(|reason| reason.as_str() == text)
    }
}

impl std::fmt::Display for PauseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    pub paused_at: Option<i64>,
    pub pause_reason: Option<PauseReason>,
    /// For `auto_paused`: what tripped the breaker, for a person.
    pub pause_detail: Option<String>,
    pub deleted_at: Option<i64>,
    pub load_error: Option<String>,
    pub definition: String,
    pub yaml: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const FLOW_COLUMNS: &str = "f.id, f.name, f.source, f.path, f.revision, f.enabled, f.paused, \
                            f.paused_at, f.pause_reason, f.pause_detail, f.deleted_at, f.load_error, \
                            r.definition, r.source AS yaml, f.created_at, f.updated_at";

/// The flows with their current revisions.
const FLOWS_FROM: &str =
    "FROM flows f JOIN flow_revisions r ON r.flow_id = f.id AND r.revision = f.revision";

fn flow_row(row: &sea_orm::QueryResult) -> Result<FlowRow, StoreError> {
    let pause_reason: Option<String> = get(row, "pause_reason")?;
    Ok(FlowRow {
        id: get(row, "id")?,
        name: get(row, "name")?,
        source: get_parsed(row, "source")?,
        path: get(row, "path")?,
        revision: get(row, "revision")?,
        enabled: get(row, "enabled")?,
        paused: get(row, "paused")?,
        paused_at: get(row, "paused_at")?,
        pause_reason: pause_reason
            .map(|text| {
                PauseReason::parse(&text).ok_or(StoreError::UnknownValue {
                    column: "pause_reason".into(),
                    value: text,
                })
            })
            .transpose()?,
        pause_detail: get(row, "pause_detail")?,
        deleted_at: get(row, "deleted_at")?,
        load_error: get(row, "load_error")?,
        definition: get(row, "definition")?,
        yaml: get(row, "yaml")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

/// Every flow that is not deleted, with its current definition.
pub async fn list(
    conn: &impl ConnectionTrait,
    backend: Backend,
) -> Result<Vec<FlowRow>, StoreError> {
    let sql =
        format!("SELECT {FLOW_COLUMNS} {FLOWS_FROM} WHERE f.deleted_at IS NULL ORDER BY f.id");
    let rows = conn.query_all_raw(stmt(backend, &sql, vec![])).await?;
    rows.iter().map(flow_row).collect()
}

/// What the flow list shows of a flow's runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunFigures {
    /// When its latest run was created.
    pub last_run_at: Option<i64>,
    /// Runs created since `since` (the last 24 h, as the caller says).
    pub runs_since: i64,
    /// Of those, the ones that failed.
    pub failed_since: i64,
}

/// Which flows [`list_with_figures`] lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which<'a> {
    /// The flows not deleted.
    Live,
    /// Deleted flows too.
    WithDeleted,
    /// One flow, deleted or not.
    One(&'a str),
}

/// Flows with their run figures in one query, whatever their number: the figures are
/// subqueries on `idx_runs_flow_created_status` (flow, created, status), so each is a range of that
/// index alone, never a scan of history nor a read of each run.
pub async fn list_with_figures(
    conn: &impl ConnectionTrait,
    backend: Backend,
    which: Which<'_>,
    since: i64,
) -> Result<Vec<(FlowRow, RunFigures)>, StoreError> {
    let mut values: Vec<Value> = vec![since.into(), since.into()];
    let filter = match which {
        Which::Live => "WHERE f.deleted_at IS NULL",
        Which::WithDeleted => "",
        Which::One(id) => {
            values.push(id.to_string().into());
            "WHERE f.id = ?"
        }
    };
    let sql = format!(
        "SELECT {FLOW_COLUMNS}, \
         (SELECT MAX(x.created_at) FROM runs x WHERE x.flow_id = f.id) AS last_run_at, \
         (SELECT COUNT(*) FROM runs x WHERE x.flow_id = f.id AND x.created_at >= ?) AS runs_since, \
         (SELECT COUNT(*) FROM runs x WHERE x.flow_id = f.id AND x.created_at >= ? AND x.status = 'failed') AS failed_since \
         {FLOWS_FROM} {filter} ORDER BY f.id"
    );
    let rows = conn.query_all_raw(stmt(backend, &sql, values)).await?;
    rows.iter()
        .map(|row| {
            let figures = RunFigures {
                last_run_at: get(row, "last_run_at")?,
                runs_since: get(row, "runs_since")?,
                failed_since: get(row, "failed_since")?,
            };
            Ok((flow_row(row)?, figures))
        })
        .collect()
}

/// One flow (not deleted) with its current definition.
pub async fn get_flow(
    conn: &impl ConnectionTrait,
    backend: Backend,
    id: &str,
) -> Result<Option<FlowRow>, StoreError> {
    let sql = format!("SELECT {FLOW_COLUMNS} {FLOWS_FROM} WHERE f.id = ? AND f.deleted_at IS NULL");
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
            "SELECT f.revision, f.source, f.deleted_at, r.sha256 FROM flows f JOIN flow_revisions r ON r.flow_id = f.id AND r.revision = f.revision WHERE f.id = ?",
            vec![flow.id.clone().into()],
        ))
        .await?;
    let Some(row) = existing else {
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
    let (revision, source, sha, deleted_at): (i64, String, String, Option<i64>) = (
        get(&row, "revision")?,
        get(&row, "source")?,
        get(&row, "sha256")?,
        get(&row, "deleted_at")?,
    );
    if deleted_at.is_some() {
        // A flow deleted earlier left its row and revisions for its runs' history: the new flow
        // of that id numbers on from them and starts afresh (not paused, created now).
        let next = last_revision(conn, backend, &flow.id).await? + 1;
        insert_revision(conn, backend, flow, next, now).await?;
        let sql = "UPDATE flows SET name = ?, source = ?, path = ?, revision = ?, enabled = ?, paused = FALSE, \
                   paused_at = NULL, pause_reason = NULL, pause_detail = NULL, deleted_at = NULL, load_error = NULL, \
                   created_at = ?, updated_at = ? WHERE id = ?";
        let values: Vec<Value> = vec![
            flow.name.clone().into(),
            flow.source.as_str().into(),
            flow.path.clone().into(),
            next.into(),
            flow.enabled.into(),
            now.into(),
            now.into(),
            flow.id.clone().into(),
        ];
        conn.execute_raw(stmt(backend, sql, values)).await?;
        return Ok(next);
    }
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

/// Pauses a flow (`Some(reason)`, with an optional detail for a person) or resumes it
/// (`None`); false when there is no such flow. Pausing a paused flow keeps its first
/// `paused_at`, so the date shows how long it has been paused.
pub async fn set_paused(
    conn: &impl ConnectionTrait,
    backend: Backend,
    id: &str,
    pause: Option<(PauseReason, Option<&str>)>,
    now: i64,
) -> Result<bool, StoreError> {
    let result = match pause {
        Some((reason, detail)) => {
            let sql = "UPDATE flows SET paused = TRUE, paused_at = CASE WHEN paused THEN paused_at ELSE ? END, \
                       pause_reason = ?, pause_detail = ?, updated_at = ? WHERE id = ? AND deleted_at IS NULL";
            let values: Vec<Value> = vec![
                now.into(),
                reason.as_str().into(),
                detail.map(str::to_string).into(),
                now.into(),
                id.to_string().into(),
            ];
            conn.execute_raw(stmt(backend, sql, values)).await?
        }
        None => {
            let sql = "UPDATE flows SET paused = FALSE, paused_at = NULL, pause_reason = NULL, pause_detail = NULL, \
                       updated_at = ? WHERE id = ? AND deleted_at IS NULL";
            conn.execute_raw(stmt(backend, sql, vec![now.into(), id.to_string().into()]))
                .await?
        }
    };
    Ok(result.rows_affected() > 0)
}

/// Pauses a flow for the failure breaker, unless it is paused (or deleted) already: true when
/// this call paused it, so concurrent failures trip it, and notify, once.
pub async fn auto_pause(
    conn: &impl ConnectionTrait,
    backend: Backend,
    id: &str,
    detail: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let sql = "UPDATE flows SET paused = TRUE, paused_at = ?, pause_reason = ?, pause_detail = ?, updated_at = ? \
               WHERE id = ? AND NOT paused AND deleted_at IS NULL";
    let values: Vec<Value> = vec![
        now.into(),
        PauseReason::AutoPaused.as_str().into(),
        detail.to_string().into(),
        now.into(),
        id.to_string().into(),
    ];
    let result = conn.execute_raw(stmt(backend, sql, values)).await?;
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

/// Deletes a flow: it is marked deleted (`deleted_at`) and keeps its row and revisions, for the
/// history of its runs and for `?include_deleted=true`. False when there is none (or it is
/// deleted already).
pub async fn delete(
    conn: &impl ConnectionTrait,
    backend: Backend,
    id: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let result = conn
        .execute_raw(stmt(
            backend,
            "UPDATE flows SET deleted_at = ?, updated_at = ? WHERE id = ? AND deleted_at IS NULL",
            vec![now.into(), now.into(), id.to_string().into()],
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

/// One revision of a flow, whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    pub revision: i64,
    pub sha256: String,
    /// The YAML as written (or as converted from JSON).
    pub yaml: String,
    /// The definition as JSON.
    pub definition: String,
    pub created_at: i64,
}

/// Revision `revision` of a flow, deleted or not.
pub async fn revision(
    conn: &impl ConnectionTrait,
    backend: Backend,
    flow_id: &str,
    revision: i64,
) -> Result<Option<Revision>, StoreError> {
    let row = conn
        .query_one_raw(stmt(
            backend,
            "SELECT revision, sha256, source, definition, created_at FROM flow_revisions WHERE flow_id = ? AND revision = ?",
            vec![flow_id.to_string().into(), revision.into()],
        ))
        .await?;
    row.map(|row| {
        Ok(Revision {
            revision: get(&row, "revision")?,
            sha256: get(&row, "sha256")?,
            yaml: get(&row, "source")?,
            definition: get(&row, "definition")?,
            created_at: get(&row, "created_at")?,
        })
    })
    .transpose()
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
               CAST(SUM(CASE WHEN paused THEN 1 ELSE 0 END) AS BIGINT) AS paused, \
               CAST(SUM(CASE WHEN deleted_at IS NULL THEN 0 ELSE 1 END) AS BIGINT) AS deleted FROM flows";
    let row = conn.query_one_raw(stmt(backend, sql, vec![])).await?;
    let Some(row) = row else {
        return Ok(String::new());
    };
    let n: i64 = get(&row, "n")?;
    let sum = |column| get::<Option<i64>>(&row, column).map(|v| v.unwrap_or(0));
    Ok(format!(
        "{n}:{}:{}:{}:{}",
        sum("changed")?,
        sum("revisions")?,
        sum("paused")?,
        sum("deleted")?
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

    async fn add_run(
        store: &crate::store::Store,
        id: &str,
        flow: &str,
        status: &str,
        created: i64,
    ) {
        let sql = "INSERT INTO runs (id, flow_id, revision, status, trigger, next_step, attempt, lease_epoch, \
                   cancel_requested, rate_limited_waits, created_at) VALUES (?, ?, 1, ?, '{}', 0, 1, 0, FALSE, 0, ?)";
        let values: Vec<Value> = vec![id.into(), flow.into(), status.into(), created.into()];
        store
            .writer()
            .execute_raw(stmt(store.backend(), sql, values))
            .await
            .unwrap();
    }

    /// The list's run figures count per flow and window; deleted flows show only when asked,
    /// and a deleted flow's id can be taken again by a new flow that numbers on.
    #[tokio::test]
    async fn figures_and_deleted_flows() {
        for db in TestDb::all().await {
            let (w, backend) = (db.store.writer(), db.store.backend());
            for id in ["a", "b", "c"] {
                save(w, backend, &input(id), 1_000).await.unwrap();
            }
            add_run(&db.store, "r1", "a", "failed", 5_000).await;
            add_run(&db.store, "r2", "a", "succeeded", 9_000).await;
            add_run(&db.store, "r3", "a", "failed", 10_000).await;
            add_run(&db.store, "r4", "b", "failed", 2_000).await;
            assert!(delete(w, backend, "c", 3_000).await.unwrap());
            assert!(
                !delete(w, backend, "c", 3_001).await.unwrap(),
                "deleted once"
            );

            let live = list_with_figures(db.store.reader(), backend, Which::Live, 6_000)
                .await
                .unwrap();
            let figures: Vec<(&str, RunFigures)> =
                live.iter().map(|(f, n)| (f.id.as_str(), *n)).collect();
            let expected = |last, runs, failed| RunFigures {
                last_run_at: last,
                runs_since: runs,
                failed_since: failed,
            };
            assert_eq!(
                figures,
                vec![
                    ("a", expected(Some(10_000), 2, 1)),
                    ("b", expected(Some(2_000), 0, 0))
                ],
                "{}",
                db.url
            );
            let all = list_with_figures(db.store.reader(), backend, Which::WithDeleted, 6_000)
                .await
                .unwrap();
            let deleted: Vec<(&str, Option<i64>)> = all
                .iter()
                .map(|(f, _)| (f.id.as_str(), f.deleted_at))
                .collect();
            assert_eq!(deleted, vec![("a", None), ("b", None), ("c", Some(3_000))]);
            assert!(
                get_flow(db.store.reader(), backend, "c")
                    .await
                    .unwrap()
                    .is_none()
            );
            assert!(
                !set_paused(w, backend, "c", Some((PauseReason::Manual, None)), 4_000)
                    .await
                    .unwrap()
            );

            let mut again = input("c");
            again.sha256 = "sha-c2".into();
            assert_eq!(save(w, backend, &again, 7_000).await.unwrap(), 2);
            let c = get_flow(db.store.reader(), backend, "c")
                .await
                .unwrap()
                .unwrap();
            assert_eq!((c.revision, c.deleted_at, c.created_at), (2, None, 7_000));
            assert_eq!(
                revision(db.store.reader(), backend, "c", 1)
                    .await
                    .unwrap()
                    .map(|r| r.sha256),
                Some("sha-c".into())
            );
            db.cleanup().await;
        }
    }

    /// Pausing twice keeps the first date; resuming clears date and reason.
    #[tokio::test]
    async fn pause_keeps_its_first_date_and_resume_clears_it() {
        for db in TestDb::all().await {
            let (w, backend) = (db.store.writer(), db.store.backend());
            save(w, backend, &input("a"), 1_000).await.unwrap();
            let read = async || {
                get_flow(db.store.reader(), backend, "a")
                    .await
                    .unwrap()
                    .unwrap()
            };
            set_paused(w, backend, "a", Some((PauseReason::Manual, None)), 2_000)
                .await
                .unwrap();
            set_paused(
                w,
                backend,
                "a",
                Some((PauseReason::AutoPaused, Some("50 failed"))),
                3_000,
            )
            .await
            .unwrap();
            let a = read().await;
            assert_eq!(
                (
                    a.paused,
                    a.paused_at,
                    a.pause_reason,
                    a.pause_detail.as_deref()
                ),
                (
                    true,
                    Some(2_000),
                    Some(PauseReason::AutoPaused),
                    Some("50 failed")
                ),
                "{}",
                db.url
            );
            set_paused(w, backend, "a", None, 4_000).await.unwrap();
            let a = read().await;
            assert_eq!((a.paused, a.paused_at, a.pause_reason), (false, None, None));
            db.cleanup().await;
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
            assert!(
                set_paused(w, backend, "b", Some((PauseReason::Manual, None)), 1_500)
                    .await
                    .unwrap()
            );
            let paused = fingerprint(db.store.reader(), backend).await.unwrap();
            assert_ne!(before, paused, "{}", db.url);
            assert!(set_paused(w, backend, "b", None, 1_500).await.unwrap());
            let resumed = fingerprint(db.store.reader(), backend).await.unwrap();
            assert_ne!(paused, resumed, "{}", db.url);
            db.cleanup().await;
        }
    }
}
