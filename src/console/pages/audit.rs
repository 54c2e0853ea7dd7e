//! Audit: who changed what, when, in which workspace (`GET /api/v1/audit` as a page), newest
//! first, with the filters as a GET form (so a filtered view can be bookmarked or linked) and
//! "Older entries" paging.

use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use crate::console::Console;
use crate::console::error::ConsoleError;
use crate::console::layout::{Layout, html};
use crate::console::session::{SessionAccess, Visitor};
use crate::console::view::{query, when_millis};
use crate::engine::reads::{Edge, parse_bound};
use crate::store::audit::{AuditAction, AuditEntry, AuditFilter, Cursor};

const PAGE: u64 = 50;

/// The filters as typed; empty fields filter nothing.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    workspace: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    cursor: String,
}

impl AuditQuery {
    fn filter(&self) -> Result<AuditFilter, ConsoleError> {
        let given = |v: &str| Some(v.trim().to_owned()).filter(|v| !v.is_empty());
        if let Some(action) = given(&self.action)
            && AuditAction::parse(&action).is_none()
        {
            return Err(ConsoleError::BadRequest(format!(
                "There is no audit action `{action}`."
            )));
        }
        let bound = |name, text: &str, edge| {
            given(text)
                .map(|t| parse_bound(name, &t, edge).map_err(ConsoleError::BadRequest))
                .transpose()
        };
        Ok(AuditFilter {
            workspace: given(&self.workspace),
            actor: given(&self.actor),
            action: given(&self.action),
            target: given(&self.target),
            since: bound("since", &self.since, Edge::Start)?,
            until: bound("until", &self.until, Edge::End)?,
        })
    }

    /// Where the page starts; a cursor this page did not give out starts at the newest.
    fn cursor(&self) -> Option<Cursor> {
        let (at, id) = self.cursor.split_once('.')?;
        let at = at.parse().ok()?;
        (!id.is_empty()).then(|| Cursor {
            at,
            id: id.to_owned(),
        })
    }

    /// The address of the page after `last`, with the same filters.
    fn next(&self, last: &AuditEntry) -> String {
        let cursor = format!("{}.{}", last.at, last.id);
        let pairs = [
            ("workspace", Some(self.workspace.as_str())),
            ("actor", Some(self.actor.as_str())),
            ("action", Some(self.action.as_str())),
            ("target", Some(self.target.as_str())),
            ("since", Some(self.since.as_str())),
            ("until", Some(self.until.as_str())),
            ("cursor", Some(cursor.as_str())),
        ];
        format!("/audit{}", query(&pairs))
    }
}

/// One entry as a row.
pub struct AuditLine {
    pub at: String,
    pub workspace: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

impl AuditLine {
    fn of(e: &AuditEntry) -> AuditLine {
        AuditLine {
            at: when_millis(Some(e.at)),
            workspace: e.workspace.clone(),
            actor: e.actor.clone(),
            action: e.action.clone(),
            target: e.target.clone(),
            detail: if e.detail == "{}" {
                String::new()
            } else {
                e.detail.clone()
            },
        }
    }
}

/// One choice of the action filter.
pub struct ActionOption {
    pub name: &'static str,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    layout: Layout,
    form: AuditQuery,
    actions: Vec<ActionOption>,
    rows: Vec<AuditLine>,
    next: Option<String>,
}

pub async fn page(
    State(console): State<Console>,
    Extension(visitor): Extension<Visitor>,
    SessionAccess(access): SessionAccess,
    Query(q): Query<AuditQuery>,
) -> Result<Response, ConsoleError> {
    let filter = q.filter()?;
    let mut entries = console
        .engine
        .audit_log(&access, &filter, q.cursor().as_ref(), PAGE + 1)
        .await?;
    let more = entries.len() as u64 > PAGE;
    entries.truncate(PAGE as usize);
    let next = entries.last().filter(|_| more).map(|last| q.next(last));
    let page = AuditPage {
        layout: Layout::new(&visitor, "audit", "Audit"),
        actions: AuditAction::ALL
            .iter()
            .map(|a| ActionOption {
                name: a.as_str(),
                selected: q.action == a.as_str(),
            })
            .collect(),
        rows: entries.iter().map(AuditLine::of).collect(),
        next,
        form: q,
    };
    Ok(html(StatusCode::OK, &page))
}
