//! Quotas per workspace (SPEC §11) as stored: the settings of each workspace, the counters of
//! the windows in use, the runs a quota holds (`held` with a `wake_at`, where a paused flow's
//! held runs have none) and their release, the holds counted for usage, and the once-a-day
//! notice. Every counter moves inside the caller's transaction under [`lock_workspace`], so
//! several nodes on one database never together exceed a quota.
//!
//! A run belongs to the workspace of its flow key (`core::workspace::split_flow_key`): the
//! bare id in `default`, `ws/id` elsewhere; [`workspace_filter`] says that in SQL.

use sea_orm::{ConnectionTrait, Value};

use crate::core::workspace::DEFAULT_WORKSPACE;
use crate::store::sql::{advisory_xact_lock, get, stmt};
use crate::store::{Backend, StoreError};

/// Milliseconds of a quota's windows.
pub const DAY_MS: i64 = 86_400_000;
pub const MINUTE_MS: i64 = 60_000;

/// A workspace's quotas; `None`: no limit of that kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quotas {
    pub runs_per_day: Option<i64>,
    pub http_attempts_per_minute: Option<i64>,
}

impl Quotas {
    pub fn is_empty(&self) -> bool {
        self.runs_per_day.is_none() && self.http_attempts_per_minute.is_none()
    }
}

/// What a quota counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaKind {
    /// Runs first started in a UTC day.
    Runs,
    /// HTTP attempts in a minute.
    Http,
}

impl QuotaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaKind::Runs => "runs_per_day",
            QuotaKind::Http => "http_attempts_per_minute",
        }
    }

    /// The length of its window.
    pub fn window_ms(self) -> i64 {
        match self {
            QuotaKind::Runs => DAY_MS,
            QuotaKind::Http => MINUTE_MS,
        }
    }

    /// The start of the window holding `now`.
    pub fn window_start(self, now: i64) -> i64 {
        now - now.rem_euclid(self.window_ms())
    }
}

/// One workspace's stored quotas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaRow {
    pub workspace: String,
    pub quotas: Quotas,
    pub updated_at: i64,
}

fn quota_row(row: &sea_orm::QueryResult) -> Result<QuotaRow, StoreError> {
    Ok(QuotaRow {
        workspace: get(row, "workspace")?,
        quotas: Quotas {
            runs_per_day: get(row, "runs_per_day")?,
            http_attempts_per_minute: get(row, "http_attempts_per_minute")?,
        },
        updated_at: get(row, "updated_at")?,
    })
}

const COLUMNS: &str = "workspace, runs_per_day, http_attempts_per_minute, updated_at";

/// Every workspace with a quota (the table is small: one row per workspace at most).
pub async fn list(
    conn: &impl ConnectionTrait,
    backend: Backend,
) -> Result<Vec<QuotaRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM workspace_quotas ORDER BY workspace");
    let rows = conn.query_all_raw(stmt(backend, &sql, Vec::new())).await?;
    rows.iter().map(quota_row).collect()
}

/// One workspace's quotas, if it has a row.
pub async fn get_one(
    conn: &impl ConnectionTrait,
    backend: Backend,
    workspace: &str,
) -> Result<Option<QuotaRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM workspace_quotas WHERE workspace = ?");
    let row = conn
        .query_one_raw(stmt(backend, &sql, vec![workspace.to_owned().into()]))
        .await?;
    row.as_ref().map(quota_row).transpose()
}

/// Sets a workspace's quotas; both `None` removes its row (no quota, the default).
pub async fn set(
    conn: &impl ConnectionTrait,
    backend: Backend,
    workspace: &str,
    quotas: Quotas,
    now: i64,
) -> Result<(), StoreError> {
    if quotas.is_empty() {
        let sql = "DELETE FROM workspace_quotas WHERE workspace = ?";
        conn.execute_raw(stmt(backend, sql, vec![workspace.to_owned().into()]))
            .await?;
        return Ok(());
    }
    let sql = "INSERT INTO workspace_quotas (workspace, runs_per_day, http_attempts_per_minute, updated_at) \
               VALUES (?, ?, ?, ?) ON CONFLICT (workspace) DO UPDATE SET \
               runs_per_day = excluded.runs_per_day, \
               http_attempts_per_minute = excluded.http_attempts_per_minute, \
               updated_at = excluded.updated_at";
    let values: Vec<Value> = vec![
        workspace.to_owned().into(),
        quotas.runs_per_day.into(),
        quotas.http_attempts_per_minute.into(),
        now.into(),
    ];
    conn.execute_raw(stmt(backend, sql, values)).await?;
    Ok(())
}

/// The SQL condition (over `runs.flow_id`) of the runs of `workspace`, with its values. A
/// prefix compare rather than `LIKE`, whose `_` would match any character.
pub fn workspace_filter(workspace: &str) -> (String, Vec<Value>) {
    if workspace == DEFAULT_WORKSPACE {
        return ("flow_id NOT LIKE '%/%'".to_owned(), Vec::new());
    }
    let prefix = format!("{workspace}/");
    (
        format!("substr(flow_id, 1, {}) = ?", prefix.len()),
        vec![prefix.into()],
    )
}

/// Serializes the quota decisions of one workspace across nodes until the transaction ends. On
/// SQLite the single writer already does this.
pub async fn lock_workspace(
    conn: &impl ConnectionTrait,
    backend: Backend,
    workspace: &str,
) -> Result<(), StoreError> {
    advisory_xact_lock(conn, backend, format!("flowd.quota.{workspace}")).await
}

/// How much of the window holding `now` is used.
pub async fn used(
    conn: &impl ConnectionTrait,
    backend: Backend,
    workspace: &str,
    kind: QuotaKind,
    now: i64,
) -> Result<i64, StoreError> {
    let sql =
        "SELECT used FROM quota_windows WHERE workspace = ? AND kind = ? AND window_start = ?";
    let values: Vec<Value> = vec![
        workspace.to_owned().into(),
        kind.as_str().into(),
        kind.window_start(now).into(),
    ];
    let row = conn.query_one_raw(stmt(backend, sql, values)).await?;
    row.map_or(Ok(0), |row| get(&row, "used"))
}

/// Counts `n` more in the window holding `now`, where `before` were used; the first count of
/// a window drops the workspace's older ones of that kind (nothing reads them).
pub async fn add_used(
    conn: &impl ConnectionTrait,
    backend: Backend,
    (workspace, kind): (&str, QuotaKind),
    now: i64,
    before: i64,
    n: i64,
) -> Result<(), StoreError> {
    if n == 0 {
        return Ok(());
    }
    let start = kind.window_start(now);
    let key = || -> Vec<Value> { vec![workspace.to_owned().into(), kind.as_str().into()] };
    let sql = "INSERT INTO quota_windows (workspace, kind, window_start, used) VALUES (?, ?, ?, ?) \
               ON CONFLICT (workspace, kind, window_start) DO UPDATE SET used = quota_windows.used + excluded.used";
    let mut values = key();
    values.extend([start.into(), n.into()]);
    conn.execute_raw(stmt(backend, sql, values)).await?;
    if before == 0 {
        let prune =
            "DELETE FROM quota_windows WHERE workspace = ? AND kind = ? AND window_start < ?";
        let mut values = key();
        values.push(start.into());
        conn.execute_raw(stmt(backend, prune, values)).await?;
    }
    Ok(())
}

/// Takes one slot of the window holding `now` if `limit` leaves one; returns whether it did.
pub async fn take_slot(
    conn: &impl ConnectionTrait,
    backend: Backend,
    workspace: &str,
    kind: QuotaKind,
    now: i64,
    limit: i64,
) -> Result<bool, StoreError> {
    let before = used(conn, backend, workspace, kind, now).await?;
    if before >= limit {
        return Ok(false);
    }
    add_used(conn, backend, (workspace, kind), now, before, 1).await?;
    Ok(true)
}

/// Runs a quota held just now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    /// How many per flow key.
    pub per_flow: Vec<(String, i64)>,
    /// The earliest held run and its flow key (the inbox notice names them).
    pub first: Option<(String, String)>,
}

/// Holds the workspace's due runs that never started (the runs-per-day quota is used up):
/// `held` until `until`, when [`release_due`] lets them go.
pub async fn hold_fresh(
    conn: &impl ConnectionTrait,
    backend: Backend,
    workspace: &str,
    now: i64,
    until: i64,
) -> Result<Held, StoreError> {
    let (in_workspace, ws_values) = workspace_filter(workspace);
    let sql = format!(
        "UPDATE runs SET status = 'held', due_at = NULL, wake_at = ? \
         WHERE status = 'pending' AND started_at IS NULL AND due_at <= ? AND {in_workspace} \
         RETURNING id, flow_id"
    );
    let mut values: Vec<Value> = vec![until.into(), now.into()];
    values.extend(ws_values);
    let rows = conn.query_all_raw(stmt(backend, &sql, values)).await?;
    let mut held = Held::default();
    for row in &rows {
        let (id, flow): (String, String) = (get(row, "id")?, get(row, "flow_id")?);
        if held.first.as_ref().is_none_or(|(first, _)| id < *first) {
            held.first = Some((id, flow.clone()));
        }
        match held.per_flow.iter_mut().find(|(f, _)| *f == flow) {
            Some((_, n)) => *n += 1,
            None => held.per_flow.push((flow, 1)),
        }
    }
    Ok(held)
}

/// Holds one claimed run that found no HTTP slot: `held` until `until`, its lease given back;
/// conditional on still owning it. Its step stays as committed, so the wait costs no attempt.
pub async fn hold_claimed(
    conn: &impl ConnectionTrait,
    backend: Backend,
    run: (&str, i64),
    owner: &str,
    until: i64,
) -> Result<bool, StoreError> {
    let sql = "UPDATE runs SET status = 'held', due_at = NULL, wake_at = ?, lease_owner = NULL, \
               lease_expires_at = NULL WHERE id = ? AND lease_owner = ? AND lease_epoch = ? \
               AND status = 'running'";
    let values: Vec<Value> = vec![
        until.into(),
        run.0.to_owned().into(),
        owner.to_owned().into(),
        run.1.into(),
    ];
    let result = conn.execute_raw(stmt(backend, sql, values)).await?;
    Ok(result.rows_affected() == 1)
}

/// Lets the workspace's quota-held runs whose window came (`wake_at <= now`, or all with
/// `None`) go: due at their creation, so the claim takes them in creation order ahead of newer
/// runs; a run that had started goes back to `waiting`. A paused flow's held runs (no
/// `wake_at`) stay. Returns how many.
pub async fn release_due(
    conn: &impl ConnectionTrait,
    backend: Backend,
    workspace: &str,
    now: Option<i64>,
) -> Result<u64, StoreError> {
    let (in_workspace, ws_values) = workspace_filter(workspace);
    let mut values: Vec<Value> = Vec::new();
    let due = match now {
        Some(now) => {
            values.push(now.into());
            "wake_at <= ?"
        }
        None => "wake_at IS NOT NULL",
    };
    values.extend(ws_values);
    let sql = format!(
        "UPDATE runs SET status = CASE WHEN started_at IS NULL THEN 'pending' ELSE 'waiting' END, \
         due_at = created_at, wake_at = NULL WHERE status = 'held' AND {due} AND {in_workspace}"
    );
    let result = conn.execute_raw(stmt(backend, &sql, values)).await?;
    Ok(result.rows_affected())
}

/// Counts runs a quota held, per flow, on the UTC day of `now` (usage's `quota_held`).
pub async fn count_holds(
    conn: &impl ConnectionTrait,
    backend: Backend,
    held: &[(String, i64)],
    now: i64,
) -> Result<(), StoreError> {
    let sql = "INSERT INTO quota_holds (flow_id, day, held) VALUES (?, ?, ?) \
               ON CONFLICT (flow_id, day) DO UPDATE SET held = quota_holds.held + excluded.held";
    let day = now.div_euclid(DAY_MS);
    for (flow, n) in held {
        let values: Vec<Value> = vec![flow.clone().into(), day.into(), (*n).into()];
        conn.execute_raw(stmt(backend, sql, values)).await?;
    }
    Ok(())
}

/// Runs held by a quota per flow and day number, for days `[first, end)`.
pub async fn holds(
    conn: &impl ConnectionTrait,
    backend: Backend,
    flow: Option<&str>,
    first: i64,
    end: i64,
) -> Result<Vec<(String, i64, i64)>, StoreError> {
    let mut sql =
        String::from("SELECT flow_id, day, held FROM quota_holds WHERE day >= ? AND day < ?");
    let mut values: Vec<Value> = vec![first.into(), end.into()];
    if let Some(flow) = flow {
        sql.push_str(" AND flow_id = ?");
        values.push(flow.to_owned().into());
    }
    let rows = conn.query_all_raw(stmt(backend, &sql, values)).await?;
    rows.iter()
        .map(|row| Ok((get(row, "flow_id")?, get(row, "day")?, get(row, "held")?)))
        .collect()
}

/// Records that the notice of `kind` for the workspace and the day of `now` went out; returns
/// whether this call was the first (only then is it sent, whichever node gets here first).
pub async fn first_notice(
    conn: &impl ConnectionTrait,
    backend: Backend,
    workspace: &str,
    kind: QuotaKind,
    now: i64,
) -> Result<bool, StoreError> {
    let sql = "INSERT INTO quota_notices (workspace, kind, day) VALUES (?, ?, ?) \
               ON CONFLICT (workspace, kind, day) DO NOTHING";
    let values: Vec<Value> = vec![
        workspace.to_owned().into(),
        kind.as_str().into(),
        now.div_euclid(DAY_MS).into(),
    ];
    let result = conn.execute_raw(stmt(backend, sql, values)).await?;
    Ok(result.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::new_run::NewRun;
    use crate::store::runs::{Claim, WorkspaceScope, claim, insert_runs};
    use crate::store::testing::{TestDb, pending_run};

    /// Runs of flows in `default` (`f`), `acme`, and two look-alikes: `acme_x` (a `LIKE`
    /// wildcard would match it) and `acm`.
    fn runs() -> Vec<NewRun> {
        ["f", "acme/f", "acme_x/f", "acm/f"]
            .iter()
            .enumerate()
            .map(|(n, flow)| NewRun {
                flow_id: (*flow).to_owned(),
                ..pending_run(&format!("r{n}"), 10)
            })
            .collect()
    }

    #[tokio::test]
    async fn holds_and_releases_touch_only_their_workspace() {
        for db in TestDb::all().await {
            let (w, backend) = (db.store.writer(), db.store.backend());
            insert_runs(w, backend, &runs()).await.unwrap();
            let acme = hold_fresh(w, backend, "acme", 20, 1_000).await.unwrap();
            assert_eq!(acme.per_flow, vec![("acme/f".to_owned(), 1)]);
            assert_eq!(acme.first, Some(("r1".to_owned(), "acme/f".to_owned())));
            let default = hold_fresh(w, backend, "default", 20, 1_000).await.unwrap();
            assert_eq!(default.per_flow, vec![("f".to_owned(), 1)]);
            assert_eq!(release_due(w, backend, "acme", Some(999)).await.unwrap(), 0);
            assert_eq!(
                release_due(w, backend, "acme", Some(1_000)).await.unwrap(),
                1
            );
            // The others are claimed around the workspaces left out; `default` is still held.
            let skipped = ["acme_x".to_owned()];
            let all_but = Claim {
                owner: "n",
                now: 2_000,
                lease_ms: 1_000,
                limit: 10,
                skip_flows: &[],
                only_flow: None,
                started: None,
                ordered: false,
                workspaces: WorkspaceScope::Skip(&skipped),
            };
            let mut got: Vec<String> = claim(w, backend, &all_but)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.flow_id)
                .collect();
            got.sort();
            assert_eq!(got, ["acm/f", "acme/f"]);
            let only = Claim {
                workspaces: WorkspaceScope::Only("acme_x"),
                ..all_but.clone()
            };
            let got = claim(w, backend, &only).await.unwrap();
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].flow_id, "acme_x/f");
            db.cleanup().await;
        }
    }

    #[tokio::test]
    async fn slots_stop_at_the_limit_and_a_new_window_starts_afresh() {
        for db in TestDb::all().await {
            let (w, backend) = (db.store.writer(), db.store.backend());
            let take = |now| take_slot(w, backend, "acme", QuotaKind::Http, now, 2);
            assert!(take(60_000).await.unwrap());
            assert!(take(60_500).await.unwrap());
            assert!(!take(119_999).await.unwrap(), "the third in one minute");
            assert!(take(120_000).await.unwrap(), "the next minute");
            let other = take_slot(w, backend, "other", QuotaKind::Http, 60_000, 2);
            assert!(other.await.unwrap(), "another workspace counts apart");
            assert_eq!(
                used(w, backend, "acme", QuotaKind::Http, 60_000)
                    .await
                    .unwrap(),
                0,
                "old windows are dropped"
            );
            assert!(
                first_notice(w, backend, "acme", QuotaKind::Http, 5)
                    .await
                    .unwrap()
            );
            assert!(
                !first_notice(w, backend, "acme", QuotaKind::Http, 6)
                    .await
                    .unwrap()
            );
            assert!(
                first_notice(w, backend, "acme", QuotaKind::Runs, 6)
                    .await
                    .unwrap()
            );
            assert!(
                first_notice(w, backend, "acme", QuotaKind::Http, DAY_MS)
                    .await
                    .unwrap()
            );
            db.cleanup().await;
        }
    }

    #[tokio::test]
    async fn settings_round_trip_and_empty_ones_remove_the_row() {
        for db in TestDb::all().await {
            let (w, backend) = (db.store.writer(), db.store.backend());
            let quotas = Quotas {
                runs_per_day: Some(100),
                http_attempts_per_minute: None,
            };
            set(w, backend, "acme", quotas, 7).await.unwrap();
            let row = get_one(w, backend, "acme").await.unwrap().unwrap();
            assert_eq!((row.quotas, row.updated_at), (quotas, 7));
            assert_eq!(list(w, backend).await.unwrap().len(), 1);
            set(w, backend, "acme", Quotas::default(), 8).await.unwrap();
            assert_eq!(get_one(w, backend, "acme").await.unwrap(), None);
            db.cleanup().await;
        }
    }
}
