//! Step kinds. Each kind lives in one file named after its YAML key (`map`, `http`, `notify`,
//! `delay`) and holds its configuration type (part of the flow format) and, as the runner grows,
//! its execution. [`StepKind`] is a closed enum: an exhaustive `match` reads best for a few kinds.

pub mod check;
pub mod delay;
pub mod http;
pub mod map;
pub mod notify;
pub mod retry;

use std::time::Duration;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::core::diagnostic::{Diagnostic, FlowPath};
use crate::metrics::Metrics;
pub use crate::outbound::Delivery;
use crate::outbound::record::Redactor;
use crate::outbound::{self, HttpClient, OutboundRequest, Outcome};
use crate::step::check::{Context, Findings, Secret};
use crate::step::delay::DelayConfig;
use crate::step::http::{HttpConfig, HttpStep};
use crate::step::map::{MapConfig, MapStep};
use crate::step::notify::email::Mailer;
use crate::step::notify::{NotifyConfig, NotifyStep};
use crate::step::retry::RetryPolicy;
use crate::store::Store;
use crate::template::{Template, TemplateStr, compile_text};

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

impl StepEnv {
    /// Sends one request through the guarded client, or in a dry run only prepares and records
    /// it; redacted with the engine's secrets either way.
    pub async fn send(&self, request: &OutboundRequest) -> outbound::Attempt {
        self.http
            .attempt_in(self.delivery, request, &self.redactor)
            .await
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

impl StepKind<'_> {
    /// Checks the kind's configuration at `path` (`steps[i].<kind>`).
    pub fn validate(&self, path: &FlowPath, cx: &Context<'_>) -> Vec<Diagnostic> {
        match self {
            StepKind::Map(c) => map::validate(c, path, cx),
            StepKind::Http(c) => http::validate(c, path, cx),
            StepKind::Notify(c) => notify::validate(c, path, cx),
            StepKind::Delay(c) => delay::validate(c, path, cx),
        }
    }
}

/// Validates one step at `path` (`steps[i]`): its `if`, that it sets exactly one kind, and that
/// kind's own rules. The one entry point of step validation, called by `flow::validate` with
/// the flow's [`Context`] (which earlier steps the templates may use, the options, positions).
pub fn validate(step: &StepDef, path: &FlowPath, cx: &Context<'_>) -> Vec<Diagnostic> {
    let mut found = Findings::new(cx);
    if let Some(condition) = &step.condition {
        found.template(condition, path.key("if"), Secret::No);
    }
    match step.kinds().as_slice() {
        [] => found.error(
            path.clone(),
            "a step needs one of `map`, `http`, `notify` or `delay`",
        ),
        [kind] => found.extend(kind.validate(&path.key(kind.name()), cx)),
        [first, second, ..] => found.error(
            path.key(second.name()),
            format!(
                "a step does one thing: it has both `{}` and `{}`; split it into two steps",
                first.name(),
                second.name()
            ),
        ),
    }
    found.finish()
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

pub const STEP_ID_PATTERN: &str = "^[a-z0-9_]+$";

/// One step: common fields plus exactly one kind (`map`, `http`, `notify` or `delay`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepDef {
    /// Unique in the flow; the step's output is `steps.<id>` in later templates.
    #[schemars(regex(pattern = STEP_ID_PATTERN), extend("x-message" = "a step id of lower-case letters, digits and `_`"))]
    pub id: String,
    /// A template; when it renders falsy the step is skipped.
    #[serde(default, rename = "if", skip_serializing_if = "Option::is_none")]
    pub condition: Option<TemplateStr>,
    /// What a failure does: `fail` the run (default) or `continue` with output `{error: ...}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<OnError>,
    /// Field mapping: any value, with templates inside strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<MapConfig>,
    /// An HTTP request, retried until it succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpConfig>,
    /// A notification: inbox, email, Slack or Discord.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<NotifyConfig>,
    /// A durable wait, e.g. `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<DelayConfig>,
}

/// Step kind keys, in the order they are documented.
pub const STEP_KINDS: [&str; 4] = ["map", "http", "notify", "delay"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    #[default]
    Fail,
    Continue,
}

#[derive(Debug)]
pub struct CompiledStep {
    pub id: String,
    pub condition: Option<Template>,
    pub on_error: OnError,
    pub action: Action,
}

#[derive(Debug)]
pub enum Action {
    Map(MapStep),
    Http(Box<HttpStep>),
    Notify(Box<NotifyStep>),
    Delay(DelayConfig),
}

/// What the runner does with a step, by kind: evaluate it in place (`map`), wait (`delay`), or
/// commit first and then perform one attempt of a side effect (`http`, `notify`).
#[derive(Debug, Clone, Copy)]
pub enum Plan<'a> {
    Map(&'a MapStep),
    Delay(std::time::Duration),
    SideEffect(crate::step::retry::Retry),
}

impl Action {
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Map(_) => "map",
            Action::Http(_) => "http",
            Action::Notify(_) => "notify",
            Action::Delay(_) => "delay",
        }
    }

    /// How the runner treats this step.
    pub fn plan(&self) -> Plan<'_> {
        match self {
            Action::Map(map) => Plan::Map(map),
            Action::Delay(delay) => Plan::Delay(delay.to_std()),
            Action::Http(http) => Plan::SideEffect(http.retry),
            Action::Notify(notify) => Plan::SideEffect(notify.retry),
        }
    }

    /// One attempt of a step with side effects; `None` for steps without (`map`, `delay`).
    pub async fn perform(&self, env: &StepEnv, call: &StepCall<'_>) -> Option<Attempt> {
        match self {
            Action::Http(http) => Some(http.execute(env, call).await),
            Action::Notify(notify) => Some(notify.execute(env, call).await),
            Action::Map(_) | Action::Delay(_) => None,
        }
    }
}

impl CompiledStep {
    /// Compiles one validated step, with the flow's default retry policy.
    pub fn compile(
        step: &StepDef,
        flow_retry: Option<&RetryPolicy>,
    ) -> Result<CompiledStep, String> {
        let action = match step.kind() {
            Some(StepKind::Map(c)) => Action::Map(MapStep::compile(c)?),
            Some(StepKind::Http(c)) => Action::Http(Box::new(HttpStep::compile(c, flow_retry)?)),
            Some(StepKind::Notify(c)) => {
                Action::Notify(Box::new(NotifyStep::compile(c, flow_retry)?))
            }
            Some(StepKind::Delay(d)) => Action::Delay(*d),
            None => return Err(format!("step `{}` has no kind", step.id)),
        };
        Ok(CompiledStep {
            id: step.id.clone(),
            condition: step
                .condition
                .as_ref()
                .map(|t| compile_text(t.as_str()))
                .transpose()?,
            on_error: step.on_error.unwrap_or_default(),
            action,
        })
    }
}
