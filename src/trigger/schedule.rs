//! Schedules: each active flow's cron triggers fire runs at their fire times. Every node runs
//! this loop; the once-only key on (flow, fire time) makes each fire time start exactly one run.
//!
//! - The loop sleeps until the earliest next fire time, or until the flows change (a changed or
//!   removed schedule takes effect at once; a paused flow does not fire).
//! - A node that wakes up late (overloaded, suspended) fires only the latest fire time it
//!   missed, never a burst; on start, each schedule catches up the latest fire time missed since
//!   its last recorded fire (at most one per flow).
//! - Daylight-saving changes follow `trigger/cron.rs`: a wall time that does not exist (spring
//!   forward) fires at the first instant after the gap; a wall time that happens twice (fall
//!   back) fires once, at its first occurrence.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::engine::registry::{FlowEntry, Registry};
use crate::engine::runs::new_run;
use crate::engine::{Engine, EngineError};
use crate::flow::model::Trigger;
use crate::runner::context::TriggerData;
use crate::store::{StoreError, runs, schedules};
use crate::trigger::cron::CronSchedule;

/// Longest single sleep: wall-clock jumps are noticed within this time.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// One schedule trigger of an active flow, with its next fire time.
struct Planned {
    flow_id: String,
    cron: CronSchedule,
    next: Option<DateTime<Utc>>,
}

/// Runs the scheduler until `shutdown` turns true.
pub async fn run(engine: Engine, mut shutdown: watch::Receiver<bool>) {
    let mut changes = engine.registry_changes();
    let mut planned = plan(&engine.registry(), Utc::now());
    if let Err(e) = catch_up(&engine, &planned).await {
        warn!(error = %e, "Catching up missed schedule fires failed.");
    }
    info!(schedules = planned.len(), "Scheduler started.");
    loop {
        let now = Utc::now();
        if let Err(e) = fire_due(&engine, &mut planned, now).await {
            warn!(error = %e, "Firing schedules failed; trying again shortly.");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let sleep = planned
            .iter()
            .filter_map(|p| p.next)
            .min()
            .map_or(MAX_SLEEP, |next| {
                (next - Utc::now())
                    .to_std()
                    .unwrap_or_default()
                    .min(MAX_SLEEP)
            });
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                planned = replan(&engine.registry(), planned, Utc::now());
                debug!(schedules = planned.len(), "Schedules reloaded.");
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// The schedule triggers of the active flows, each with its first fire time after `now`.
fn plan(registry: &Registry, now: DateTime<Utc>) -> Vec<Planned> {
    registry
        .flows()
        .filter(|f| f.is_active())
        .flat_map(|f| schedules_of(f).map(move |cron| (f.id.clone(), cron)))
        .map(|(flow_id, cron)| Planned {
            next: cron.next_after(now),
            flow_id,
            cron,
        })
        .collect()
}

/// Like [`plan`], keeping the next fire time of schedules that did not change, so a flow
/// change elsewhere never skips or repeats a fire time that is due now.
fn replan(registry: &Registry, old: Vec<Planned>, now: DateTime<Utc>) -> Vec<Planned> {
    let mut kept: HashMap<(String, String, String), Option<DateTime<Utc>>> = old
        .into_iter()
        .map(|p| (key(&p.flow_id, &p.cron), p.next))
        .collect();
    let mut planned = plan(registry, now);
    for p in &mut planned {
        if let Some(next) = kept.remove(&key(&p.flow_id, &p.cron)) {
            p.next = next;
        }
    }
    planned
}

fn key(flow_id: &str, cron: &CronSchedule) -> (String, String, String) {
    (
        flow_id.to_string(),
        cron.expression().to_string(),
        cron.timezone().name().to_string(),
    )
}

fn schedules_of(flow: &FlowEntry) -> impl Iterator<Item = CronSchedule> + '_ {
    flow.flow.def.triggers.iter().filter_map(move |t| match t {
        Trigger::Schedule(s) => CronSchedule::parse(
            &s.schedule.cron,
            s.schedule.timezone.as_deref(),
        )
        .inspect_err(
            |e| warn!(flow = %flow.id, error = %e, "Schedule cannot be read; it does not fire."),
        )
        .ok(),
        _ => None,
    })
}

/// Fires every schedule whose next time has come: the latest fire time up to `now` (one run
/// even if the node woke up late), then plans the next one.
async fn fire_due(
    engine: &Engine,
    planned: &mut [Planned],
    now: DateTime<Utc>,
) -> Result<(), EngineError> {
    let mut fires = Vec::new();
    for p in planned.iter_mut() {
        let Some(next) = p.next.filter(|next| *next <= now) else {
            continue;
        };
        let fire_at = p
            .cron
            .latest_between(next - TimeDelta::milliseconds(1), now)
            .unwrap_or(next);
        fires.push((p.flow_id.clone(), fire_at));
        p.next = p.cron.next_after(now);
    }
    fire(engine, &fires).await
}

/// On start: for each schedule that fired before, the latest fire time missed since then.
async fn catch_up(engine: &Engine, planned: &[Planned]) -> Result<(), EngineError> {
    let store = engine.store();
    let now = Utc::now();
    let mut fires = Vec::new();
    for p in planned {
        let Some(last) = schedules::last_fire(store.reader(), store.backend(), &p.flow_id).await?
        else {
            continue;
        };
        let Some(last) = DateTime::<Utc>::from_timestamp_millis(last) else {
            continue;
        };
        if let Some(missed) = p.cron.latest_between(last, now) {
            info!(flow = %p.flow_id, fire_at = %missed, "Catching up a schedule fire missed while down.");
            fires.push((p.flow_id.clone(), missed));
        }
    }
    fire(engine, &fires).await
}

/// Starts one run per (flow, fire time) not fired yet, in one transaction.
async fn fire(engine: &Engine, fires: &[(String, DateTime<Utc>)]) -> Result<(), EngineError> {
    if fires.is_empty() {
        return Ok(());
    }
    let registry = engine.registry();
    let store = engine.store();
    let now = Utc::now().timestamp_millis();
    let txn = store.begin_write().await?;
    let mut started = 0;
    for (flow_id, fire_at) in fires {
        let Some(flow) = registry.get(flow_id).filter(|f| f.is_active()) else {
            continue;
        };
        let run = new_run(flow, &TriggerData::Schedule { fire_at: *fire_at }, now)?;
        let fire_ms = fire_at.timestamp_millis();
        if schedules::claim_fire(&txn, store.backend(), flow_id, fire_ms, &run.id, now).await? {
            runs::insert_runs(&txn, store.backend(), std::slice::from_ref(&run)).await?;
            started += 1;
        }
    }
    txn.commit().await.map_err(StoreError::from)?;
    if started > 0 {
        engine.wake_runner();
    }
    Ok(())
}
