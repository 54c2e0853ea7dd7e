//! What started a run (SPEC §2 context): the data of the trigger, stored as JSON with the run
//! (`runs.trigger`) and read back to build the template context. Also the small rules every
//! trigger shares about entities: the `id` filled in, the fields an update changed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

/// What started a run, stored as JSON in `runs.trigger`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TriggerData {
    Entity {
        event: EventInfo,
        entity: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous: Option<Value>,
        #[serde(default)]
        changed: Vec<String>,
    },
    Manual {
        #[serde(default)]
        input: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        entity: Option<ManualEntity>,
    },
    Schedule {
        fire_at: DateTime<Utc>,
    },
    Webhook {
        path: String,
        #[serde(default)]
        input: Value,
    },
}

impl TriggerData {
    pub fn kind(&self) -> &'static str {
        match self {
            TriggerData::Entity { .. } => "entity",
            TriggerData::Manual { .. } => "manual",
            TriggerData::Schedule { .. } => "schedule",
            TriggerData::Webhook { .. } => "webhook",
        }
    }

    /// The entity type and id the run is about, for filtering runs.
    pub fn entity_ref(&self) -> Option<(&str, &str)> {
        match self {
            TriggerData::Entity { event, .. } => Some((&event.entity, &event.entity_id)),
            TriggerData::Manual {
                entity: Some(e), ..
            } => Some((&e.entity_type, &e.id)),
            _ => None,
        }
    }

    /// The parts of the template context that come from the trigger (SPEC §2): `event`,
    /// `entity`, `previous`, `changed`, `input`; `null` where the trigger has none.
    pub fn context_parts(&self) -> ContextParts {
        let none = ContextParts {
            event: Value::Null,
            entity: Value::Null,
            previous: Value::Null,
            changed: Value::Null,
            input: Value::Null,
        };
        match self {
            TriggerData::Entity {
                event,
                entity,
                previous,
                changed,
            } => ContextParts {
                event: serde_json::to_value(event).unwrap_or(Value::Null),
                entity: entity.clone(),
                previous: previous.clone().unwrap_or(Value::Null),
                changed: json!(changed),
                ..none
            },
            TriggerData::Manual { input, entity } => ContextParts {
                entity: entity
                    .as_ref()
                    .map_or(Value::Null, |e| entity_with_id(&e.data, &e.id)),
                input: input.clone(),
                ..none
            },
            TriggerData::Schedule { fire_at } => ContextParts {
                event: json!({ "type": "schedule", "occurred_at": crate::core::time::rfc3339(*fire_at) }),
                ..none
            },
            TriggerData::Webhook { input, .. } => ContextParts {
                input: input.clone(),
                ..none
            },
        }
    }
}

/// What [`TriggerData::context_parts`] gives.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextParts {
    pub event: Value,
    pub entity: Value,
    pub previous: Value,
    pub changed: Value,
    pub input: Value,
}

/// The `event` object of the context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventInfo {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub entity: String,
    pub action: String,
    pub entity_id: String,
    pub occurred_at: DateTime<Utc>,
}

/// The entity a manual action runs on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ManualEntity {
    /// The entity type, as the flow's manual trigger names it.
    #[serde(rename = "type")]
    pub entity_type: String,
    /// The entity's id (a number is taken as its text).
    #[serde(deserialize_with = "text_or_number")]
    #[schema(schema_with = text_or_number_schema)]
    pub id: String,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub data: Value,
}

/// The OpenAPI schema of an entity id as `text_or_number` reads it: a string of 1 to 256
/// characters, or a number (the lengths constrain strings only).
pub fn text_or_number_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Number]))
        .min_length(Some(1))
        .max_length(Some(MAX_ID_LEN))
        .build()
}

/// Longest entity or event id, in bytes.
pub const MAX_ID_LEN: usize = 256;

/// An id given as a string or a number; kept as text.
pub fn text_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "expected a string or a number, found {other}"
        ))),
    }
}

/// Names of the top-level fields whose value differs between `previous` and `current`.
pub fn changed_fields(previous: &Value, current: &Value) -> Vec<String> {
    let (Some(before), Some(after)) = (previous.as_object(), current.as_object()) else {
        return Vec::new();
    };
    let mut changed: Vec<String> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .chain(before.keys().filter(|k| !after.contains_key(*k)).cloned())
        .collect();
    changed.sort();
    changed
}

/// The entity's data with its `id` filled in when the sender left it out, so `{{entity.id}}`
/// always works.
pub fn entity_with_id(data: &Value, id: &str) -> Value {
    match data {
        Value::Object(map) if !map.contains_key("id") => {
            let mut map = map.clone();
            map.insert("id".to_string(), Value::String(id.to_string()));
            Value::Object(map)
        }
        Value::Null => json!({ "id": id }),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_lists_fields_that_differ_added_or_removed() {
        let before = json!({"a": 1, "b": 2, "gone": true});
        let after = json!({"a": 1, "b": 3, "new": null});
        assert_eq!(changed_fields(&before, &after), ["b", "gone", "new"]);
        assert!(changed_fields(&Value::Null, &after).is_empty());
    }

    #[test]
    fn trigger_data_round_trips_as_tagged_json() {
        let t = TriggerData::Webhook {
            path: "p".into(),
            input: json!({"a": 1}),
        };
        let text = serde_json::to_string(&t).unwrap();
        assert!(text.contains("\"kind\":\"webhook\""));
        assert_eq!(serde_json::from_str::<TriggerData>(&text).unwrap(), t);
    }
}
