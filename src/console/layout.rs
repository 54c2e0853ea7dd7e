//! What every page shares: the frame (`templates/console/base.html`: navigation, log out) and
//! rendering a page into an answer.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use tracing::error;

use crate::console::session::Visitor;
use crate::core::workspace::{Access, Permission};

/// The frame's data: the page's title, which navigation entry is current, the CSRF token of
/// the forms, and a notice from the action before (after a redirect).
pub struct Layout {
    pub title: String,
    pub nav: &'static str,
    pub csrf: String,
    pub can_log_out: bool,
    pub notice: Option<String>,
    /// What the session may do, for showing only the controls it may use.
    pub can: Can,
    /// The one workspace the session sees (a portal link, a key of one workspace); shown in the
    /// navigation. `None` when it sees every workspace.
    pub workspace: Option<String>,
}

/// The permissions of a session, as the templates ask them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Can {
    /// Pause, resume, retry, replay, cancel.
    pub operate: bool,
    /// Run actions, send test runs for real.
    pub trigger: bool,
    /// Change flows and secrets.
    pub edit: bool,
    /// The admin pages: nodes, workspaces.
    pub administer: bool,
}

impl Can {
    fn of(access: Option<&Access>) -> Can {
        let may = |p| access.is_some_and(|a| a.may(p));
        Can {
            operate: may(Permission::Operate),
            trigger: may(Permission::Trigger),
            edit: may(Permission::Edit),
            administer: may(Permission::Administer),
        }
    }
}

impl Layout {
    pub fn new(visitor: &Visitor, nav: &'static str, title: impl Into<String>) -> Layout {
        Layout {
            title: title.into(),
            nav,
            csrf: visitor.csrf.clone(),
            can_log_out: visitor.can_log_out,
            notice: None,
            can: Can::of(visitor.access.as_ref()),
            workspace: visitor
                .access
                .as_ref()
                .filter(|a| !a.all_workspaces)
                .map(|a| a.workspace.clone()),
        }
    }

    /// A page outside the navigation (the login page).
    pub fn bare(visitor: &Visitor, title: impl Into<String>) -> Layout {
        Layout {
            can_log_out: false,
            ..Layout::new(visitor, "", title)
        }
    }

    /// An error page: no forms on it.
    pub fn error(title: &str) -> Layout {
        Layout {
            title: title.to_string(),
            nav: "",
            csrf: String::new(),
            can_log_out: false,
            notice: None,
            can: Can::default(),
            workspace: None,
        }
    }

    pub fn with_notice(mut self, notice: Option<String>) -> Layout {
        self.notice = notice.filter(|n| !n.is_empty());
        self
    }
}

#[derive(Template)]
#[template(path = "console/error.html")]
pub struct ErrorPage {
    pub layout: Layout,
    pub status: u16,
    pub message: String,
}

/// The page as an HTML answer; a template that fails to render is logged and answered 500.
pub fn html<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(body) => (status, Html(body)).into_response(),
        Err(e) => {
            error!(error = %e, "A console template failed to render.");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<!doctype html><title>Error</title><p>The page could not be shown; the problem is in the server's log.</p>".to_string()),
            )
                .into_response()
        }
    }
}
