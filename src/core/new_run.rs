//! The one way every trigger makes a run: [`NewRun::new`], for a flow revision and the data of
//! the trigger that started it. The run is `pending` and due at once; its deadline follows the
//! flow's `settings.timeout`.

use std::time::Duration;

use crate::core::id::new_id;
use crate::core::trigger_data::TriggerData;

/// The flow revision a new run executes.
#[derive(Debug, Clone, Copy)]
pub struct RunTarget<'a> {
    pub flow_id: &'a str,
    pub revision: i64,
    /// The flow's `settings.timeout`: the run fails if still not finished after it.
    pub timeout: Option<Duration>,
}

/// A trigger's data as stored with each run it starts: serialised once, shared by every run of
/// one event.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerRecord {
    pub json: String,
    /// The entity type and id the run is about, for filtering runs.
    pub entity: Option<(String, String)>,
}

impl TriggerRecord {
    pub fn of(trigger: &TriggerData) -> Result<TriggerRecord, serde_json::Error> {
        Ok(TriggerRecord {
            json: serde_json::to_string(trigger)?,
            entity: trigger
                .entity_ref()
                .map(|(t, id)| (t.to_string(), id.to_string())),
        })
    }
}

/// A run to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    pub id: String,
    pub flow_id: String,
    pub revision: i64,
    /// `TriggerData` as JSON.
    pub trigger: String,
    pub entity: Option<String>,
    pub entity_id: Option<String>,
    pub created_at: i64,
    pub deadline_at: Option<i64>,
    /// The flow's `settings.order_key` rendered for this run (`None`: not ordered).
    pub order_key: Option<String>,
}

impl NewRun {
    /// A new pending run of `target`, started by `trigger` at `now_ms`.
    pub fn new(target: RunTarget<'_>, trigger: &TriggerRecord, now_ms: i64) -> NewRun {
        let (entity, entity_id) = trigger.entity.clone().unzip();
        NewRun {
            id: new_id(),
            flow_id: target.flow_id.to_string(),
            revision: target.revision,
            trigger: trigger.json.clone(),
            entity,
            entity_id,
            created_at: now_ms,
            deadline_at: target
                .timeout
                .map(|t| now_ms.saturating_add(t.as_millis() as i64)),
            order_key: None,
        }
    }

    /// The same run, ordered behind earlier runs of its flow with the same key.
    pub fn with_order_key(self, order_key: Option<String>) -> NewRun {
        NewRun { order_key, ..self }
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use serde_json::json;

    use super::*;
    use crate::core::trigger_data::ManualEntity;

    #[test]
    fn a_new_run_carries_its_trigger_entity_and_deadline() {
        let trigger = TriggerData::Manual {
            input: json!({}),
            entity: Some(ManualEntity {
                entity_type: "invoice".into(),
                id: "7".into(),
                data: json!({}),
            }),
        };
        let record = TriggerRecord::of(&trigger).unwrap();
        let target = RunTarget {
            flow_id: "f",
            revision: 3,
            timeout: Some(Duration::from_secs(60)),
        };
        let run = NewRun::new(target, &record, 1_000);
        assert_eq!((run.flow_id.as_str(), run.revision), ("f", 3));
        assert_eq!(run.entity.as_deref(), Some("invoice"));
        assert_eq!(run.entity_id.as_deref(), Some("7"));
        assert_eq!((run.created_at, run.deadline_at), (1_000, Some(61_000)));
        assert_eq!(
            serde_json::from_str::<TriggerData>(&run.trigger).unwrap(),
            trigger
        );
        let schedule = TriggerData::Schedule {
            fire_at: DateTime::from_timestamp(0, 0).unwrap(),
        };
        let plain = NewRun::new(
            RunTarget {
                timeout: None,
                ..target
            },
            &TriggerRecord::of(&schedule).unwrap(),
            5,
        );
        assert_eq!((plain.entity, plain.deadline_at), (None, None));
        assert_ne!(plain.id, run.id);
    }
}
