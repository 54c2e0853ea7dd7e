//! The driver of one claimed run: it feeds events to the transitions (`runner::transition`),
//! commits the writes they return through the group commit, on condition of the lease, runs
//! their effects once committed, and turns what it learns into the next event, until the run
//! ends, parks, or its lease is lost. Everything that touches the world lives here: the clock
//! and the jitter (read and handed to the transitions), the database, the step kinds' work
//! (mappings rendered, attempts made, both timed for the metrics), the wake-ups and the log.

use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::core::status::RunStatus;
use crate::core::trigger_data::TriggerData;
use crate::runner::transition::{
    self, Answer, AttemptEnded, Effect, Event, InFlight, Log, Output, TransitionError,
};
use crate::runner::view::{Node, RunView, new_context};
use crate::runner::{Runner, breaker, quota, revision};
use crate::secrets::Secrets;
use crate::step::{Attempt, MISSING_SECRET, StepCall, StepOutcome};
use crate::store::StoreError;
use crate::store::runs::{ClaimedRun, RunWrite, StepRow};
use crate::store::transitions::Transition;

/// How long a lease lasts, and so how often the runner must renew it.
#[derive(Debug, Clone, Copy)]
pub struct LeaseSettings {
    pub lease: Duration,
}

/// Why an execution stopped before the run reached a terminal state or a wait. The run's lease
/// then expires and a worker takes it up again.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Flow(String),
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error("a transition asked for a commit and for a step's work at once")]
    Tangled,
    /// A new attempt would start after the shutdown cut-off: nothing is sent, and the run is
    /// taken up again once its lease is given back.
    #[error("the node is shutting down; the attempt was not started")]
    ShuttingDown,
    /// The workspace's HTTP quota has no slot left this minute: the run is held until the next
    /// one, with nothing sent and no attempt used.
    #[error("the workspace's HTTP quota is used up for this minute; the run is held")]
    QuotaHeld,
}

/// Executes a claimed run until it finishes, parks, or its lease is lost.
pub async fn execute(
    runner: &Runner,
    run: ClaimedRun,
    rows: Vec<StepRow>,
    lease: LeaseSettings,
) -> Result<(), ExecError> {
    let flow = revision::compiled(&runner.catalog, &runner.store, &run.flow_id, run.revision)
        .await
        .map_err(|e| ExecError::Flow(e.to_string()))?;
    let trigger: TriggerData = serde_json::from_str(&run.trigger)
        .map_err(|e| ExecError::Flow(format!("stored trigger: {e}")))?;
    // The generation first: a change between the two reads is seen again at the next look.
    let mut generation = runner.secrets.generation();
    // A run sees only its workspace's secrets (SPEC §11).
    let workspace = crate::core::workspace::split_flow_key(&run.flow_id)
        .0
        .to_string();
    let mut secrets = runner.secrets.current_in(&workspace);
    let context = new_context(&run, &flow, &trigger, &secrets, runner.clock.now());
    let redactor = runner.step_env.redactor.current();
    let node = Node {
        id: &runner.node_id,
        redactor: &redactor,
    };
    let mut view = RunView::new(run, flow, context, rows, node);
    let mut event = Event::Advance;
    loop {
        let now = runner.now_ms();
        let Output { write, effects } = transition::apply(&mut view, event, now)?;
        let committed = match write {
            Some(write) => Some((write.then, commit(runner, write.run, now, lease).await?)),
            None => None,
        };
        let mut next = None;
        // Effects follow a commit; a write refused for a lost lease takes them with it.
        if !matches!(committed, Some((_, Answer::LeaseLost))) {
            for effect in effects {
                // A secret set or changed meanwhile (on any node) applies to this attempt; the
                // check for missing ones reads the very values the templates render.
                if runner.secrets.generation() != generation {
                    generation = runner.secrets.generation();
                    secrets = runner.secrets.current_in(&workspace);
                    view.context.set_secrets(&secrets);
                }
                if let Some(event) = run_effect(runner, &view, &secrets, effect).await? {
                    next = Some(event);
                }
            }
        }
        event = match (committed, next) {
            (Some((then, answer)), None) => Event::Committed { then, answer },
            (None, Some(event)) => event,
            (None, None) => return Ok(()),
            (Some(_), Some(_)) => return Err(ExecError::Tangled),
        };
    }
}

/// Commits a write with the run's lease renewed; shared with other runs' writes (group
/// commit) but answered only once durable.
async fn commit(
    runner: &Runner,
    write: RunWrite,
    now: i64,
    lease: LeaseSettings,
) -> Result<Answer, ExecError> {
    let transition = Transition {
        write,
        lease_expires_at: now + lease.lease.as_millis() as i64,
    };
    match runner.writes.transition(transition).await {
        Ok(applied) => Ok(Answer::Applied {
            cancel_requested: applied.cancel_requested,
        }),
        Err(StoreError::LeaseLost) => Ok(Answer::LeaseLost),
        Err(e) => Err(e.into()),
    }
}

/// Runs one effect; the work of a step answers with the event it leads to.
async fn run_effect(
    runner: &Runner,
    view: &RunView<'_>,
    secrets: &Secrets,
    effect: Effect,
) -> Result<Option<Event>, ExecError> {
    match effect {
        Effect::Map => {
            let started = Instant::now();
            let output = view
                .render_map()
                .ok_or_else(|| ExecError::Flow("not a map step".into()))?;
            runner
                .metrics()
                .step_executed(&view.flow.id, "map", started);
            Ok(Some(Event::Mapped(output)))
        }
        Effect::Attempt(in_flight) => attempt(runner, view, secrets, in_flight).await.map(Some),
        Effect::WakeAt(due_at) => {
            runner.schedule_wake(due_at);
            Ok(None)
        }
        Effect::RunEnded(status) => {
            runner.metrics().run_finished(&view.flow.id, status);
            runner.wake.run_ended();
            if status == RunStatus::Failed {
                breaker::after_failed_run(runner, &view.flow, &view.run.id).await;
            }
            Ok(None)
        }
        Effect::Log(entry) => {
            log(view, entry);
            Ok(None)
        }
    }
}

/// Makes one attempt of the run's next step.
async fn attempt(
    runner: &Runner,
    view: &RunView<'_>,
    secrets: &Secrets,
    in_flight: InFlight,
) -> Result<Event, ExecError> {
    let step = view
        .step()
        .ok_or_else(|| ExecError::Flow("no step to attempt".into()))?;
    let call = StepCall {
        run_id: &view.run.id,
        flow_id: &view.flow.id,
        step_id: &step.id,
        context: view.context.value(),
    };
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let attempt = match missing_secret(secrets, &step.secret_names) {
        Some(refused) => refused,
        None if runner.wake.is_cut_off() => return Err(ExecError::ShuttingDown),
        None if step.action.kind() == "http"
            && !quota::take_http_slot(runner, &view.run).await? =>
        {
            return Err(ExecError::QuotaHeld);
        }
        None => {
            let performed = tokio::select! {
                biased;
                () = runner.wake.attempts_cut_off() => Some(cut_off_by_shutdown(started_at, started)),
                performed = step.action.perform(&runner.step_env, &call) => performed,
            };
            match performed {
                Some(attempt) => attempt,
                None => return Err(ExecError::Flow("not a side-effect step".into())),
            }
        }
    };
    runner
        .metrics()
        .step_executed(&view.flow.id, step.action.kind(), started);
    // Drawn only for a retry: the generator is shared by every run behind a lock.
    let jitter = match attempt.outcome {
        StepOutcome::Retry { .. } => runner.jitter.next(),
        StepOutcome::Succeeded(_) | StepOutcome::Fail { .. } => 0.0,
    };
    Ok(Event::AttemptEnded(AttemptEnded {
        in_flight,
        attempt,
        jitter,
    }))
}

/// The record of an attempt stopped at the end of the shutdown grace period. The target may
/// have seen (and acted on) the request, so it counts as an attempt and is retried like a
/// timeout, with the same idempotency key, by whichever node runs the run next.
fn cut_off_by_shutdown(started_at: chrono::DateTime<chrono::Utc>, started: Instant) -> Attempt {
    Attempt {
        outcome: StepOutcome::Retry {
            error: CANCELLED_BY_SHUTDOWN.to_owned(),
            after: None,
        },
        request: None,
        response: None,
        started_at,
        duration_ms: started.elapsed().as_millis() as u64,
    }
}

/// The error of an attempt cut off by a shutdown.
pub const CANCELLED_BY_SHUTDOWN: &str = "cancelled by shutdown";

/// A failed attempt when a secret the step reads is not set (or cannot be decrypted): nothing
/// is sent, because an empty value would go out as if it were right. `secrets` are the values
/// the run's context holds (refreshed before each attempt), so once a secret is set, the next
/// attempt uses it without a restart, and the check never passes on values the templates lack.
fn missing_secret(secrets: &Secrets, names: &[String]) -> Option<Attempt> {
    if names.is_empty() {
        return None;
    }
    let name = names.iter().find(|name| !secrets.is_set(name))?;
    let problem = if secrets.unreadable().contains(name) {
        "cannot be decrypted with this node's master key; set it again"
    } else {
        "is not set"
    };
    Some(Attempt {
        outcome: StepOutcome::Fail {
            error: format!(
                "{MISSING_SECRET}: the secret `{name}` {problem}: set it with `flowd secrets set {name}` \
                 or PUT /api/v1/secrets/{name}, then retry the run"
            ),
            output: None,
        },
        request: None,
        response: None,
        started_at: chrono::Utc::now(),
        duration_ms: 0,
    })
}

fn log(view: &RunView<'_>, entry: Log) {
    let (run_id, flow) = (&view.run.id, &view.flow.id);
    match entry {
        Log::RunSucceeded => debug!(%run_id, %flow, "Run succeeded."),
        Log::RunEnded { status, error } => {
            info!(%run_id, %flow, %status, error = error.as_deref().unwrap_or(""), "Run ended.")
        }
        Log::RetryScheduled {
            step,
            attempt,
            wait_ms,
            error,
        } => debug!(%run_id, %step, attempt, wait_ms, %error, "Step will be retried."),
        Log::LeaseLost => warn!(%run_id, "Lease lost; another worker owns the run now."),
    }
}
