//! `POST /api/v1/events`: one event or an array. Every event is checked first; one bad event
//! rejects the whole request with 422 and stores nothing.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::api::auth::workspace_not_found;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::JsonBody;
use crate::api::page::Items;
use crate::core::workspace::Access;
use crate::engine::Engine;
use crate::trigger::entity::{EventIn, EventProblem, EventResult, check_event};

/// Most events accepted in one request.
pub const MAX_EVENTS: usize = 10_000;

/// One event, or an array of up to 10,000. It describes the body in the OpenAPI document;
/// `parse_events` reads the body as JSON instead, to report every problem at once.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EventsIn {
    One(EventIn),
    Many(Vec<EventIn>),
}

/// Stores the events with the runs they start, then answers. Bad input (any event) → 422 and
/// nothing stored; a repeated `event_id` starts nothing new and gets the same answer.
#[utoipa::path(post, path = "/api/v1/events", tag = "triggers", request_body = EventsIn, responses(
    (status = 202, description = "per event, in order: its id and the runs it started", body = Items<EventResult>),
    (status = 400, description = "`invalid_json`", body = ErrorBody),
    (status = 404, description = "`workspace_not_found`: an event names a workspace the key may not use", body = ErrorBody),
    (status = 422, description = "`invalid_event`, with every problem in `details`", body = ErrorBody),
))]
pub async fn post_events(
    State(engine): State<Engine>,
    access: Access,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Items<EventResult>>), ApiError> {
    let events = parse_events(body)?;
    let items = engine
        .emit(&access, events)
        .await?
        .map_err(|name| workspace_not_found(&name))?;
    Ok((StatusCode::ACCEPTED, Json(Items { items })))
}

/// Reads and checks every event, collecting all problems with their index and field.
fn parse_events(body: Value) -> Result<Vec<EventIn>, ApiError> {
    let items = match body {
        Value::Array(items) => items,
        Value::Object(_) => vec![body],
        _ => {
            return Err(invalid(
                "the body must be an event object or an array of events",
                Vec::new(),
            ));
        }
    };
    if items.is_empty() {
        return Err(invalid("the array holds no events", Vec::new()));
    }
    if items.len() > MAX_EVENTS {
        return Err(invalid(
            &format!(
                "at most {MAX_EVENTS} events per request, got {}",
                items.len()
            ),
            Vec::new(),
        ));
    }
    let mut events = Vec::with_capacity(items.len());
    let mut problems: Vec<EventProblem> = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        // serde would also read an event from an array of its fields.
        if !item.is_object() {
            problems.push(EventProblem {
                index,
                field: String::new(),
                message: "an event must be a JSON object".to_string(),
            });
            continue;
        }
        match serde_json::from_value::<EventIn>(item) {
            Ok(event) => {
                problems.extend(check_event(index, &event));
                events.push(event);
            }
            Err(e) => problems.push(EventProblem {
                index,
                field: field_of(&e.to_string()),
                message: e.to_string(),
            }),
        }
    }
    if problems.is_empty() {
        return Ok(events);
    }
    let details = problems.iter().map(|p| json!(p)).collect();
    let count = problems.len();
    Err(invalid(
        &format!("{count} problem(s) in the events; nothing was stored"),
        details,
    ))
}

/// serde names the field in backquotes ("missing field `entity`", "unknown field `x`"); a bad
/// action is reported as an unknown variant, which names the value instead.
fn field_of(message: &str) -> String {
    if message.starts_with("unknown variant") {
        return "action".to_string();
    }
    message.split('`').nth(1).unwrap_or_default().to_string()
}

fn invalid(message: &str, details: Vec<Value>) -> ApiError {
    ApiError::Unprocessable {
        code: "invalid_event",
        message: message.to_string(),
        details,
    }
}
