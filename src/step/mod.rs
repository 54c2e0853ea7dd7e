//! Step kinds. Each kind lives in one file named after its YAML key (`map`, `http`, `notify`,
//! `delay`) and holds its configuration type (part of the flow format) and, as the runner grows,
//! its execution. [`StepKind`] is a closed enum: an exhaustive `match` reads best for a few kinds.

pub mod delay;
pub mod http;
pub mod map;
pub mod notify;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::flow::model::StepDef;
use crate::metrics::Metrics;
use crate::step::http::client::HttpClient;
use crate::step::http::record::Redactor;
use crate::step::notify::email::Mailer;
use crate::store::Store;

/// What a step's execution needs from the engine, shared by every run.
#[derive(Clone)]
pub struct StepEnv {
    pub http: HttpClient,
    pub mailer: Option<Mailer>,
    pub redactor: Redactor,
    pub store: Store,
    /// This node's name, recorded with each attempt.
    pub node: String,
    /// Whether steps act or only render what they would do.
    pub delivery: Delivery,
    /// The engine's metrics, which steps count their attempts in.
    pub metrics: Metrics,
}

/// Whether steps with side effects act (`Send`, always in `flowd serve`) or only render what
/// they would send and succeed without sending (`DryRun`, for `flowd run --dry-run`). A dry run
/// goes through the same rendering, checks, encoding and redaction as a real attempt, so what it
/// shows is what would go out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Delivery {
    #[default]
    Send,
    DryRun,
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

/// The kind of a step with its configuration.
#[derive(Debug, Clone, Copy)]
pub enum StepKind<'a> {
    Map(&'a map::MapConfig),
    Http(&'a http::HttpConfig),
    Notify(&'a notify::NotifyConfig),
    Delay(&'a delay::DelayConfig),
}

impl StepKind<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            StepKind::Map(_) => "map",
            StepKind::Http(_) => "http",
            StepKind::Notify(_) => "notify",
            StepKind::Delay(_) => "delay",
        }
    }
}

impl StepDef {
    /// Every kind key set on this step; a valid step has exactly one.
    pub fn kinds(&self) -> Vec<StepKind<'_>> {
        let mut kinds = Vec::with_capacity(1);
        if let Some(c) = &self.map {
            kinds.push(StepKind::Map(c));
        }
        if let Some(c) = &self.http {
            kinds.push(StepKind::Http(c));
        }
        if let Some(c) = &self.notify {
            kinds.push(StepKind::Notify(c));
        }
        if let Some(c) = &self.delay {
            kinds.push(StepKind::Delay(c));
        }
        kinds
    }

    /// The step's kind; `None` only for a step that failed validation.
    pub fn kind(&self) -> Option<StepKind<'_>> {
        self.kinds().into_iter().next()
    }
}
