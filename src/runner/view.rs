//! The runner's view of one run while it executes: the claimed row, its compiled revision, the
//! template context, the step rows known so far, and the rows written since the last commit.
//! Transitions read and update it; it holds no handle to the database, the clock or the network,
//! so a transition applied to it stays a pure function. The rows of pure steps (`map`, skipped
//! steps) wait here until a transition has to commit anyway, which keeps round trips per run low.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::core::status::StepStatus;
use crate::core::trigger_data::TriggerData;
use crate::flow::compiled::CompiledFlow;
use crate::outbound::record::Redactor;
use crate::runner::context::{RunContext, RunInfo};
use crate::secrets::Secrets;
use crate::step::{Attempt, CompiledStep, Plan, StepOutcome};
use crate::store::runs::{AttemptWrite, ClaimedRun, RunState, RunWrite, StepRow, StepWrite};

/// What every run executed by this node shares.
#[derive(Debug, Clone, Copy)]
pub struct Node<'a> {
    /// This node's name: lease owner and attempt records.
    pub id: &'a str,
    /// Masks secrets in the errors a run ends with.
    pub redactor: &'a Redactor,
}

/// One run in flight, as its transitions see it.
pub struct RunView<'a> {
    pub run: ClaimedRun,
    pub flow: Arc<CompiledFlow>,
    pub context: RunContext,
    /// Known step rows by index: loaded ones, updated as attempts are made.
    pub steps: HashMap<i64, StepRow>,
    /// The index of the step to execute next.
    pub next: i64,
    pub node: Node<'a>,
    /// Step rows written since the last commit.
    pending: Vec<StepWrite>,
    attempts: Vec<AttemptWrite>,
}

impl<'a> RunView<'a> {
    /// The view of a claimed run; the outputs of its finished steps go back into the context.
    pub fn new(
        run: ClaimedRun,
        flow: Arc<CompiledFlow>,
        mut context: RunContext,
        rows: Vec<StepRow>,
        node: Node<'a>,
    ) -> RunView<'a> {
        let mut steps = HashMap::with_capacity(rows.len());
        let mut rows = rows;
        rows.sort_by_key(|row| row.step_index);
        for row in rows {
            restore_output(&mut context, &flow, &row);
            steps.insert(row.step_index, row);
        }
        RunView {
            next: run.next_step,
            run,
            flow,
            context,
            steps,
            node,
            pending: Vec::new(),
            attempts: Vec::new(),
        }
    }

    /// The step to execute next; `None` once every step is done.
    pub fn step(&self) -> Option<&CompiledStep> {
        self.flow.steps.get(self.next as usize)
    }

    /// The output of the next step when it is a `map` step: its mapping rendered against the
    /// context as it is now.
    pub fn render_map(&self) -> Option<Value> {
        match self.step()?.action.plan() {
            Plan::Map(map) => Some(map.execute(self.context.value())),
            Plan::Delay(_) | Plan::SideEffect(_) => None,
        }
    }

    /// `(attempts made, attempts made before the last manual retry)` of the next step.
    pub fn attempts_so_far(&self) -> (i64, i64) {
        self.steps
            .get(&self.next)
            .map_or((0, 0), |row| (row.attempts, row.retry_base))
    }

    /// A row of the next step with neither output nor error; callers fill those in.
    pub fn step_write(
        &self,
        step: &CompiledStep,
        status: StepStatus,
        attempts: i64,
        (started_at, finished_at): (i64, Option<i64>),
    ) -> StepWrite {
        StepWrite {
            step_index: self.next,
            step_id: step.id.clone(),
            kind: step.action.kind(),
            status,
            output: None,
            error: None,
            attempts,
            started_at: Some(started_at),
            finished_at,
        }
    }

    /// Queues a step row for the next commit.
    pub fn push_step(&mut self, row: StepWrite) {
        self.pending.push(row);
    }

    /// Records a step that ended with `output` and moves on to the following one.
    pub fn step_done(&mut self, step: &CompiledStep, row: StepWrite, output: Value) {
        self.pending.push(row);
        self.context.set_step_output(&step.id, output);
        self.next += 1;
    }

    /// Records a step that needed no side effect (`map`, skipped, a delay that is over); it is
    /// committed with the next write.
    pub fn record_pure(
        &mut self,
        step: &CompiledStep,
        status: StepStatus,
        output: Value,
        now: i64,
    ) {
        // What a `map` step's secret-reading templates made is stored as `***`; the context
        // keeps the values for the steps after it.
        let stored = match step.action.plan() {
            Plan::Map(map) if map.reads_secrets() => map.mask(&output),
            _ => output.clone(),
        };
        let stored = self.node.redactor.redact_value(&stored);
        let row = StepWrite {
            output: Some(stored.to_string()),
            ..self.step_write(step, status, 0, (now, Some(now)))
        };
        self.step_done(step, row, output);
    }

    /// Records attempt number `n` of the next step, and remembers the count for the next one.
    pub fn record_attempt(&mut self, step: &CompiledStep, n: i64, attempt: &Attempt) {
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
            node: self.node.id.to_string(),
            started_at: started,
            finished_at: started + attempt.duration_ms as i64,
            duration_ms: attempt.duration_ms as i64,
            request: attempt.request.as_ref().map(Value::to_string),
            response: attempt.response.as_ref().map(Value::to_string),
            error,
        });
        let (run_id, index) = (&self.run.id, self.next);
        self.steps
            .entry(index)
            .or_insert_with(|| StepRow {
                run_id: run_id.clone(),
                step_index: index,
                step_id: step.id.clone(),
                status: StepStatus::Running,
                output: None,
                attempts: 0,
                retry_base: 0,
            })
            .attempts = n;
    }

    /// The run's new state with every row queued since the last commit.
    pub fn write(&mut self, state: RunState) -> RunWrite {
        RunWrite {
            run_id: self.run.id.clone(),
            owner: self.node.id.to_string(),
            epoch: self.run.epoch,
            state,
            steps: std::mem::take(&mut self.pending),
            attempts: std::mem::take(&mut self.attempts),
        }
    }
}

/// The template context of a claimed run before its steps' outputs are restored; `now` stands in
/// for a start time the store cannot give.
pub fn new_context(
    run: &ClaimedRun,
    flow: &CompiledFlow,
    trigger: &TriggerData,
    secrets: &Secrets,
    now: DateTime<Utc>,
) -> RunContext {
    let info = RunInfo {
        flow_id: &flow.id,
        flow_name: &flow.name,
        revision: flow.revision,
        run_id: &run.id,
        attempt: run.attempt,
        started_at: DateTime::from_timestamp_millis(run.started_at).unwrap_or(now),
    };
    RunContext::new(trigger, &info, secrets)
}

/// Puts the output of a step that already ran back into the context. A `map` step that read
/// secrets was stored masked, so its output is rendered again (secrets are never read back from
/// storage); the context holds the earlier steps' outputs by then, as rows come in step order.
fn restore_output(context: &mut RunContext, flow: &CompiledFlow, row: &StepRow) {
    let Some(step) = flow.steps.get(row.step_index as usize) else {
        return;
    };
    let output = match row.status {
        StepStatus::Succeeded => match step.action.plan() {
            Plan::Map(map) if map.reads_secrets() => map.execute(context.value()),
            _ => stored_output(row),
        },
        StepStatus::Failed => stored_output(row),
        StepStatus::Skipped => Value::Null,
        StepStatus::Pending | StepStatus::Running => return,
    };
    context.set_step_output(&step.id, output);
}

fn stored_output(row: &StepRow) -> Value {
    row.output
        .as_deref()
        .and_then(|o| serde_json::from_str(o).ok())
        .unwrap_or(Value::Null)
}
