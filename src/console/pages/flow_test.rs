//! The flow page's test panel ("test this step" for the whole flow): an example event, the input
//! (and entity) of a manual or webhook trigger, or a recent run's trigger data; a dry run shows
//! each step's output and the exact request each http step would send (secrets as `***`), and
//! "Send it for real" starts a real run of this flow and opens it. Both call the engine's
//! `test_flow`, as `POST /api/v1/flows/{id}/test` does.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::console::Console;
use crate::console::error::ConsoleError;
use crate::console::layout::html;
use crate::console::pages::flow::flow_page;
use crate::console::pages::run::step_view;
use crate::console::pages::runs::RunLine;
use crate::console::session::Visitor;
use crate::console::view::{json_field, query};
use crate::engine::test_run::{TestError, TestRequest, TestRun};
use crate::flow::model::{FlowDef, Trigger};
use crate::trigger::manual::ManualError;

/// What the panel shows: the trigger data being tried, and the last dry run's result.
pub struct TestPanel {
    /// `event`, `input` or `run`: which trigger data the test uses.
    pub mode: String,
    /// The event or the input, as JSON text.
    pub example: String,
    /// The entity of a manual action, as JSON text; asked for only when the flow takes one.
    pub entity: String,
    pub takes_entity: bool,
    pub runs: Vec<RunChoice>,
    /// Why the last test was refused.
    pub message: String,
    pub result: Option<TestOutcome>,
}

pub struct RunChoice {
    pub id: String,
    pub label: String,
    pub chosen: bool,
}

/// A dry run's run, beyond its steps (which the page shows with the run page's partial).
pub struct TestOutcome {
    pub status: String,
    pub error: String,
    pub notes: Vec<String>,
}

impl TestPanel {
    /// The panel filled in for `def`: an event of its first entity trigger, else an empty input
    /// (with an entity of the type its manual action takes).
    pub fn new(def: Option<&FlowDef>, runs: &[RunLine]) -> TestPanel {
        let triggers = def.map(|d| d.triggers.as_slice()).unwrap_or_default();
        let event = triggers.iter().find_map(|t| match t {
            Trigger::Entity(e) => Some(json!({
                "entity": e.entity,
                "action": e.actions().first().map(|a| a.as_str()).unwrap_or("create"),
                "id": "1",
                "data": {},
            })),
            _ => None,
        });
        let entity_type = triggers.iter().find_map(|t| match t {
            Trigger::Manual(m) => m.manual.entity.clone(),
            _ => None,
        });
        TestPanel {
            mode: if event.is_some() { "event" } else { "input" }.into(),
            example: pretty(&event.unwrap_or_else(|| json!({}))),
            entity: entity_type
                .as_ref()
                .map(|t| pretty(&json!({"type": t, "id": "1", "data": {}})))
                .unwrap_or_default(),
            takes_entity: entity_type.is_some(),
            runs: runs
                .iter()
                .map(|r| RunChoice {
                    id: r.id.clone(),
                    label: format!("{} · {} · {}", r.created, r.trigger, r.status),
                    chosen: false,
                })
                .collect(),
            message: String::new(),
            result: None,
        }
    }

    /// The panel as the form left it, so a second try starts from the first.
    fn keep(&mut self, form: &TestForm) {
        self.mode = form.mode.clone();
        self.example = form.example.clone().unwrap_or_default();
        if let Some(entity) = &form.entity {
            self.entity = entity.clone();
        }
        for run in &mut self.runs {
            run.chosen = form.run_id.as_deref() == Some(run.id.as_str());
        }
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

#[derive(Debug, Deserialize)]
pub struct TestForm {
    mode: String,
    example: Option<String>,
    entity: Option<String>,
    run_id: Option<String>,
    /// `send` to start a real run; anything else is a dry run.
    action: Option<String>,
}

/// Runs the test: a dry run is shown on the flow page, a real run is opened.
pub async fn test(
    State(console): State<Console>,
    Extension(visitor): Extension<Visitor>,
    Path(id): Path<String>,
    Form(form): Form<TestForm>,
) -> Result<Response, ConsoleError> {
    let outcome = match request_of(&form) {
        Ok(request) => {
            let access = crate::core::workspace::Access::local(); // MERGE: session access
            console.engine.test_flow(&access, &id, request).await
        }
        Err(message) => Err(TestError::Invalid(message)),
    };
    let (status, outcome) = match outcome {
        Ok(test) if !test.dry_run => {
            let notice = "Sent for real: this is its run.";
            let to = format!(
                "/runs/{}{}",
                test.run.run.id,
                query(&[("notice", Some(notice))])
            );
            return Ok(Redirect::to(&to).into_response());
        }
        Ok(test) => (StatusCode::OK, Ok(test)),
        Err(e) => {
            let (status, message) = refusal(e)?;
            (status, Err(message))
        }
    };
    let access = crate::core::workspace::Access::local(); // MERGE: session access
    let flow = console.engine.flow_view(&access, &id).await?;
    let mut page = flow_page(&console, &visitor, flow, None, Vec::new()).await?;
    page.test.keep(&form);
    match outcome {
        Ok(TestRun { notes, run, .. }) => {
            page.steps = run.steps.iter().map(step_view).collect();
            page.dry_run = true;
            page.test.result = Some(TestOutcome {
                status: run.run.status.as_str().to_string(),
                error: run.run.error.unwrap_or_default(),
                notes,
            });
        }
        Err(message) => page.test.message = message,
    }
    Ok(html(status, &page))
}

/// The test the form asks for; `Err` says what is wrong with it.
fn request_of(form: &TestForm) -> Result<TestRequest, String> {
    let mut request = TestRequest {
        send: form.action.as_deref() == Some("send"),
        ..TestRequest::default()
    };
    match form.mode.as_str() {
        "event" => {
            request.event = json_field("event", form.example.as_deref())?;
            if request.event.is_none() {
                return Err("Paste an example event.".into());
            }
        }
        "input" => {
            request.input =
                Some(json_field("input", form.example.as_deref())?.unwrap_or(json!({})));
            request.entity = json_field("entity", form.entity.as_deref())?;
        }
        "run" => {
            request.run_id = form.run_id.clone().filter(|r| !r.is_empty());
            if request.run_id.is_none() {
                return Err("Pick a recent run: this flow has none yet.".into());
            }
        }
        other => return Err(format!("There is no kind of test data `{other}`.")),
    }
    Ok(request)
}

/// The status and message of the page that shows a refused test; a missing flow is a 404 page
/// instead, and a failure of the server its apology page.
fn refusal(e: TestError) -> Result<(StatusCode, String), ConsoleError> {
    let status = match e {
        TestError::Engine(e) => return Err(e.into()),
        TestError::UnknownFlow(_) => return Err(ConsoleError::NotFound(format!("{e}."))),
        TestError::UnknownRun(..) => StatusCode::NOT_FOUND,
        TestError::Refused(
            ManualError::Paused(_) | ManualError::Disabled(_) | ManualError::NotApplicable(_),
        ) => StatusCode::CONFLICT,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    Ok((status, e.to_string()))
}
