//! Step kinds, as components: each kind is one module under `step/`, named after its YAML key
//! (`map`, `http`, `notify`, `delay`), with its configuration (part of the flow format, so
//! `///` docs feed `flowd schema`), its `validate` returning diagnostics, its compilation and its
//! execution. This file is the floor plan that ties them together: the list of kinds
//! ([`StepKind`] and its compiled twin [`Action`], declared once by `step_kinds!`), the raw
//! [`StepDef`] that serde reads, the one entry point of step validation ([`validate`]) and
//! compilation ([`CompiledStep::compile`]).
//!
//! Adding a kind: a module here, a line in `step_kinds!`, its key in [`StepDef`], and one arm in
//! each `match` the compiler then points at, all in this file. Nothing outside `step/` changes.
//! The kinds are a closed enum, not a registry: an exhaustive `match` reads best for a few.

pub mod check;
pub mod delay;
mod execute;
pub mod http;
pub mod map;
pub mod notify;
pub mod retry;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::core::diagnostic::{Diagnostic, FlowPath};
pub use crate::outbound::Delivery;
use crate::step::check::{Context, Findings, Secret};
use crate::step::delay::DelayConfig;
pub use crate::step::execute::{Attempt, MISSING_SECRET, StepCall, StepEnv, StepOutcome};
use crate::step::http::{HttpConfig, HttpStep};
use crate::step::map::{MapConfig, MapStep};
use crate::step::notify::{NotifyConfig, NotifyStep};
use crate::step::retry::RetryPolicy;
use crate::template::{Template, TemplateStr, compile_text};

/// Declares the step kinds from one list, `key: Variant(Config) => Compiled`: [`StepKind`] (a
/// kind with its configuration as written), [`Action`] (the same kind compiled), their YAML
/// keys ([`StepKind::key`], [`Action::kind`], [`STEP_KINDS`]) and [`StepDef::kinds`], which
/// reads the key of the same name in [`StepDef`].
macro_rules! step_kinds {
    ($($key:ident: $variant:ident($config:ty) => $compiled:ty),+ $(,)?) => {
        /// The kind of a step with its configuration as written.
        #[derive(Debug, Clone, Copy)]
        pub enum StepKind<'a> {
            $($variant(&'a $config),)+
        }

        /// The kind of a step, compiled once per flow revision: what the runner executes.
        #[derive(Debug)]
        pub enum Action {
            $($variant($compiled),)+
        }

        /// Step kind keys, in the order they are documented.
        pub const STEP_KINDS: [&str; [$(stringify!($key)),+].len()] = [$(stringify!($key)),+];

        impl StepKind<'_> {
            /// The kind's key in YAML.
            pub fn key(&self) -> &'static str {
                match self {
                    $(StepKind::$variant(_) => stringify!($key),)+
                }
            }
        }

        impl Action {
            /// The kind's key in YAML, as recorded with each step of a run.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Action::$variant(_) => stringify!($key),)+
                }
            }
        }

        impl StepDef {
            /// Every kind key set on this step, in the order of [`STEP_KINDS`]; a valid step
            /// has exactly one.
            pub fn kinds(&self) -> Vec<StepKind<'_>> {
                let mut kinds = Vec::with_capacity(1);
                $(
                    if let Some(config) = &self.$key {
                        kinds.push(StepKind::$variant(config));
                    }
                )+
                kinds
            }
        }
    };
}

step_kinds! {
    map: Map(MapConfig) => MapStep,
    http: Http(HttpConfig) => Box<HttpStep>,
    notify: Notify(NotifyConfig) => Box<NotifyStep>,
    delay: Delay(DelayConfig) => DelayConfig,
}

pub const STEP_ID_PATTERN: &str = "^[a-z0-9_]+$";

// The raw form serde reads: the common fields and one optional key per kind, converted to a
// `StepKind` by `kinds()`. Not `#[serde(flatten)]` over an enum, which would silently turn
// `deny_unknown_fields` off (STYLE.md). Its `///` docs are part of `flowd schema`.
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

impl StepDef {
    /// The step's kind; `None` only for a step that failed validation.
    pub fn kind(&self) -> Option<StepKind<'_>> {
        self.kinds().into_iter().next()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    #[default]
    Fail,
    Continue,
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
            format!("a step needs one of {}", one_of(&STEP_KINDS)),
        ),
        [kind] => found.extend(kind.validate(&path.key(kind.key()), cx)),
        [first, second, ..] => found.error(
            path.key(second.key()),
            format!(
                "a step does one thing: it has both `{}` and `{}`; split it into two steps",
                first.key(),
                second.key()
            ),
        ),
    }
    found.finish()
}

/// `` `a`, `b` or `c` ``.
fn one_of(keys: &[&str]) -> String {
    let quoted: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
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

    /// Compiles the kind's configuration, with the flow's default retry policy.
    pub fn compile(&self, flow_retry: Option<&RetryPolicy>) -> Result<Action, String> {
        Ok(match self {
            StepKind::Map(c) => Action::Map(MapStep::compile(c)?),
            StepKind::Http(c) => Action::Http(Box::new(HttpStep::compile(c, flow_retry)?)),
            StepKind::Notify(c) => Action::Notify(Box::new(NotifyStep::compile(c, flow_retry)?)),
            StepKind::Delay(d) => Action::Delay(**d),
        })
    }
}

#[derive(Debug)]
pub struct CompiledStep {
    pub id: String,
    pub condition: Option<Template>,
    pub on_error: OnError,
    pub action: Action,
    /// The secrets the step's templates read by name: each must be set before an attempt.
    pub secret_names: Vec<String>,
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
        let Some(kind) = step.kind() else {
            return Err(format!("step `{}` has no kind", step.id));
        };
        Ok(CompiledStep {
            id: step.id.clone(),
            condition: step
                .condition
                .as_ref()
                .map(|t| compile_text(t.as_str()))
                .transpose()?,
            on_error: step.on_error.unwrap_or_default(),
            action: kind.compile(flow_retry)?,
            secret_names: secret_names(step),
        })
    }
}

/// The secrets read by name (`secrets.NAME`) anywhere in a step's definition, in order: found by
/// walking the definition's strings, so every kind (and every future field) is covered.
pub fn secret_names(step: &StepDef) -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(value) = serde_json::to_value(step) {
        collect_secret_names(&value, &mut names);
    }
    names
}

fn collect_secret_names(value: &serde_json::Value, names: &mut Vec<String>) {
    match value {
        serde_json::Value::String(text) if text.contains("{{") => {
            for name in Template::compile(text)
                .map(|t| t.secret_names())
                .unwrap_or_default()
            {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        serde_json::Value::Array(items) => {
            items.iter().for_each(|v| collect_secret_names(v, names));
        }
        serde_json::Value::Object(fields) => {
            fields.values().for_each(|v| collect_secret_names(v, names));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_listed_once_in_documented_order() {
        assert_eq!(STEP_KINDS, ["map", "http", "notify", "delay"]);
        assert_eq!(one_of(&STEP_KINDS), "`map`, `http`, `notify` or `delay`");
        assert_eq!(one_of(&["map"]), "`map`");
    }

    #[test]
    fn a_step_converts_to_the_kinds_it_sets() {
        let step: StepDef =
            serde_json::from_value(serde_json::json!({"id": "wait", "delay": "10m"}))
                .expect("a delay step");
        let kinds = step.kinds();
        assert_eq!(
            kinds.iter().map(StepKind::key).collect::<Vec<_>>(),
            ["delay"]
        );
        let compiled = CompiledStep::compile(&step, None).expect("compiles");
        assert_eq!(compiled.action.kind(), "delay");
    }
}
