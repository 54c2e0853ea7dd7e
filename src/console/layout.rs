//! What every page shares: the frame (`templates/console/base.html`: navigation, log out) and
//! rendering a page into an answer.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use tracing::error;

use crate::console::session::Visitor;

/// The frame's data: the page's title, which navigation entry is current, the CSRF token of
/// the forms, and a notice from the action before (after a redirect).
pub struct Layout {
    pub title: String,
    pub nav: &'static str,
    pub csrf: String,
    pub can_log_out: bool,
    pub notice: Option<String>,
}

impl Layout {
    pub fn new(visitor: &Visitor, nav: &'static str, title: impl Into<String>) -> Layout {
        Layout {
            title: title.into(),
            nav,
            csrf: visitor.csrf.clone(),
            can_log_out: visitor.can_log_out,
            notice: None,
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
