//! Errors as pages: a missing flow or run is a 404 page, a refused action says why (409), and a
//! failure of the server is logged once and shown as a short apology, never as JSON or a trace.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tracing::error;

use crate::console::layout::{ErrorPage, Layout, html};
use crate::engine::EngineError;
use crate::engine::flows::FlowError;
use crate::runner::control::ControlError;
use crate::trigger::manual::ManualError;

#[derive(Debug)]
pub enum ConsoleError {
    NotFound(String),
    /// The action is not allowed in the object's state (a paused flow, a finished run).
    Refused(String),
    BadRequest(String),
    Unauthorized(String),
    Forbidden(String),
    /// A failure of the server; the text is logged, not shown.
    Internal(String),
}

impl ConsoleError {
    fn parts(&self) -> (StatusCode, &'static str, &str) {
        match self {
            ConsoleError::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m),
            ConsoleError::Refused(m) => (StatusCode::CONFLICT, "Not possible now", m),
            ConsoleError::BadRequest(m) => (StatusCode::BAD_REQUEST, "Cannot do that", m),
            ConsoleError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, "Log in", m),
            ConsoleError::Forbidden(m) => (StatusCode::FORBIDDEN, "Refused", m),
            ConsoleError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The server could not answer; the problem is in its log. Try again in a moment.",
            ),
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        if let ConsoleError::Internal(problem) = &self {
            error!(%problem, "A console page failed.");
        }
        let (status, title, message) = self.parts();
        let page = ErrorPage {
            layout: Layout::error(title),
            status: status.as_u16(),
            message: message.to_string(),
        };
        html(status, &page)
    }
}

impl From<EngineError> for ConsoleError {
    fn from(e: EngineError) -> ConsoleError {
        ConsoleError::Internal(format!("{:#}", anyhow::Error::new(e)))
    }
}

impl From<FlowError> for ConsoleError {
    fn from(e: FlowError) -> ConsoleError {
        let message = e.to_string();
        match e {
            FlowError::UnknownFlow(_)
            | FlowError::UnknownRevision { .. }
            | FlowError::UnknownWorkspace(_) => ConsoleError::NotFound(message),
            FlowError::ManagedByFile(_) | FlowError::IdTaken(_) => ConsoleError::Refused(message),
            FlowError::Invalid(_) => ConsoleError::BadRequest(message),
            FlowError::Engine(e) => e.into(),
        }
    }
}

impl From<ControlError> for ConsoleError {
    fn from(e: ControlError) -> ConsoleError {
        let message = e.to_string();
        match e {
            ControlError::UnknownRun(_) => ConsoleError::NotFound(message),
            ControlError::AlreadyFinished(_)
            | ControlError::NotRetryable(..)
            | ControlError::FlowGone(_) => ConsoleError::Refused(message),
            ControlError::BrokenTrigger(..) | ControlError::Store(_) => {
                ConsoleError::Internal(message)
            }
        }
    }
}

impl From<ManualError> for ConsoleError {
    fn from(e: ManualError) -> ConsoleError {
        let message = e.to_string();
        match e {
            ManualError::UnknownFlow(_) => ConsoleError::NotFound(message),
            ManualError::Paused(_) | ManualError::Disabled(_) | ManualError::NotApplicable(_) => {
                ConsoleError::Refused(message)
            }
            ManualError::NoManualTrigger(_)
            | ManualError::EntityMismatch(_)
            | ManualError::BadRequest(_) => ConsoleError::BadRequest(message),
            ManualError::Intake(e) => EngineError::from(e).into(),
        }
    }
}
