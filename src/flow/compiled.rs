//! A flow revision prepared for execution: every template compiled once, defaults resolved
//! (retry policy, timeouts). Runs of the same revision share one `Arc<CompiledFlow>`.

use std::time::Duration;

use crate::flow::model::{FlowDef, OnError, RetryPolicy, Trigger};
use crate::flow::template::Template;
use crate::step::delay::DelayConfig;
use crate::step::http::HttpStep;
use crate::step::map::MapStep;
use crate::step::notify::NotifyStep;

/// Default retry policy of steps with side effects (SPEC §4): 12 attempts, 10 s, at most 2 h.
pub const DEFAULT_RETRY: Retry = Retry {
    attempts: 12,
    delay: Duration::from_secs(10),
    max_delay: Duration::from_secs(2 * 3600),
};

/// A resolved retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub attempts: u32,
    pub delay: Duration,
    pub max_delay: Duration,
}

impl Retry {
    /// The step's policy over the flow's over the defaults, field by field.
    pub fn resolve(step: Option<&RetryPolicy>, flow: Option<&RetryPolicy>) -> Retry {
        let pick =
            |f: fn(&RetryPolicy) -> Option<u64>| step.and_then(f).or_else(|| flow.and_then(f));
        Retry {
            attempts: step
                .and_then(|p| p.attempts)
                .or_else(|| flow.and_then(|p| p.attempts))
                .unwrap_or(DEFAULT_RETRY.attempts),
            delay: pick(|p| p.delay.map(|d| d.as_millis()))
                .map_or(DEFAULT_RETRY.delay, Duration::from_millis),
            max_delay: pick(|p| p.max_delay.map(|d| d.as_millis()))
                .map_or(DEFAULT_RETRY.max_delay, Duration::from_millis),
        }
    }
}

#[derive(Debug)]
pub struct CompiledFlow {
    pub id: String,
    pub name: String,
    pub revision: i64,
    pub def: FlowDef,
    pub steps: Vec<CompiledStep>,
    /// The `if` of each trigger, by trigger index.
    pub conditions: Vec<Option<Template>>,
    /// The `secret` of each webhook trigger, by trigger index.
    pub webhook_secrets: Vec<Option<Template>>,
    pub timeout: Option<Duration>,
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

impl Action {
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Map(_) => "map",
            Action::Http(_) => "http",
            Action::Notify(_) => "notify",
            Action::Delay(_) => "delay",
        }
    }
}

impl CompiledFlow {
    /// Compiles a validated flow definition. Errors only for definitions that skipped validation.
    pub fn compile(
        id: &str,
        name: &str,
        revision: i64,
        def: FlowDef,
    ) -> Result<CompiledFlow, String> {
        let settings = def.settings.clone().unwrap_or_default();
        let steps = def
            .steps
            .iter()
            .map(|step| {
                let action = match step.kind() {
                    Some(crate::step::StepKind::Map(c)) => Action::Map(MapStep::compile(c)?),
                    Some(crate::step::StepKind::Http(c)) => {
                        Action::Http(Box::new(HttpStep::compile(c, settings.retry.as_ref())?))
                    }
                    Some(crate::step::StepKind::Notify(c)) => {
                        Action::Notify(Box::new(NotifyStep::compile(c, settings.retry.as_ref())?))
                    }
                    Some(crate::step::StepKind::Delay(d)) => Action::Delay(*d),
                    None => return Err(format!("step `{}` has no kind", step.id)),
                };
                Ok(CompiledStep {
                    id: step.id.clone(),
                    condition: compile_opt(step.condition.as_ref().map(|t| t.as_str()))?,
                    on_error: step.on_error.unwrap_or_default(),
                    action,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let conditions = def
            .triggers
            .iter()
            .map(|t| match t {
                Trigger::Entity(e) => compile_opt(e.condition.as_ref().map(|c| c.as_str())),
                _ => Ok(None),
            })
            .collect::<Result<Vec<_>, String>>()?;
        let webhook_secrets = def
            .triggers
            .iter()
            .map(|t| match t {
                Trigger::Webhook(w) => compile_opt(w.webhook.secret.as_ref().map(|s| s.as_str())),
                _ => Ok(None),
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(CompiledFlow {
            id: id.to_string(),
            name: name.to_string(),
            revision,
            timeout: settings.timeout.map(|t| t.to_std()),
            def,
            steps,
            conditions,
            webhook_secrets,
        })
    }
}

/// Compiles a template, turning an error into text for `compile` results.
pub fn compile_text(source: &str) -> Result<Template, String> {
    Template::compile(source).map_err(|e| e.to_string())
}

fn compile_opt(source: Option<&str>) -> Result<Option<Template>, String> {
    source.map(compile_text).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::duration::Duration as FlowDuration;

    #[test]
    fn retry_policy_resolves_field_by_field() {
        let step = RetryPolicy {
            attempts: Some(3),
            delay: None,
            max_delay: None,
        };
        let flow = RetryPolicy {
            attempts: Some(9),
            delay: Some(FlowDuration::from_secs(2)),
            max_delay: None,
        };
        let r = Retry::resolve(Some(&step), Some(&flow));
        assert_eq!(r.attempts, 3);
        assert_eq!(r.delay, Duration::from_secs(2));
        assert_eq!(r.max_delay, DEFAULT_RETRY.max_delay);
        assert_eq!(Retry::resolve(None, None), DEFAULT_RETRY);
    }
}
