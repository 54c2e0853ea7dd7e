//! Inbound webhooks: `POST /hooks/{path}` starts a run of the flow listening there, with the
//! body as `input`. With a `secret`, the request must carry a valid Standard Webhooks signature
//! (timestamp within 5 minutes). A repeated `webhook-id` on the same path starts nothing new
//! and gets the first run's id: senders retry, flowd runs once.

use axum::http::HeaderMap;
use chrono::Utc;
use serde_json::{Map, Value, json};

use crate::engine::runs::new_run;
use crate::engine::{Engine, EngineError};
use crate::runner::context::TriggerData;
use crate::step::http::sign::{SignatureHeaders, verify};
use crate::store::{StoreError, runs, webhooks};

/// How far a signed request's timestamp may be from now.
pub const TOLERANCE_SECS: i64 = 300;

/// What a webhook request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub run_id: String,
    /// False when the `webhook-id` was seen before and no run was started.
    pub started: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("no webhook at /hooks/{0}")]
    UnknownPath(String),
    #[error("flow `{0}` is paused; resume it to receive webhooks")]
    Paused(String),
    #[error("the signature does not verify: {0}")]
    BadSignature(String),
    #[error("the body is not valid: {0}")]
    BadBody(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl Engine {
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
        if !flow.is_active() {
            return Err(WebhookError::Paused(flow.id.clone()));
        }
        let signature = SignatureHeaders::from_header_map(headers);
        if let Some(Some(secret)) = flow.flow.webhook_secrets.get(index) {
            let secret = secret.render_text(&json!({ "secrets": self.secrets().to_context() }));
            let now = Utc::now().timestamp();
            verify(&secret, &signature, body, now, TOLERANCE_SECS)
                .map_err(|e| WebhookError::BadSignature(e.to_string()))?;
        }
        let input = parse_body(headers, body)?;
        self.metrics().webhook_received(&flow.id);
        let trigger = TriggerData::Webhook {
            path: path.to_string(),
            input,
        };
        let now = Utc::now().timestamp_millis();
        let run = new_run(flow, &trigger, now)?;
        let store = self.store();
        let txn = store.begin_write().await.map_err(EngineError::from)?;
        if let Some(webhook_id) = signature.id.filter(|id| !id.is_empty()) {
            let first = webhooks::remember(&txn, store.backend(), path, webhook_id, &run.id, now)
                .await
                .map_err(EngineError::from)?;
            if let Some(run_id) = first {
                return Ok(Received {
                    run_id,
                    started: false,
                });
            }
        }
        runs::insert_runs(&txn, store.backend(), std::slice::from_ref(&run))
            .await
            .map_err(EngineError::from)?;
        txn.commit()
            .await
            .map_err(|e| EngineError::from(StoreError::from(e)))?;
        self.wake_runner();
        Ok(Received {
            run_id: run.id,
            started: true,
        })
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
