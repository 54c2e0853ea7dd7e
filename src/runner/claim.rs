//! Claiming due runs in one write transaction: runs of unlimited flows in one statement, then
//! each flow with a `concurrency`, a `rate_limit` or an `order_key` on its own, within the room
//! its limits leave; an ordered flow's runs only when no earlier run with their key is
//! unfinished (checked in the claim statement, so it holds across nodes).
//! Excess runs are never dropped: held back by concurrency they stay due and are claimed when a
//! slot frees; held back by a rate limit they are put off until the window has room again.

use crate::flow::registry::FlowLimits;
use crate::runner::Runner;
use crate::runner::driver::ExecError;
use crate::store::limits::{defer_new_runs, flow_load, lock_flow};
use crate::store::runs::{self, Claim, ClaimedRun};
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
    };
    let txn = store.begin_write().await?;
    let mut claimed = Claimed {
        runs: runs::claim(&txn, backend, &base).await?,
        ..Claimed::default()
    };
    for limits in registry.limited() {
        let room = limit.saturating_sub(claimed.runs.len() as u64);
        if room == 0 {
            claimed.held_back = true;
            break;
        }
        claim_limited(&txn, backend, &base, limits, room, &mut claimed).await?;
    }
    txn.commit().await.map_err(StoreError::from)?;
    Ok(claimed)
}

/// Claims runs of one limited flow: resumed runs first (they passed the rate limit when they
/// started), then new ones within both limits.
async fn claim_limited(
    txn: &impl sea_orm::ConnectionTrait,
    backend: Backend,
    base: &Claim<'_>,
    limits: &FlowLimits,
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
    let Some(rate) = limits.rate_limit else {
        let fresh = if left > 0 {
            runs::claim(txn, backend, &claim(Some(false), left)).await?
        } else {
            Vec::new()
        };
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
