//! A flow revision prepared for execution: every template compiled once, defaults resolved
//! (retry policy, timeouts). Runs of the same revision share one `Arc<CompiledFlow>`.

use std::time::Duration;

use crate::core::trigger_data::TriggerData;
use crate::flow::model::{FlowDef, Trigger};
use crate::step::CompiledStep;
use crate::template::{Template, compile_text};

/// A stored definition that cannot be compiled (it was stored by a newer flowd, or altered).
#[derive(Debug, thiserror::Error)]
#[error("flow `{flow}` revision {revision} cannot be loaded: {reason}")]
pub struct BrokenRevision {
    pub flow: String,
    pub revision: i64,
    pub reason: String,
}

impl BrokenRevision {
    pub fn new(flow: &str, revision: i64, reason: impl Into<String>) -> BrokenRevision {
        BrokenRevision {
            flow: flow.to_string(),
            revision,
            reason: reason.into(),
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
    /// The `secret`s of each webhook trigger, by trigger index (empty: no signature required).
    pub webhook_secrets: Vec<Vec<Template>>,
    pub timeout: Option<Duration>,
    /// `settings.order_key`, compiled.
    pub order_key: Option<Template>,
}

impl CompiledFlow {
    /// Compiles a revision from its stored JSON definition.
    pub fn from_definition(
        id: &str,
        name: &str,
        revision: i64,
        definition: &str,
    ) -> Result<CompiledFlow, BrokenRevision> {
        let def: FlowDef = serde_json::from_str(definition)
            .map_err(|e| BrokenRevision::new(id, revision, e.to_string()))?;
        CompiledFlow::compile(id, name, revision, def)
            .map_err(|e| BrokenRevision::new(id, revision, e))
    }

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
            .map(|step| CompiledStep::compile(step, settings.retry.as_ref()))
            .collect::<Result<Vec<_>, String>>()?;
        let conditions = def
            .triggers
            .iter()
            .map(|t| match t {
                Trigger::Entity(e) => compile_opt(e.condition.as_ref().map(|c| c.as_str())),
                Trigger::Manual(m) => compile_opt(m.manual.condition.as_ref().map(|c| c.as_str())),
                Trigger::Webhook(w) => {
                    compile_opt(w.webhook.condition.as_ref().map(|c| c.as_str()))
                }
                Trigger::Schedule(s) => {
                    compile_opt(s.schedule.condition.as_ref().map(|c| c.as_str()))
                }
            })
            .collect::<Result<Vec<_>, String>>()?;
        let webhook_secrets = def
            .triggers
            .iter()
            .map(|t| match t {
                Trigger::Webhook(w) => w
                    .webhook
                    .secret
                    .as_ref()
                    .map_or(Ok(Vec::new()), |s| s.compile()),
                _ => Ok(Vec::new()),
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(CompiledFlow {
            id: id.to_string(),
            name: name.to_string(),
            revision,
            timeout: settings.timeout.map(|t| t.to_std()),
            order_key: compile_opt(settings.order_key.as_ref().map(|k| k.as_str()))?,
            def,
            steps,
            conditions,
            webhook_secrets,
        })
    }
}

impl CompiledFlow {
    /// The order key of a run started by `trigger`: `settings.order_key` rendered with the
    /// trigger's data (no steps, no secrets: the key is stored with the run). A key that
    /// renders empty orders nothing, so such runs execute as if the flow had no key.
    pub fn order_key_of(&self, trigger: &TriggerData) -> Option<String> {
        let template = self.order_key.as_ref()?;
        let parts = trigger.context_parts();
        let context = serde_json::json!({
            "event": parts.event,
            "entity": parts.entity,
            "previous": parts.previous,
            "changed": parts.changed,
            "input": parts.input,
            "flow": { "id": crate::core::workspace::split_flow_key(&self.id).1, "name": self.name, "revision": self.revision },
        });
        let key = template.render_text(&context);
        (!key.is_empty()).then_some(key)
    }

    /// Every secret the flow reads by name (steps, webhook keys), in order, once each: what
    /// `GET /api/v1/secrets` lists as `used_by` and what start-up checks are set.
    pub fn secret_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        let from_steps = self
            .steps
            .iter()
            .flat_map(|s| s.secret_names.iter().cloned());
        let from_hooks = self
            .webhook_secrets
            .iter()
            .flatten()
            .flat_map(|t| t.secret_names());
        for name in from_steps.chain(from_hooks) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }
}

fn compile_opt(source: Option<&str>) -> Result<Option<Template>, String> {
    source.map(compile_text).transpose()
}
