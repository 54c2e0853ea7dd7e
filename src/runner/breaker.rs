//! The failure breaker (`settings.auto_pause`, on by default): after a run of a flow fails, the
//! flow's failed runs since its last success are counted; past the flow's limits the flow
//! pauses itself (`pause_reason: auto_paused`, with the numbers in `pause_detail`), its runs
//! not started are held, and the inbox says so. Like a manual pause, nothing is lost: new runs
//! are held until a person resumes the flow. Only failed runs pay for the check.

use serde_json::json;
use tracing::warn;

use crate::core::duration::Duration;
use crate::core::error::Chain;
use crate::core::time::rfc3339_ms;
use crate::core::workspace::split_flow_key;
use crate::flow::compiled::CompiledFlow;
use crate::flow::model::{AutoPauseNotify, Settings};
use crate::runner::Runner;
use crate::step::notify::NotifyStep;
use crate::step::{StepCall, StepOutcome};
use crate::store::notifications::{self, NewNotification};
use crate::store::{StoreError, flows, runs};

/// Checks the breaker after run `run_id` of `flow` failed; a problem is logged, never fails
/// the run (it has failed already).
pub async fn after_failed_run(runner: &Runner, flow: &CompiledFlow, run_id: &str) {
    if let Err(error) = trip_if_failing(runner, flow, run_id).await {
        warn!(flow = %flow.id, error = %Chain(&error), "Checking the failure breaker failed.");
    }
}

async fn trip_if_failing(
    runner: &Runner,
    flow: &CompiledFlow,
    run_id: &str,
) -> Result<(), StoreError> {
    let Some((after, failing_for)) = Settings::auto_pause(flow.def.settings.as_ref()) else {
        return Ok(());
    };
    let (store, backend) = (&runner.store, runner.store.backend());
    let (failed, since) = runs::failing_streak(store.reader(), backend, &flow.id).await?;
    let now = runner.now_ms();
    let Some(detail) = tripped(failed, since, now, after, failing_for) else {
        return Ok(());
    };
    let txn = store.begin_write().await?;
    // Several runs failing at once all get here: only the first pause counts and notifies.
    if !flows::auto_pause(&txn, backend, &flow.id, &detail, now).await? {
        return Ok(());
    }
    runs::hold_pending(&txn, backend, &flow.id).await?;
    let notification = NewNotification {
        id: format!("{run_id}_auto_pause"),
        flow_id: flow.id.clone(),
        run_id: run_id.to_string(),
        step_id: "auto_pause".into(),
        title: format!("Flow {} paused itself", flow.name),
        text: format!(
            "{detail}. New runs are held, nothing is lost: resume the flow once its target works again (POST /api/v1/flows/{}/resume).",
            flow.id
        ),
        created_at: now,
    };
    notifications::insert(&txn, backend, &notification).await?;
    txn.commit().await?;
    warn!(flow = %flow.id, %detail, "Flow paused by its failure breaker.");
    if let Some(notify) = Settings::auto_pause_notify(flow.def.settings.as_ref()) {
        tell_channel(runner, flow, run_id, notify, &detail).await;
    }
    Ok(())
}

/// Tells the channel the flow names that it paused itself: one attempt, after the pause is
/// committed (the inbox notification is the durable record; a channel that fails is logged).
async fn tell_channel(
    runner: &Runner,
    flow: &CompiledFlow,
    run_id: &str,
    notify: &AutoPauseNotify,
    detail: &str,
) {
    let step = match NotifyStep::compile(&notify.as_notify(), None) {
        Ok(step) => step,
        Err(error) => {
            warn!(flow = %flow.id, %error, "The auto_pause notification cannot be compiled.");
            return;
        }
    };
    let context = json!({
        "flow": { "id": split_flow_key(&flow.id).1, "name": flow.name, "revision": flow.revision },
        "pause": { "reason": "auto_paused", "detail": detail },
        "secrets": runner.secrets.current_in(split_flow_key(&flow.id).0).to_context(),
    });
    let call = StepCall {
        run_id,
        flow_id: &flow.id,
        step_id: "auto_pause",
        context: &context,
    };
    let attempt = step.execute(&runner.step_env, &call).await;
    match attempt.outcome {
        StepOutcome::Succeeded(_) => {}
        StepOutcome::Retry { error, .. } | StepOutcome::Fail { error, .. } => {
            warn!(flow = %flow.id, channel = notify.channel.as_str(), %error, "The auto_pause notification was not delivered.")
        }
    }
}

/// Whether a failing streak of `failed` runs, the first of them ended at `since`, trips limits
/// of `after` runs or `failing_for`; the reason for people when it does.
fn tripped(
    failed: i64,
    since: Option<i64>,
    now: i64,
    after: u32,
    failing_for: Duration,
) -> Option<String> {
    if failed >= i64::from(after) {
        return Some(format!(
            "{failed} runs failed in a row (auto_pause after_failed_runs: {after})"
        ));
    }
    let since = since?;
    let window = failing_for.as_millis() as i64;
    (failed > 0 && now - since >= window).then(|| {
        format!(
            "runs have failed without a success since {}, {failed} in all (auto_pause or_failing_for: {failing_for})",
            rfc3339_ms(since)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_on_the_count_or_the_age_of_the_streak() {
        let hour = Duration::from_secs(3600);
        let hour_ms = 3_600_000;
        assert_eq!(tripped(0, None, 10, 3, hour), None);
        assert_eq!(tripped(2, Some(0), 10, 3, hour), None);
        assert_eq!(
            tripped(3, Some(0), 10, 3, hour).as_deref(),
            Some("3 runs failed in a row (auto_pause after_failed_runs: 3)")
        );
        assert_eq!(tripped(1, Some(5), 5 + hour_ms - 1, 3, hour), None);
        let aged = tripped(1, Some(5), 5 + hour_ms, 3, hour).unwrap();
        assert!(aged.contains("or_failing_for: 1h"), "{aged}");
    }
}
