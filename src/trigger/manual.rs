//! Manual triggers: a person runs a flow's action, with `input` and optionally on one entity
//! (`POST /api/v1/flows/{id}/trigger`), and the actions a host application can offer on an
//! entity type (`GET /api/v1/actions?entity=`).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::core::time::rfc3339;
use crate::core::trigger_data::{ManualEntity, TriggerData, entity_with_id};
use crate::flow::model::{ManualTrigger, Trigger};
use crate::flow::registry::FlowEntry;
use crate::template::is_truthy;
use crate::trigger::{Intake, IntakeError};

/// The body of a manual trigger request.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"input": {"reason": "lost"}, "entity": {"type": "invoice", "id": "7", "data": {"number": "F-7"}}}))]
pub struct ManualRequest {
    /// What the flow reads as `input`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub input: Value,
    /// The entity the action runs on, for flows whose manual trigger names an entity type.
    #[serde(default)]
    pub entity: Option<ManualEntity>,
}

/// One action offered on an entity type.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Action {
    /// The flow's id within its workspace.
    pub flow: String,
    /// The workspace of the flow.
    pub workspace: String,
    pub label: String,
    pub entity: String,
}

/// Why a manual trigger was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManualError {
    #[error("no flow `{0}`")]
    UnknownFlow(String),
    #[error("flow `{0}` is paused; resume it to run it")]
    Paused(String),
    #[error("flow `{0}` is disabled (`enabled: false`)")]
    Disabled(String),
    #[error("flow `{0}` has no manual trigger")]
    NoManualTrigger(String),
    #[error("{0}")]
    EntityMismatch(String),
    #[error("the action of flow `{0}` does not apply here: its `if` does not hold")]
    NotApplicable(String),
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Intake(#[from] IntakeError),
}

impl Intake {
    /// Starts a run of `flow_id` by hand and returns its id.
    pub async fn trigger_manual(
        &self,
        flow_id: &str,
        request: ManualRequest,
    ) -> Result<String, ManualError> {
        check_request(&request)?;
        let registry = self.registry();
        let flow = registry
            .get(flow_id)
            .ok_or_else(|| ManualError::UnknownFlow(flow_id.into()))?;
        if flow.paused {
            return Err(ManualError::Paused(flow_id.into()));
        }
        if !flow.enabled {
            return Err(ManualError::Disabled(flow_id.into()));
        }
        let trigger = fitting_trigger(flow, request.entity.as_ref())?;
        if !applies(flow, trigger, &request, self.clock.now()) {
            return Err(ManualError::NotApplicable(flow_id.into()));
        }
        let trigger = TriggerData::Manual {
            input: request.input,
            entity: request.entity,
        };
        Ok(self.start_run(flow, &trigger).await?)
    }

    /// The manual actions of active flows on `entity`, sorted by label.
    pub fn actions(&self, entity: &str) -> Vec<Action> {
        self.actions_where(|_, t| t.entity.as_deref() == Some(entity))
    }

    /// The manual actions on `entity`'s type whose `if` holds for this entity (its `input` is
    /// null), sorted by label: what its page offers. Triggering one still checks the `if`.
    pub fn actions_applying(&self, entity: &ManualEntity) -> Vec<Action> {
        let request = ManualRequest {
            input: Value::Null,
            entity: Some(entity.clone()),
        };
        let now = self.clock.now();
        self.actions_where(|flow, t| {
            t.entity.as_deref() == Some(entity.entity_type.as_str())
                && applies(flow, t, &request, now)
        })
    }

    /// Every manual action of active flows, by entity type then label; `entity` is empty for
    /// actions that take no entity.
    pub fn every_action(&self) -> Vec<Action> {
        let mut actions = self.actions_where(|_, _| true);
        actions.sort_by(|a, b| a.entity.cmp(&b.entity));
        actions
    }

    fn actions_where(&self, offered: impl Fn(&FlowEntry, &ManualTrigger) -> bool) -> Vec<Action> {
        let registry = self.registry();
        let mut actions: Vec<Action> = registry
            .flows()
            .filter(|f| f.is_active())
            .flat_map(|f| manual_triggers(f).map(move |t| (f, t)))
            .filter(|(f, t)| offered(f, t))
            .map(|(f, t)| Action {
                flow: f.bare_id().to_string(),
                workspace: f.workspace().to_string(),
                label: t.label.clone(),
                entity: t.entity.clone().unwrap_or_default(),
            })
            .collect();
        actions.sort_by(|a, b| a.label.cmp(&b.label).then_with(|| a.flow.cmp(&b.flow)));
        actions
    }
}

fn manual_triggers(flow: &FlowEntry) -> impl Iterator<Item = &ManualTrigger> {
    flow.flow.def.triggers.iter().filter_map(|t| match t {
        Trigger::Manual(m) => Some(&m.manual),
        _ => None,
    })
}

/// The flow's manual trigger that accepts this entity (or none given).
fn fitting_trigger<'a>(
    flow: &'a FlowEntry,
    entity: Option<&ManualEntity>,
) -> Result<&'a ManualTrigger, ManualError> {
    let triggers: Vec<&ManualTrigger> = manual_triggers(flow).collect();
    if triggers.is_empty() {
        return Err(ManualError::NoManualTrigger(flow.id.clone()));
    }
    let fits = |t: &&ManualTrigger| match (&t.entity, entity) {
        (Some(wanted), Some(given)) => *wanted == given.entity_type,
        (Some(_), None) => false,
        (None, _) => true,
    };
    if let Some(trigger) = triggers.iter().find(|t| fits(t)) {
        return Ok(trigger);
    }
    let wanted: Vec<&str> = triggers
        .iter()
        .filter_map(|t| t.entity.as_deref())
        .collect();
    Err(ManualError::EntityMismatch(match entity {
        Some(given) => format!(
            "flow `{}` runs on entity type {}, not `{}`",
            flow.id,
            quoted(&wanted),
            given.entity_type
        ),
        None => format!(
            "flow `{}` runs on one entity: send `entity: {{type: {}, id, data}}`",
            flow.id,
            quoted(&wanted)
        ),
    }))
}

/// Whether the trigger's `if` holds for this request (no `if`: always). It sees the entity
/// (with its id), the input and the time.
fn applies(
    flow: &FlowEntry,
    trigger: &ManualTrigger,
    request: &ManualRequest,
    now: chrono::DateTime<chrono::Utc>,
) -> bool {
    let index = flow.flow.def.triggers.iter().position(|t| match t {
        Trigger::Manual(m) => std::ptr::eq(&m.manual, trigger),
        _ => false,
    });
    let Some(condition) = index.and_then(|i| flow.flow.conditions.get(i)?.as_ref()) else {
        return true;
    };
    let entity = request
        .entity
        .as_ref()
        .map_or(Value::Null, |e| entity_with_id(&e.data, &e.id));
    let context = json!({"entity": entity, "input": request.input, "now": rfc3339(now)});
    is_truthy(&condition.render(&context))
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(" or ")
}

fn check_request(request: &ManualRequest) -> Result<(), ManualError> {
    if !(request.input.is_object() || request.input.is_null()) {
        return Err(ManualError::BadRequest("`input` must be an object".into()));
    }
    if let Some(entity) = &request.entity {
        if !crate::trigger::entity::id_length_ok(&entity.id) {
            return Err(ManualError::BadRequest(
                "`entity.id` must be a non-empty id of at most 256 characters".into(),
            ));
        }
        if !(entity.data.is_object() || entity.data.is_null()) {
            return Err(ManualError::BadRequest(
                "`entity.data` must be an object".into(),
            ));
        }
    }
    Ok(())
}
