//! Workspaces (admins only): each workspace with its portal links, a form that issues a link
//! (the URL is shown once, on the answer to the form, never again), and a revoke button per
//! link. The same engine operations as `/api/v1/workspaces/{ws}/portal-links`.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;

use crate::console::Console;
use crate::console::error::ConsoleError;
use crate::console::layout::{Layout, html};
use crate::console::session::{SessionAccess, Visitor};
use crate::console::view::{query, when_millis};
use crate::core::workspace::Access;
use crate::engine::portal::{PortalError, PortalLinkSpec};

#[derive(Debug, Deserialize)]
pub struct WorkspacesQuery {
    notice: Option<String>,
}

pub struct WorkspaceLine {
    pub name: String,
    pub links: Vec<LinkLine>,
}

pub struct LinkLine {
    pub id: String,
    pub role: String,
    pub state: &'static str,
    pub created: String,
    pub expires: String,
    pub used: String,
    pub created_by: String,
    pub revocable: bool,
}

/// A link just issued: its URL, shown this once.
pub struct Issued {
    pub workspace: String,
    pub role: String,
    pub url: String,
    pub expires: String,
}

#[derive(Template)]
#[template(path = "console/workspaces.html")]
struct WorkspacesPage {
    layout: Layout,
    workspaces: Vec<WorkspaceLine>,
    issued: Option<Issued>,
    /// The form as typed, when it was refused.
    form: IssueForm,
}

#[derive(Debug, Default, Deserialize)]
pub struct IssueForm {
    #[serde(default)]
    workspace: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    ttl: String,
}

pub async fn page(
    State(console): State<Console>,
    Extension(visitor): Extension<Visitor>,
    SessionAccess(access): SessionAccess,
    Query(q): Query<WorkspacesQuery>,
) -> Result<Response, ConsoleError> {
    let layout = Layout::new(&visitor, "workspaces", "Workspaces").with_notice(q.notice);
    let form = IssueForm {
        ttl: "1h".into(),
        ..IssueForm::default()
    };
    render(&console, &access, layout, None, form, StatusCode::OK).await
}

/// Issues a link and shows its URL once; a refused form shows the page again saying why.
pub async fn issue(
    State(console): State<Console>,
    Extension(visitor): Extension<Visitor>,
    SessionAccess(access): SessionAccess,
    Form(form): Form<IssueForm>,
) -> Result<Response, ConsoleError> {
    let workspace = form.workspace.trim();
    let ttl = Some(form.ttl.trim()).filter(|t| !t.is_empty());
    let issued = match PortalLinkSpec::parse(Some(form.role.trim()), ttl) {
        Ok(spec) => {
            console
                .engine
                .issue_portal_link(&access, workspace, spec)
                .await
        }
        Err(e) => Err(e),
    };
    let layout = Layout::new(&visitor, "workspaces", "Workspaces");
    match issued {
        Ok(issued) => {
            let shown = Issued {
                workspace: issued.link.workspace.clone(),
                role: issued.link.role.clone(),
                url: issued.url,
                expires: when_millis(Some(issued.link.expires_at)),
            };
            let layout = layout.with_notice(Some(
                "Portal link issued. Copy it now: it is shown only this once.".into(),
            ));
            let form = IssueForm {
                ttl: "1h".into(),
                ..IssueForm::default()
            };
            render(
                &console,
                &access,
                layout,
                Some(shown),
                form,
                StatusCode::CREATED,
            )
            .await
        }
        Err(e @ (PortalError::Invalid { .. } | PortalError::UnknownWorkspace(_))) => {
            let layout = layout.with_notice(Some(format!("No link issued: {e}")));
            render(
                &console,
                &access,
                layout,
                None,
                form,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => Err(problem(e)),
    }
}

pub async fn revoke(
    State(console): State<Console>,
    SessionAccess(access): SessionAccess,
    Path((workspace, id)): Path<(String, String)>,
) -> Result<Response, ConsoleError> {
    console
        .engine
        .revoke_portal_link(&access, &workspace, &id)
        .await
        .map_err(problem)?;
    let notice = "Link revoked: it opens nothing more, and a console it opened ends on its next \
                  request.";
    let to = format!("/workspaces{}", query(&[("notice", Some(notice))]));
    Ok(Redirect::to(&to).into_response())
}

async fn render(
    console: &Console,
    access: &Access,
    layout: Layout,
    issued: Option<Issued>,
    form: IssueForm,
    status: StatusCode,
) -> Result<Response, ConsoleError> {
    let engine = &console.engine;
    let mut workspaces = Vec::new();
    for workspace in engine.list_workspaces(access).await? {
        let name = workspace.name;
        let links = engine
            .list_portal_links(access, &name)
            .await
            .map_err(problem)?;
        let links = links
            .into_iter()
            .map(|link| {
                let state = engine.portal_link_state(&link);
                LinkLine {
                    revocable: state == "unused" || state == "used",
                    state,
                    created: when_millis(Some(link.created_at)),
                    expires: when_millis(Some(link.expires_at)),
                    used: when_millis(link.used_at),
                    created_by: link.created_by,
                    role: link.role,
                    id: link.id,
                }
            })
            .collect();
        workspaces.push(WorkspaceLine { name, links });
    }
    let page = WorkspacesPage {
        layout,
        workspaces,
        issued,
        form,
    };
    Ok(html(status, &page))
}

fn problem(e: PortalError) -> ConsoleError {
    let message = e.to_string();
    match e {
        PortalError::UnknownWorkspace(_) | PortalError::UnknownLink { .. } => {
            ConsoleError::NotFound(message)
        }
        PortalError::Invalid { .. } => ConsoleError::BadRequest(message),
        PortalError::Engine(e) => e.into(),
    }
}
