//! The runner's state machine, modelled on restate's partition state machine: a transition
//! takes the run's view, an event and the time, updates the view, and answers with the write to
//! commit and the effects to run once it is committed. Transitions read no clock, draw no random
//! numbers and touch no database, so each one is tested on its own (one file per event); the
//! driver (`runner::driver`) commits, runs the effects and feeds the next event.
//!
//! A write is committed on condition of the lease, and its answer comes back as
//! [`Event::Committed`] with what the transition planned to do next ([`AfterCommit`]): whether
//! the step may go ahead depends on whether someone asked to cancel the run meanwhile.

mod on_advance;
mod on_attempt_ended;
mod on_committed;
mod on_mapped;
#[cfg(test)]
mod testing;

use serde_json::Value;

use crate::core::status::RunStatus;
use crate::runner::view::RunView;
use crate::step::Attempt;
use crate::step::retry::Retry;
use crate::store::runs::{RunState, RunWrite};

pub use on_advance::on_advance;
pub use on_attempt_ended::on_attempt_ended;
pub use on_committed::on_committed;
pub use on_mapped::on_mapped;

/// What happened to a run in flight.
#[derive(Debug)]
pub enum Event {
    /// The run was claimed: go on from its next step.
    Advance,
    /// The mapping of the next step (a `map` step) was rendered to this output.
    Mapped(Value),
    /// The attempt of the next step ended.
    AttemptEnded(AttemptEnded),
    /// A write was committed, or refused because the lease was lost.
    Committed { then: AfterCommit, answer: Answer },
}

/// One attempt's end, with what the runner knew when it started it.
#[derive(Debug)]
pub struct AttemptEnded {
    pub in_flight: InFlight,
    pub attempt: Attempt,
    /// A jitter sample in [-1, 1] for the backoff, should the attempt be retried.
    pub jitter: f64,
}

/// A step with side effects whose attempt is under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    /// When the step was marked running (UTC millis): its row's `started_at`.
    pub started_at: i64,
    pub retry: Retry,
}

/// What the runner does once a write is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterCommit {
    /// The step is marked running: make its attempt, unless the run is to be cancelled.
    Attempt(InFlight),
    /// The run is parked: wake the runner when it is due (UTC millis).
    Park { due_at: i64 },
    /// The run ended.
    End,
}

/// The store's answer to a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Applied {
        cancel_requested: bool,
    },
    /// Another node owns the run now; nothing was written.
    LeaseLost,
}

/// A write and what to do once it is committed.
#[derive(Debug)]
pub struct Write {
    pub run: RunWrite,
    pub then: AfterCommit,
}

/// Something for the driver to do; what it learns comes back as the next event.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Render the next step's mapping ([`Event::Mapped`]). The driver renders it, as it makes
    /// attempts, so that it can time the step for the metrics without a clock in here.
    Map,
    /// Make one attempt of the next step ([`Event::AttemptEnded`]).
    Attempt(InFlight),
    /// Wake the runner at this time (UTC millis), when the parked run is due.
    WakeAt(i64),
    /// The run ended: count it and tell whoever waits for it (`?wait=`).
    RunEnded(RunStatus),
    Log(Log),
}

/// What the runner tells the log.
#[derive(Debug, Clone, PartialEq)]
pub enum Log {
    RunSucceeded,
    RunEnded {
        status: RunStatus,
        error: Option<String>,
    },
    RetryScheduled {
        step: String,
        attempt: i64,
        wait_ms: u64,
        error: String,
    },
    LeaseLost,
}

/// A transition's answer. Its effects run after its write is committed, and not at all when
/// the write is refused (the lease was lost); without a write they run at once.
#[derive(Debug, Default)]
pub struct Output {
    pub write: Option<Write>,
    pub effects: Vec<Effect>,
}

impl Output {
    pub fn effect(effect: Effect) -> Output {
        Output {
            write: None,
            effects: vec![effect],
        }
    }
}

/// An event that does not fit the run's view: a bug in the driver, not a state of the run.
#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    #[error("run `{run_id}` has no step {index}")]
    NoStep { run_id: String, index: i64 },
}

/// Applies one event to the run.
pub fn apply(view: &mut RunView<'_>, event: Event, now: i64) -> Result<Output, TransitionError> {
    match event {
        Event::Advance => Ok(on_advance(view, now)),
        Event::Mapped(output) => on_mapped(view, output, now),
        Event::AttemptEnded(ended) => on_attempt_ended(view, ended, now),
        Event::Committed { then, answer } => Ok(on_committed(view, then, answer, now)),
    }
}

/// Ends the run with `status`; `error` is redacted before it is stored or logged.
fn finish(view: &mut RunView<'_>, status: RunStatus, error: Option<String>, now: i64) -> Output {
    let error = error.map(|e| view.node.redactor.redact(&e));
    let log = match status {
        RunStatus::Succeeded => Log::RunSucceeded,
        RunStatus::Failed
        | RunStatus::Cancelled
        | RunStatus::Pending
        | RunStatus::Running
        | RunStatus::Waiting
        | RunStatus::Held => Log::RunEnded {
            status,
            error: error.clone(),
        },
    };
    let run = view.write(RunState::Finished {
        status,
        error,
        finished_at: now,
    });
    Output {
        write: Some(Write {
            run,
            then: AfterCommit::End,
        }),
        effects: vec![Effect::Log(log), Effect::RunEnded(status)],
    }
}

/// Parks the run until `wake_at`, or its deadline if sooner (then it wakes to fail).
fn park(view: &mut RunView<'_>, wake_at: i64) -> Output {
    let due_at = view.run.deadline_at.map_or(wake_at, |d| d.min(wake_at));
    let run = view.write(RunState::Waiting {
        next_step: view.next,
        wake_at,
        due_at,
    });
    Output {
        write: Some(Write {
            run,
            then: AfterCommit::Park { due_at },
        }),
        effects: Vec::new(),
    }
}

/// The error of an event about a step the run does not have.
fn no_step(view: &RunView<'_>) -> TransitionError {
    TransitionError::NoStep {
        run_id: view.run.id.clone(),
        index: view.next,
    }
}
