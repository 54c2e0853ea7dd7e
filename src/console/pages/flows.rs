//! Flows: the grid, one row per flow, with pause, resume and delete (a delete asks first and
//! says what happens to runs in flight).

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
use crate::console::view::{query, when_millis};
use crate::store::flows::{FlowRow, FlowSource};

#[derive(Debug, Deserialize)]
pub struct FlowsQuery {
    notice: Option<String>,
}

/// One flow as a row of the grid.
pub struct FlowLine {
    pub id: String,
    pub name: String,
    pub source: String,
    pub state: String,
    pub paused: bool,
    pub is_file: bool,
    pub created: String,
    pub updated: String,
}

impl FlowLine {
    fn of(flow: &FlowRow) -> FlowLine {
        let state = match (flow.paused, flow.enabled) {
            (true, _) => "paused",
            (false, false) => "disabled",
            (false, true) => "active",
        };
        FlowLine {
            id: flow.id.clone(),
            name: flow.name.clone(),
            source: match flow.source {
                FlowSource::File => flow.path.clone().unwrap_or_else(|| "file".into()),
                FlowSource::Api => "API".into(),
            },
            state: state.into(),
            paused: flow.paused,
            is_file: flow.source == FlowSource::File,
            created: when_millis(Some(flow.created_at)),
            updated: when_millis(Some(flow.updated_at)),
        }
    }
}

#[derive(Template)]
#[template(path = "console/flows.html")]
struct FlowsPage {
    layout: Layout,
    flows: Vec<FlowLine>,
}

pub async fn page(
    State(console): State<Console>,
    Extension(visitor): Extension<Visitor>,
    Query(q): Query<FlowsQuery>,
) -> Result<Response, ConsoleError> {
    let flows = console.engine.flows().await?;
    let page = FlowsPage {
        layout: Layout::new(&visitor, "flows", "Flows").with_notice(q.notice),
        flows: flows.iter().map(FlowLine::of).collect(),
    };
    Ok(html(StatusCode::OK, &page))
}

pub async fn pause(
    State(console): State<Console>,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    console.engine.set_flow_paused(&id, true).await?;
    back(&format!(
        "Paused {id}: nothing is sent until you resume it; its runs wait as held."
    ))
}

pub async fn resume(
    State(console): State<Console>,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    console.engine.set_flow_paused(&id, false).await?;
    back(&format!("Resumed {id}: held runs are released in order."))
}

pub async fn delete(
    State(console): State<Console>,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    console.engine.delete_flow(&id).await?;
    back(&format!("Deleted {id}. Its runs stay in the log."))
}

/// To the grid, with a notice of what was done.
fn back(notice: &str) -> Result<Response, ConsoleError> {
    let to = format!("/{}", query(&[("notice", Some(notice))]));
    Ok(Redirect::to(&to).into_response())
}
