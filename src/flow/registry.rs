//! The flows this node runs, compiled, with an index from entity type to the entity triggers
//! that listen for it, so matching an event never scans every flow. Rebuilt as a whole (and
//! swapped in) when flows change.

use std::collections::HashMap;
use std::sync::Arc;

use crate::core::new_run::{NewRun, RunTarget, TriggerRecord};
use crate::core::trigger_data::TriggerData;
use crate::core::workspace::{hook_key, split_flow_key, split_hook_key};
use crate::flow::compiled::CompiledFlow;
use crate::flow::model::{OnPause, RateLimit, Trigger};

/// One flow at its current revision.
#[derive(Debug, Clone)]
pub struct FlowEntry {
    pub id: String,
    pub name: String,
    pub revision: i64,
    pub enabled: bool,
    pub paused: bool,
    pub flow: Arc<CompiledFlow>,
}

impl FlowEntry {
    /// What a new run of the flow's current revision executes.
    pub fn target(&self) -> RunTarget<'_> {
        RunTarget {
            flow_id: &self.id,
            revision: self.revision,
            timeout: self.flow.timeout,
        }
    }

    /// A new run of the flow's current revision, started by `trigger` (stored as `record`)
    /// at `now_ms`, with its order key when the flow has one.
    pub fn new_run(&self, trigger: &TriggerData, record: &TriggerRecord, now_ms: i64) -> NewRun {
        NewRun::new(self.target(), record, now_ms).with_order_key(self.flow.order_key_of(trigger))
    }

    /// Whether the flow starts runs now.
    /// The workspace the flow belongs to (from its key).
    pub fn workspace(&self) -> &str {
        split_flow_key(&self.id).0
    }

    /// The flow's id within its workspace.
    pub fn bare_id(&self) -> &str {
        split_flow_key(&self.id).1
    }

    pub fn is_active(&self) -> bool {
        self.enabled && !self.paused
    }

    /// Whether events and webhooks start runs of the flow: when it is active, and while it is
    /// paused unless it says `on_pause: drop` (its runs are then created `held`).
    pub fn takes_events(&self) -> bool {
        self.enabled && (!self.paused || self.on_pause() == OnPause::Hold)
    }

    fn on_pause(&self) -> OnPause {
        let settings = self.flow.def.settings.as_ref();
        settings.and_then(|s| s.on_pause).unwrap_or_default()
    }
}

/// A flow whose runs the runner claims under a `concurrency`, a `rate_limit` or an
/// `order_key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowLimits {
    pub flow_id: String,
    pub concurrency: Option<u32>,
    pub rate_limit: Option<RateLimit>,
    /// Runs with the same order key execute one at a time, in creation order.
    pub ordered: bool,
}

#[derive(Debug, Default)]
pub struct Registry {
    flows: HashMap<String, FlowEntry>,
    /// Workspace → entity type → (flow key, trigger index) of every entity trigger on it: an
    /// event matches only flows of its workspace.
    by_entity: HashMap<String, HashMap<String, Vec<(String, usize)>>>,
    /// Webhook key (`path` in `default`, `@ws/path` elsewhere) → (flow key, trigger index).
    by_webhook: HashMap<String, (String, usize)>,
    limited: Vec<FlowLimits>,
    limited_ids: Vec<String>,
}

/// Two webhook paths with the same key clash: they differ at most in letter case.
pub fn webhook_clash_key(path: &str) -> String {
    path.to_lowercase()
}

/// Why webhook `path` of flow `flow` is refused beside `spelling`, the clashing path of flow
/// `other` (`where_` says where that flow is written, e.g. its file, or is empty).
pub fn webhook_taken_message(
    path: &str,
    flow: &str,
    spelling: &str,
    other: &str,
    where_: &str,
) -> String {
    if path == spelling {
        format!("webhook path `{path}` is already used by flow `{other}`{where_}")
    } else {
        format!(
            "webhook path `{path}` of flow `{flow}` differs only in letter case from `{spelling}` \
             of flow `{other}`{where_}: requests match paths exactly, so the two would look alike \
             but start different flows; choose a path that differs in more than case"
        )
    }
}

/// Why webhook path `second` is refused after `first` in the same flow.
pub fn same_flow_clash_message(first: &str, second: &str) -> String {
    if first == second {
        format!("webhook path `{second}` is used twice in this flow")
    } else {
        format!(
            "webhook paths `{first}` and `{second}` of this flow differ only in letter case; \
             choose paths that differ in more than case"
        )
    }
}

impl Registry {
    pub fn new(entries: Vec<FlowEntry>) -> Registry {
        let mut by_entity: HashMap<String, HashMap<String, Vec<(String, usize)>>> = HashMap::new();
        let mut by_webhook = HashMap::new();
        for entry in &entries {
            let workspace = entry.workspace();
            for (i, trigger) in entry.flow.def.triggers.iter().enumerate() {
                match trigger {
                    Trigger::Entity(t) => by_entity
                        .entry(workspace.to_string())
                        .or_default()
                        .entry(t.entity.clone())
                        .or_default()
                        .push((entry.id.clone(), i)),
                    Trigger::Webhook(w) => {
                        let key = hook_key(workspace, &w.webhook.path);
                        by_webhook.insert(key, (entry.id.clone(), i));
                    }
                    _ => {}
                }
            }
        }
        let limited: Vec<FlowLimits> = entries.iter().filter_map(limits_of).collect();
        Registry {
            limited_ids: limited.iter().map(|l| l.flow_id.clone()).collect(),
            limited,
            flows: entries.into_iter().map(|e| (e.id.clone(), e)).collect(),
            by_entity,
            by_webhook,
        }
    }

    /// The flow listening at webhook key `path` (`hook_key`), with the index of that trigger.
    pub fn webhook(&self, path: &str) -> Option<(&FlowEntry, usize)> {
        let (id, index) = self.by_webhook.get(path)?;
        self.flows.get(id).map(|f| (f, *index))
    }

    /// The flow listening at a path that equals `path` but for letter case, with that path as
    /// it is spelled there. Requests match paths exactly, but `sec` and `SEC` beside each other
    /// look alike to a person and to case-insensitive proxies, so a second one is refused. A
    /// scan, not an index: it runs only when a flow is saved.
    /// `path` is a webhook key (`hook_key`); the spelling returned is the other flow's path.
    pub fn webhook_alike(&self, path: &str) -> Option<(&FlowEntry, &str)> {
        let key = webhook_clash_key(path);
        let (spelling, (id, _)) = self
            .by_webhook
            .iter()
            .find(|(other, _)| webhook_clash_key(other) == key)?;
        let (_, spelling) = split_hook_key(spelling);
        self.flows.get(id).map(|f| (f, spelling))
    }

    /// Flows with a concurrency or rate limit, or an order key.
    pub fn limited(&self) -> &[FlowLimits] {
        &self.limited
    }

    /// The ids of [`Registry::limited`], for the claim of unlimited runs to leave out.
    pub fn limited_ids(&self) -> &[String] {
        &self.limited_ids
    }

    pub fn get(&self, id: &str) -> Option<&FlowEntry> {
        self.flows.get(id)
    }

    pub fn flows(&self) -> impl Iterator<Item = &FlowEntry> {
        self.flows.values()
    }

    /// Whether a flow of any workspace listens to entity type `entity` (bounds the metric's
    /// label values to the types flows name).
    pub fn listens_to(&self, entity: &str) -> bool {
        self.by_entity
            .values()
            .any(|by_type| by_type.contains_key(entity))
    }

    /// The entity triggers of `workspace`'s flows listening to `entity`, with their flows.
    pub fn entity_triggers(
        &self,
        workspace: &str,
        entity: &str,
    ) -> impl Iterator<Item = (&FlowEntry, usize)> {
        self.by_entity
            .get(workspace)
            .and_then(|by_type| by_type.get(entity))
            .into_iter()
            .flatten()
            .filter_map(|(id, i)| self.flows.get(id).map(|f| (f, *i)))
    }
}

fn limits_of(entry: &FlowEntry) -> Option<FlowLimits> {
    let settings = entry.flow.def.settings.as_ref()?;
    let ordered = settings.order_key.is_some();
    (settings.concurrency.is_some() || settings.rate_limit.is_some() || ordered).then(|| {
        FlowLimits {
            flow_id: entry.id.clone(),
            concurrency: settings.concurrency,
            rate_limit: settings.rate_limit,
            ordered,
        }
    })
}
