//! Quotas per workspace at work (SPEC §11): the runs-per-day quota in the claim, the HTTP
//! attempts-per-minute quota before each attempt, the inbox notice of the first hold of a day.
//!
//! The settings are cached in memory ([`SharedQuotas`], refreshed with the flows), so with no
//! quota (the default) the claim and the attempts cost nothing more. With one, the counters
//! live in the database and move under a per-workspace lock in the transaction that claims or
//! attempts, so several nodes on one database never together exceed a quota. Runs over a quota
//! are `held` with a `wake_at` at the start of the next window and released then, in creation
//! order; nothing is dropped.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tracing::info;

use crate::core::time::rfc3339_ms;
use crate::core::workspace::split_flow_key;
use crate::runner::Runner;
use crate::store::notifications::{self, NewNotification};
use crate::store::quotas::{self, Held, QuotaKind, Quotas};
use crate::store::runs::{self, Claim, ClaimedRun, WorkspaceScope};
use crate::store::{Backend, StoreError};

/// The quotas of every workspace that has one, as this node last read them.
#[derive(Debug, Clone, Default)]
pub struct SharedQuotas {
    inner: Arc<RwLock<Arc<HashMap<String, Quotas>>>>,
}

impl SharedQuotas {
    pub fn current(&self) -> Arc<HashMap<String, Quotas>> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn replace(&self, quotas: HashMap<String, Quotas>) {
        *self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(quotas);
    }
}

/// What the claim of one workspace with a runs-per-day quota got.
#[derive(Debug, Default)]
pub struct WorkspaceClaim {
    pub runs: Vec<ClaimedRun>,
    /// When held runs become due (the next UTC day), if runs were held.
    pub wake_at: Option<i64>,
    /// The claim filled its room: claim again when a worker is free.
    pub held_back: bool,
}

/// Claims runs of `workspace`, whose quota allows `per_day` starts a UTC day, within `room`:
/// resumed runs first (they were counted when they started), then new ones while the quota
/// allows; once it is used up the workspace's remaining new runs are held until the next day.
pub async fn claim_workspace(
    txn: &impl sea_orm::ConnectionTrait,
    backend: Backend,
    base: &Claim<'_>,
    workspace: &str,
    per_day: i64,
) -> Result<WorkspaceClaim, StoreError> {
    quotas::lock_workspace(txn, backend, workspace).await?;
    let scoped = |started, limit| Claim {
        started,
        limit,
        workspaces: WorkspaceScope::Only(workspace),
        ..base.clone()
    };
    let mut got = WorkspaceClaim {
        runs: runs::claim(txn, backend, &scoped(Some(true), base.limit)).await?,
        ..WorkspaceClaim::default()
    };
    let left = base.limit.saturating_sub(got.runs.len() as u64) as i64;
    let kind = (workspace, QuotaKind::Runs);
    let used = quotas::used(txn, backend, workspace, QuotaKind::Runs, base.now).await?;
    let allowed = (per_day - used).max(0).min(left);
    if allowed > 0 {
        let fresh = runs::claim(txn, backend, &scoped(Some(false), allowed as u64)).await?;
        let started = fresh.len() as i64;
        quotas::add_used(txn, backend, kind, base.now, used, started).await?;
        got.held_back = started == allowed;
        got.runs.extend(fresh);
    }
    let used = quotas::used(txn, backend, workspace, QuotaKind::Runs, base.now).await?;
    if used >= per_day {
        let until = next_window(QuotaKind::Runs, base.now);
        let held = quotas::hold_fresh(txn, backend, workspace, base.now, until).await?;
        if !held.per_flow.is_empty() {
            record_hold(
                txn,
                backend,
                workspace,
                QuotaKind::Runs,
                &held,
                (base.now, until),
            )
            .await?;
            got.wake_at = Some(until);
        }
    }
    Ok(got)
}

/// Counts new runs of a limited flow of a workspace with a runs-per-day quota against it;
/// returns how many of `wanted` starts it still allows.
pub async fn allow_starts(
    txn: &impl sea_orm::ConnectionTrait,
    backend: Backend,
    workspace: &str,
    per_day: i64,
    now: i64,
    wanted: u64,
) -> Result<u64, StoreError> {
    quotas::lock_workspace(txn, backend, workspace).await?;
    let used = quotas::used(txn, backend, workspace, QuotaKind::Runs, now).await?;
    Ok((per_day - used).max(0).min(wanted as i64) as u64)
}

/// Counts `started` new runs of `workspace` (claimed outside [`claim_workspace`]).
pub async fn count_starts(
    txn: &impl sea_orm::ConnectionTrait,
    backend: Backend,
    workspace: &str,
    now: i64,
    started: u64,
) -> Result<(), StoreError> {
    let used = quotas::used(txn, backend, workspace, QuotaKind::Runs, now).await?;
    let kind = (workspace, QuotaKind::Runs);
    quotas::add_used(txn, backend, kind, now, used, started as i64).await
}

/// The start of the window after the one holding `now`.
fn next_window(kind: QuotaKind, now: i64) -> i64 {
    kind.window_start(now) + kind.window_ms()
}

/// Counts a hold for usage and, the first time that day for the workspace and quota, tells its
/// inbox; in the hold's own transaction, so it happens once whichever node holds.
async fn record_hold(
    txn: &impl sea_orm::ConnectionTrait,
    backend: Backend,
    workspace: &str,
    kind: QuotaKind,
    held: &Held,
    (now, until): (i64, i64),
) -> Result<(), StoreError> {
    quotas::count_holds(txn, backend, &held.per_flow, now).await?;
    if !quotas::first_notice(txn, backend, workspace, kind, now).await? {
        return Ok(());
    }
    let Some((run_id, flow)) = held.first.clone() else {
        return Ok(());
    };
    let day = now.div_euclid(quotas::DAY_MS);
    let (what, setting) = match kind {
        QuotaKind::Runs => ("runs per day", "runs_per_day"),
        QuotaKind::Http => ("HTTP attempts per minute", "http_attempts_per_minute"),
    };
    let notice = NewNotification {
        id: format!("quota_{workspace}_{setting}_{day}"),
        flow_id: flow,
        run_id,
        step_id: "quota".into(),
        title: format!("Workspace {workspace} reached its quota of {what}"),
        text: format!(
            "Runs of workspace {workspace} are held (not dropped) until {} and then sent in \
             order; today's first hold was just now. Raise `{setting}` with PUT \
             /api/v1/workspaces/{workspace}/quotas if this is expected.",
            rfc3339_ms(until)
        ),
        created_at: now,
    };
    notifications::insert(txn, backend, &notice).await?;
    info!(%workspace, quota = setting, "Quota reached; runs are held until the window allows.");
    Ok(())
}

/// Takes a slot of the run's workspace's HTTP quota before an attempt, if it has one. With
/// none left the run is held until the next minute, its lease given back and its step as
/// committed, so the wait costs no attempt of its retry budget; answers `false` then.
pub async fn take_http_slot(runner: &Runner, run: &ClaimedRun) -> Result<bool, StoreError> {
    let workspace = split_flow_key(&run.flow_id).0;
    let Some(limit) = runner
        .quotas
        .current()
        .get(workspace)
        .and_then(|q| q.http_attempts_per_minute)
    else {
        return Ok(true);
    };
    let store = &runner.store;
    let backend = store.backend();
    let now = runner.now_ms();
    let txn = store.begin_write().await?;
    quotas::lock_workspace(&txn, backend, workspace).await?;
    if quotas::take_slot(&txn, backend, workspace, QuotaKind::Http, now, limit).await? {
        txn.commit().await?;
        return Ok(true);
    }
    let until = next_window(QuotaKind::Http, now);
    let owned = (run.id.as_str(), run.epoch);
    if quotas::hold_claimed(&txn, backend, owned, &runner.node_id, until).await? {
        let held = Held {
            per_flow: vec![(run.flow_id.clone(), 1)],
            first: Some((run.id.clone(), run.flow_id.clone())),
        };
        record_hold(
            &txn,
            backend,
            workspace,
            QuotaKind::Http,
            &held,
            (now, until),
        )
        .await?;
    }
    txn.commit().await?;
    runner.schedule_wake(until);
    Ok(false)
}

/// Releases the quota-held runs of every workspace with a quota whose window came, so this
/// claim can take them.
pub async fn release_due(
    txn: &impl sea_orm::ConnectionTrait,
    backend: Backend,
    workspaces: &HashMap<String, Quotas>,
    now: i64,
) -> Result<(), StoreError> {
    for workspace in workspaces.keys() {
        quotas::release_due(txn, backend, workspace, Some(now)).await?;
    }
    Ok(())
}
