//! What a run knows: the data of the trigger that started it (stored with the run) and the
//! template context built from it (SPEC §2): `event`, `entity`, `previous`, `changed`, `input`,
//! `steps`, `flow`, `run`, `secrets`, `now`. The context is built once per run execution and
//! updated in place as steps finish, so rendering never rebuilds it.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use crate::secrets::Secrets;

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

/// The OpenAPI schema of what `text_or_number` reads: a string or a number.
pub fn text_or_number_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Number]))
        .build()
}

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

/// `flow` and `run` of the context.
#[derive(Debug, Clone)]
pub struct RunInfo<'a> {
    pub flow_id: &'a str,
    pub flow_name: &'a str,
    pub revision: i64,
    pub run_id: &'a str,
    pub attempt: i64,
    pub started_at: DateTime<Utc>,
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

/// The template context of one run.
#[derive(Debug, Clone)]
pub struct RunContext {
    value: Value,
}

impl RunContext {
    pub fn new(trigger: &TriggerData, info: &RunInfo<'_>, secrets: &Secrets) -> RunContext {
        let mut root = Map::new();
        let (event, entity, previous, changed, input) = match trigger {
            TriggerData::Entity {
                event,
                entity,
                previous,
                changed,
            } => (
                serde_json::to_value(event).unwrap_or(Value::Null),
                entity.clone(),
                previous.clone().unwrap_or(Value::Null),
                json!(changed),
                Value::Null,
            ),
            TriggerData::Manual { input, entity } => (
                Value::Null,
                entity
                    .as_ref()
                    .map_or(Value::Null, |e| entity_with_id(&e.data, &e.id)),
                Value::Null,
                Value::Null,
                input.clone(),
            ),
            TriggerData::Schedule { fire_at } => (
                json!({ "type": "schedule", "occurred_at": rfc3339(*fire_at) }),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
            ),
            TriggerData::Webhook { input, .. } => (
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                input.clone(),
            ),
        };
        root.insert("event".into(), event);
        root.insert("entity".into(), entity);
        root.insert("previous".into(), previous);
        root.insert("changed".into(), changed);
        root.insert("input".into(), input);
        root.insert("steps".into(), Value::Object(Map::new()));
        root.insert(
            "flow".into(),
            json!({ "id": info.flow_id, "name": info.flow_name, "revision": info.revision }),
        );
        root.insert(
            "run".into(),
            json!({ "id": info.run_id, "attempt": info.attempt, "started_at": rfc3339(info.started_at) }),
        );
        root.insert("secrets".into(), secrets.to_context());
        root.insert("now".into(), Value::String(rfc3339(Utc::now())));
        RunContext {
            value: Value::Object(root),
        }
    }

    /// Records a step's output (`null` for a skipped step) under `steps.<id>`.
    pub fn set_step_output(&mut self, step_id: &str, output: Value) {
        if let Some(steps) = self.value.get_mut("steps").and_then(Value::as_object_mut) {
            steps.insert(step_id.to_string(), output);
        }
    }

    pub fn set_now(&mut self, now: DateTime<Utc>) {
        if let Some(root) = self.value.as_object_mut() {
            root.insert("now".into(), Value::String(rfc3339(now)));
        }
    }

    pub fn value(&self) -> &Value {
        &self.value
    }
}

/// RFC 3339 in UTC with milliseconds, the one time format of the API and templates.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> RunInfo<'static> {
        RunInfo {
            flow_id: "f",
            flow_name: "F",
            revision: 3,
            run_id: "r1",
            attempt: 1,
            started_at: DateTime::from_timestamp(0, 0).unwrap(),
        }
    }

    #[test]
    fn changed_lists_fields_that_differ_added_or_removed() {
        let before = json!({"a": 1, "b": 2, "gone": true});
        let after = json!({"a": 1, "b": 3, "new": null});
        assert_eq!(changed_fields(&before, &after), ["b", "gone", "new"]);
        assert!(changed_fields(&Value::Null, &after).is_empty());
    }

    #[test]
    fn entity_context_has_event_entity_previous_and_changed() {
        let trigger = TriggerData::Entity {
            event: EventInfo {
                id: "e1".into(),
                event_type: "guest.update".into(),
                entity: "guest".into(),
                action: "update".into(),
                entity_id: "42".into(),
                occurred_at: DateTime::from_timestamp(1, 0).unwrap(),
            },
            entity: json!({"id": "42", "status": "confirmed"}),
            previous: Some(json!({"id": "42", "status": "new"})),
            changed: vec!["status".into()],
        };
        let secrets = Secrets::from_pairs([("TOKEN".to_string(), "t".to_string())]);
        let mut cx = RunContext::new(&trigger, &info(), &secrets);
        cx.set_step_output("contact", json!({"x": 1}));
        let v = cx.value();
        assert_eq!(v["event"]["type"], "guest.update");
        assert_eq!(v["entity"]["status"], "confirmed");
        assert_eq!(v["previous"]["status"], "new");
        assert_eq!(v["changed"], json!(["status"]));
        assert_eq!(v["steps"]["contact"]["x"], 1);
        assert_eq!(v["flow"]["revision"], 3);
        assert_eq!(v["run"]["id"], "r1");
        assert_eq!(v["secrets"]["TOKEN"], "t");
        assert!(v["now"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn manual_entity_gets_its_id() {
        let trigger = TriggerData::Manual {
            input: json!({"note": "again"}),
            entity: Some(ManualEntity {
                entity_type: "invoice".into(),
                id: "7".into(),
                data: json!({"total": 10}),
            }),
        };
        let cx = RunContext::new(&trigger, &info(), &Secrets::default());
        assert_eq!(cx.value()["entity"], json!({"id": "7", "total": 10}));
        assert_eq!(cx.value()["input"]["note"], "again");
        assert_eq!(trigger.entity_ref(), Some(("invoice", "7")));
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
