//! What a run knows: the data of the trigger that started it (stored with the run) and the
//! template context built from it (SPEC §2): `event`, `entity`, `previous`, `changed`, `input`,
//! `steps`, `flow`, `run`, `secrets`, `now`. The context is built once per run execution and
//! updated in place as steps finish, so rendering never rebuilds it.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::core::time::rfc3339;
use crate::core::trigger_data::{ContextParts, TriggerData};
use crate::secrets::Secrets;

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

/// The template context of one run.
#[derive(Debug, Clone)]
pub struct RunContext {
    value: Value,
}

impl RunContext {
    pub fn new(trigger: &TriggerData, info: &RunInfo<'_>, secrets: &Secrets) -> RunContext {
        let mut root = Map::new();
        let ContextParts {
            event,
            entity,
            previous,
            changed,
            input,
        } = trigger.context_parts();
        root.insert("event".into(), event);
        root.insert("entity".into(), entity);
        root.insert("previous".into(), previous);
        root.insert("changed".into(), changed);
        root.insert("input".into(), input);
        root.insert("steps".into(), Value::Object(Map::new()));
        root.insert(
            "flow".into(),
            json!({ "id": crate::core::workspace::split_flow_key(info.flow_id).1, "name": info.flow_name, "revision": info.revision }),
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

    /// Replaces `secrets`: a change made while the run executes applies to its next attempt.
    pub fn set_secrets(&mut self, secrets: &Secrets) {
        if let Some(root) = self.value.as_object_mut() {
            root.insert("secrets".into(), secrets.to_context());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::trigger_data::{EventInfo, ManualEntity};

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
}
