//! Entity events: checking them, matching them against the flows' entity triggers, and storing
//! each event with the runs it starts in one transaction before answering, so an acknowledged
//! event is never lost. A repeated `event_id` starts nothing new and gets the first answer.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::core::id::new_id;
use crate::core::new_run::TriggerRecord;
use crate::core::time::rfc3339;
use crate::core::trigger_data::{
    EventInfo, MAX_ID_LEN, TriggerData, changed_fields, entity_with_id, text_or_number,
    text_or_number_schema,
};
use crate::core::workspace::DEFAULT_WORKSPACE;
use crate::flow::model::{self, EntityAction, EntityTrigger, Trigger};
use crate::flow::registry::FlowEntry;
use crate::store::events::NewEvent;
use crate::template::is_truthy;
use crate::trigger::{Intake, IntakeError};

/// An event as the host application sends it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"entity": "guest", "action": "update", "id": "42", "data": {"email": "ada@example.com"}, "previous": {"email": "ada@old.example.com"}, "event_id": "guest-42-v7"}))]
pub struct EventIn {
    /// The entity type: lower-case letters, digits, `_`, `.` and `-`, starting with a letter.
    #[schema(pattern = r"^[a-z][a-z0-9_.\-]{0,63}$")]
    pub entity: String,
    pub action: EntityAction,
    /// The entity's id (a number is taken as its text), at most 256 characters.
    #[serde(deserialize_with = "text_or_number")]
    #[schema(schema_with = text_or_number_schema)]
    pub id: String,
    /// The entity as it is now.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub data: Value,
    /// The entity before an update: lets triggers react to changed fields.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub previous: Option<Value>,
    /// The sender's id for this event: a repeated one starts nothing new.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 256)]
    pub event_id: Option<String>,
    /// The workspace of the event: an admin key may name any (else `default`); another key
    /// only its own, which is also what it gets without this field.
    #[serde(default)]
    #[schema(pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$")]
    pub workspace: Option<String>,
}

impl EventIn {
    /// The workspace the event belongs to.
    pub fn workspace(&self) -> &str {
        self.workspace.as_deref().unwrap_or(DEFAULT_WORKSPACE)
    }
}

/// How an event id is stored: as given in `default`, `@ws/id` elsewhere (and for a `default`
/// id that starts with `@`), so `event_id` is unique per workspace and the stored keys of two
/// workspaces never meet (a workspace name has no `/`).
pub fn event_key(workspace: &str, event_id: &str) -> String {
    if workspace == DEFAULT_WORKSPACE && !event_id.starts_with('@') {
        event_id.to_string()
    } else {
        format!("@{workspace}/{event_id}")
    }
}

/// The answer for one event: its id and the runs it started.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EventResult {
    pub event_id: String,
    pub runs: Vec<String>,
}

/// A problem with one event of a batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventProblem {
    pub index: usize,
    pub field: String,
    pub message: String,
}

/// Checks what serde cannot: ids and types that would make a useless or unsafe event.
pub fn check_event(index: usize, event: &EventIn) -> Vec<EventProblem> {
    let mut problems = Vec::new();
    let mut problem = |field: &str, message: &str| {
        problems.push(EventProblem {
            index,
            field: field.to_string(),
            message: message.to_string(),
        })
    };
    let entity_ok = event.entity.len() <= 64
        && event.entity.starts_with(|c: char| c.is_ascii_lowercase())
        && event
            .entity
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    if !entity_ok {
        problem(
            "entity",
            "must be an entity type of lower-case letters, digits, `_`, `.` and `-`, starting with a letter",
        );
    }
    // Characters, not bytes: JSON Schema's `maxLength` in the API document counts characters.
    if !id_length_ok(&event.id) {
        problem("id", "must be a non-empty id of at most 256 characters");
    }
    if event.event_id.as_ref().is_some_and(|e| !id_length_ok(e)) {
        problem(
            "event_id",
            "must be a non-empty id of at most 256 characters",
        );
    }
    if !(event.data.is_object() || event.data.is_null()) {
        problem("data", "must be an object");
    }
    if event
        .previous
        .as_ref()
        .is_some_and(|p| !(p.is_object() || p.is_null()))
    {
        problem("previous", "must be an object");
    }
    problems
}

/// An id of 1 to [`MAX_ID_LEN`] characters.
pub fn id_length_ok(id: &str) -> bool {
    !id.is_empty() && id.chars().count() <= MAX_ID_LEN
}

impl Intake {
    /// Stores events and the runs they start, in one transaction.
    /// Events must have passed [`check_event`].
    pub async fn emit(&self, events: Vec<EventIn>) -> Result<Vec<EventResult>, IntakeError> {
        let now = self.clock.now();
        let registry = self.registry();
        let mut first_of: HashMap<String, usize> = HashMap::new();
        let mut ids = Vec::with_capacity(events.len());
        let mut new_events = Vec::with_capacity(events.len());
        for event in &events {
            let event_id = event.event_id.clone().unwrap_or_else(new_id);
            let key = event_key(event.workspace(), &event_id);
            ids.push((event_id.clone(), key.clone()));
            // A batch may repeat an event id: the first occurrence decides.
            if first_of.insert(key.clone(), new_events.len()).is_some() {
                continue;
            }
            let matched: Vec<&FlowEntry> = registry
                .entity_triggers(event.workspace(), &event.entity)
                .filter(|(flow, i)| flow.takes_events() && fires(flow, *i, event, &event_id, now))
                .map(|(flow, _)| flow)
                .collect();
            let mut new = new_event(event, &event_id, &dedup_flows(matched), now)?;
            new.id = key;
            new_events.push(new);
        }
        let answers = self.writes.ingest(new_events).await?;
        self.metrics
            .events_ingested(events.iter().map(|e| e.entity.as_str()), |entity| {
                registry.listens_to(entity)
            });
        Ok(ids
            .into_iter()
            .map(|(event_id, key)| EventResult {
                runs: answers.get(&key).cloned().unwrap_or_default(),
                event_id,
            })
            .collect())
    }
}

impl Intake {
    /// The trigger data `event` gives `flow` when one of its entity triggers fires on it (its
    /// actions, ids, fields, `match` and `if`), storing nothing: a test of one flow starts its
    /// run with it, without recording the event (a later real event with the same id must not
    /// be taken for a repeat).
    pub fn event_trigger(&self, flow: &FlowEntry, event: &EventIn) -> Option<TriggerData> {
        let now = self.clock.now();
        let event_id = event.event_id.clone().unwrap_or_else(new_id);
        let fires_any = flow.flow.def.triggers.iter().enumerate().any(|(i, t)| {
            matches!(t, Trigger::Entity(e) if e.entity == event.entity)
                && fires(flow, i, event, &event_id, now)
        });
        fires_any.then(|| trigger_data(event, &event_id, now))
    }
}

/// One run per flow, even when several of its triggers match.
fn dedup_flows(mut flows: Vec<&FlowEntry>) -> Vec<&FlowEntry> {
    let mut seen = std::collections::HashSet::new();
    flows.retain(|f| seen.insert(f.id.clone()));
    flows
}

/// Whether the entity trigger `index` of `flow` fires for this event.
fn fires(
    flow: &FlowEntry,
    index: usize,
    event: &EventIn,
    event_id: &str,
    now: DateTime<Utc>,
) -> bool {
    let Some(Trigger::Entity(trigger)) = flow.flow.def.triggers.get(index) else {
        return false;
    };
    if !trigger.actions().contains(&event.action)
        || !ids_match(trigger, &event.id)
        || !fields_match(trigger, event)
        || !model::fields_match(trigger.matches.as_ref(), &event.data)
    {
        return false;
    }
    match flow.flow.conditions.get(index).and_then(Option::as_ref) {
        Some(condition) => is_truthy(&condition.render(&condition_context(event, event_id, now))),
        None => true,
    }
}

fn ids_match(trigger: &EntityTrigger, id: &str) -> bool {
    trigger
        .ids
        .as_ref()
        .is_none_or(|ids| ids.iter().any(|i| i.0 == id))
}

/// `fields` filters updates: one of them must have changed. Without `previous` the change cannot
/// be known, so every field present in `data` counts as changed.
fn fields_match(trigger: &EntityTrigger, event: &EventIn) -> bool {
    let Some(fields) = &trigger.fields else {
        return true;
    };
    if event.action != EntityAction::Update {
        return true;
    }
    let changed = match &event.previous {
        Some(previous) => changed_fields(previous, &event.data),
        None => event
            .data
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default(),
    };
    fields.iter().any(|f| changed.contains(f))
}

fn event_info(event: &EventIn, event_id: &str, now: DateTime<Utc>) -> EventInfo {
    EventInfo {
        id: event_id.to_string(),
        event_type: format!("{}.{}", event.entity, event.action),
        entity: event.entity.clone(),
        action: event.action.to_string(),
        entity_id: event.id.clone(),
        occurred_at: now,
    }
}

/// What a trigger's `if` sees: the event, before any step.
fn condition_context(event: &EventIn, event_id: &str, now: DateTime<Utc>) -> Value {
    let changed = event
        .previous
        .as_ref()
        .map(|p| changed_fields(p, &event.data))
        .unwrap_or_default();
    json!({
        "event": event_info(event, event_id, now),
        "entity": entity_with_id(&event.data, &event.id),
        "previous": event.previous.clone().unwrap_or(Value::Null),
        "changed": changed,
        "now": rfc3339(now),
    })
}

fn new_event(
    event: &EventIn,
    event_id: &str,
    flows: &[&FlowEntry],
    now: DateTime<Utc>,
) -> Result<NewEvent, IntakeError> {
    let millis = now.timestamp_millis();
    let data = trigger_data(event, event_id, now);
    let trigger = TriggerRecord::of(&data)?;
    let runs = flows
        .iter()
        .map(|flow| flow.new_run(&data, &trigger, millis))
        .collect();
    Ok(NewEvent {
        id: event_id.to_string(),
        entity: event.entity.clone(),
        action: event.action.to_string(),
        entity_id: event.id.clone(),
        data: event.data.to_string(),
        previous: event.previous.as_ref().map(Value::to_string),
        created_at: millis,
        runs,
    })
}

/// What a run started by `event` sees as its trigger.
fn trigger_data(event: &EventIn, event_id: &str, now: DateTime<Utc>) -> TriggerData {
    TriggerData::Entity {
        event: event_info(event, event_id, now),
        entity: entity_with_id(&event.data, &event.id),
        previous: event.previous.clone(),
        changed: event
            .previous
            .as_ref()
            .map(|p| changed_fields(p, &event.data))
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::event_key;

    #[test]
    fn event_keys_of_two_workspaces_never_meet() {
        assert_eq!(event_key("default", "ev-1"), "ev-1");
        assert_eq!(event_key("acme", "ev-1"), "@acme/ev-1");
        // A default id that looks like another workspace's key is kept apart from it.
        assert_eq!(event_key("default", "@acme/ev-1"), "@default/@acme/ev-1");
        assert_ne!(event_key("default", "acme/ev-1"), event_key("acme", "ev-1"));
    }
}
