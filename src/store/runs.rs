//! Runs, their steps and attempts: creating runs, claiming them with a lease, and applying the
//! runner's transitions. Every write of a claimed run is conditional on the lease (owner and
//! epoch), so a node that lost its lease changes nothing. Hot paths use raw SQL (see `sql.rs`);
//! claiming uses `FOR UPDATE SKIP LOCKED` on PostgreSQL and the single writer on SQLite.

use sea_orm::{ConnectionTrait, Value};

use crate::core::new_run::NewRun;
use crate::core::status::{RunStatus, StepStatus};
use crate::core::workspace::split_flow_key;
use crate::store::quotas::workspace_filter;
use crate::store::sql::{Conn, get, get_parsed, placeholders, skip_locked, stmt};
use crate::store::{Backend, StoreError};

/// Rows per multi-row INSERT: well under SQLite's limit of bound variables.
const ROWS_PER_INSERT: usize = 200;

/// `status` and `due_at` of a new run of flow `?`: `held` and not due while the flow is paused
/// (the database decides, so a node whose registry has not heard of a pause yet is no matter),
/// else `pending` and due at its creation. A primary-key look-up in the same statement.
const NEW_RUN_STATE: &str = "CASE WHEN EXISTS (SELECT 1 FROM flows f WHERE f.id = ? AND f.paused) THEN 'held' ELSE 'pending' END, \
     CASE WHEN EXISTS (SELECT 1 FROM flows f WHERE f.id = ? AND f.paused) THEN NULL ELSE ? END";

/// Inserts runs as `pending` and due now (or `held` while their flow is paused), in as few
/// statements as possible.
pub async fn insert_runs(
    conn: &impl Conn,
    backend: Backend,
    runs: &[NewRun],
) -> Result<(), StoreError> {
    insert_runs_leased(conn, backend, runs, None)
        .await
        .map(drop)
}

/// The lease new runs take at their creation when they go straight to a worker of the node
/// that creates them (`store::handoff`): the runs in `ids` are inserted `running`, leased to
/// `owner` (epoch 1) until `expires`, started at `now`. Their flows were checked not paused.
#[derive(Debug)]
pub struct NewLease<'a> {
    pub ids: &'a std::collections::HashSet<String>,
    pub owner: &'a str,
    pub now: i64,
    pub expires: i64,
}

/// Like [`insert_runs`], with the runs `lease` names inserted already leased; returns their ids.
pub async fn insert_runs_leased(
    conn: &impl Conn,
    backend: Backend,
    runs: &[NewRun],
    lease: Option<&NewLease<'_>>,
) -> Result<Vec<String>, StoreError> {
    // Chunks without a leased run keep the short form: the lease columns' defaults.
    let pending = format!("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, {NEW_RUN_STATE})");
    let pending_wide =
        format!("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, {NEW_RUN_STATE}, NULL, 0, NULL, NULL)");
    let leased_row = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, 1, ?, ?)";
    let mut leased = Vec::new();
    for chunk in runs.chunks(ROWS_PER_INSERT) {
        let lease_of = |run: &NewRun| lease.filter(|l| l.ids.contains(&run.id));
        let wide = chunk.iter().any(|run| lease_of(run).is_some());
        let rows: Vec<&str> = chunk
            .iter()
            .map(|run| match lease_of(run) {
                Some(_) => leased_row,
                None if wide => pending_wide.as_str(),
                None => pending.as_str(),
            })
            .collect();
        let lease_columns = if wide {
            ", lease_owner, lease_epoch, lease_expires_at, started_at"
        } else {
            ""
        };
        let sql = format!(
            "INSERT INTO runs (id, flow_id, workspace, revision, trigger, entity, entity_id, created_at, deadline_at, order_key, \
             status, due_at{lease_columns}) VALUES {}",
            rows.join(", ")
        );
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 14);
        for run in chunk {
            let (workspace, _) = split_flow_key(&run.flow_id);
            values.extend([
                run.id.clone().into(),
                run.flow_id.clone().into(),
                workspace.to_string().into(),
                run.revision.into(),
                run.trigger.clone().into(),
                run.entity.clone().into(),
                run.entity_id.clone().into(),
                run.created_at.into(),
                run.deadline_at.into(),
                run.order_key.clone().into(),
            ]);
            match lease_of(run) {
                Some(lease) => {
                    values.extend([
                        lease.expires.into(),
                        lease.owner.to_string().into(),
                        lease.expires.into(),
                        lease.now.into(),
                    ]);
                    leased.push(run.id.clone());
                }
                None => values.extend([
                    run.flow_id.clone().into(),
                    run.flow_id.clone().into(),
                    run.created_at.into(),
                ]),
            }
        }
        conn.execute_raw(stmt(backend, &sql, values)).await?;
    }
    Ok(leased)
}

/// A run claimed by this node, with what the runner needs to execute it.
#[derive(Debug, Clone)]
pub struct ClaimedRun {
    pub id: String,
    pub flow_id: String,
    pub revision: i64,
    pub trigger: String,
    pub next_step: i64,
    pub attempt: i64,
    pub epoch: i64,
    pub cancel_requested: bool,
    pub deadline_at: Option<i64>,
    pub started_at: i64,
    pub created_at: i64,
    /// Claimed before (a retry wait, a delay, a takeover): its step rows must be loaded.
    pub resumed: bool,
}

/// What to claim: up to `limit` runs due at `now`, leased to `owner` until `now + lease_ms`.
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    pub owner: &'a str,
    pub now: i64,
    pub lease_ms: i64,
    pub limit: u64,
    /// Flows whose runs must not be claimed now (at their concurrency limit).
    pub skip_flows: &'a [String],
    /// Only runs of this flow, when set (for flows with a concurrency or rate limit).
    pub only_flow: Option<&'a str>,
    /// Only runs that started before (`Some(true)`) or never started (`Some(false)`): a rate
    /// limit counts starts, so resumed runs pass it and new ones may not.
    pub started: Option<bool>,
    /// Only runs with no earlier unfinished run of the same order key (a flow with
    /// `settings.order_key`).
    pub ordered: bool,
    /// Which workspaces' runs (those with a runs-per-day quota are claimed on their own).
    pub workspaces: WorkspaceScope<'a>,
}

/// The workspaces a claim takes runs of.
#[derive(Debug, Clone, Copy, Default)]
pub enum WorkspaceScope<'a> {
    #[default]
    All,
    /// Every workspace but these.
    Skip(&'a [String]),
    /// Only this one; its runs are taken in creation order (quota-held runs released at once
    /// share one `due_at`).
    Only(&'a str),
}

/// A run of a flow with an order key waits while an earlier run (lower id: UUIDv7 ids sort by
/// creation) with the same key is not finished. Read with the partial index on `(flow_id,
/// order_key, id)`; `runs` is the run being considered.
pub const ORDER_BLOCKED: &str = "runs.order_key IS NOT NULL AND EXISTS (SELECT 1 FROM runs e \
     WHERE e.flow_id = runs.flow_id AND e.order_key = runs.order_key AND e.id < runs.id \
     AND e.status IN ('pending', 'running', 'waiting', 'held'))";

/// Claims due runs: pending ones, waiting ones whose wake-up time has come, and running ones
/// whose lease expired (their node died). Each claim bumps the lease epoch.
pub async fn claim(
    conn: &impl ConnectionTrait,
    backend: Backend,
    claim: &Claim<'_>,
) -> Result<Vec<ClaimedRun>, StoreError> {
    // A paused flow's runs are not claimed: the next attempt of a run in backoff or delay
    // waits for the resume. The subquery reads the (small) flows table once per claim.
    let mut filter = String::from(
        "due_at IS NOT NULL AND due_at <= ? AND flow_id NOT IN (SELECT id FROM flows WHERE paused)",
    );
    let mut filter_values: Vec<Value> = vec![claim.now.into()];
    if !claim.skip_flows.is_empty() {
        filter.push_str(&format!(
            " AND flow_id NOT IN ({})",
            placeholders(claim.skip_flows.len())
        ));
        filter_values.extend(claim.skip_flows.iter().map(|f| Value::from(f.clone())));
    }
    if let Some(flow) = claim.only_flow {
        filter.push_str(" AND flow_id = ?");
        filter_values.push(flow.to_string().into());
    }
    match claim.started {
        Some(true) => filter.push_str(" AND started_at IS NOT NULL"),
        Some(false) => filter.push_str(" AND started_at IS NULL"),
        None => {}
    }
    if claim.ordered {
        filter.push_str(&format!(" AND NOT ({ORDER_BLOCKED})"));
    }
    let mut order = "due_at";
    match claim.workspaces {
        WorkspaceScope::All => {}
        WorkspaceScope::Skip(skipped) => {
            for workspace in skipped {
                let (condition, values) = workspace_filter(workspace);
                filter.push_str(&format!(" AND NOT ({condition})"));
                filter_values.extend(values);
            }
        }
        WorkspaceScope::Only(workspace) => {
            let (condition, values) = workspace_filter(workspace);
            filter.push_str(&format!(" AND {condition}"));
            filter_values.extend(values);
            order = "due_at, id";
        }
    }
    let lock = skip_locked(backend);
    let sql = format!(
        "UPDATE runs SET status = 'running', lease_owner = ?, lease_epoch = lease_epoch + 1, \
         lease_expires_at = ?, due_at = ?, wake_at = NULL, started_at = COALESCE(started_at, ?) \
         WHERE id IN (SELECT id FROM runs WHERE {filter} ORDER BY {order} LIMIT ?{lock}) \
         RETURNING id, flow_id, revision, trigger, next_step, attempt, lease_epoch, cancel_requested, \
         deadline_at, started_at, created_at"
    );
    let expires = claim.now + claim.lease_ms;
    let mut values: Vec<Value> = vec![
        claim.owner.to_string().into(),
        expires.into(),
        expires.into(),
        claim.now.into(),
    ];
    values.extend(filter_values);
    values.push((claim.limit as i64).into());
    let rows = conn.query_all_raw(stmt(backend, &sql, values)).await?;
    rows.iter()
        .map(|row| {
            Ok(ClaimedRun {
                id: get(row, "id")?,
                flow_id: get(row, "flow_id")?,
                revision: get(row, "revision")?,
                trigger: get(row, "trigger")?,
                next_step: get::<i32>(row, "next_step")?.into(),
                attempt: get::<i32>(row, "attempt")?.into(),
                epoch: get(row, "lease_epoch")?,
                cancel_requested: get(row, "cancel_requested")?,
                deadline_at: get(row, "deadline_at")?,
                started_at: get(row, "started_at")?,
                created_at: get(row, "created_at")?,
                // Every claim bumps the epoch: above 1, the run was claimed before.
                resumed: get::<i64>(row, "lease_epoch")? > 1,
            })
        })
        .collect()
}

/// Extends the leases of every run this node executes; returns how many it still holds.
pub async fn renew_leases(
    conn: &impl ConnectionTrait,
    backend: Backend,
    owner: &str,
    now: i64,
    lease_ms: i64,
) -> Result<u64, StoreError> {
    let expires = now + lease_ms;
    // Rows locked by a transition in flight are skipped, not waited for: that transition sets
    // their lease itself, and waiting could deadlock with its multi-row update on PostgreSQL.
    let lock = skip_locked(backend);
    let sql = format!(
        "UPDATE runs SET lease_expires_at = ?, due_at = ? WHERE id IN \
         (SELECT id FROM runs WHERE lease_owner = ? AND status = 'running'{lock})"
    );
    let result = conn
        .execute_raw(stmt(
            backend,
            &sql,
            vec![expires.into(), expires.into(), owner.to_string().into()],
        ))
        .await?;
    Ok(result.rows_affected())
}

/// Gives back the leases of runs this node holds (graceful shutdown): they become due at once
/// for any node.
pub async fn release_leases(
    conn: &impl ConnectionTrait,
    backend: Backend,
    owner: &str,
    now: i64,
) -> Result<u64, StoreError> {
    let sql = "UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL, due_at = ? WHERE lease_owner = ? AND status = 'running'";
    let result = conn
        .execute_raw(stmt(
            backend,
            sql,
            vec![now.into(), owner.to_string().into()],
        ))
        .await?;
    Ok(result.rows_affected())
}

/// Holds the runs of a paused flow that have not started yet (`pending`, due or put off by a
/// rate limit): they become `held` and are not due until released. Returns how many.
pub async fn hold_pending(
    conn: &impl ConnectionTrait,
    backend: Backend,
    flow_id: &str,
) -> Result<u64, StoreError> {
    let sql =
        "UPDATE runs SET status = 'held', due_at = NULL WHERE flow_id = ? AND status = 'pending'";
    let result = conn
        .execute_raw(stmt(backend, sql, vec![flow_id.to_string().into()]))
        .await?;
    Ok(result.rows_affected())
}

/// Releases held runs: `pending` again and due at their creation, so the claim (which orders
/// by `due_at`) takes them in creation order, ahead of newer runs, under the flow's limits.
/// `Some(flow)`: that flow's (on resume); `None`: those of every flow that is not paused (a
/// run a node created `held` just as the flow was resumed elsewhere). Returns how many.
pub async fn release_held(
    conn: &impl ConnectionTrait,
    backend: Backend,
    flow_id: Option<&str>,
) -> Result<u64, StoreError> {
    let (filter, values): (&str, Vec<Value>) = match flow_id {
        Some(flow) => ("flow_id = ?", vec![flow.to_string().into()]),
        None => (
            "flow_id IN (SELECT id FROM flows WHERE NOT paused AND deleted_at IS NULL)",
            vec![],
        ),
    };
    let sql = format!(
        "UPDATE runs SET status = 'pending', due_at = created_at WHERE status = 'held' AND {filter}"
    );
    let result = conn.execute_raw(stmt(backend, &sql, values)).await?;
    Ok(result.rows_affected())
}

/// A flow's failed runs since its last succeeded one: how many, and when the first of them
/// ended. Read after a run fails (not on the hot path), from the `(flow_id, status)` index.
pub async fn failing_streak(
    conn: &impl ConnectionTrait,
    backend: Backend,
    flow_id: &str,
) -> Result<(i64, Option<i64>), StoreError> {
    let sql = "SELECT COUNT(*) AS n, MIN(finished_at) AS since FROM runs WHERE flow_id = ? AND status = 'failed' \
               AND finished_at > COALESCE((SELECT MAX(finished_at) FROM runs WHERE flow_id = ? AND status = 'succeeded'), 0)";
    let values: Vec<Value> = vec![flow_id.to_string().into(), flow_id.to_string().into()];
    let Some(row) = conn.query_one_raw(stmt(backend, sql, values)).await? else {
        return Ok((0, None));
    };
    Ok((get(&row, "n")?, get(&row, "since")?))
}

/// Which runs of a flow [`cancel_flow_runs`] cancels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowRuns {
    /// The held ones (resume with `discard_held`).
    Held,
    /// Every run not finished (the flow is deleted): the ones not executing are cancelled at
    /// once, the ones executing are asked to stop after their step in flight.
    Unfinished,
}

/// Cancels runs of a flow with `error` as the reason, in the caller's transaction. Returns how
/// many were cancelled at once (runs executing stop after their step and are not counted).
pub async fn cancel_flow_runs(
    conn: &impl ConnectionTrait,
    backend: Backend,
    flow_id: &str,
    which: FlowRuns,
    error: &str,
    now: i64,
) -> Result<u64, StoreError> {
    // A run counts as executing while its lease is alive; one whose lease expired (its node
    // died) or was given back is not executing and is cancelled at once.
    let not_executing = match which {
        FlowRuns::Held => "status = 'held'",
        FlowRuns::Unfinished => {
            "(status IN ('pending', 'waiting', 'held') OR (status = 'running' AND (lease_expires_at IS NULL OR lease_expires_at <= ?)))"
        }
    };
    let base = |values: &mut Vec<Value>| {
        values.push(flow_id.to_string().into());
        if which == FlowRuns::Unfinished {
            values.push(now.into());
        }
    };
    // A delay or a retry backoff in progress ends with the run.
    let interrupted = format!(
        "UPDATE step_runs SET status = 'failed', error = ?, finished_at = ? WHERE status = 'running' \
         AND run_id IN (SELECT id FROM runs WHERE flow_id = ? AND {not_executing})"
    );
    let mut values: Vec<Value> = vec![error.to_string().into(), now.into()];
    base(&mut values);
    conn.execute_raw(stmt(backend, &interrupted, values))
        .await?;
    let cancel = format!(
        "UPDATE runs SET status = 'cancelled', error = ?, finished_at = ?, due_at = NULL, wake_at = NULL \
         WHERE flow_id = ? AND {not_executing}"
    );
    let mut values: Vec<Value> = vec![error.to_string().into(), now.into()];
    base(&mut values);
    let cancelled = conn.execute_raw(stmt(backend, &cancel, values)).await?;
    if which == FlowRuns::Unfinished {
        let flag =
            "UPDATE runs SET cancel_requested = TRUE WHERE flow_id = ? AND status = 'running'";
        conn.execute_raw(stmt(backend, flag, vec![flow_id.to_string().into()]))
            .await?;
    }
    Ok(cancelled.rows_affected())
}

/// A step row as stored.
#[derive(Debug, Clone)]
pub struct StepRow {
    pub run_id: String,
    pub step_index: i64,
    pub step_id: String,
    pub status: StepStatus,
    pub output: Option<String>,
    pub attempts: i64,
    pub retry_base: i64,
}

/// The step rows of some runs, for resuming them.
pub async fn load_steps(
    conn: &impl ConnectionTrait,
    backend: Backend,
    run_ids: &[String],
) -> Result<Vec<StepRow>, StoreError> {
    if run_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT run_id, step_index, step_id, status, output, attempts, retry_base FROM step_runs WHERE run_id IN ({}) ORDER BY run_id, step_index",
        placeholders(run_ids.len())
    );
    let values = run_ids.iter().map(|id| Value::from(id.clone())).collect();
    let rows = conn.query_all_raw(stmt(backend, &sql, values)).await?;
    rows.iter()
        .map(|row| {
            Ok(StepRow {
                run_id: get(row, "run_id")?,
                step_index: get::<i32>(row, "step_index")?.into(),
                step_id: get(row, "step_id")?,
                status: get_parsed(row, "status")?,
                output: get(row, "output")?,
                attempts: get::<i32>(row, "attempts")?.into(),
                retry_base: get::<i32>(row, "retry_base")?.into(),
            })
        })
        .collect()
}

/// The new state of a claimed run after a transition.
#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    /// Still executing on this node, at `next_step`.
    Running { next_step: i64 },
    /// Parked until `wake_at` (a delay or a retry backoff); the lease is given up. `due_at` is
    /// when a worker must look at it again (the wake-up, or the run's deadline if sooner).
    Waiting {
        next_step: i64,
        wake_at: i64,
        due_at: i64,
    },
    /// Done.
    Finished {
        status: RunStatus,
        error: Option<String>,
        finished_at: i64,
    },
}

/// One step row to write.
#[derive(Debug, Clone)]
pub struct StepWrite {
    pub step_index: i64,
    pub step_id: String,
    pub kind: &'static str,
    pub status: StepStatus,
    pub output: Option<String>,
    pub error: Option<String>,
    pub attempts: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// One recorded attempt of a step (HTTP request and response, or a notification).
#[derive(Debug, Clone)]
pub struct AttemptWrite {
    pub step_index: i64,
    pub n: i64,
    pub node: String,
    pub started_at: i64,
    pub finished_at: i64,
    pub duration_ms: i64,
    pub request: Option<String>,
    pub response: Option<String>,
    pub error: Option<String>,
}

/// A transition of one run: its new state plus the step and attempt rows it produced.
#[derive(Debug, Clone)]
pub struct RunWrite {
    pub run_id: String,
    pub owner: String,
    pub epoch: i64,
    pub state: RunState,
    pub steps: Vec<StepWrite>,
    pub attempts: Vec<AttemptWrite>,
}

/// What a cancel request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The run was pending or waiting and is now cancelled.
    Cancelled,
    /// The run is executing: it stops after the step in flight.
    Requested,
    AlreadyTerminal,
    NotFound,
}

/// Cancels a run: at once when no worker holds it, else by asking its worker to stop.
pub async fn cancel(
    conn: &impl Conn,
    backend: Backend,
    run_id: &str,
    now: i64,
) -> Result<CancelOutcome, StoreError> {
    // A run can move between the two updates (running → waiting when its delay step starts), so
    // a run that neither update caught but that is not finished yet is tried again.
    for _ in 0..CANCEL_TRIES {
        if let Some(outcome) = cancel_once(conn, backend, run_id, now).await? {
            return Ok(outcome);
        }
    }
    // Still changing state: flagged, the runner stops it at its next commit.
    let flag = "UPDATE runs SET cancel_requested = TRUE WHERE id = ? \
                AND status NOT IN ('succeeded', 'failed', 'cancelled')";
    let flagged = conn
        .execute_raw(stmt(backend, flag, vec![run_id.to_string().into()]))
        .await?;
    Ok(if flagged.rows_affected() > 0 {
        CancelOutcome::Requested
    } else {
        CancelOutcome::AlreadyTerminal
    })
}

/// How often [`cancel`] tries a run that changes state under it before it flags it for the
/// runner to stop.
const CANCEL_TRIES: usize = 5;

/// One try of [`cancel`]; `None` when the run changed state between the updates.
async fn cancel_once(
    conn: &impl Conn,
    backend: Backend,
    run_id: &str,
    now: i64,
) -> Result<Option<CancelOutcome>, StoreError> {
    let direct = "UPDATE runs SET status = 'cancelled', error = 'cancelled', finished_at = ?, due_at = NULL, wake_at = NULL \
                  WHERE id = ? AND status IN ('pending', 'waiting', 'held')";
    let done = conn
        .execute_raw(stmt(
            backend,
            direct,
            vec![now.into(), run_id.to_string().into()],
        ))
        .await?;
    if done.rows_affected() > 0 {
        // A delay or a retry backoff in progress ends with the run.
        let interrupted = "UPDATE step_runs SET status = 'failed', error = 'cancelled', finished_at = ? \
                           WHERE run_id = ? AND status = 'running'";
        conn.execute_raw(stmt(
            backend,
            interrupted,
            vec![now.into(), run_id.to_string().into()],
        ))
        .await?;
        return Ok(Some(CancelOutcome::Cancelled));
    }
    let flag = "UPDATE runs SET cancel_requested = TRUE WHERE id = ? AND status = 'running'";
    let flagged = conn
        .execute_raw(stmt(backend, flag, vec![run_id.to_string().into()]))
        .await?;
    if flagged.rows_affected() > 0 {
        return Ok(Some(CancelOutcome::Requested));
    }
    let exists = conn
        .query_one_raw(stmt(
            backend,
            "SELECT status FROM runs WHERE id = ?",
            vec![run_id.to_string().into()],
        ))
        .await?;
    let Some(row) = exists else {
        return Ok(Some(CancelOutcome::NotFound));
    };
    let status: String = get(&row, "status")?;
    let finished = ["succeeded", "failed", "cancelled"].contains(&status.as_str());
    Ok(finished.then_some(CancelOutcome::AlreadyTerminal))
}

/// Resumes a failed or cancelled run at its first step that did not succeed; that step gets a
/// fresh retry budget. Returns false when the run is not failed or cancelled. Its usage leaves
/// the rollup (it is folded again when it ends), so `conn` must be a write transaction.
pub async fn retry(
    conn: &impl ConnectionTrait,
    backend: Backend,
    run_id: &str,
    now: i64,
    deadline_at: Option<i64>,
) -> Result<bool, StoreError> {
    crate::store::usage::rollup::unfold(conn, backend, run_id).await?;
    let sql = "UPDATE runs SET status = 'pending', attempt = attempt + 1, error = NULL, finished_at = NULL, \
               cancel_requested = FALSE, usage_folded = FALSE, due_at = ?, deadline_at = ? WHERE id = ? AND status IN ('failed', 'cancelled') \
               RETURNING next_step";
    let Some(row) = conn
        .query_one_raw(stmt(
            backend,
            sql,
            vec![now.into(), deadline_at.into(), run_id.to_string().into()],
        ))
        .await?
    else {
        return Ok(false);
    };
    let next_step: i32 = get(&row, "next_step")?;
    // Output goes too: a delay starts its wait afresh.
    let reset = "UPDATE step_runs SET status = 'pending', retry_base = attempts, error = NULL, output = NULL, finished_at = NULL \
                 WHERE run_id = ? AND step_index >= ? AND status <> 'succeeded'";
    conn.execute_raw(stmt(
        backend,
        reset,
        vec![run_id.to_string().into(), next_step.into()],
    ))
    .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{TestDb, pending_run as new_run};
    use crate::store::transitions::apply;

    fn claim_as<'a>(owner: &'a str, now: i64) -> Claim<'a> {
        Claim {
            owner,
            now,
            lease_ms: 1_000,
            limit: 10,
            skip_flows: &[],
            only_flow: None,
            started: None,
            ordered: false,
            workspaces: WorkspaceScope::All,
        }
    }

    fn finish(run: &ClaimedRun, owner: &str) -> RunWrite {
        RunWrite {
            run_id: run.id.clone(),
            owner: owner.into(),
            epoch: run.epoch,
            state: RunState::Finished {
                status: RunStatus::Succeeded,
                error: None,
                finished_at: 0,
            },
            steps: vec![StepWrite {
                step_index: 0,
                step_id: "a".into(),
                kind: "map",
                status: StepStatus::Succeeded,
                output: Some("1".into()),
                error: None,
                attempts: 0,
                started_at: Some(0),
                finished_at: Some(0),
            }],
            attempts: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_node_that_lost_its_lease_changes_nothing() {
        for db in TestDb::all().await {
            let (store, backend) = (&db.store, db.store.backend());
            insert_runs(store.writer(), backend, &[new_run("r1", 100)])
                .await
                .unwrap();

            let first = claim(store.writer(), backend, &claim_as("node-a", 100))
                .await
                .unwrap();
            assert_eq!(first.len(), 1);
            // Not due again while the lease lasts.
            assert!(
                claim(store.writer(), backend, &claim_as("node-b", 500))
                    .await
                    .unwrap()
                    .is_empty()
            );
            // Node A dies; after expiry node B takes the run over with a new epoch.
            let second = claim(store.writer(), backend, &claim_as("node-b", 1_200))
                .await
                .unwrap();
            assert_eq!(second.len(), 1);
            assert_eq!(second[0].epoch, first[0].epoch + 1);

            let stale = apply(store.writer(), backend, &finish(&first[0], "node-a"), 0).await;
            assert!(matches!(stale, Err(StoreError::LeaseLost)), "{stale:?}");
            let steps = load_steps(store.reader(), backend, &["r1".to_string()])
                .await
                .unwrap();
            assert!(steps.is_empty(), "the stale write must not store steps");

            let applied = apply(store.writer(), backend, &finish(&second[0], "node-b"), 0)
                .await
                .unwrap();
            assert!(!applied.cancel_requested);
            let steps = load_steps(store.reader(), backend, &["r1".to_string()])
                .await
                .unwrap();
            assert_eq!(steps.len(), 1);
            // Terminal runs are never claimed again.
            assert!(
                claim(store.writer(), backend, &claim_as("node-c", 99_999))
                    .await
                    .unwrap()
                    .is_empty()
            );
            db.cleanup().await;
        }
    }

    #[tokio::test]
    async fn cancel_and_retry_follow_the_run_state() {
        for db in TestDb::all().await {
            let (store, backend) = (&db.store, db.store.backend());
            insert_runs(store.writer(), backend, &[new_run("p", 1), new_run("q", 1)])
                .await
                .unwrap();
            assert_eq!(
                cancel(store.writer(), backend, "p", 5).await.unwrap(),
                CancelOutcome::Cancelled
            );
            assert_eq!(
                cancel(store.writer(), backend, "p", 6).await.unwrap(),
                CancelOutcome::AlreadyTerminal
            );
            assert_eq!(
                cancel(store.writer(), backend, "nope", 6).await.unwrap(),
                CancelOutcome::NotFound
            );

            let claimed = claim(store.writer(), backend, &claim_as("n", 10))
                .await
                .unwrap();
            assert_eq!(
                claimed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
                ["q"]
            );
            assert_eq!(
                cancel(store.writer(), backend, "q", 11).await.unwrap(),
                CancelOutcome::Requested
            );
            let mut write = finish(&claimed[0], "n");
            write.state = RunState::Running { next_step: 1 };
            assert!(
                apply(store.writer(), backend, &write, 2_000)
                    .await
                    .unwrap()
                    .cancel_requested
            );

            assert!(retry(store.writer(), backend, "p", 20, None).await.unwrap());
            assert!(
                !retry(store.writer(), backend, "p", 21, None).await.unwrap(),
                "a pending run cannot be retried"
            );
            let again = claim(store.writer(), backend, &claim_as("n", 30))
                .await
                .unwrap();
            assert_eq!(again.len(), 1);
            assert_eq!((again[0].id.as_str(), again[0].attempt), ("p", 2));
            db.cleanup().await;
        }
    }
}
