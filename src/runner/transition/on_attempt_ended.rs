//! `on_attempt_ended`: one attempt of a step with side effects ended, and its record joins the
//! next write. A success moves the run on (the row rides with the next durable write); a
//! retryable failure parks the run for the backoff (at least the target's `Retry-After`) while
//! the step's attempts last; a final failure, or the last attempt, fails the step, which fails
//! the run unless the step says `on_error: continue`.

use serde_json::{Value, json};

use crate::core::status::{RunStatus, StepStatus};
use crate::runner::backoff::backoff;
use crate::runner::transition::{
    AttemptEnded, Effect, Log, Output, TransitionError, finish, no_step, on_advance, park,
};
use crate::runner::view::RunView;
use crate::step::{CompiledStep, OnError, StepOutcome};
use crate::store::runs::StepWrite;

pub fn on_attempt_ended(
    view: &mut RunView<'_>,
    ended: AttemptEnded,
    now: i64,
) -> Result<Output, TransitionError> {
    let flow = view.flow.clone();
    let step = flow
        .steps
        .get(view.next as usize)
        .ok_or_else(|| no_step(view))?;
    let AttemptEnded {
        in_flight,
        attempt,
        jitter,
    } = ended;
    let (done, base) = view.attempts_so_far();
    let n = done + 1;
    // Attempts before a manual retry do not count against the fresh budget it gave.
    let tries = n - base;
    view.record_attempt(step, n, &attempt);
    let started = in_flight.started_at;
    let row = |view: &RunView<'_>, status, finished| {
        view.step_write(step, status, n, (started, finished))
    };
    Ok(match attempt.outcome {
        StepOutcome::Succeeded(output) => {
            let done = StepWrite {
                output: Some(output.to_string()),
                ..row(view, StepStatus::Succeeded, Some(now))
            };
            view.step_done(step, done, output);
            on_advance(view, now)
        }
        StepOutcome::Retry { error, after } if tries < i64::from(in_flight.retry.attempts) => {
            let retry = in_flight.retry;
            let wait = backoff(tries as u32, retry.delay, retry.max_delay, after, jitter);
            let log = Log::RetryScheduled {
                step: step.id.clone(),
                attempt: n,
                wait_ms: wait.as_millis() as u64,
                error: error.clone(),
            };
            let running = StepWrite {
                error: Some(error),
                ..row(view, StepStatus::Running, None)
            };
            view.push_step(running);
            let mut parked = park(view, now + wait.as_millis() as i64);
            parked.effects.push(Effect::Log(log));
            parked
        }
        StepOutcome::Retry { error, .. } => {
            let error = match tries {
                1 => format!("{error} (gave up after 1 attempt)"),
                tries => format!("{error} (gave up after {tries} attempts)"),
            };
            let failed = row(view, StepStatus::Failed, Some(now));
            step_failed(view, step, failed, error, None, now)
        }
        StepOutcome::Fail { error, output } => {
            let failed = row(view, StepStatus::Failed, Some(now));
            step_failed(view, step, failed, error, output, now)
        }
    })
}

/// A failed step fails the run, unless the step says `on_error: continue`: then its output is
/// `{error, response}` and the run goes on.
fn step_failed(
    view: &mut RunView<'_>,
    step: &CompiledStep,
    row: StepWrite,
    error: String,
    response: Option<Value>,
    now: i64,
) -> Output {
    match step.on_error {
        OnError::Continue => {
            let output = json!({ "error": error, "response": response });
            let row = StepWrite {
                output: Some(output.to_string()),
                error: Some(error),
                ..row
            };
            view.step_done(step, row, output);
            on_advance(view, now)
        }
        OnError::Fail => {
            let message = format!("step `{}` failed: {error}", step.id);
            view.push_step(StepWrite {
                output: response.as_ref().map(Value::to_string),
                error: Some(error),
                ..row
            });
            finish(view, RunStatus::Failed, Some(message), now)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::core::jitter::Jitter;
    use crate::runner::transition::testing::*;
    use crate::runner::transition::{AfterCommit, InFlight};
    use crate::store::runs::RunState;

    const FLOW: &str = "
triggers: [{manual: {label: Go}}]
steps:
  - {id: push, http: {url: 'https://example.com'}}
  - {id: after, map: {error: '{{steps.push.error}}'}}
";

    const CONTINUE: &str = "
triggers: [{manual: {label: Go}}]
steps:
  - {id: push, on_error: continue, http: {url: 'https://example.com'}}
  - {id: after, map: {error: '{{steps.push.error}}'}}
";

    fn end(
        view: &mut RunView<'_>,
        in_flight: InFlight,
        outcome: StepOutcome,
        jitter: f64,
    ) -> Output {
        let ended = AttemptEnded {
            in_flight,
            attempt: attempt(outcome),
            jitter,
        };
        let out = on_attempt_ended(view, ended, NOW).expect("a side-effect step");
        settle(view, out, NOW)
    }

    fn retry(after: Option<u64>) -> StepOutcome {
        StepOutcome::Retry {
            error: "HTTP 503".into(),
            after: after.map(Duration::from_secs),
        }
    }

    #[test]
    fn a_success_is_recorded_and_the_run_goes_on() {
        let mut view = view_at(FLOW, 0, vec![]);
        let ok = StepOutcome::Succeeded(json!({"status": 200}));
        let write = end(&mut view, in_flight(3), ok, 0.0)
            .write
            .expect("the end");
        assert!(matches!(
            write.run.state,
            RunState::Finished {
                status: RunStatus::Succeeded,
                ..
            }
        ));
        let push = &write.run.steps[0];
        assert_eq!((push.status, push.attempts), (StepStatus::Succeeded, 1));
        assert_eq!(
            (push.started_at, push.finished_at),
            (Some(NOW - 1_000), Some(NOW))
        );
        assert_eq!(push.output.as_deref(), Some(r#"{"status":200}"#));
        assert_eq!(write.run.steps[1].step_id, "after", "batched with the end");
        let recorded = &write.run.attempts[0];
        assert_eq!((recorded.n, recorded.node.as_str()), (1, "n1"));
        assert_eq!(
            (recorded.started_at, recorded.finished_at),
            (NOW - 1_000, NOW - 995)
        );
        assert_eq!(recorded.request.as_deref(), Some(r#"{"method":"POST"}"#));
        assert_eq!(recorded.error, None);
    }

    /// Retries wait `10s × 2^(try-1)` (±20 % by the jitter, at least `Retry-After`) while the
    /// budget lasts; a manual retry gives a fresh budget, counted from its `retry_base`.
    #[test]
    fn retries_follow_the_budget_and_the_backoff() {
        enum Then {
            Wait(i64),
            GiveUp(&'static str),
        }
        use Then::{GiveUp, Wait};
        #[rustfmt::skip]
        let cases = [
            // (name, attempts in all, made before, retry_base, Retry-After s, jitter, then)
            ("first failure", 3, 0, 0, None, 0.0, Wait(10_000)),
            ("second failure doubles", 3, 1, 0, None, 0.0, Wait(20_000)),
            ("the last attempt gives up", 3, 2, 0, None, 0.0, GiveUp("HTTP 503 (gave up after 3 attempts)")),
            ("a single attempt", 1, 0, 0, None, 0.0, GiveUp("HTTP 503 (gave up after 1 attempt)")),
            ("a manual retry starts afresh", 3, 3, 3, None, 0.0, Wait(10_000)),
            ("and has its own budget", 3, 5, 3, None, 0.0, GiveUp("HTTP 503 (gave up after 3 attempts)")),
            ("Retry-After is honoured", 3, 0, 0, Some(90), 0.0, Wait(90_000)),
            ("a shorter Retry-After is not", 3, 1, 0, Some(1), 0.0, Wait(20_000)),
            ("jitter up", 3, 1, 0, None, 1.0, Wait(24_000)),
            ("jitter down", 3, 1, 0, None, -1.0, Wait(16_000)),
        ];
        for (name, attempts, made, base, after, jitter, then) in cases {
            let mut view = view_at(FLOW, 0, vec![step_row(0, "push", made, base)]);
            let out = end(&mut view, in_flight(attempts), retry(after), jitter);
            let write = out.write.expect(name);
            let n = made + 1;
            assert_eq!(write.run.attempts[0].n, n, "{name}");
            assert_eq!(
                write.run.attempts[0].error.as_deref(),
                Some("HTTP 503"),
                "{name}"
            );
            assert_eq!(write.run.steps[0].attempts, n, "{name}");
            assert_eq!(view.attempts_so_far(), (n, base), "{name}: remembered");
            match then {
                Wait(ms) => {
                    let due_at = NOW + ms;
                    let waiting = RunState::Waiting {
                        next_step: 0,
                        wake_at: due_at,
                        due_at,
                    };
                    assert_eq!(write.run.state, waiting, "{name}");
                    assert_eq!(write.then, AfterCommit::Park { due_at }, "{name}");
                    let step = &write.run.steps[0];
                    assert_eq!(step.status, StepStatus::Running, "{name}");
                    assert_eq!(step.error.as_deref(), Some("HTTP 503"), "{name}");
                    assert!(
                        matches!(
                            &out.effects[..],
                            [Effect::Log(Log::RetryScheduled { attempt, wait_ms, .. })]
                                if *attempt == n && *wait_ms == ms as u64
                        ),
                        "{name}: {:?}",
                        out.effects
                    );
                }
                GiveUp(error) => {
                    let message = format!("step `push` failed: {error}");
                    assert!(
                        matches!(
                            &write.run.state,
                            RunState::Finished { status: RunStatus::Failed, error: Some(e), .. } if *e == message
                        ),
                        "{name}: {:?}",
                        write.run.state
                    );
                    assert_eq!(write.run.steps[0].error.as_deref(), Some(error), "{name}");
                    assert_eq!(write.run.steps[0].status, StepStatus::Failed, "{name}");
                }
            }
        }
    }

    #[test]
    fn seeded_jitter_keeps_the_wait_within_twenty_percent() {
        let jitter = Jitter::seeded(42);
        let mut waits = Vec::new();
        for _ in 0..200 {
            let mut view = view_at(FLOW, 0, vec![step_row(0, "push", 1, 0)]);
            let out = end(&mut view, in_flight(5), retry(None), jitter.next());
            let Some(RunState::Waiting { wake_at, .. }) = out.write.map(|w| w.run.state) else {
                panic!("a retry parks the run");
            };
            waits.push(wake_at - NOW);
        }
        assert!(
            waits.iter().all(|w| (16_000..=24_000).contains(w)),
            "{waits:?}"
        );
        assert!(waits.iter().any(|w| *w < 18_000) && waits.iter().any(|w| *w > 22_000));
    }

    #[test]
    fn a_retry_wait_ends_at_the_deadline_if_sooner() {
        let mut view = view_at(FLOW, 0, vec![]);
        view.run.deadline_at = Some(NOW + 4_000);
        let write = end(&mut view, in_flight(3), retry(None), 0.0)
            .write
            .expect("parked");
        let (wake_at, due_at) = (NOW + 10_000, NOW + 4_000);
        let waiting = RunState::Waiting {
            next_step: 0,
            wake_at,
            due_at,
        };
        assert_eq!(write.run.state, waiting);
        assert_eq!(write.then, AfterCommit::Park { due_at });
    }

    /// A failed step fails the run with `on_error: fail`; with `continue` its output is
    /// `{error, response}` for later steps and the run goes on.
    #[test]
    fn a_failed_step_fails_the_run_or_lets_it_go_on() {
        let not_found = || StepOutcome::Fail {
            error: "HTTP 404".into(),
            output: Some(json!({"status": 404})),
        };
        let cases = [
            (
                "fail",
                FLOW,
                not_found(),
                3,
                RunStatus::Failed,
                json!({"status": 404}),
            ),
            (
                "continue",
                CONTINUE,
                not_found(),
                3,
                RunStatus::Succeeded,
                json!({"error": "HTTP 404", "response": {"status": 404}}),
            ),
            (
                "continue after the last attempt",
                CONTINUE,
                retry(None),
                1,
                RunStatus::Succeeded,
                json!({"error": "HTTP 503 (gave up after 1 attempt)", "response": null}),
            ),
        ];
        for (name, yaml, outcome, attempts, status, output) in cases {
            let mut view = view_at(yaml, 0, vec![]);
            let out = end(&mut view, in_flight(attempts), outcome, 0.0);
            let write = out.write.expect(name);
            let RunState::Finished {
                status: ended,
                error,
                ..
            } = &write.run.state
            else {
                panic!("{name}: {:?}", write.run.state);
            };
            assert_eq!(*ended, status, "{name}");
            let push = &write.run.steps[0];
            assert_eq!(push.status, StepStatus::Failed, "{name}");
            assert_eq!(json_of(push.output.as_deref()), output, "{name}");
            assert_eq!(push.finished_at, Some(NOW), "{name}");
            if status == RunStatus::Failed {
                assert_eq!(error.as_deref(), Some("step `push` failed: HTTP 404"));
                assert_eq!(write.run.steps.len(), 1, "{name}: no step after");
            } else {
                assert_eq!(error, &None, "{name}");
                let after = json_of(write.run.steps[1].output.as_deref());
                assert_eq!(
                    after["error"], output["error"],
                    "{name}: seen by later steps"
                );
            }
        }
    }

    #[test]
    fn the_error_a_run_ends_with_is_redacted() {
        let mut view = view_at(FLOW, 0, vec![]);
        let leaky = StepOutcome::Fail {
            error: format!("token {SECRET} refused"),
            output: None,
        };
        let out = end(&mut view, in_flight(3), leaky, 0.0);
        let expected = "step `push` failed: token *** refused".to_string();
        let Some(RunState::Finished { error, .. }) = out.write.map(|w| w.run.state) else {
            panic!("the run ends");
        };
        assert_eq!(error.as_ref(), Some(&expected));
        assert!(out.effects.contains(&Effect::Log(Log::RunEnded {
            status: RunStatus::Failed,
            error: Some(expected),
        })));
    }
}
