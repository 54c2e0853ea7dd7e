//! API errors: each variant has one status and one snake_case code, answered as
//! `{"error": {"code", "message", "details"}}`. Server errors hide internals from the client;
//! they are logged here, once, with the detail.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use tracing::error;
use utoipa::ToSchema;

use crate::engine::EngineError;
use crate::engine::flows::FlowError;
use crate::runner::control::ControlError;
use crate::store::StoreError;
use crate::trigger::manual::ManualError;
use crate::trigger::webhook::WebhookError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    InvalidJson(String),
    #[error("{message}")]
    Unprocessable {
        code: &'static str,
        message: String,
        details: Vec<Value>,
    },
    #[error("{message}")]
    Unauthorized { code: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("the request body is larger than FLOWD_MAX_BODY allows")]
    PayloadTooLarge,
    #[error("internal error: {0}")]
    Internal(String),
}

/// The body of every error answer: `{"error": {"code", "message", "details"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable snake_case code, e.g. `not_found`, `invalid_flow`, `flow_paused`.
    #[schema(example = "not_found")]
    pub code: String,
    /// The same for a person, naming what is wrong.
    pub message: String,
    /// Particulars: for `invalid_flow` one `{path, line, column, message}` per problem, for
    /// `invalid_event` one `{index, field, message}`; empty otherwise.
    #[schema(value_type = Vec<Object>)]
    pub details: Vec<Value>,
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            ApiError::Unprocessable { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            ApiError::Unauthorized { code, .. } => (StatusCode::UNAUTHORIZED, code),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let (message, details) = match self {
            ApiError::Internal(detail) => {
                error!(error = %detail, "Request failed.");
                ("internal error; see the server log".to_string(), Vec::new())
            }
            ApiError::Unprocessable {
                message, details, ..
            } => (message, details),
            other => (other.to_string(), Vec::new()),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message,
                details,
            },
        };
        (status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Conflict { what } => ApiError::Conflict {
                code: "conflict",
                message: format!("already exists: {what}"),
            },
            StoreError::NotFound { what } => ApiError::NotFound(format!("{what} not found")),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> ApiError {
        let message = e.to_string();
        match e {
            ControlError::UnknownRun(_) => ApiError::NotFound(message),
            ControlError::AlreadyFinished(_) => ApiError::Conflict {
                code: "run_finished",
                message,
            },
            ControlError::NotRetryable(..) => ApiError::Conflict {
                code: "run_not_retryable",
                message,
            },
            ControlError::FlowGone(_) => ApiError::Conflict {
                code: "flow_gone",
                message,
            },
            ControlError::BrokenTrigger(..) => ApiError::Internal(message),
            ControlError::Store(e) => e.into(),
        }
    }
}

impl From<ManualError> for ApiError {
    fn from(e: ManualError) -> ApiError {
        let message = e.to_string();
        let unprocessable = |code| ApiError::Unprocessable {
            code,
            message: message.clone(),
            details: Vec::new(),
        };
        match e {
            ManualError::UnknownFlow(_) => ApiError::NotFound(message),
            ManualError::Paused(_) => ApiError::Conflict {
                code: "flow_paused",
                message,
            },
            ManualError::Disabled(_) => ApiError::Conflict {
                code: "flow_disabled",
                message,
            },
            ManualError::NoManualTrigger(_) => unprocessable("no_manual_trigger"),
            ManualError::EntityMismatch(_) => unprocessable("entity_mismatch"),
            ManualError::BadRequest(_) => unprocessable("invalid_request"),
            ManualError::Intake(e) => e.into(),
        }
    }
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> ApiError {
        let message = e.to_string();
        match e {
            WebhookError::UnknownPath(_) => ApiError::NotFound(message),
            WebhookError::Paused(_) => ApiError::Conflict {
                code: "flow_paused",
                message,
            },
            WebhookError::BadSignature(_) => ApiError::Unauthorized {
                code: "invalid_signature",
                message,
            },
            WebhookError::BadBody(_) => ApiError::BadRequest(message),
            WebhookError::Intake(e) => e.into(),
        }
    }
}

impl From<FlowError> for ApiError {
    fn from(e: FlowError) -> ApiError {
        let message = e.to_string();
        match e {
            FlowError::UnknownFlow(_) => ApiError::NotFound(message),
            FlowError::Invalid(problems) => ApiError::Unprocessable {
                code: "invalid_flow",
                message: problems
                    .first()
                    .map_or(message, |p| format!("the flow is not valid: {}: {}", p.path, p.message)),
                details: problems
                    .iter()
                    .map(|p| json!({"path": p.path.to_string(), "line": p.line, "column": p.column, "message": p.message}))
                    .collect(),
            },
            FlowError::IdTaken(_) => ApiError::Conflict {
                code: "flow_exists",
                message,
            },
            FlowError::ManagedByFile(_) => ApiError::Conflict {
                code: "managed_by_file",
                message,
            },
            FlowError::Engine(e) => e.into(),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        match e {
            EngineError::Store(s) => s.into(),
            EngineError::Intake(e) => e.into(),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<crate::trigger::IntakeError> for ApiError {
    fn from(e: crate::trigger::IntakeError) -> ApiError {
        match e {
            crate::trigger::IntakeError::Store(s) => s.into(),
            other => ApiError::Internal(other.to_string()),
        }
    }
}
