//! The flows this node runs, compiled, with an index from entity type to the entity triggers
//! that listen for it, so matching an event never scans every flow. Rebuilt as a whole (and
//! swapped in) when flows change.

use std::collections::HashMap;
use std::sync::Arc;

use crate::flow::compiled::CompiledFlow;
use crate::flow::model::Trigger;

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
    /// Whether the flow starts runs now.
    pub fn is_active(&self) -> bool {
        self.enabled && !self.paused
    }
}

#[derive(Debug, Default)]
pub struct Registry {
    flows: HashMap<String, FlowEntry>,
    /// Entity type → (flow id, trigger index) of every entity trigger on it.
    by_entity: HashMap<String, Vec<(String, usize)>>,
}

impl Registry {
    pub fn new(entries: Vec<FlowEntry>) -> Registry {
        let mut by_entity: HashMap<String, Vec<(String, usize)>> = HashMap::new();
        for entry in &entries {
            for (i, trigger) in entry.flow.def.triggers.iter().enumerate() {
                if let Trigger::Entity(t) = trigger {
                    by_entity
                        .entry(t.entity.clone())
                        .or_default()
                        .push((entry.id.clone(), i));
                }
            }
        }
        Registry {
            flows: entries.into_iter().map(|e| (e.id.clone(), e)).collect(),
            by_entity,
        }
    }

    pub fn get(&self, id: &str) -> Option<&FlowEntry> {
        self.flows.get(id)
    }

    pub fn flows(&self) -> impl Iterator<Item = &FlowEntry> {
        self.flows.values()
    }

    /// The entity triggers listening to `entity`, with their flows.
    pub fn entity_triggers(&self, entity: &str) -> impl Iterator<Item = (&FlowEntry, usize)> {
        self.by_entity
            .get(entity)
            .into_iter()
            .flatten()
            .filter_map(|(id, i)| self.flows.get(id).map(|f| (f, *i)))
    }
}
