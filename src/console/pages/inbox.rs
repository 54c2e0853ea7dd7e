//! Inbox: notifications (auto-paused flows, `notify` steps sent to the inbox), newest first,
//! each marked read with one click; "Unread" shows only the rest.

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
use crate::console::view::when_millis;

/// Notifications on one page; older ones stay in the API (`GET /api/v1/notifications`).
const PAGE: u64 = 200;

#[derive(Debug, Deserialize)]
pub struct InboxQuery {
    unread: Option<String>,
}

pub struct NoteLine {
    pub id: String,
    pub title: String,
    pub text: String,
    pub flow: String,
    pub run_id: String,
    pub created: String,
    pub read: bool,
}

#[derive(Template)]
#[template(path = "console/inbox.html")]
struct InboxPage {
    layout: Layout,
    unread_only: bool,
    notes: Vec<NoteLine>,
}

pub async fn page(
    State(console): State<Console>,
    Extension(visitor): Extension<Visitor>,
    Query(q): Query<InboxQuery>,
) -> Result<Response, ConsoleError> {
    let unread_only = q.unread.is_some();
    let access = crate::core::workspace::Access::local(); // MERGE: session access
    let notes = console
        .engine
        .notifications(&access, unread_only, None, PAGE)
        .await?;
    let page = InboxPage {
        layout: Layout::new(&visitor, "inbox", "Inbox"),
        unread_only,
        notes: notes
            .into_iter()
            .map(|n| NoteLine {
                read: n.read_at.is_some(),
                created: when_millis(Some(n.created_at)),
                id: n.id,
                title: n.title,
                text: n.text,
                flow: n.flow_id.unwrap_or_default(),
                run_id: n.run_id.unwrap_or_default(),
            })
            .collect(),
    };
    Ok(html(StatusCode::OK, &page))
}

pub async fn mark_read(
    State(console): State<Console>,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let access = crate::core::workspace::Access::local(); // MERGE: session access
    if !console.engine.mark_notification_read(&access, &id).await? {
        return Err(ConsoleError::NotFound(format!(
            "There is no notification `{id}`."
        )));
    }
    Ok(Redirect::to("/inbox").into_response())
}
