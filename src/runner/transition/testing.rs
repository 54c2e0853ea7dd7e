//! Fixtures for the transitions' tests, in the manner of restate's `TestEnv`: flows compiled
//! from YAML the way the engine compiles them, views of claimed runs, attempts, and a stand-in
//! for the driver that renders mappings, so a test applies events and asserts on the returned
//! write and effects, with no process and no database.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use chrono::DateTime;
use serde_json::{Value, json};

use crate::core::status::StepStatus;
use crate::core::trigger_data::TriggerData;
use crate::flow::compiled::CompiledFlow;
use crate::flow::validate::{Options, validate_source};
use crate::outbound::record::Redactor;
use crate::runner::transition::{Effect, InFlight, Output, on_mapped};
use crate::runner::view::{Node, RunView, new_context};
use crate::secrets::Secrets;
use crate::step::retry::Retry;
use crate::step::{Attempt, StepOutcome};
use crate::store::runs::{ClaimedRun, RunWrite, StepRow};

pub use crate::core::time::rfc3339_ms;

/// The time every test runs at: 2023-11-14T22:13:20Z.
pub const NOW: i64 = 1_700_000_000_000;

/// The one secret the tests' runs know; errors that show it are masked.
pub const SECRET: &str = "s3cret";

static REDACTOR: LazyLock<Redactor> = LazyLock::new(|| Redactor::new([SECRET]));

/// A flow compiled from YAML, as the engine compiles a validated flow.
pub fn flow(yaml: &str) -> Arc<CompiledFlow> {
    let report = validate_source(yaml, Some("f"), &Options::default());
    let valid = report
        .flow
        .unwrap_or_else(|| panic!("invalid test flow: {:?}", report.diagnostics));
    let compiled = CompiledFlow::compile(&valid.id, &valid.name, 1, valid.def);
    Arc::new(compiled.expect("a valid flow compiles"))
}

/// A run of `yaml` claimed at step `next` with these step rows, started with input `{n: 7}`.
pub fn view_at(yaml: &str, next: i64, rows: Vec<StepRow>) -> RunView<'static> {
    let flow = flow(yaml);
    let run = ClaimedRun {
        id: "r1".into(),
        flow_id: flow.id.clone(),
        revision: flow.revision,
        trigger: String::new(),
        next_step: next,
        attempt: 1,
        epoch: 3,
        cancel_requested: false,
        deadline_at: None,
        started_at: NOW,
        created_at: NOW,
        resumed: next > 0,
    };
    let trigger = TriggerData::Manual {
        input: json!({"n": 7}),
        entity: None,
    };
    let start = DateTime::from_timestamp_millis(NOW).unwrap_or_default();
    let context = new_context(&run, &flow, &trigger, &Secrets::default(), start);
    let node = Node {
        id: "n1",
        redactor: &REDACTOR,
    };
    RunView::new(run, flow.clone(), context, rows, node)
}

/// A stored step row with `attempts` made, `base` of them before a manual retry.
pub fn step_row(index: i64, id: &str, attempts: i64, base: i64) -> StepRow {
    StepRow {
        run_id: "r1".into(),
        step_index: index,
        step_id: id.into(),
        status: StepStatus::Running,
        output: None,
        attempts,
        retry_base: base,
    }
}

/// The stored row of a delay step waiting until `until`.
pub fn delay_row(index: i64, until: i64) -> StepRow {
    StepRow {
        output: Some(json!({"until": rfc3339_ms(until), "until_ms": until}).to_string()),
        ..step_row(index, "wait", 0, 0)
    }
}

/// An attempt that ended with `outcome`, 5 ms after it started a second before [`NOW`].
pub fn attempt(outcome: StepOutcome) -> Attempt {
    Attempt {
        outcome,
        request: Some(json!({"method": "POST"})),
        response: None,
        started_at: DateTime::from_timestamp_millis(NOW - 1_000).unwrap_or_default(),
        duration_ms: 5,
    }
}

/// A step marked running a second before [`NOW`], with `attempts` in all and a 10 s backoff.
pub fn in_flight(attempts: u32) -> InFlight {
    InFlight {
        started_at: NOW - 1_000,
        retry: Retry {
            attempts,
            delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(3600),
        },
    }
}

/// Renders mappings the way the driver does until the run needs something else.
pub fn settle(view: &mut RunView<'_>, mut out: Output, now: i64) -> Output {
    while out.write.is_none() && out.effects == [Effect::Map] {
        let rendered = view.render_map().expect("a map step");
        out = on_mapped(view, rendered, now).expect("a map step");
    }
    out
}

/// `(index, id, status, output)` of each step row of a write.
pub fn rows(write: &RunWrite) -> Vec<(i64, &str, StepStatus, Option<&str>)> {
    write
        .steps
        .iter()
        .map(|s| {
            (
                s.step_index,
                s.step_id.as_str(),
                s.status,
                s.output.as_deref(),
            )
        })
        .collect()
}

/// A stored output read back as JSON.
pub fn json_of(text: Option<&str>) -> Value {
    serde_json::from_str(text.expect("an output")).expect("JSON")
}
