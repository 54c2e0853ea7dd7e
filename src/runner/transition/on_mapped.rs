//! `on_mapped`: a `map` step's mapping was rendered. The step succeeds in place, its output
//! joins the context for later templates, and the run goes on; the row is committed with the
//! next write, so a map step costs no round trip of its own.

use serde_json::Value;

use crate::core::status::StepStatus;
use crate::runner::transition::{Output, TransitionError, no_step, on_advance};
use crate::runner::view::RunView;

pub fn on_mapped(
    view: &mut RunView<'_>,
    output: Value,
    now: i64,
) -> Result<Output, TransitionError> {
    let flow = view.flow.clone();
    let step = flow
        .steps
        .get(view.next as usize)
        .ok_or_else(|| no_step(view))?;
    view.record_pure(step, StepStatus::Succeeded, output, now);
    Ok(on_advance(view, now))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::core::status::RunStatus;
    use crate::runner::transition::testing::*;
    use crate::runner::transition::{AfterCommit, Effect};
    use crate::store::runs::RunState;

    const FLOW: &str = "
triggers: [{manual: {label: Go}}]
steps:
  - {id: contact, map: {n: '{{input.n}}'}}
  - {id: big, if: '{{steps.contact.n}}', map: {double: '{{steps.contact.n}}{{steps.contact.n}}'}}
";

    /// Each output is seen by the templates after it, and both rows ride with the end.
    #[test]
    fn a_mapped_step_succeeds_and_the_run_goes_on() {
        let mut view = view_at(FLOW, 0, vec![]);
        let out = on_mapped(&mut view, json!({"n": 7}), NOW).expect("a map step");
        assert_eq!(out.effects, [Effect::Map], "the `if` saw the first output");
        assert_eq!(view.render_map(), Some(json!({"double": "77"})));

        let out = settle(&mut view, out, NOW);
        let write = out.write.expect("the end");
        assert_eq!(
            write.run.state,
            RunState::Finished {
                status: RunStatus::Succeeded,
                error: None,
                finished_at: NOW
            }
        );
        assert_eq!(write.then, AfterCommit::End);
        assert_eq!(
            rows(&write.run),
            [
                (0, "contact", StepStatus::Succeeded, Some(r#"{"n":7}"#)),
                (1, "big", StepStatus::Succeeded, Some(r#"{"double":"77"}"#)),
            ]
        );
        assert_eq!(write.run.steps[0].attempts, 0);
        assert_eq!(write.run.steps[0].started_at, Some(NOW));
        assert_eq!(write.run.steps[0].finished_at, Some(NOW));
    }

    #[test]
    fn an_output_for_a_step_the_run_does_not_have_is_refused() {
        let mut view = view_at(FLOW, 2, vec![]);
        let refused = on_mapped(&mut view, json!(1), NOW);
        assert!(matches!(
            refused,
            Err(TransitionError::NoStep { index: 2, .. })
        ));
    }
}
