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
use crate::console::diff::{DiffLine, diff};
use crate::console::error::ConsoleError;
use crate::console::layout::{Layout, html};
use crate::console::pages::flow_test::TestPanel;
use crate::console::pages::run::StepView;
use crate::console::pages::runs::RunLine;
use crate::console::session::Visitor;
use crate::console::view::{query, when_millis};
use crate::core::diagnostic::Diagnostic;
use crate::engine::flows::{FlowError, FlowView};
use crate::store::flows::FlowSource;
use crate::store::run_log::RunFilter;

/// Runs shown on a flow's page; the run log has the rest.
const RECENT_RUNS: u64 = 10;

#[derive(Debug, Deserialize)]
pub struct FlowQuery {
    notice: Option<String>,
    /// Two revisions to compare.
    from: Option<i64>,
    to: Option<i64>,
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
    /// Chosen in the compare form: by default the last change (the one before → the current).
    pub from_checked: bool,
    pub to_checked: bool,
}

pub struct ActionLine {
    pub label: String,
    pub entity: String,
}

#[derive(Template)]
#[template(path = "console/flow.html")]
pub(super) struct FlowPage {
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
    /// Its latest runs (the run log's rows).
    rows: Vec<RunLine>,
    /// The revisions compared, and their diff (empty when none is asked for).
    compared: Option<(i64, i64)>,
    diff: Vec<DiffLine>,
    /// Why no diff is shown although one was asked for.
    diff_problem: String,
    pub(super) test: TestPanel,
    /// The steps of the dry run just made (for the steps' partial); empty before one.
    pub(super) steps: Vec<StepView>,
    pub(super) dry_run: bool,
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
    let access = crate::core::workspace::Access::local(); // MERGE: session access
    let flow = console.engine.flow_view(&access, &id).await?;
    let mut page = flow_page(&console, &visitor, flow, None, Vec::new()).await?;
    page.layout = page.layout.with_notice(q.notice);
    if let (Some(from), Some(to)) = (q.from, q.to) {
        let old = console.engine.flow_revision(&access, &id, from).await?;
        let new = console.engine.flow_revision(&access, &id, to).await?;
        page.compared = Some((from, to));
        for r in &mut page.revisions {
            (r.from_checked, r.to_checked) = (r.revision == from, r.revision == to);
        }
        match diff(&old.yaml, &new.yaml) {
            Some(lines) => page.diff = lines,
            None => page.diff_problem = "These revisions are too long to compare here.".into(),
        }
    }
    Ok(html(StatusCode::OK, &page))
}

/// The page of `flow`; `edited` is YAML the user sent that was not saved, shown with its
/// problems instead of the stored YAML.
pub(super) async fn flow_page(
    console: &Console,
    visitor: &Visitor,
    flow: FlowView,
    edited: Option<String>,
    problems: Vec<Problem>,
) -> Result<FlowPage, ConsoleError> {
    let FlowView {
        summary: flow,
        yaml,
        ..
    } = flow;
    let access = crate::core::workspace::Access::local(); // MERGE: session access
    let revisions = console.engine.flow_revisions(&access, &flow.id).await?;
    let recent = RunFilter {
        flow: Some(flow.id.clone()),
        ..RunFilter::default()
    };
    let rows: Vec<RunLine> = console
        .engine
        .list_runs(&access, &recent, RECENT_RUNS)
        .await?
        .iter()
        .map(RunLine::of)
        .collect();
    let registry = console.engine.registry();
    let test = TestPanel::new(registry.get(&flow.id).map(|e| &e.flow.def), &rows);
    let actions = console
        .engine
        .every_action(&access)
        .into_iter()
        .filter(|a| a.flow == flow.id)
        .map(|a| ActionLine {
            label: a.label,
            entity: a.entity,
        })
        .collect();
    let state = match (&flow.paused_at, flow.enabled) {
        (Some(at), _) => format!(
            "paused since {}{}",
            at.format("%Y-%m-%d %H:%M UTC"),
            flow.pause_detail
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        ),
        (None, false) => "disabled".into(),
        (None, true) => "active".into(),
    };
    Ok(FlowPage {
        layout: Layout::new(visitor, "flows", flow.name.clone()),
        path: match flow.source {
            FlowSource::File => flow.path.clone().unwrap_or_else(|| "a flow file".into()),
            FlowSource::Api => String::new(),
        },
        revision: flow.revision,
        state,
        load_error: flow.load_error.clone().unwrap_or_default(),
        yaml: edited.unwrap_or(yaml),
        problems,
        revisions: revisions
            .iter()
            .enumerate()
            .map(|(i, r)| RevisionLine {
                revision: r.revision,
                created: when_millis(Some(r.created_at)),
                sha256: r.sha256.chars().take(12).collect(),
                from_checked: i == 1,
                to_checked: i == 0,
            })
            .collect(),
        actions,
        rows,
        compared: None,
        diff: Vec::new(),
        diff_problem: String::new(),
        test,
        steps: Vec::new(),
        dry_run: false,
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
    let access = crate::core::workspace::Access::local(); // MERGE: session access
    match console.engine.replace_flow(&access, &id, &form.yaml).await {
        Ok(flow) => {
            let notice = format!("Saved: revision {}.", flow.summary.revision);
            let to = format!("/flows/{id}{}", query(&[("notice", Some(&notice))]));
            Ok(Redirect::to(&to).into_response())
        }
        Err(FlowError::Invalid(diagnostics)) => {
            let flow = console.engine.flow_view(&access, &id).await?;
            let problems = diagnostics.iter().map(Problem::of).collect();
            let mut page = flow_page(&console, &visitor, flow, Some(form.yaml), problems).await?;
            page.layout = page
                .layout
                .with_notice(Some("Not saved: the flow has problems.".into()));
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
    let access = crate::core::workspace::Access::local(); // MERGE: session access
    let problems = match console.engine.check_flow(&access, &form.yaml, id) {
        Ok(checked) => checked.warnings.iter().map(Problem::of).collect(),
        Err(FlowError::Invalid(errors)) => errors.iter().map(Problem::of).collect(),
        Err(e) => return Err(e.into()),
    };
    Ok(html(StatusCode::OK, &ProblemList { problems }))
}

#[derive(Deserialize)]
pub struct RestoreForm {
    revision: i64,
}

/// Makes an old revision of an API flow current again, as a new revision.
pub async fn restore(
    State(console): State<Console>,
    Path(id): Path<String>,
    Form(form): Form<RestoreForm>,
) -> Result<Response, ConsoleError> {
    let access = crate::core::workspace::Access::local(); // MERGE: session access
    let flow = console
        .engine
        .restore_flow_revision(&access, &id, form.revision)
        .await?;
    let notice = format!(
        "Revision {} restored as revision {}.",
        form.revision, flow.summary.revision
    );
    let to = format!("/flows/{id}{}", query(&[("notice", Some(&notice))]));
    Ok(Redirect::to(&to).into_response())
}
