//! What executing a step needs and what it returns: the engine's shared parts ([`StepEnv`]),
//! which run and step an execution belongs to ([`StepCall`]), and how one attempt of a step with
//! side effects ended ([`Attempt`], [`StepOutcome`]), in the runner's terms. An attempt of the
//! HTTP client converts into one, so every kind that sends through `crate::outbound` reports the
//! same way.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::metrics::Metrics;
use crate::outbound::record::{LiveRedactor, Redactor};
use crate::outbound::{self, Delivery, HttpClient, OutboundRequest, Outcome};
use crate::step::notify::email::Mailer;
use crate::store::Store;

/// What a step's execution needs from the engine, shared by every run.
#[derive(Clone)]
pub struct StepEnv {
    pub http: HttpClient,
    pub mailer: Option<Mailer>,
    /// Redacts the secrets as of now (they change at run time).
    pub redactor: LiveRedactor,
    pub store: Store,
    /// This node's name, recorded with each attempt.
    pub node: String,
    /// Whether steps act or only render what they would do.
    pub delivery: Delivery,
    /// The engine's metrics, which steps count their attempts in.
    pub metrics: Metrics,
}

impl StepEnv {
    /// Sends one request through the guarded client, or in a dry run only prepares and records
    /// it; redacted with the engine's secrets either way, and with `derived`: what templates
    /// reading secrets rendered for this request (an upper-cased token, say).
    pub async fn send(&self, request: &OutboundRequest, derived: &[String]) -> outbound::Attempt {
        let redactor = self.redactor_with(derived);
        self.http
            .attempt_in(self.delivery, request, &redactor)
            .await
    }

    /// The engine's redactor (every secret and its encodings) plus `derived`: what templates
    /// reading secrets rendered for this attempt.
    pub fn redactor_with(&self, derived: &[String]) -> Arc<Redactor> {
        let redactor = self.redactor.current();
        if derived.is_empty() {
            redactor
        } else {
            Arc::new(redactor.with_derived(derived))
        }
    }
}

/// One execution of a step with side effects: which run and step, and the rendered context.
pub struct StepCall<'a> {
    pub run_id: &'a str,
    pub flow_id: &'a str,
    pub step_id: &'a str,
    pub context: &'a Value,
}

impl StepCall<'_> {
    /// `<run_id>_<step_id>`: the same on every retry of the step.
    pub fn idempotency_key(&self) -> String {
        format!("{}_{}", self.run_id, self.step_id)
    }
}

/// The code an attempt's error starts with when a secret the step reads is not set.
pub const MISSING_SECRET: &str = "missing_secret";

/// How an attempt of a step ended.
#[derive(Debug, Clone, PartialEq)]
pub enum StepOutcome {
    Succeeded(Value),
    /// Worth another attempt (connection errors, timeouts, 408, 429, 5xx), after `after` if the
    /// target said so.
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// Retrying cannot help (other 4xx, bad configuration).
    Fail {
        error: String,
        output: Option<Value>,
    },
}

/// One attempt of a step with side effects, as recorded for people.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub outcome: StepOutcome,
    pub request: Option<Value>,
    pub response: Option<Value>,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
}

impl From<outbound::Attempt> for Attempt {
    /// An attempt of the HTTP client in the runner's terms.
    fn from(attempt: outbound::Attempt) -> Attempt {
        let outcome = match attempt.outcome {
            Outcome::Succeeded { output } => StepOutcome::Succeeded(output),
            Outcome::Retry { error, retry_after } => StepOutcome::Retry {
                error,
                after: retry_after,
            },
            Outcome::Fail { error, output } => StepOutcome::Fail { error, output },
        };
        let record = attempt.record;
        Attempt {
            outcome,
            request: serde_json::to_value(&record.request).ok(),
            response: record
                .response
                .as_ref()
                .and_then(|r| serde_json::to_value(r).ok()),
            started_at: record.started_at,
            duration_ms: record.duration_ms,
        }
    }
}
