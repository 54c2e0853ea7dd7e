//! Flow: its YAML; for API flows an editor that validates as you type (the script posts to
//! `/validate`, the same check as `POST /api/v1/flows/validate`) and shows each problem at its
//! line and column; saving makes a revision. File flows are read-only here: they show their
//! path. Below: revisions, manual actions, and links to its runs and usage.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;

use crate::console::Console;
use crate::console::error::ConsoleError;
use crate::console::layout::{Layout, html};
use crate::console::session::Visitor;
use crate::console::view::{query, when_millis};
use crate::core::diagnostic::Diagnostic;
use crate::engine::flows::FlowError;
use crate::store::flows::{FlowRow, FlowSource};

#[derive(Debug, Deserialize)]
pub struct FlowQuery {
    notice: Option<String>,
}

/// One problem of a flow, where it is.
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub path: String,
    pub message: String,
    pub warning: bool,
}

impl Problem {
    fn of(d: &Diagnostic) -> Problem {
        Problem {
            line: d.line,
            column: d.column,
            path: d.path.to_string(),
            message: d.message.clone(),
            warning: !d.is_error(),
        }
    }
}

pub struct RevisionLine {
    pub revision: i64,
    pub created: String,
    pub sha256: String,
}

pub struct ActionLine {
    pub label: String,
    pub entity: String,
}

#[derive(Template)]
#[template(path = "console/flow.html")]
struct FlowPage {
    layout: Layout,
    id: String,
    name: String,
    /// Where a file flow lives; empty for API flows, which are edited here.
    path: String,
    revision: i64,
    state: String,
    load_error: String,
    yaml: String,
    problems: Vec<Problem>,
    revisions: Vec<RevisionLine>,
    actions: Vec<ActionLine>,
}

#[derive(Template)]
#[template(path = "console/flow_problems.html")]
struct ProblemList {
    problems: Vec<Problem>,
}

pub async fn page(
    State(console): State<Console>,
    Extension(visitor): Extension<Visitor>,
    Path(id): Path<String>,
    Query(q): Query<FlowQuery>,
) -> Result<Response, ConsoleError> {
    let flow = console.engine.flow(&id).await?;
    let page = flow_page(&console, &visitor, flow, None, Vec::new()).await?;
    let page = FlowPage {
        layout: page.layout.with_notice(q.notice),
        ..page
    };
    Ok(html(StatusCode::OK, &page))
}

/// The page of `flow`; `edited` is YAML the user sent that was not saved, shown with its
/// problems instead of the stored YAML.
async fn flow_page(
    console: &Console,
    visitor: &Visitor,
    flow: FlowRow,
    edited: Option<String>,
    problems: Vec<Problem>,
) -> Result<FlowPage, ConsoleError> {
    let revisions = console.engine.flow_revisions(&flow.id).await?;
    let actions = console
        .engine
        .every_action()
        .into_iter()
        .filter(|a| a.flow == flow.id)
        .map(|a| ActionLine {
            label: a.label,
            entity: a.entity,
        })
        .collect();
    let state = match (flow.paused, flow.enabled) {
        (true, _) => "paused",
        (false, false) => "disabled",
        (false, true) => "active",
    };
    Ok(FlowPage {
        layout: Layout::new(visitor, "flows", flow.name.clone()),
        path: match flow.source {
            FlowSource::File => flow.path.clone().unwrap_or_else(|| "a flow file".into()),
            FlowSource::Api => String::new(),
        },
        revision: flow.revision,
        state: state.to_string(),
        load_error: flow.load_error.clone().unwrap_or_default(),
        yaml: edited.unwrap_or(flow.yaml),
        problems,
        revisions: revisions
            .iter()
            .map(|r| RevisionLine {
                revision: r.revision,
                created: when_millis(Some(r.created_at)),
                sha256: r.sha256.chars().take(12).collect(),
            })
            .collect(),
        actions,
        id: flow.id,
        name: flow.name,
    })
}

#[derive(Deserialize)]
pub struct SaveForm {
    yaml: String,
}

/// Saves an API flow as a new revision; a flow with problems is shown again with them.
pub async fn save(
    State(console): State<Console>,
    Extension(visitor): Extension<Visitor>,
    Path(id): Path<String>,
    Form(form): Form<SaveForm>,
) -> Result<Response, ConsoleError> {
    match console.engine.replace_flow(&id, &form.yaml).await {
        Ok(flow) => {
            let notice = format!("Saved: revision {}.", flow.summary.revision);
            let to = format!("/flows/{id}{}", query(&[("notice", Some(&notice))]));
            Ok(Redirect::to(&to).into_response())
        }
        Err(FlowError::Invalid(diagnostics)) => {
            let flow = console.engine.flow(&id).await?;
            let problems = diagnostics.iter().map(Problem::of).collect();
            let page = flow_page(&console, &visitor, flow, Some(form.yaml), problems).await?;
            let page = FlowPage {
                layout: page
                    .layout
                    .with_notice(Some("Not saved: the flow has problems.".into())),
                ..page
            };
            Ok(html(StatusCode::UNPROCESSABLE_ENTITY, &page))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct ValidateForm {
    /// The flow's id when it exists already (its webhook paths are its own).
    id: Option<String>,
    yaml: String,
}

/// The problems of a flow being edited, as a list for the editor.
pub async fn validate(
    State(console): State<Console>,
    Form(form): Form<ValidateForm>,
) -> Result<Response, ConsoleError> {
    let id = form.id.as_deref().filter(|i| !i.is_empty());
    let problems = match console.engine.check_flow(&form.yaml, id) {
        Ok(checked) => checked.warnings.iter().map(Problem::of).collect(),
        Err(FlowError::Invalid(errors)) => errors.iter().map(Problem::of).collect(),
        Err(e) => return Err(e.into()),
    };
    Ok(html(StatusCode::OK, &ProblemList { problems }))
}
