//! `on_advance`: moving a run through its steps from the next one, until something has to be
//! durable. Skipped steps (their `if` rendered falsy) and delays that are over are recorded in
//! place and committed with the next write; a `map` step asks the driver for its mapping; a
//! `delay` parks the run; a step with side effects is committed as `running` before its attempt;
//! the end of the steps, a cancel request or a passed deadline (`settings.timeout`) ends the run.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::core::status::{RunStatus, StepStatus};
use crate::core::time::rfc3339;
use crate::runner::transition::{AfterCommit, Effect, InFlight, Output, Write, finish, park};
use crate::runner::view::RunView;
use crate::step::retry::Retry;
use crate::step::{CompiledStep, Plan};
use crate::store::runs::{RunState, StepWrite};
use crate::template::is_truthy;

/// The error of a run whose deadline passed.
pub(super) const TIMED_OUT: &str = "the run timed out (settings.timeout)";

/// Goes on from the run's next step.
pub fn on_advance(view: &mut RunView<'_>, now: i64) -> Output {
    let flow = view.flow.clone();
    loop {
        if view.run.cancel_requested {
            return finish(view, RunStatus::Cancelled, Some("cancelled".into()), now);
        }
        if view.run.deadline_at.is_some_and(|d| now >= d) {
            return finish(view, RunStatus::Failed, Some(TIMED_OUT.into()), now);
        }
        let Some(step) = flow.steps.get(view.next as usize) else {
            return finish(view, RunStatus::Succeeded, None, now);
        };
        view.context.set_now(at(now));
        if let Some(condition) = &step.condition
            && !is_truthy(&condition.render(view.context.value()))
        {
            view.record_pure(step, StepStatus::Skipped, Value::Null, now);
            continue;
        }
        match step.action.plan() {
            Plan::Map(_) => return Output::effect(Effect::Map),
            Plan::Delay(duration) => {
                if let Some(parked) = delay(view, step, duration, now) {
                    return parked;
                }
            }
            Plan::SideEffect(retry) => return start_attempt(view, step, retry, now),
        }
    }
}

/// A durable wait: the first time it stores the wake-up time and parks the run; once the time
/// has come it succeeds with `{until}` and the run goes on (`None`). The stored time wins over
/// the duration, so a restart neither restarts nor skips the wait.
fn delay(
    view: &mut RunView<'_>,
    step: &CompiledStep,
    duration: Duration,
    now: i64,
) -> Option<Output> {
    let stored_until = view
        .steps
        .get(&view.next)
        .and_then(|row| row.output.as_deref())
        .and_then(|o| serde_json::from_str::<Value>(o).ok())
        .and_then(|v| v.get("until_ms").and_then(Value::as_i64));
    let until = stored_until.unwrap_or(now + duration.as_millis() as i64);
    let shown = rfc3339(DateTime::from_timestamp_millis(until).unwrap_or_else(|| at(now)));
    if now >= until {
        view.record_pure(step, StepStatus::Succeeded, json!({ "until": shown }), now);
        return None;
    }
    let output = json!({ "until": shown, "until_ms": until });
    let row = StepWrite {
        output: Some(output.to_string()),
        ..view.step_write(step, StepStatus::Running, 0, (now, None))
    };
    view.push_step(row);
    Some(park(view, until))
}

/// Commits everything so far with the step marked running; its attempt follows the commit.
fn start_attempt(view: &mut RunView<'_>, step: &CompiledStep, retry: Retry, now: i64) -> Output {
    let (done, _) = view.attempts_so_far();
    let row = view.step_write(step, StepStatus::Running, done, (now, None));
    view.push_step(row);
    let run = view.write(RunState::Running {
        next_step: view.next,
    });
    Output {
        write: Some(Write {
            run,
            then: AfterCommit::Attempt(InFlight {
                started_at: now,
                retry,
            }),
        }),
        effects: Vec::new(),
    }
}

/// A time in millis as the templates' `now` shows it.
fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::transition::testing::*;

    const FLOW: &str = "
triggers: [{manual: {label: Go}}]
steps:
  - {id: skipped, if: '{{input.missing}}', map: {a: 1}}
  - {id: contact, map: {n: '{{input.n}}'}}
  - {id: wait, delay: 10m}
  - {id: push, http: {url: 'https://example.com/{{steps.contact.n}}', retry: {attempts: 3}}}
";

    /// Cancel requests and deadlines are looked at before every step, whatever the step.
    #[test]
    fn a_run_ends_before_its_next_step() {
        struct Case {
            name: &'static str,
            next: i64,
            cancel: bool,
            deadline: Option<i64>,
            rows: Vec<crate::store::runs::StepRow>,
            status: RunStatus,
            error: Option<&'static str>,
        }
        let cases = [
            Case {
                name: "cancel requested before the first step",
                next: 0,
                cancel: true,
                deadline: None,
                rows: vec![],
                status: RunStatus::Cancelled,
                error: Some("cancelled"),
            },
            Case {
                name: "deadline passed",
                next: 1,
                cancel: false,
                deadline: Some(NOW),
                rows: vec![],
                status: RunStatus::Failed,
                error: Some(TIMED_OUT),
            },
            Case {
                name: "deadline passed while waiting in a delay",
                next: 2,
                cancel: false,
                deadline: Some(NOW - 1),
                rows: vec![delay_row(2, NOW + 60_000)],
                status: RunStatus::Failed,
                error: Some(TIMED_OUT),
            },
            Case {
                name: "no step left",
                next: 4,
                cancel: false,
                deadline: Some(NOW + 1),
                rows: vec![],
                status: RunStatus::Succeeded,
                error: None,
            },
        ];
        for case in cases {
            let mut view = view_at(FLOW, case.next, case.rows);
            view.run.cancel_requested = case.cancel;
            view.run.deadline_at = case.deadline;
            let out = on_advance(&mut view, NOW);
            let write = out.write.as_ref().expect(case.name);
            assert_eq!(
                write.run.state,
                RunState::Finished {
                    status: case.status,
                    error: case.error.map(str::to_string),
                    finished_at: NOW,
                },
                "{}",
                case.name
            );
            assert!(write.run.steps.is_empty(), "{}", case.name);
            assert_eq!(write.then, AfterCommit::End, "{}", case.name);
            assert_eq!(
                out.effects.last(),
                Some(&Effect::RunEnded(case.status)),
                "{}",
                case.name
            );
        }
    }

    /// Skipped and map steps cost no commit of their own: they ride with the delay's write.
    #[test]
    fn pure_steps_are_batched_into_the_next_write() {
        let mut view = view_at(FLOW, 0, vec![]);
        let first = on_advance(&mut view, NOW);
        assert!(first.write.is_none());
        assert_eq!(
            first.effects,
            [Effect::Map],
            "the driver renders the mapping"
        );

        let out = settle(&mut view, first, NOW);
        let write = out.write.expect("the delay parks the run");
        assert_eq!(
            rows(&write.run),
            [
                (0, "skipped", StepStatus::Skipped, Some("null")),
                (1, "contact", StepStatus::Succeeded, Some(r#"{"n":7}"#)),
                (
                    2,
                    "wait",
                    StepStatus::Running,
                    Some(r#"{"until":"2023-11-14T22:23:20.000Z","until_ms":1700000600000}"#)
                ),
            ]
        );
        assert_eq!(view.context.value()["steps"]["contact"]["n"], 7);
        assert_eq!(view.next, 2);
    }

    #[test]
    fn a_delay_parks_the_run_until_its_time() {
        let cases = [
            ("a fresh delay", vec![], None, NOW + 600_000, NOW + 600_000),
            (
                "the stored time is kept after a restart",
                vec![delay_row(2, NOW + 5_000)],
                None,
                NOW + 5_000,
                NOW + 5_000,
            ),
            (
                "a sooner deadline wakes the run to fail it",
                vec![],
                Some(NOW + 1_000),
                NOW + 600_000,
                NOW + 1_000,
            ),
        ];
        for (name, rows, deadline, wake_at, due_at) in cases {
            let mut view = view_at(FLOW, 2, rows);
            view.run.deadline_at = deadline;
            let out = on_advance(&mut view, NOW);
            let write = out.write.expect(name);
            assert_eq!(
                write.run.state,
                RunState::Waiting {
                    next_step: 2,
                    wake_at,
                    due_at
                },
                "{name}"
            );
            assert_eq!(write.then, AfterCommit::Park { due_at }, "{name}");
            let output: Value =
                serde_json::from_str(write.run.steps[0].output.as_deref().unwrap()).expect("JSON");
            assert_eq!(output["until_ms"], wake_at, "{name}");
            assert_eq!(output["until"], rfc3339_ms(wake_at), "{name}");
            assert!(
                out.effects.is_empty(),
                "{name}: effects wait for the answer"
            );
        }
    }

    /// Once the time has come the delay succeeds with `{until}` and the next step starts.
    #[test]
    fn a_delay_that_is_due_succeeds_and_the_run_goes_on() {
        let mut view = view_at(FLOW, 2, vec![delay_row(2, NOW - 1)]);
        view.context.set_step_output("contact", json!({"n": 7}));
        let out = on_advance(&mut view, NOW);
        let write = out.write.expect("the http step is committed as running");
        assert_eq!(
            rows(&write.run),
            [
                (
                    2,
                    "wait",
                    StepStatus::Succeeded,
                    Some(r#"{"until":"2023-11-14T22:13:19.999Z"}"#)
                ),
                (3, "push", StepStatus::Running, None),
            ]
        );
        assert_eq!(write.run.state, RunState::Running { next_step: 3 });
    }

    /// A step with side effects is committed as running, with the attempts it already had,
    /// before the driver may make its attempt.
    #[test]
    fn a_side_effect_step_is_committed_as_running_first() {
        let mut view = view_at(FLOW, 3, vec![step_row(3, "push", 2, 0)]);
        let out = on_advance(&mut view, NOW);
        let write = out.write.expect("running");
        assert_eq!(write.run.state, RunState::Running { next_step: 3 });
        assert_eq!(write.run.steps[0].attempts, 2);
        assert_eq!(write.run.steps[0].started_at, Some(NOW));
        assert_eq!(write.run.steps[0].finished_at, None);
        let AfterCommit::Attempt(in_flight) = write.then else {
            panic!("{:?}", write.then);
        };
        assert_eq!((in_flight.started_at, in_flight.retry.attempts), (NOW, 3));
        assert!(out.effects.is_empty(), "no attempt before the answer");
    }
}
