//! API errors: each variant has one status and one snake_case code, answered as
//! `{"error": {"code", "message", "details"}}`. Server errors hide internals from the client:
//! the answer says only `internal`, and carries the [`InternalError`] in a response extension
//! for [`log_server_errors`], the middleware that logs every 5xx answer once, with the error's
//! chain of sources and secrets redacted.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use tracing::error;
use utoipa::ToSchema;

use crate::core::error::Chain;
use crate::engine::flows::FlowError;
use crate::engine::{Engine, EngineError};
use crate::metrics::MetricsError;
use crate::runner::control::ControlError;
use crate::store::StoreError;
use crate::trigger::IntakeError;
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
    /// Not found, with a code of its own (`workspace_not_found`).
    #[error("{message}")]
    NotFoundCode { code: &'static str, message: String },
    /// The key's role does not allow the operation; `details` name the role needed.
    #[error("{message}")]
    Forbidden {
        message: String,
        role_needed: crate::core::workspace::Role,
    },
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("the request body is larger than FLOWD_MAX_BODY allows")]
    PayloadTooLarge,
    /// The server cannot serve this request until someone sets something up (a secret): the
    /// sender should retry later.
    #[error("{message}")]
    Unavailable { code: &'static str, message: String },
    #[error("the request body did not arrive within {} s", crate::api::body::BODY_READ_TIMEOUT.as_secs())]
    BodyTimeout,
    #[error("internal error")]
    Internal(#[from] InternalError),
}

/// A failure of the server, not of the request: answered 500 `internal` without detail.
#[derive(Debug, thiserror::Error)]
pub enum InternalError {
    #[error(transparent)]
    Store(StoreError),
    #[error("the database does not answer")]
    Unreachable(#[source] StoreError),
    #[error(transparent)]
    Engine(EngineError),
    #[error(transparent)]
    Intake(IntakeError),
    #[error(transparent)]
    Control(ControlError),
    #[error("a run cannot be shown as JSON")]
    RunJson(#[source] serde_json::Error),
    #[error("the metrics cannot be rendered")]
    Metrics(#[source] MetricsError),
}

/// The error behind a 5xx answer, from [`ApiError::into_response`] to [`log_server_errors`].
#[derive(Clone)]
struct Failure(Arc<InternalError>);

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
            ApiError::NotFoundCode { code, .. } => (StatusCode::NOT_FOUND, code),
            ApiError::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::Unavailable { code, .. } => (StatusCode::SERVICE_UNAVAILABLE, code),
            ApiError::BodyTimeout => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let mut failure = None;
        let (message, details) = match self {
            ApiError::Internal(error) => {
                failure = Some(Failure(Arc::new(error)));
                ("internal error; see the server log".to_string(), Vec::new())
            }
            ApiError::Unprocessable {
                message, details, ..
            } => (message, details),
            ApiError::Forbidden {
                message,
                role_needed,
            } => (message, vec![json!({"role_needed": role_needed})]),
            other => (other.to_string(), Vec::new()),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message,
                details,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(failure) = failure {
            response.extensions_mut().insert(failure);
        }
        response
    }
}

/// Logs each 5xx answer once: method, path, status and, when an [`ApiError`] made it, the
/// error with its sources. Secret values are redacted from the line, as from run records.
pub async fn log_server_errors(
    State(engine): State<Engine>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let mut response = next.run(request).await;
    let status = response.status();
    if !status.is_server_error() {
        return response;
    }
    let redactor = &engine.step_env().redactor;
    let path = redactor.redact(&path);
    let status = status.as_u16();
    match response.extensions_mut().remove::<Failure>() {
        Some(Failure(failure)) => {
            let error = redactor.redact(&Chain(&*failure).to_string());
            error!(%method, %path, status, %error, "Request failed.");
        }
        None => error!(%method, %path, status, "Request failed."),
    }
    response
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Conflict { what } => ApiError::Conflict {
                code: "conflict",
                message: format!("already exists: {what}"),
            },
            StoreError::NotFound { what } => ApiError::NotFound(format!("{what} not found")),
            other => InternalError::Store(other).into(),
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
            ControlError::BrokenTrigger(..) => InternalError::Control(e).into(),
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
            ManualError::NotApplicable(_) => ApiError::Conflict {
                code: "not_applicable",
                message,
            },
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
            WebhookError::MissingSecret(_) => ApiError::Unavailable {
                code: "missing_secret",
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
            FlowError::UnknownFlow(_) | FlowError::UnknownRevision { .. } => {
                ApiError::NotFound(message)
            }
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
            FlowError::UnknownWorkspace(name) => crate::api::auth::workspace_not_found(&name),
            FlowError::Engine(e) => e.into(),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        match e {
            EngineError::Store(s) => s.into(),
            EngineError::Intake(e) => e.into(),
            other => InternalError::Engine(other).into(),
        }
    }
}

impl From<IntakeError> for ApiError {
    fn from(e: IntakeError) -> ApiError {
        match e {
            IntakeError::Store(s) => s.into(),
            other => InternalError::Intake(other).into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use axum::Router;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::engine::EngineConfig;
    use crate::secrets::Secrets;

    /// Log lines, as the test's subscriber writes them.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    async fn get_path(addr: std::net::SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        // A deadline, so a server that never closes fails the test instead of hanging it.
        tokio::time::timeout(Duration::from_secs(60), stream.read_to_string(&mut answer))
            .await
            .expect("the server answers and closes within 60 s")
            .unwrap();
        answer
    }

    /// A 5xx is logged once, by the middleware, with the error's sources and no secret; the
    /// client sees only `internal`. A 4xx is not logged.
    #[tokio::test]
    async fn server_errors_are_logged_once_with_their_chain_and_without_secrets() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);

        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("flowd.db").display());
        let engine = Engine::open(EngineConfig {
            secrets: Secrets::from_pairs([("TOKEN".into(), "s3cr3t-value".into())]),
            ..EngineConfig::new(url, "test")
        })
        .await
        .unwrap();
        async fn broken() -> Result<(), ApiError> {
            let stored = StoreError::UnknownValue {
                column: "status".into(),
                value: "s3cr3t-value".into(),
            };
            Err(InternalError::Store(stored).into())
        }
        async fn missing() -> Result<(), ApiError> {
            Err(ApiError::NotFound("no such thing".into()))
        }
        let app = Router::new()
            .route("/broken", get(broken))
            .route("/missing", get(missing))
            .layer(axum::middleware::from_fn_with_state(
                engine.clone(),
                log_server_errors,
            ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });

        let answer = get_path(addr, "/broken").await;
        assert!(answer.starts_with("HTTP/1.1 500"), "{answer}");
        assert!(answer.contains(r#""code":"internal""#), "{answer}");
        assert!(
            !answer.contains("status") && !answer.contains("s3cr3t"),
            "{answer}"
        );
        assert!(get_path(addr, "/missing").await.starts_with("HTTP/1.1 404"));

        let logged = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let failures: Vec<&str> = logged
            .lines()
            .filter(|l| l.contains("Request failed."))
            .collect();
        assert_eq!(failures.len(), 1, "{logged}");
        assert!(failures[0].contains("path=/broken"), "{logged}");
        assert!(
            failures[0].contains("column `status` holds an unknown value `***`"),
            "{logged}"
        );
        assert!(!logged.contains("s3cr3t"), "{logged}");
        server.abort();
        engine.store().clone().close().await;
    }
}
