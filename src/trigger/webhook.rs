//! Inbound webhooks: `POST /hooks/{path}` starts a run of the flow listening there, with the
//! body as `input`. With a `secret`, the request must carry a valid Standard Webhooks signature
//! (timestamp within 5 minutes). A repeated `webhook-id` on the same path starts nothing new
//! and gets the first run's id: senders retry, flowd runs once. A request that does not pass
//! the trigger's `match` or `if` is answered and starts nothing.

use axum::http::HeaderMap;
use serde_json::{Map, Value, json};

use crate::core::new_run::TriggerRecord;
use crate::core::time::rfc3339;
use crate::core::trigger_data::TriggerData;
use crate::flow::model::{self, Trigger};
use crate::flow::registry::FlowEntry;
use crate::outbound::sign::{SignatureHeaders, verify_any};
use crate::store::starts::{OnceKey, RunStart, Started};
use crate::template::is_truthy;
use crate::trigger::{Intake, IntakeError};

/// How far a signed request's timestamp may be from now.
pub const TOLERANCE_SECS: i64 = 300;

/// What a webhook request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// `None` when the request does not pass the trigger's `match` or `if`: nothing started.
    pub run_id: Option<String>,
    /// False when the `webhook-id` was seen before and no run was started.
    pub started: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("no webhook at /hooks/{0}")]
    UnknownPath(String),
    #[error("flow `{0}` is paused; resume it to receive webhooks")]
    Paused(String),
    #[error(
        "the webhook's signing secret `{0}` is not set: set it with `flowd secrets set {0}` or PUT /api/v1/secrets/{0}"
    )]
    MissingSecret(String),
    #[error("the signature does not verify: {0}")]
    BadSignature(String),
    #[error("the body is not valid: {0}")]
    BadBody(String),
    #[error(transparent)]
    Intake(#[from] IntakeError),
}

impl Intake {
    /// Handles one webhook request.
    pub async fn receive_webhook(
        &self,
        path: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Received, WebhookError> {
        let registry = self.registry();
        let (flow, index) = registry
            .webhook(path)
            .ok_or_else(|| WebhookError::UnknownPath(path.into()))?;
        if !flow.takes_events() {
            return Err(WebhookError::Paused(flow.id.clone()));
        }
        let signature = SignatureHeaders::from_header_map(headers);
        if let Some(templates) = flow.flow.webhook_secrets.get(index)
            && !templates.is_empty()
        {
            let secrets = self.secrets.current_in(flow.workspace());
            // A key that is not set must not turn into an empty key that checks nothing.
            if let Some(name) = templates
                .iter()
                .flat_map(|t| t.secret_names())
                .find(|name| !secrets.is_set(name))
            {
                return Err(WebhookError::MissingSecret(name));
            }
            let context = json!({ "secrets": secrets.to_context() });
            let keys: Vec<String> = templates.iter().map(|t| t.render_text(&context)).collect();
            let now = self.clock.now_ms() / 1000;
            verify_any(&keys, &signature, body, now, TOLERANCE_SECS)
                .map_err(|e| WebhookError::BadSignature(e.to_string()))?;
        }
        let input = parse_body(headers, body)?;
        self.metrics.webhook_received(&flow.id);
        if !passes_filters(flow, index, &input, self.clock.now()) {
            return Ok(Received {
                run_id: None,
                started: false,
            });
        }
        let trigger = TriggerData::Webhook {
            path: path.to_string(),
            input,
        };
        let record = TriggerRecord::of(&trigger).map_err(IntakeError::from)?;
        let start = RunStart {
            run: flow.new_run(&trigger, &record, self.clock.now_ms()),
            once: signature
                .id
                .filter(|id| !id.is_empty())
                .map(|webhook_id| OnceKey::Webhook {
                    path: path.to_string(),
                    webhook_id: webhook_id.to_string(),
                }),
        };
        let run_id = start.run.id.clone();
        let started = self
            .writes
            .start_runs(vec![start])
            .await
            .map_err(IntakeError::from)?;
        Ok(match started.into_iter().next() {
            Some(Started::Repeat(first)) => Received {
                run_id: Some(first.unwrap_or(run_id)),
                started: false,
            },
            Some(Started::New(_)) | None => Received {
                run_id: Some(run_id),
                started: true,
            },
        })
    }
}

/// Whether the request passes the trigger's `match` (on the body) and `if` (seeing `input`
/// and `now`).
fn passes_filters(
    flow: &FlowEntry,
    index: usize,
    input: &Value,
    now: chrono::DateTime<chrono::Utc>,
) -> bool {
    let Some(Trigger::Webhook(trigger)) = flow.flow.def.triggers.get(index) else {
        return true;
    };
    if !model::fields_match(trigger.webhook.matches.as_ref(), input) {
        return false;
    }
    match flow.flow.conditions.get(index).and_then(Option::as_ref) {
        Some(condition) => {
            let context = json!({"input": input, "now": rfc3339(now)});
            is_truthy(&condition.render(&context))
        }
        None => true,
    }
}

/// The body as `input`: JSON when it says JSON (or looks like it without a type), an object of
/// fields for a form, else the text.
fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, WebhookError> {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let media = content_type.split(';').next().unwrap_or_default().trim();
    if body.is_empty() {
        return Ok(Value::Null);
    }
    if media == "application/json" || media.ends_with("+json") {
        return serde_json::from_slice(body)
            .map_err(|e| WebhookError::BadBody(format!("declared JSON but {e}")));
    }
    if media == "application/x-www-form-urlencoded" {
        let fields: Map<String, Value> = url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect();
        return Ok(Value::Object(fields));
    }
    let text = std::str::from_utf8(body).map_err(|_| {
        WebhookError::BadBody("the body is neither JSON, a form nor UTF-8 text".into())
    })?;
    if media.is_empty()
        && let Ok(json) = serde_json::from_str::<Value>(text)
    {
        return Ok(json);
    }
    Ok(Value::String(text.to_string()))
}
