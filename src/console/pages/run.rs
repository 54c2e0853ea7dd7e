//! Run: what started it, each step with its status, output and error, every attempt with its
//! request and response (and the request as a curl command to copy), and retry, replay and
//! cancel with the API's rules: a control that is not allowed is shown disabled, with the reason.

use askama::Template;
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::console::Console;
use crate::console::error::ConsoleError;
use crate::console::layout::{Layout, html};
use crate::console::session::Visitor;
use crate::console::view::{pretty, query, trigger_summary, when};
use crate::core::status::RunStatus;
use crate::engine::run_view::{AttemptOut, RunDetail, StepOut};
use crate::outbound::record::{RecordedRequest, RecordedResponse};
use crate::runner::control::Cancelled;

#[derive(Debug, Deserialize)]
pub struct NoticeQuery {
    notice: Option<String>,
}

/// A run control as a button: enabled, or disabled with the reason.
pub struct Control {
    pub name: &'static str,
    pub label: &'static str,
    pub refused: String,
}

pub struct StepView {
    pub id: String,
    pub kind: String,
    pub status: String,
    pub output: String,
    pub error: String,
    pub attempts: Vec<AttemptView>,
}

pub struct AttemptView {
    pub n: i64,
    pub node: String,
    pub started: String,
    pub duration_ms: i64,
    pub method: String,
    pub url: String,
    pub request_headers: Vec<(String, String)>,
    pub request_body: String,
    /// The response status, empty when none came.
    pub response_status: String,
    pub response_headers: Vec<(String, String)>,
    pub response_body: String,
    pub error: String,
    pub curl: String,
    /// A message a notify step sent (or would send), as JSON; empty for HTTP requests.
    pub message: String,
}

#[derive(Template)]
#[template(path = "console/run.html")]
struct RunPage {
    layout: Layout,
    id: String,
    flow: String,
    revision: i64,
    status: String,
    /// Whether the run has ended; until then the page reloads itself.
    finished_run: bool,
    waiting: String,
    trigger_summary: String,
    trigger: String,
    created: String,
    started: String,
    finished: String,
    node: String,
    error: String,
    controls: Vec<Control>,
    steps: Vec<StepView>,
    /// Always `false` here; the steps' partial is shared with the flow page's dry runs.
    dry_run: bool,
}

pub async fn page(
    State(console): State<Console>,
    Extension(visitor): Extension<Visitor>,
    Path(id): Path<String>,
    Query(q): Query<NoticeQuery>,
) -> Result<Response, ConsoleError> {
    let access = crate::core::workspace::Access::local(); // MERGE: session access
    let detail = console
        .engine
        .run_detail(&access, &id)
        .await?
        .ok_or_else(|| ConsoleError::NotFound(format!("There is no run `{id}`.")))?;
    let flow_exists = console.engine.registry().get(&detail.run.flow).is_some();
    let RunDetail { run, steps } = detail;
    let page = RunPage {
        layout: Layout::new(&visitor, "runs", format!("Run {}", run.id)).with_notice(q.notice),
        controls: controls(run.status, flow_exists),
        waiting: run
            .wake_at
            .as_deref()
            .map(|t| format!("wakes at {}", when(Some(t))))
            .filter(|_| run.status == RunStatus::Waiting)
            .unwrap_or_default(),
        trigger_summary: trigger_summary(&run.trigger),
        trigger: pretty(Some(&run.trigger)),
        created: when(run.created_at.as_deref()),
        started: when(run.started_at.as_deref()),
        finished: when(run.finished_at.as_deref()),
        node: run.node.clone().unwrap_or_default(),
        error: run.error.clone().unwrap_or_default(),
        status: run.status.as_str().to_string(),
        finished_run: run.status.is_terminal(),
        steps: steps.iter().map(step_view).collect(),
        dry_run: false,
        id: run.id,
        flow: run.flow,
        revision: run.revision,
    };
    Ok(html(StatusCode::OK, &page))
}

/// The controls of a run in `status`, with the API's rules.
fn controls(status: RunStatus, flow_exists: bool) -> Vec<Control> {
    let terminal = status.is_terminal();
    let retry = match status {
        RunStatus::Failed | RunStatus::Cancelled if !flow_exists => {
            "Its flow was deleted.".to_string()
        }
        RunStatus::Failed | RunStatus::Cancelled => String::new(),
        other => format!("Only failed or cancelled runs can be retried; this one is {other}."),
    };
    vec![
        Control {
            name: "retry",
            label: "Retry",
            refused: retry,
        },
        Control {
            name: "replay",
            label: "Replay",
            refused: if flow_exists {
                String::new()
            } else {
                "Its flow was deleted, so there is no current revision to replay on.".into()
            },
        },
        Control {
            name: "cancel",
            label: "Cancel",
            refused: if terminal {
                format!("The run has already ended ({status}).")
            } else {
                String::new()
            },
        },
    ]
}

pub(crate) fn step_view(step: &StepOut) -> StepView {
    StepView {
        id: step.id.clone(),
        kind: step.kind.clone(),
        status: step.status.as_str().to_string(),
        output: pretty(step.output.as_ref()),
        error: step.error.clone().unwrap_or_default(),
        attempts: step.attempts.iter().map(attempt_view).collect(),
    }
}

fn attempt_view(a: &AttemptOut) -> AttemptView {
    let request: Option<RecordedRequest> = a
        .request
        .clone()
        .and_then(|r| serde_json::from_value(r).ok());
    let message = match &request {
        Some(_) => String::new(),
        None => pretty(a.request.as_ref()),
    };
    let response: Option<RecordedResponse> = a
        .response
        .clone()
        .and_then(|r| serde_json::from_value(r).ok());
    AttemptView {
        n: a.n,
        node: a.node.clone(),
        started: when(a.started_at.as_deref()),
        duration_ms: a.duration_ms,
        method: request
            .as_ref()
            .map(|r| r.method.as_str().to_string())
            .unwrap_or_default(),
        url: request.as_ref().map(|r| r.url.clone()).unwrap_or_default(),
        request_headers: request
            .as_ref()
            .map(|r| r.headers.clone())
            .unwrap_or_default(),
        request_body: request.and_then(|r| r.body).unwrap_or_default(),
        response_status: response
            .as_ref()
            .map(|r| r.status.to_string())
            .unwrap_or_default(),
        response_headers: response
            .as_ref()
            .map(|r| r.headers.clone())
            .unwrap_or_default(),
        response_body: response.map(|r| r.body).unwrap_or_default(),
        error: a.error.clone().unwrap_or_default(),
        curl: a.curl.clone().unwrap_or_default(),
        message,
    }
}

/// Retry, replay or cancel, then back to the run (to the new run after a replay).
pub async fn control(
    State(console): State<Console>,
    Path((id, control)): Path<(String, String)>,
) -> Result<Response, ConsoleError> {
    let engine = &console.engine;
    let access = crate::core::workspace::Access::local(); // MERGE: session access
    let (run_id, notice) = match control.as_str() {
        "retry" => {
            engine.retry_run(&access, &id).await?;
            (
                id,
                "Retrying: the run resumes at its first step that did not succeed.",
            )
        }
        "replay" => (
            engine.replay_run(&access, &id).await?,
            "Replayed: this is the new run, on the flow's current revision.",
        ),
        "cancel" => match engine.cancel_run(&access, &id).await? {
            Cancelled::Now => (id, "Cancelled."),
            Cancelled::AfterCurrentStep => {
                (id, "Cancelling: the run stops after the step in flight.")
            }
        },
        other => {
            return Err(ConsoleError::NotFound(format!(
                "There is no run control `{other}`."
            )));
        }
    };
    let to = format!("/runs/{run_id}{}", query(&[("notice", Some(notice))]));
    Ok(Redirect::to(&to).into_response())
}
