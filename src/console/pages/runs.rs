//! Runs: the run log, newest first, with filters (flow, status with a one-click "Failed",
//! entity type and id, time range), cursor pagination, and new runs appearing without a reload
//! (the script asks `/runs/rows` for the first page every 2 seconds).

use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use crate::console::Console;
use crate::console::error::ConsoleError;
use crate::console::layout::{Layout, html};
use crate::console::session::Visitor;
use crate::console::view::{query, trigger_summary, when};
use crate::core::status::RunStatus;
use crate::engine::reads::{Edge, parse_bound};
use crate::engine::run_view::RunOut;
use crate::store::run_log::RunFilter;

const PAGE: u64 = 50;

/// The statuses offered as one-click filters, "failed" first.
const STATUSES: [&str; 7] = [
    "failed",
    "running",
    "waiting",
    "held",
    "pending",
    "succeeded",
    "cancelled",
];

#[derive(Debug, Default, Clone, Deserialize)]
pub struct RunsQuery {
    flow: Option<String>,
    status: Option<String>,
    entity: Option<String>,
    entity_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
    notice: Option<String>,
}

impl RunsQuery {
    fn filter(&self) -> Result<RunFilter, ConsoleError> {
        let given = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
        let status = given(&self.status)
            .map(|s| {
                s.parse::<RunStatus>()
                    .map_err(|_| ConsoleError::BadRequest(format!("There is no run status `{s}`.")))
            })
            .transpose()?;
        let bound = |name, text: &Option<String>, edge| {
            given(text)
                .map(|t| parse_bound(name, &t, edge).map_err(ConsoleError::BadRequest))
                .transpose()
        };
        Ok(RunFilter {
            flow: given(&self.flow),
            status,
            entity: given(&self.entity),
            entity_id: given(&self.entity_id),
            since: bound("since", &self.since, Edge::Start)?,
            until: bound("until", &self.until, Edge::End)?,
            before_id: given(&self.cursor).filter(|c| uuid::Uuid::try_parse(c).is_ok()),
            workspace: None,
        })
    }

    /// The query string of these filters with another status (and no cursor).
    fn with_status(&self, status: Option<&str>) -> String {
        query(&[
            ("flow", self.flow.as_deref()),
            ("status", status),
            ("entity", self.entity.as_deref()),
            ("entity_id", self.entity_id.as_deref()),
            ("since", self.since.as_deref()),
            ("until", self.until.as_deref()),
        ])
    }
}

/// One run as a row of the log.
pub struct RunLine {
    pub id: String,
    pub flow: String,
    pub status: String,
    pub trigger: String,
    pub created: String,
    pub error: String,
}

impl RunLine {
    pub fn of(run: &RunOut) -> RunLine {
        RunLine {
            id: run.id.clone(),
            flow: run.flow.clone(),
            status: run.status.as_str().to_string(),
            trigger: trigger_summary(&run.trigger),
            created: when(run.created_at.as_deref()),
            error: run.error.clone().unwrap_or_default(),
        }
    }
}

/// The filter form's values.
pub struct RunsForm {
    pub flow: String,
    pub entity: String,
    pub entity_id: String,
    pub since: String,
    pub until: String,
    pub status: String,
}

impl RunsForm {
    fn of(q: &RunsQuery) -> RunsForm {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        RunsForm {
            flow: text(&q.flow),
            entity: text(&q.entity),
            entity_id: text(&q.entity_id),
            since: text(&q.since),
            until: text(&q.until),
            status: text(&q.status),
        }
    }
}

/// A one-click status filter.
pub struct StatusLink {
    pub label: &'static str,
    pub href: String,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "console/runs.html")]
struct RunsPage {
    layout: Layout,
    /// The filters as typed, to show them in the form again.
    form: RunsForm,
    statuses: Vec<StatusLink>,
    rows: Vec<RunLine>,
    /// The address the script polls for new rows; empty on later pages, which stay still.
    live: String,
    next: Option<String>,
}

#[derive(Template)]
#[template(path = "console/runs_rows.html")]
struct RunsRows {
    rows: Vec<RunLine>,
}

pub async fn page(
    State(console): State<Console>,
    Extension(visitor): Extension<Visitor>,
    Query(q): Query<RunsQuery>,
) -> Result<Response, ConsoleError> {
    let filter = q.filter()?;
    let access = crate::core::workspace::Access::local(); // MERGE: session access
    let mut runs = console.engine.list_runs(&access, &filter, PAGE + 1).await?;
    let next = (runs.len() as u64 > PAGE).then(|| {
        runs.truncate(PAGE as usize);
        let cursor = runs.last().map(|r| r.id.as_str());
        let base = q.with_status(q.status.as_deref());
        let sep = if base.is_empty() { "?" } else { "&" };
        format!("/runs{base}{sep}{}", &query(&[("cursor", cursor)])[1..])
    });
    let current = q.status.clone().unwrap_or_default();
    let mut statuses = vec![StatusLink {
        label: "all",
        href: format!("/runs{}", q.with_status(None)),
        current: current.is_empty(),
    }];
    statuses.extend(STATUSES.iter().map(|s| StatusLink {
        label: s,
        href: format!("/runs{}", q.with_status(Some(s))),
        current: current == *s,
    }));
    let live = if q.cursor.as_deref().unwrap_or_default().is_empty() {
        format!("/runs/rows{}", q.with_status(q.status.as_deref()))
    } else {
        String::new()
    };
    let page = RunsPage {
        layout: Layout::new(&visitor, "runs", "Runs").with_notice(q.notice.clone()),
        rows: runs.iter().map(RunLine::of).collect(),
        statuses,
        live,
        next,
        form: RunsForm::of(&q),
    };
    Ok(html(StatusCode::OK, &page))
}

/// The first page's rows alone, for the script's poll.
pub async fn rows(
    State(console): State<Console>,
    Query(q): Query<RunsQuery>,
) -> Result<Response, ConsoleError> {
    let filter = RunFilter {
        before_id: None,
        ..q.filter()?
    };
    let access = crate::core::workspace::Access::local(); // MERGE: session access
    let runs = console.engine.list_runs(&access, &filter, PAGE).await?;
    let rows = RunsRows {
        rows: runs.iter().map(RunLine::of).collect(),
    };
    Ok(html(StatusCode::OK, &rows))
}
