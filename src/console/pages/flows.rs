//! Flows: the grid, one row per flow, with pause, resume and delete (a delete asks first and
//! says what happens to runs in flight).

use std::path::Path as FilePath;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::console::Console;
use crate::console::error::ConsoleError;
use crate::console::layout::{Layout, html};
use crate::console::session::Visitor;
use crate::console::view::query;
use crate::engine::flows::{FlowFilter, FlowSummary};
use crate::store::flows::{FlowSource, PauseReason};

#[derive(Debug, Deserialize)]
pub struct FlowsQuery {
    /// Present: deleted flows are listed too.
    deleted: Option<String>,
    notice: Option<String>,
}

/// One trigger of a flow: its kind, a line, its filters.
pub struct TriggerLine {
    pub kind: String,
    pub summary: String,
    pub filters: String,
}

/// One flow as a row of the grid.
pub struct FlowLine {
    pub id: String,
    pub name: String,
    pub description: String,
    /// The file's name for file flows (the whole path in `path`), `API` for API flows.
    pub source: String,
    pub path: String,
    pub triggers: Vec<TriggerLine>,
    pub targets: Vec<String>,
    /// `active`, `paused`, `disabled` or `deleted`.
    pub state: String,
    /// Why and since when it is paused or deleted; empty when active.
    pub state_note: String,
    pub created: String,
    pub last_run: String,
    pub runs_24h: u64,
    pub failed_24h: u64,
    pub paused: bool,
    pub deleted: bool,
    pub is_file: bool,
}

impl FlowLine {
    fn of(flow: &FlowSummary) -> FlowLine {
        let date = |t: Option<DateTime<Utc>>| t.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string());
        let (state, state_note) = match (flow.deleted_at, flow.paused_at, flow.enabled) {
            (Some(at), _, _) => (
                "deleted",
                format!("deleted {}", date(Some(at)).unwrap_or_default()),
            ),
            (None, Some(at), _) => {
                let why = match flow.pause_reason {
                    Some(PauseReason::AutoPaused) => "auto-paused",
                    _ => "paused",
                };
                let detail = flow
                    .pause_detail
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default();
                (
                    "paused",
                    format!("{why} {}{detail}", date(Some(at)).unwrap_or_default()),
                )
            }
            (None, None, false) => ("disabled", "enabled: false".to_string()),
            (None, None, true) => ("active", String::new()),
        };
        let path = flow.path.clone().unwrap_or_default();
        FlowLine {
            id: flow.id.clone(),
            name: flow.name.clone(),
            description: flow.description.clone().unwrap_or_default(),
            source: match flow.source {
                FlowSource::File => FilePath::new(&path)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "file".into()),
                FlowSource::Api => "API".into(),
            },
            path,
            triggers: flow
                .triggers
                .iter()
                .map(|t| TriggerLine {
                    kind: serde_json::to_value(t.kind)
                        .ok()
                        .and_then(|k| k.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    summary: t.summary.clone(),
                    filters: t.filters.join(" · "),
                })
                .collect(),
            targets: flow.targets.clone(),
            state: state.into(),
            state_note,
            created: date(Some(flow.created_at)).unwrap_or_default(),
            last_run: date(flow.last_run_at).unwrap_or_else(|| "never".into()),
            runs_24h: flow.runs_24h,
            failed_24h: flow.failed_24h,
            paused: flow.paused_at.is_some(),
            deleted: flow.deleted_at.is_some(),
            is_file: flow.source == FlowSource::File,
        }
    }
}

#[derive(Template)]
#[template(path = "console/flows.html")]
struct FlowsPage {
    layout: Layout,
    show_deleted: bool,
    flows: Vec<FlowLine>,
}

pub async fn page(
    State(console): State<Console>,
    Extension(visitor): Extension<Visitor>,
    Query(q): Query<FlowsQuery>,
) -> Result<Response, ConsoleError> {
    let show_deleted = q.deleted.is_some();
    let access = crate::core::workspace::Access::local(); // MERGE: session access
    let flows = console
        .engine
        .flow_summaries(
            &access,
            FlowFilter {
                include_deleted: show_deleted,
            },
        )
        .await?;
    let page = FlowsPage {
        layout: Layout::new(&visitor, "flows", "Flows").with_notice(q.notice),
        show_deleted,
        flows: flows.iter().map(FlowLine::of).collect(),
    };
    Ok(html(StatusCode::OK, &page))
}

pub async fn pause(
    State(console): State<Console>,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let access = crate::core::workspace::Access::local(); // MERGE: session access
    console.engine.pause_flow(&access, &id).await?;
    back(&format!(
        "Paused {id}: nothing is sent until you resume it; new runs wait as held."
    ))
}

#[derive(Debug, Deserialize)]
pub struct ResumeForm {
    /// Present: the runs held while the flow was paused are cancelled instead of released.
    discard_held: Option<String>,
}

pub async fn resume(
    State(console): State<Console>,
    Path(id): Path<String>,
    Form(form): Form<ResumeForm>,
) -> Result<Response, ConsoleError> {
    let discard = form.discard_held.is_some();
    let access = crate::core::workspace::Access::local(); // MERGE: session access
    console.engine.resume_flow(&access, &id, discard).await?;
    back(&if discard {
        format!("Resumed {id}; the runs held while it was paused are cancelled.")
    } else {
        format!("Resumed {id}: held runs are released in order.")
    })
}

pub async fn delete(
    State(console): State<Console>,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let access = crate::core::workspace::Access::local(); // MERGE: session access
    console.engine.delete_flow(&access, &id).await?;
    back(&format!(
        "Deleted {id}: its unfinished runs are cancelled; its runs stay in the log."
    ))
}

/// To the grid, with a notice of what was done.
fn back(notice: &str) -> Result<Response, ConsoleError> {
    let to = format!("/{}", query(&[("notice", Some(notice))]));
    Ok(Redirect::to(&to).into_response())
}
