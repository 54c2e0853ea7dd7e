//! `on_committed`: what the store answered to a write decides what follows it. A node that lost
//! its lease stops at once and writes nothing more (another node owns the run). Otherwise the
//! answer says whether someone asked to cancel the run: a step marked running is then not
//! attempted and the run is cancelled; a parked run was cancelled by the store in the same
//! transaction; a run that ended stays as it ended.

use crate::core::status::RunStatus;
use crate::runner::transition::{AfterCommit, Answer, Effect, Log, Output, finish};
use crate::runner::view::RunView;

pub fn on_committed(view: &mut RunView<'_>, then: AfterCommit, answer: Answer, now: i64) -> Output {
    match answer {
        Answer::LeaseLost => Output::effect(Effect::Log(Log::LeaseLost)),
        Answer::Applied { cancel_requested } => {
            view.run.cancel_requested |= cancel_requested;
            let cancel = view.run.cancel_requested;
            match then {
                AfterCommit::Attempt(_) if cancel => {
                    finish(view, RunStatus::Cancelled, Some("cancelled".into()), now)
                }
                AfterCommit::Attempt(in_flight) => Output::effect(Effect::Attempt(in_flight)),
                AfterCommit::Park { .. } if cancel => {
                    Output::effect(Effect::RunEnded(RunStatus::Cancelled))
                }
                AfterCommit::Park { due_at } => Output::effect(Effect::WakeAt(due_at)),
                AfterCommit::End => Output::default(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::runner::transition::testing::*;
    use crate::runner::transition::{AttemptEnded, on_advance, on_attempt_ended};
    use crate::step::StepOutcome;
    use crate::store::runs::RunState;

    const FLOW: &str = "
triggers: [{manual: {label: Go}}]
steps:
  - {id: one, http: {url: 'https://example.com/1'}}
  - {id: two, http: {url: 'https://example.com/2'}}
";

    #[test]
    fn the_answer_decides_what_follows_a_write() {
        let attempt = AfterCommit::Attempt(in_flight(3));
        let park = AfterCommit::Park { due_at: NOW + 10 };
        let applied = |cancel_requested| Answer::Applied { cancel_requested };
        let cases = [
            (
                "go ahead",
                attempt,
                applied(false),
                vec![Effect::Attempt(in_flight(3))],
            ),
            (
                "parked",
                park,
                applied(false),
                vec![Effect::WakeAt(NOW + 10)],
            ),
            (
                "cancelled while parking: the store ended it",
                park,
                applied(true),
                vec![Effect::RunEnded(RunStatus::Cancelled)],
            ),
            ("ended", AfterCommit::End, applied(false), vec![]),
            (
                "ended before the cancel",
                AfterCommit::End,
                applied(true),
                vec![],
            ),
            (
                "lease lost before an attempt",
                attempt,
                Answer::LeaseLost,
                vec![Effect::Log(Log::LeaseLost)],
            ),
            (
                "lease lost when parking",
                park,
                Answer::LeaseLost,
                vec![Effect::Log(Log::LeaseLost)],
            ),
            (
                "lease lost at the end",
                AfterCommit::End,
                Answer::LeaseLost,
                vec![Effect::Log(Log::LeaseLost)],
            ),
        ];
        for (name, then, answer, effects) in cases {
            let mut view = view_at(FLOW, 0, vec![]);
            let out = on_committed(&mut view, then, answer, NOW);
            assert!(out.write.is_none(), "{name}: nothing more to write");
            assert_eq!(out.effects, effects, "{name}");
        }
    }

    /// Cancelled while the step before ran: the next step is committed as running, the answer
    /// tells of the cancel, and the run is cancelled instead of attempting it.
    #[test]
    fn a_cancel_requested_during_a_step_stops_the_run_before_the_next() {
        let mut view = view_at(FLOW, 0, vec![]);
        let ended = AttemptEnded {
            in_flight: in_flight(3),
            attempt: attempt(StepOutcome::Succeeded(json!({"status": 200}))),
            jitter: 0.0,
        };
        let out = on_attempt_ended(&mut view, ended, NOW).expect("a side-effect step");
        let write = out.write.expect("the second step is committed as running");
        assert_eq!(write.run.state, RunState::Running { next_step: 1 });
        assert_eq!(
            write.run.steps.len(),
            2,
            "the first step's success rides along"
        );

        let answer = Answer::Applied {
            cancel_requested: true,
        };
        let out = on_committed(&mut view, write.then, answer, NOW + 1);
        let write = out.write.expect("the run is cancelled");
        assert_eq!(
            write.run.state,
            RunState::Finished {
                status: RunStatus::Cancelled,
                error: Some("cancelled".into()),
                finished_at: NOW + 1,
            }
        );
        assert!(write.run.steps.is_empty() && write.run.attempts.is_empty());
        assert_eq!(write.then, AfterCommit::End);
        assert_eq!(
            out.effects,
            [
                Effect::Log(Log::RunEnded {
                    status: RunStatus::Cancelled,
                    error: Some("cancelled".into()),
                }),
                Effect::RunEnded(RunStatus::Cancelled),
            ]
        );
        assert!(view.run.cancel_requested, "remembered");
        let again = on_advance(&mut view, NOW + 2)
            .write
            .expect("still cancelled");
        assert!(matches!(
            again.run.state,
            RunState::Finished {
                status: RunStatus::Cancelled,
                ..
            }
        ));
    }
}
