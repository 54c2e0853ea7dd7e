//! Executing one claimed run: steps in order, each transition committed before the next side
//! effect. Pure steps (`map`, skipped steps) are collected and committed together with the next
//! transition that must be durable anyway (before an HTTP call, a wait, or the end), which keeps
//! database round trips per run low without weakening the guarantees. Every commit is
//! conditional on the lease; losing it ends the execution here and leaves the run to its new
//! owner.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use crate::core::status::{RunStatus, StepStatus};
use crate::core::time::rfc3339;
use crate::core::trigger_data::TriggerData;
use crate::flow::compiled::CompiledFlow;
use crate::runner::context::{RunContext, RunInfo};
use crate::runner::{Runner, revision};
use crate::runner::backoff::backoff;
use crate::step::retry::Retry;
use crate::step::{Attempt, StepCall, StepOutcome};
use crate::step::{CompiledStep, OnError, Plan};
use crate::store::StoreError;
use crate::store::runs::{AttemptWrite, ClaimedRun, RunState, RunWrite, StepRow, StepWrite};
use crate::store::transitions::Transition;
use crate::template::is_truthy;

/// How long a lease lasts, and so how often the runner must renew it.
#[derive(Debug, Clone, Copy)]
pub struct LeaseSettings {
    pub lease: Duration,
}

/// Why an execution stopped before the run reached a terminal state or a wait.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("the lease was lost")]
    LeaseLost,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Flow(String),
}

/// The runner's view of one run while it executes.
struct Execution<'a> {
    runner: &'a Runner,
    flow: Arc<CompiledFlow>,
    run: ClaimedRun,
    context: RunContext,
    /// Known step rows by index: loaded ones, updated as steps progress.
    steps: HashMap<i64, StepRow>,
    /// Step rows written since the last commit.
    pending: Vec<StepWrite>,
    attempts: Vec<AttemptWrite>,
    next: i64,
    lease: LeaseSettings,
}

/// What the caller should do after an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Finished(RunStatus),
    /// Waiting until this time (UTC millis).
    Waiting(i64),
}

/// Executes a claimed run until it finishes, waits, or its lease is lost.
pub async fn execute(
    runner: &Runner,
    run: ClaimedRun,
    rows: Vec<StepRow>,
    lease: LeaseSettings,
) -> Result<Ended, ExecError> {
    let flow = revision::compiled(&runner.catalog, &runner.store, &run.flow_id, run.revision)
        .await
        .map_err(|e| ExecError::Flow(e.to_string()))?;
    let trigger: TriggerData = serde_json::from_str(&run.trigger)
        .map_err(|e| ExecError::Flow(format!("stored trigger: {e}")))?;
    let started_at = DateTime::from_timestamp_millis(run.started_at).unwrap_or_else(Utc::now);
    let info = RunInfo {
        flow_id: &flow.id,
        flow_name: &flow.name,
        revision: flow.revision,
        run_id: &run.id,
        attempt: run.attempt,
        started_at,
    };
    let mut context = RunContext::new(&trigger, &info, &runner.secrets);
    let mut steps = HashMap::with_capacity(rows.len());
    for row in rows {
        restore_output(&mut context, &flow, &row);
        steps.insert(row.step_index, row);
    }
    let next = run.next_step;
    let mut execution = Execution {
        runner,
        flow,
        run,
        context,
        steps,
        pending: Vec::new(),
        attempts: Vec::new(),
        next,
        lease,
    };
    let ended = execution.run_steps().await;
    if let Ok(Ended::Finished(status)) = ended {
        runner.metrics().run_finished(&execution.flow.id, status);
    }
    ended
}

/// Puts the output of a step that already ran back into the context.
fn restore_output(context: &mut RunContext, flow: &CompiledFlow, row: &StepRow) {
    let Some(step) = flow.steps.get(row.step_index as usize) else {
        return;
    };
    let output = match row.status {
        StepStatus::Succeeded | StepStatus::Failed => row
            .output
            .as_deref()
            .and_then(|o| serde_json::from_str(o).ok())
            .unwrap_or(Value::Null),
        StepStatus::Skipped => Value::Null,
        StepStatus::Pending | StepStatus::Running => return,
    };
    context.set_step_output(&step.id, output);
}

impl Execution<'_> {
    async fn run_steps(&mut self) -> Result<Ended, ExecError> {
        loop {
            if self.run.cancel_requested {
                return self
                    .finish(RunStatus::Cancelled, Some("cancelled".into()))
                    .await;
            }
            if self
                .run
                .deadline_at
                .is_some_and(|d| self.runner.now_ms() >= d)
            {
                return self
                    .finish(
                        RunStatus::Failed,
                        Some("the run timed out (settings.timeout)".into()),
                    )
                    .await;
            }
            let flow = self.flow.clone();
            let Some(step) = flow.steps.get(self.next as usize) else {
                return self.finish(RunStatus::Succeeded, None).await;
            };
            self.context.set_now(self.runner.clock.now());
            if let Some(condition) = &step.condition
                && !is_truthy(&condition.render(self.context.value()))
            {
                self.record_pure(step, StepStatus::Skipped, Value::Null);
                continue;
            }
            let ended = match step.action.plan() {
                Plan::Map(map) => {
                    let started = Instant::now();
                    let output = map.execute(self.context.value());
                    self.runner
                        .metrics()
                        .step_executed(&flow.id, "map", started);
                    self.record_pure(step, StepStatus::Succeeded, output);
                    None
                }
                Plan::Delay(duration) => self.delay(step, duration).await?,
                Plan::SideEffect(retry) => self.side_effect(step, retry).await?,
            };
            if let Some(ended) = ended {
                return Ok(ended);
            }
        }
    }

    /// Records a step that needed no side effect and moves on; committed with the next write.
    fn record_pure(&mut self, step: &CompiledStep, status: StepStatus, output: Value) {
        let now = self.runner.now_ms();
        self.pending.push(StepWrite {
            step_index: self.next,
            step_id: step.id.clone(),
            kind: step.action.kind(),
            status,
            output: Some(output.to_string()),
            error: None,
            attempts: 0,
            started_at: Some(now),
            finished_at: Some(now),
        });
        self.context.set_step_output(&step.id, output);
        self.next += 1;
    }

    /// A durable wait: the first time it stores the wake-up time and parks the run; once the
    /// time has come it succeeds with `{until}`.
    async fn delay(
        &mut self,
        step: &CompiledStep,
        duration: Duration,
    ) -> Result<Option<Ended>, ExecError> {
        let stored_until = self
            .steps
            .get(&self.next)
            .and_then(|row| row.output.as_deref())
            .and_then(|o| serde_json::from_str::<Value>(o).ok())
            .and_then(|v| v.get("until_ms").and_then(Value::as_i64));
        let now = self.runner.now_ms();
        let until = stored_until.unwrap_or(now + duration.as_millis() as i64);
        let output = json!({
            "until": rfc3339(DateTime::from_timestamp_millis(until).unwrap_or_else(Utc::now)),
            "until_ms": until,
        });
        if now >= until {
            let shown = json!({ "until": output["until"] });
            self.record_pure(step, StepStatus::Succeeded, shown);
            return Ok(None);
        }
        self.pending.push(StepWrite {
            step_index: self.next,
            step_id: step.id.clone(),
            kind: "delay",
            status: StepStatus::Running,
            output: Some(output.to_string()),
            error: None,
            attempts: 0,
            started_at: Some(now),
            finished_at: None,
        });
        self.wait_until(until).await.map(Some)
    }

    /// A step with side effects: commit that it is about to run, run one attempt, record it.
    async fn side_effect(
        &mut self,
        step: &CompiledStep,
        retry: Retry,
    ) -> Result<Option<Ended>, ExecError> {
        let (done, base) = self
            .steps
            .get(&self.next)
            .map_or((0, 0), |row| (row.attempts, row.retry_base));
        let now = self.runner.now_ms();
        self.pending
            .push(self.step_write(step, StepStatus::Running, None, None, done, now, None));
        self.commit(RunState::Running {
            next_step: self.next,
        })
        .await?;
        if self.run.cancel_requested {
            return self
                .finish(RunStatus::Cancelled, Some("cancelled".into()))
                .await
                .map(Some);
        }
        let call = StepCall {
            run_id: &self.run.id,
            flow_id: &self.flow.id,
            step_id: &step.id,
            context: self.context.value(),
        };
        let started = Instant::now();
        let Some(attempt) = step.action.perform(&self.runner.step_env, &call).await else {
            return Err(ExecError::Flow("not a side-effect step".into()));
        };
        self.runner
            .metrics()
            .step_executed(&self.flow.id, step.action.kind(), started);
        let n = done + 1;
        self.record_attempt(n, &attempt);
        self.remember_attempts(step, n, base);
        match attempt.outcome {
            StepOutcome::Succeeded(output) => {
                let finished = self.runner.now_ms();
                self.pending.push(self.step_write(
                    step,
                    StepStatus::Succeeded,
                    Some(&output),
                    None,
                    n,
                    now,
                    Some(finished),
                ));
                self.context.set_step_output(&step.id, output);
                self.next += 1;
                Ok(None)
            }
            StepOutcome::Retry { error, after } if n - base < i64::from(retry.attempts) => {
                let wait = backoff(
                    (n - base) as u32,
                    retry.delay,
                    retry.max_delay,
                    after,
                    self.runner.jitter.next(),
                );
                debug!(run_id = %self.run.id, step = %step.id, attempt = n, wait_ms = wait.as_millis() as u64, error = %error, "Step will be retried.");
                self.pending.push(self.step_write(
                    step,
                    StepStatus::Running,
                    None,
                    Some(&error),
                    n,
                    now,
                    None,
                ));
                self.wait_until(self.runner.now_ms() + wait.as_millis() as i64)
                    .await
                    .map(Some)
            }
            StepOutcome::Retry { error, .. } => {
                self.step_failed(
                    step,
                    n,
                    now,
                    match n - base {
                        1 => format!("{error} (gave up after 1 attempt)"),
                        tries => format!("{error} (gave up after {tries} attempts)"),
                    },
                    None,
                )
                .await
            }
            StepOutcome::Fail { error, output } => {
                self.step_failed(step, n, now, error, output).await
            }
        }
    }

    /// A failed step fails the run, unless the step says `on_error: continue`.
    async fn step_failed(
        &mut self,
        step: &CompiledStep,
        n: i64,
        started: i64,
        error: String,
        output: Option<Value>,
    ) -> Result<Option<Ended>, ExecError> {
        let finished = self.runner.now_ms();
        match step.on_error {
            OnError::Continue => {
                let output = json!({ "error": error, "response": output });
                self.pending.push(self.step_write(
                    step,
                    StepStatus::Failed,
                    Some(&output),
                    Some(&error),
                    n,
                    started,
                    Some(finished),
                ));
                self.context.set_step_output(&step.id, output);
                self.next += 1;
                Ok(None)
            }
            OnError::Fail => {
                self.pending.push(self.step_write(
                    step,
                    StepStatus::Failed,
                    output.as_ref(),
                    Some(&error),
                    n,
                    started,
                    Some(finished),
                ));
                let message = format!("step `{}` failed: {error}", step.id);
                self.finish(RunStatus::Failed, Some(message))
                    .await
                    .map(Some)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn step_write(
        &self,
        step: &CompiledStep,
        status: StepStatus,
        output: Option<&Value>,
        error: Option<&str>,
        attempts: i64,
        started: i64,
        finished: Option<i64>,
    ) -> StepWrite {
        StepWrite {
            step_index: self.next,
            step_id: step.id.clone(),
            kind: step.action.kind(),
            status,
            output: output.map(Value::to_string),
            error: error.map(str::to_string),
            attempts,
            started_at: Some(started),
            finished_at: finished,
        }
    }

    fn record_attempt(&mut self, n: i64, attempt: &Attempt) {
        let started = attempt.started_at.timestamp_millis();
        let error = match &attempt.outcome {
            StepOutcome::Succeeded(_) => None,
            StepOutcome::Retry { error, .. } | StepOutcome::Fail { error, .. } => {
                Some(error.clone())
            }
        };
        self.attempts.push(AttemptWrite {
            step_index: self.next,
            n,
            node: self.runner.node_id.clone(),
            started_at: started,
            finished_at: started + attempt.duration_ms as i64,
            duration_ms: attempt.duration_ms as i64,
            request: attempt.request.as_ref().map(Value::to_string),
            response: attempt.response.as_ref().map(Value::to_string),
            error,
        });
    }

    /// Keeps the local view of the step's attempt count in step with what will be committed.
    fn remember_attempts(&mut self, step: &CompiledStep, n: i64, base: i64) {
        let row = self.steps.entry(self.next).or_insert_with(|| StepRow {
            run_id: self.run.id.clone(),
            step_index: self.next,
            step_id: step.id.clone(),
            status: StepStatus::Running,
            output: None,
            attempts: 0,
            retry_base: base,
        });
        row.attempts = n;
    }

    async fn wait_until(&mut self, wake_at: i64) -> Result<Ended, ExecError> {
        let due_at = self.run.deadline_at.map_or(wake_at, |d| d.min(wake_at));
        self.commit(RunState::Waiting {
            next_step: self.next,
            wake_at,
            due_at,
        })
        .await?;
        if self.run.cancel_requested {
            // Cancelled while the step before ran: `commit` ended the run instead of parking it.
            return Ok(Ended::Finished(RunStatus::Cancelled));
        }
        Ok(Ended::Waiting(due_at))
    }

    async fn finish(
        &mut self,
        status: RunStatus,
        error: Option<String>,
    ) -> Result<Ended, ExecError> {
        let redacted = error.map(|e| self.runner.step_env.redactor.redact(&e));
        self.commit(RunState::Finished {
            status,
            error: redacted.clone(),
            finished_at: self.runner.now_ms(),
        })
        .await?;
        match status {
            RunStatus::Succeeded => {
                debug!(run_id = %self.run.id, flow = %self.flow.id, "Run succeeded.")
            }
            _ => {
                info!(run_id = %self.run.id, flow = %self.flow.id, %status, error = redacted.as_deref().unwrap_or(""), "Run ended.")
            }
        }
        Ok(Ended::Finished(status))
    }

    /// Commits the pending rows with the run's new state, on condition of the lease. The
    /// commit is shared with other runs' transitions (group commit) but answered only once
    /// durable.
    async fn commit(&mut self, state: RunState) -> Result<(), ExecError> {
        let transition = Transition {
            write: RunWrite {
                run_id: self.run.id.clone(),
                owner: self.runner.node_id.clone(),
                epoch: self.run.epoch,
                state,
                steps: std::mem::take(&mut self.pending),
                attempts: std::mem::take(&mut self.attempts),
            },
            lease_expires_at: self.runner.now_ms() + self.lease.lease.as_millis() as i64,
        };
        let applied = match self.runner.writes.transition(transition).await {
            Ok(applied) => applied,
            Err(StoreError::LeaseLost) => {
                warn!(run_id = %self.run.id, "Lease lost; another worker owns the run now.");
                return Err(ExecError::LeaseLost);
            }
            Err(e) => return Err(e.into()),
        };
        self.run.cancel_requested |= applied.cancel_requested;
        Ok(())
    }
}
