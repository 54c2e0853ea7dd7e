//! Actions: the manual actions of active flows, by entity type; run one for an entity id, with
//! input, and land on the run to see its result.

use std::time::Duration;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;
use serde_json::Value;

use crate::console::Console;
use crate::console::error::ConsoleError;
use crate::console::layout::{Layout, html};
use crate::console::session::Visitor;
use crate::console::view::{json_field, query};
use crate::core::trigger_data::ManualEntity;
use crate::trigger::manual::ManualRequest;

/// How long running an action waits for the run to end before showing it (still running).
const WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Deserialize)]
pub struct ActionsQuery {
    flow: Option<String>,
    notice: Option<String>,
}

pub struct ActionLine {
    pub flow: String,
    pub label: String,
    /// The entity type it runs on; empty when it takes none.
    pub entity: String,
    /// The `?flow=` the page was opened for: shown first and open.
    pub chosen: bool,
}

#[derive(Template)]
#[template(path = "console/actions.html")]
struct ActionsPage {
    layout: Layout,
    actions: Vec<ActionLine>,
}

pub async fn page(
    State(console): State<Console>,
    Extension(visitor): Extension<Visitor>,
    Query(q): Query<ActionsQuery>,
) -> Result<Response, ConsoleError> {
    let chosen = q.flow.unwrap_or_default();
    let access = crate::core::workspace::Access::local(); // MERGE: session access
    let mut actions: Vec<ActionLine> = console
        .engine
        .every_action(&access)
        .into_iter()
        .map(|a| ActionLine {
            chosen: a.flow == chosen,
            flow: a.flow,
            label: a.label,
            entity: a.entity,
        })
        .collect();
    actions.sort_by_key(|a| !a.chosen);
    let page = ActionsPage {
        layout: Layout::new(&visitor, "actions", "Actions").with_notice(q.notice),
        actions,
    };
    Ok(html(StatusCode::OK, &page))
}

#[derive(Deserialize)]
pub struct RunForm {
    flow: String,
    entity: Option<String>,
    entity_id: Option<String>,
    /// JSON the flow reads as `input`; empty for none.
    input: Option<String>,
}

/// Starts the action's run, waits a moment for it to end, and shows it.
pub async fn run(
    State(console): State<Console>,
    Form(form): Form<RunForm>,
) -> Result<Response, ConsoleError> {
    let input = json_field("input", form.input.as_deref())
        .map_err(ConsoleError::BadRequest)?
        .unwrap_or(Value::Null);
    let entity = form
        .entity
        .filter(|e| !e.is_empty())
        .map(|entity_type| ManualEntity {
            entity_type,
            id: form.entity_id.unwrap_or_default().trim().to_string(),
            data: Value::Null,
        });
    if entity.as_ref().is_some_and(|e| e.id.is_empty()) {
        return Err(ConsoleError::BadRequest(
            "Give the id of the entity to run the action on.".into(),
        ));
    }
    let engine = &console.engine;
    let access = crate::core::workspace::Access::local(); // MERGE: session access
    let run_id = engine
        .trigger_manual(&access, &form.flow, ManualRequest { input, entity })
        .await?;
    engine.wait_for_run_end(&run_id, WAIT).await?;
    let notice = "Action started: this is its run.";
    let to = format!("/runs/{run_id}{}", query(&[("notice", Some(notice))]));
    Ok(Redirect::to(&to).into_response())
}
