//! `POST /api/v1/flows/{id}/test`: "test this step" for a whole flow. With an example event, the
//! input of a manual or webhook trigger, or an earlier run's trigger data, it dry-runs the flow
//! (each step's output and the request each http step would send, secrets as `***`), or with
//! `"send": true` starts a real run of this flow only. SPEC is silent on this route; the choices
//! are in docs/api.md ("Testing a flow").

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{ApiPath, JsonBody};
use crate::api::flows::FlowId;
use crate::core::workspace::Access;
use crate::engine::Engine;
use crate::engine::test_run::{TestError, TestRequest, TestRun};

/// Tests a flow: a dry run by default, a real run with `"send": true`.
#[utoipa::path(post, path = "/api/v1/flows/{id}/test", tag = "flows", params(FlowId),
    request_body = TestRequest,
    responses(
        (status = 200, description = "the dry run, ended: each step's status and output, each http step's attempt with the request it would send (secrets as `***`); nothing sent, nothing stored", body = TestRun),
        (status = 202, description = "with `send`: the real run just started (follow it at `GET /api/v1/runs/{id}`)", body = TestRun),
        (status = 400, description = "`invalid_json`", body = ErrorBody),
        (status = 404, description = "no such flow, or no such run of this flow (`run_id`)", body = ErrorBody),
        (status = 409, description = "`flow_paused`, `flow_disabled`, or `not_applicable` (the manual trigger's `if` does not hold)", body = ErrorBody),
        (status = 422, description = "`invalid_request` (not one of `event`, `input`/`entity`, `run_id`; a malformed event or entity), `trigger_mismatch` (no trigger of the flow fits, or the entity is not the one its action runs on: the message lists its triggers), or `dry_run_too_long`", body = ErrorBody),
    ))]
pub async fn test_flow(
    State(engine): State<Engine>,
    access: Access,
    ApiPath(FlowId { id }): ApiPath<FlowId>,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<TestRun>), ApiError> {
    // Only an object: serde would also read a struct from an array of its fields.
    let request: TestRequest = match body {
        body @ Value::Object(_) => serde_json::from_value(body)
            .map_err(|e| TestError::Invalid(format!("the test body is not valid: {e}")))?,
        _ => {
            return Err(TestError::Invalid(
                "the test body must be a JSON object with one of `event`, `input` or `run_id`"
                    .into(),
            )
            .into());
        }
    };
    let test = engine.test_flow(&access, &id, request).await?;
    let status = if test.dry_run {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(test)))
}

impl From<TestError> for ApiError {
    fn from(e: TestError) -> ApiError {
        let message = e.to_string();
        let code = match e {
            TestError::Invalid(_) => "invalid_request",
            TestError::Unfit(_) => "trigger_mismatch",
            TestError::TooLong => "dry_run_too_long",
            TestError::UnknownFlow(_) | TestError::UnknownRun(..) => {
                return ApiError::NotFound(message);
            }
            TestError::Refused(e) => return e.into(),
            TestError::Engine(e) => return e.into(),
        };
        ApiError::Unprocessable {
            code,
            message,
            details: Vec::new(),
        }
    }
}
