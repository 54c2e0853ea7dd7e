//! Claiming due runs in one write transaction: runs of unlimited flows in one statement, then
//! each flow with a `concurrency`, a `rate_limit` or an `order_key` on its own, within the room
//! its limits leave; an ordered flow's runs only when no earlier run with their key is
//! unfinished (checked in the claim statement, so it holds across nodes).
//! Excess runs are never dropped: held back by concurrency they stay due and are claimed when a
//! slot frees; held back by a rate limit they are put off until the window has room again.
//! Workspaces with a runs-per-day quota are claimed on their own (`runner::quota`); over the
//! quota their new runs are held until the next UTC day.

use crate::core::workspace::split_flow_key;
use crate::flow::registry::FlowLimits;
use crate::runner::driver::ExecError;
use crate::runner::{Runner, quota};
use crate::store::limits::{defer_new_runs, flow_load, lock_flow};
use crate::store::runs::{self, Claim, ClaimedRun, WorkspaceScope};
use crate::store::{Backend, StoreError};

/// What one claim got.
#[derive(Debug, Default)]
pub struct Claimed {
    pub runs: Vec<ClaimedRun>,
    /// Times when runs put off by a rate limit become due.
    pub wake_at: Vec<i64>,
    /// Some due runs wait for a concurrency slot: claim again when a run ends.
    pub held_back: bool,
}

/// Claims up to `limit` due runs for this node.
pub async fn claim_due(runner: &Runner, lease_ms: i64, limit: u64) -> Result<Claimed, ExecError> {
    let registry = runner.catalog.registry();
    let quotas = runner.quotas.current();
    // Workspaces with a runs-per-day quota are claimed on their own; with none (the default)
    // this is empty and the claim is what it always was.
    let mut per_day: Vec<(String, i64)> = quotas
        .iter()
        .filter_map(|(ws, q)| Some((ws.clone(), q.runs_per_day?)))
        .collect();
    per_day.sort();
    let skipped: Vec<String> = per_day.iter().map(|(ws, _)| ws.clone()).collect();
    let store = &runner.store;
    let backend = store.backend();
    let now = runner.now_ms();
    let base = Claim {
        owner: runner.node_id.as_str(),
        now,
        lease_ms,
        limit,
        skip_flows: registry.limited_ids(),
        only_flow: None,
        started: None,
        ordered: false,
        workspaces: WorkspaceScope::Skip(&skipped),
    };
    let txn = store.begin_write().await?;
    if !quotas.is_empty() {
        quota::release_due(&txn, backend, &quotas, now).await?;
    }
    let mut claimed = Claimed {
        runs: runs::claim(&txn, backend, &base).await?,
        ..Claimed::default()
    };
    let quota_of: std::collections::HashMap<&str, i64> =
        per_day.iter().map(|(ws, n)| (ws.as_str(), *n)).collect();
    for (workspace, runs_per_day) in &per_day {
        let room = limit.saturating_sub(claimed.runs.len() as u64);
        if room == 0 {
            claimed.held_back = true;
            break;
        }
        let scoped = Claim {
            limit: room,
            ..base.clone()
        };
        let got = quota::claim_workspace(&txn, backend, &scoped, workspace, *runs_per_day).await?;
        claimed.runs.extend(got.runs);
        claimed.wake_at.extend(got.wake_at);
        claimed.held_back |= got.held_back;
    }
    for limits in registry.limited() {
        let room = limit.saturating_sub(claimed.runs.len() as u64);
        if room == 0 {
            claimed.held_back = true;
            break;
        }
        let workspace = split_flow_key(&limits.flow_id).0;
        let quota = quota_of.get(workspace).map(|&per_day| (workspace, per_day));
        claim_limited(&txn, backend, &base, (limits, quota), room, &mut claimed).await?;
    }
    txn.commit().await.map_err(StoreError::from)?;
    Ok(claimed)
}

/// Claims runs of one limited flow: resumed runs first (they passed the rate limit when they
/// started), then new ones within both limits.
/// `quota`: the flow's workspace and its runs-per-day quota, if it has one.
async fn claim_limited(
    txn: &impl sea_orm::ConnectionTrait,
    backend: Backend,
    base: &Claim<'_>,
    (limits, quota): (&FlowLimits, Option<(&str, i64)>),
    room: u64,
    claimed: &mut Claimed,
) -> Result<(), StoreError> {
    let flow_id = limits.flow_id.as_str();
    lock_flow(txn, backend, flow_id).await?;
    let window_ms = limits.rate_limit.map_or(0, |r| r.per.as_millis() as i64);
    let load = flow_load(txn, backend, flow_id, base.now, base.now - window_ms + 1).await?;
    let concurrency_room = limits.concurrency.map_or(room, |c| {
        room.min(u64::from(c).saturating_sub(load.running))
    });
    let claim = |started, limit| Claim {
        only_flow: Some(flow_id),
        skip_flows: &[],
        started,
        limit,
        ordered: limits.ordered,
        workspaces: WorkspaceScope::All,
        ..base.clone()
    };
    // Runs of an ordered flow wait for the ones before them: claim again when a run ends.
    claimed.held_back |= limits.ordered;
    let mut left = concurrency_room;
    if left > 0 {
        let resumed = runs::claim(txn, backend, &claim(Some(true), left)).await?;
        left -= resumed.len() as u64;
        claimed.runs.extend(resumed);
    }
    if let Some((workspace, per_day)) = quota {
        left = quota::allow_starts(txn, backend, workspace, per_day, base.now, left).await?;
    }
    let Some(rate) = limits.rate_limit else {
        let fresh = if left > 0 {
            runs::claim(txn, backend, &claim(Some(false), left)).await?
        } else {
            Vec::new()
        };
        count_quota_starts(txn, backend, quota, base.now, fresh.len()).await?;
        claimed.held_back |= left == 0 || fresh.len() as u64 == left;
        claimed.runs.extend(fresh);
        return Ok(());
    };
    let rate_room = u64::from(rate.runs).saturating_sub(load.started);
    let fresh = if left.min(rate_room) > 0 {
        runs::claim(txn, backend, &claim(Some(false), left.min(rate_room))).await?
    } else {
        Vec::new()
    };
    let started_now = fresh.len() as u64;
    count_quota_starts(txn, backend, quota, base.now, fresh.len()).await?;
    claimed.runs.extend(fresh);
    if load.started + started_now >= u64::from(rate.runs) {
        let oldest = load.oldest_start.unwrap_or(base.now).min(base.now);
        let until = oldest + window_ms;
        if defer_new_runs(txn, backend, flow_id, base.now, until).await? > 0 {
            claimed.wake_at.push(until);
        }
    } else if left.min(rate_room) == started_now {
        claimed.held_back = true;
    }
    Ok(())
}

/// Counts the new runs a limited flow started against its workspace's quota, if it has one.
async fn count_quota_starts(
    txn: &impl sea_orm::ConnectionTrait,
    backend: Backend,
    quota: Option<(&str, i64)>,
    now: i64,
    started: usize,
) -> Result<(), StoreError> {
    match quota {
        Some((workspace, _)) => {
            quota::count_starts(txn, backend, workspace, now, started as u64).await
        }
        None => Ok(()),
    }
}
