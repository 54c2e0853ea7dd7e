//! Schedules: each active flow's cron triggers fire runs at their fire times. Every node runs
//! this loop; the once-only key on (flow, fire time) makes each fire time start exactly one run.
//!
//! - The loop sleeps until the earliest next fire time, or until the flows change (a changed or
//!   removed schedule takes effect at once; a paused flow does not fire).
//! - A node that wakes up late (overloaded, suspended) fires only the latest fire time it
//!   missed, never a burst; on start, each schedule catches up the latest fire time missed since
//!   its last recorded fire (at most one per flow).
//! - Daylight-saving changes follow `flow/cron.rs`: a wall time that does not exist (spring
//!   forward) fires at the first instant after the gap; a wall time that happens twice (fall
//!   back) fires once, at its first occurrence.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use serde_json::json;

use crate::core::new_run::TriggerRecord;
use crate::core::time::rfc3339;
use crate::core::trigger_data::TriggerData;
use crate::flow::cron::CronSchedule;
use crate::flow::model::Trigger;
use crate::flow::registry::{FlowEntry, Registry};
use crate::store::schedules;
use crate::store::starts::{OnceKey, RunStart};
use crate::template::is_truthy;
use crate::trigger::{Intake, IntakeError};

/// Longest single sleep: wall-clock jumps are noticed within this time.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// One schedule trigger of an active flow, with its next fire time.
struct Planned {
    flow_id: String,
    /// The index of the schedule trigger among the flow's triggers (for its `if`).
    index: usize,
    cron: CronSchedule,
    next: Option<DateTime<Utc>>,
}

/// Runs the scheduler until `shutdown` turns true.
pub async fn run(intake: Intake, mut shutdown: watch::Receiver<bool>) {
    let mut changes = intake.catalog.changes();
    let mut planned = plan(&intake.registry(), intake.clock.now());
    if let Err(e) = catch_up(&intake, &planned).await {
        warn!(error = %e, "Catching up missed schedule fires failed.");
    }
    info!(schedules = planned.len(), "Scheduler started.");
    loop {
        let now = intake.clock.now();
        if let Err(e) = fire_due(&intake, &mut planned, now).await {
            warn!(error = %e, "Firing schedules failed; trying again shortly.");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let sleep = planned
            .iter()
            .filter_map(|p| p.next)
            .min()
            .map_or(MAX_SLEEP, |next| {
                (next - intake.clock.now())
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
                planned = replan(&intake.registry(), planned, intake.clock.now());
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
        .flat_map(|f| schedules_of(f).map(move |(index, cron)| (f.id.clone(), index, cron)))
        .map(|(flow_id, index, cron)| Planned {
            index,
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

fn schedules_of(flow: &FlowEntry) -> impl Iterator<Item = (usize, CronSchedule)> + '_ {
    let triggers = flow.flow.def.triggers.iter().enumerate();
    triggers.filter_map(move |(index, t)| match t {
        Trigger::Schedule(s) => CronSchedule::parse(
            &s.schedule.cron,
            s.schedule.timezone.as_deref(),
        )
        .inspect_err(
            |e| warn!(flow = %flow.id, error = %e, "Schedule cannot be read; it does not fire."),
        )
        .ok()
        .map(|cron| (index, cron)),
        _ => None,
    })
}

/// Fires every schedule whose next time has come: the latest fire time up to `now` (one run
/// even if the node woke up late), then plans the next one.
async fn fire_due(
    intake: &Intake,
    planned: &mut [Planned],
    now: DateTime<Utc>,
) -> Result<(), IntakeError> {
    let mut fires = Vec::new();
    for p in planned.iter_mut() {
        let Some(next) = p.next.filter(|next| *next <= now) else {
            continue;
        };
        let fire_at = p
            .cron
            .latest_between(next - TimeDelta::milliseconds(1), now)
            .unwrap_or(next);
        fires.push((p.flow_id.clone(), p.index, fire_at));
        p.next = p.cron.next_after(now);
    }
    fire(intake, &fires).await
}

/// Whether the `if` of schedule trigger `index` holds for this fire (no `if`: it does).
fn fire_applies(flow: &FlowEntry, index: usize, fire_at: DateTime<Utc>, now_ms: i64) -> bool {
    let Some(condition) = flow.flow.conditions.get(index).and_then(Option::as_ref) else {
        return true;
    };
    let now = DateTime::<Utc>::from_timestamp_millis(now_ms).unwrap_or(fire_at);
    let context = json!({"schedule": {"fire_at": rfc3339(fire_at)}, "now": rfc3339(now)});
    is_truthy(&condition.render(&context))
}

/// On start: for each schedule that fired before, the latest fire time missed since then.
async fn catch_up(intake: &Intake, planned: &[Planned]) -> Result<(), IntakeError> {
    let store = &intake.store;
    let now = intake.clock.now();
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
            fires.push((p.flow_id.clone(), p.index, missed));
        }
    }
    fire(intake, &fires).await
}

/// Starts one run per (flow, fire time) not fired yet, through the group commit.
async fn fire(
    intake: &Intake,
    fires: &[(String, usize, DateTime<Utc>)],
) -> Result<(), IntakeError> {
    if fires.is_empty() {
        return Ok(());
    }
    let registry = intake.registry();
    let now = intake.clock.now_ms();
    let mut starts = Vec::with_capacity(fires.len());
    for (flow_id, index, fire_at) in fires {
        let Some(flow) = registry.get(flow_id).filter(|f| f.is_active()) else {
            continue;
        };
        if !fire_applies(flow, *index, *fire_at, now) {
            debug!(flow = %flow_id, %fire_at, "Schedule fire skipped: its `if` does not hold.");
            continue;
        }
        let data = TriggerData::Schedule { fire_at: *fire_at };
        let trigger = TriggerRecord::of(&data)?;
        starts.push(RunStart {
            run: flow.new_run(&data, &trigger, now),
            once: Some(OnceKey::ScheduleFire {
                fire_at: fire_at.timestamp_millis(),
            }),
        });
    }
    if starts.is_empty() {
        return Ok(());
    }
    intake.writes.start_runs(starts).await?;
    Ok(())
}
