//! The flow format as Rust types: what a flow file (or a flow sent to the API) says, before any
//! defaults are applied. Every field carries a `///` doc because these types generate the JSON
//! Schema that `flowd schema` prints and that validation checks files against. Step kinds keep
//! their configuration in `crate::step::<kind>`.

use std::collections::BTreeMap;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize};

use crate::core::duration::Duration;
use crate::step::StepDef;
use crate::step::notify::{Channel, NotifyConfig};
use crate::step::retry::RetryPolicy;
use crate::template::{TemplateList, TemplateStr};

pub const FLOW_ID_PATTERN: &str = "^[a-z0-9][a-z0-9_-]{0,63}$";
pub const ENTITY_PATTERN: &str = r"^[a-z][a-z0-9_.-]{0,63}$";
pub const RATE_LIMIT_PATTERN: &str = r"^[1-9][0-9]{0,8}/(s|sec|second|m|min|minute|h|hour)$";
pub const WEBHOOK_PATH_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9_.~/-]{0,127}$";

/// A flow: triggers that start runs, and steps that each run executes in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "flowd flow")]
pub struct FlowDef {
    /// Unique id of the flow; defaults to the file name without extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = FLOW_ID_PATTERN), extend("x-message" = "an id of lower-case letters, digits, `_` and `-`, starting with a letter or digit, at most 64 characters"))]
    pub id: Option<String>,
    /// The workspace the flow belongs to (SPEC §11); defaults to the folder under the flows
    /// folder if any, else `default`. Flow ids and webhook paths are unique per workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = FLOW_ID_PATTERN), extend("x-message" = "a workspace name of lower-case letters, digits, `_` and `-`, starting with a letter or digit, at most 64 characters"))]
    pub workspace: Option<String>,
    /// Name shown to people; defaults to the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A disabled flow starts no runs. Default true. Pausing through the API overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// What starts a run: one or more triggers.
    pub triggers: Vec<Trigger>,
    /// Limits and defaults for the flow's runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Settings>,
    /// The steps each run executes, in order.
    pub steps: Vec<StepDef>,
}

/// One trigger: an entity event, a manual action, a schedule or a webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Trigger {
    Entity(EntityTrigger),
    Manual(ManualWrapper),
    Schedule(ScheduleWrapper),
    Webhook(WebhookWrapper),
}

/// Starts a run when an entity of the host application is created, updated or deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EntityTrigger {
    /// The entity type, e.g. `guest`.
    #[schemars(regex(pattern = ENTITY_PATTERN), extend("x-message" = "an entity type of lower-case letters, digits, `_`, `.` and `-`, starting with a letter"))]
    pub entity: String,
    /// Which actions fire: `create`, `update`, `delete` (one or a list). Default: all three.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<OneOrMany<EntityAction>>,
    /// Only these entity ids (compared as text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<EntityId>>,
    /// Update only: fire only if one of these top-level fields changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<String>>,
    /// Field equality without templates: `{store: [S1, S2], "customer.country": IT}`. Every
    /// key must match; a dotted key reads nested fields of the entity; a list means any of.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matches: Option<BTreeMap<String, OneOrMany<MatchValue>>>,
    /// A template; the trigger fires only when it renders truthy.
    #[serde(default, rename = "if", skip_serializing_if = "Option::is_none")]
    pub condition: Option<TemplateStr>,
}

/// One value a `match` key accepts: text, a number or a boolean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum MatchValue {
    // No `///` on these variants: validation tells them apart by their JSON types.
    Text(String),
    Number(f64),
    Bool(bool),
}

impl MatchValue {
    /// Whether `actual` equals this value, as a person reads them: `7` and `"7"` are equal,
    /// and so are `true` and `"true"`.
    pub fn equals(&self, actual: &serde_json::Value) -> bool {
        use serde_json::Value as V;
        let number = |text: &str| text.trim().parse::<f64>().ok();
        match (self, actual) {
            (MatchValue::Text(t), V::String(s)) => t == s,
            (MatchValue::Text(t), V::Number(n)) => number(t).is_some_and(|f| n.as_f64() == Some(f)),
            (MatchValue::Text(t), V::Bool(b)) => *t == b.to_string(),
            (MatchValue::Number(f), V::Number(n)) => n.as_f64() == Some(*f),
            (MatchValue::Number(f), V::String(s)) => number(s) == Some(*f),
            (MatchValue::Bool(b), V::Bool(a)) => a == b,
            (MatchValue::Bool(b), V::String(s)) => *s == b.to_string(),
            _ => false,
        }
    }
}

/// Whether `subject` has every field of `filter` at one of its values (`match:`); a dotted key
/// is a path into nested objects. No filter matches everything.
pub fn fields_match(
    filter: Option<&BTreeMap<String, OneOrMany<MatchValue>>>,
    subject: &serde_json::Value,
) -> bool {
    let Some(filter) = filter else {
        return true;
    };
    filter.iter().all(|(path, wanted)| {
        let actual = path
            .split('.')
            .try_fold(subject, |value, key| value.get(key));
        actual.is_some_and(|actual| match wanted {
            OneOrMany::One(v) => v.equals(actual),
            OneOrMany::Many(vs) => vs.iter().any(|v| v.equals(actual)),
        })
    })
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum EntityAction {
    Create,
    Update,
    Delete,
}

impl EntityAction {
    pub const ALL: [EntityAction; 3] = [
        EntityAction::Create,
        EntityAction::Update,
        EntityAction::Delete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntityAction::Create => "create",
            EntityAction::Update => "update",
            EntityAction::Delete => "delete",
        }
    }
}

impl fmt::Display for EntityAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A single value or a list of them (`on: create` or `on: [create, update]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    pub fn to_vec(&self) -> Vec<T> {
        match self {
            OneOrMany::One(v) => vec![v.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// An entity id; numbers are accepted and compared as text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct EntityId(pub String);

impl<'de> Deserialize<'de> for EntityId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<EntityId, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Int(i64),
        }
        Ok(EntityId(match Raw::deserialize(d)? {
            Raw::Text(s) => s,
            Raw::Int(i) => i.to_string(),
        }))
    }
}

impl JsonSchema for EntityId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "EntityId".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": ["string", "integer"], "description": "An entity id, compared as text."})
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManualWrapper {
    /// A person starts the run from the API or the host application's UI.
    pub manual: ManualTrigger,
}

/// An action a person runs by hand, optionally on one entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManualTrigger {
    /// The action's name shown to people.
    pub label: String,
    /// Makes it an action on one entity of this type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = ENTITY_PATTERN), extend("x-message" = "an entity type of lower-case letters, digits, `_`, `.` and `-`, starting with a letter"))]
    pub entity: Option<String>,
    /// A template: the action applies only where it renders truthy (it sees `entity`,
    /// `input` and `now`); elsewhere it answers 409 `not_applicable`.
    #[serde(default, rename = "if", skip_serializing_if = "Option::is_none")]
    pub condition: Option<TemplateStr>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleWrapper {
    /// Starts a run at each fire time of a cron expression.
    pub schedule: ScheduleTrigger,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleTrigger {
    /// Cron expression: 6 or 7 fields with seconds, or classic 5 fields.
    pub cron: String,
    /// IANA time zone the expression is read in; default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// A template on the fire time (`schedule.fire_at`, `now`): the fire starts a run only
    /// when it is truthy.
    #[serde(default, rename = "if", skip_serializing_if = "Option::is_none")]
    pub condition: Option<TemplateStr>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookWrapper {
    /// Starts a run when a request arrives at `POST /hooks/{path}`.
    pub webhook: WebhookTrigger,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookTrigger {
    /// The path under `/hooks/`.
    #[schemars(regex(pattern = WEBHOOK_PATH_PATTERN), extend("x-message" = "a path of letters, digits, `_`, `.`, `~`, `-` and `/`, at most 128 characters"))]
    pub path: String,
    /// If set, requests must carry a valid Standard Webhooks signature made with this secret;
    /// with a list (during a key rotation), a signature made with any of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<TemplateList>,
    /// Field equality on the request body, as an entity trigger's `match`.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matches: Option<BTreeMap<String, OneOrMany<MatchValue>>>,
    /// A template on the request (`input`, `now`): a run starts only when it is truthy.
    #[serde(default, rename = "if", skip_serializing_if = "Option::is_none")]
    pub condition: Option<TemplateStr>,
}

/// Limits and defaults for the flow's runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Most runs of this flow executing at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub concurrency: Option<u32>,
    /// Most runs started per second, minute or hour, e.g. `600/min`; excess runs wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// A run still not finished after this long is failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Default retry policy of this flow's steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// What events and webhooks do while the flow is paused: `hold` (default) keeps them as
    /// held runs, sent after resume; `drop` ignores them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_pause: Option<OnPause>,
    /// The failure breaker: the flow pauses itself after this many failed runs in a row, or
    /// when it has failed for this long without a success (`off` to disable). On by default:
    /// `{after_failed_runs: 50, or_failing_for: 24h}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_pause: Option<AutoPause>,
    /// Runs with the same key (this template rendered with the trigger's data, e.g.
    /// `{{entity.id}}`) execute one at a time, in creation order; different keys in parallel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_key: Option<TemplateStr>,
    /// Finished runs of this flow older than this are pruned (default: `FLOWD_RETENTION`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Duration>,
}

/// `settings.auto_pause`: limits, or `off`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum AutoPause {
    // No `///` on these variants: schemars would wrap each in an `allOf` without a type, and
    // validation could no longer tell the word `off` from the mapping by their kinds.
    Off(Off),
    Limits(AutoPauseLimits),
}

/// The word `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Off {
    Off,
}

/// When the failure breaker trips.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AutoPauseLimits {
    /// Pause after this many failed runs with no success in between. Default 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub after_failed_runs: Option<u32>,
    /// Or when the first of the failed runs since the last success is this old. Default 24h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub or_failing_for: Option<Duration>,
    /// Also tell this channel when the flow pauses itself (the inbox is always told):
    /// `{channel: slack, url: "{{secrets.SLACK_WEBHOOK}}"}`, `{channel: email, to: ops@example.com}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<AutoPauseNotify>,
}

/// Where `auto_pause` also says that the flow paused itself; flowd writes the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AutoPauseNotify {
    /// `slack`, `discord`, `email` (or `inbox`, which is told anyway).
    pub channel: Channel,
    /// Email only: the recipient address(es), comma-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<TemplateStr>,
    /// Slack and Discord only: the incoming-webhook URL, usually a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<TemplateStr>,
}

impl AutoPauseNotify {
    /// The notification as a `notify` step would send it: the subject and text read `flow`
    /// and `pause` from their context.
    pub fn as_notify(&self) -> NotifyConfig {
        NotifyConfig {
            channel: self.channel,
            to: self.to.clone(),
            url: self.url.clone(),
            subject: Some(TemplateStr("Flow {{flow.name}} paused itself".into())),
            text: Some(TemplateStr(
                "{{pause.detail}}. New runs are held, nothing is lost: resume the flow (POST /api/v1/flows/{{flow.id}}/resume) once its target works again.".into(),
            )),
        }
    }
}

impl AutoPauseLimits {
    pub const DEFAULT_FAILED_RUNS: u32 = 50;
    pub const DEFAULT_FAILING_FOR: Duration = Duration::from_secs(24 * 3600);
}

impl Settings {
    /// The channel the failure breaker also tells, if the flow names one.
    pub fn auto_pause_notify(settings: Option<&Settings>) -> Option<&AutoPauseNotify> {
        match settings?.auto_pause.as_ref()? {
            AutoPause::Limits(limits) => limits.notify.as_ref(),
            AutoPause::Off(_) => None,
        }
    }

    /// The failure breaker's limits: `(failed runs in a row, failing for)`, `None` when off.
    pub fn auto_pause(settings: Option<&Settings>) -> Option<(u32, Duration)> {
        let limits = match settings.and_then(|s| s.auto_pause.clone()) {
            Some(AutoPause::Off(_)) => return None,
            Some(AutoPause::Limits(limits)) => limits,
            None => AutoPauseLimits {
                after_failed_runs: None,
                or_failing_for: None,
                notify: None,
            },
        };
        Some((
            limits
                .after_failed_runs
                .unwrap_or(AutoPauseLimits::DEFAULT_FAILED_RUNS),
            limits
                .or_failing_for
                .unwrap_or(AutoPauseLimits::DEFAULT_FAILING_FOR),
        ))
    }
}

/// What a paused flow does with events and webhooks that match it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnPause {
    /// Runs are created `held` and sent after resume.
    #[default]
    Hold,
    /// Events do not match and webhooks answer 409 `flow_paused`, as if the flow were off.
    Drop,
}

/// Runs started per period, e.g. `600/min`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub runs: u32,
    pub per: Duration,
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_millis() {
            1_000 => "s",
            60_000 => "min",
            _ => "hour",
        };
        write!(f, "{}/{unit}", self.runs)
    }
}

impl std::str::FromStr for RateLimit {
    type Err = String;

    fn from_str(text: &str) -> Result<RateLimit, String> {
        let bad = || {
            format!(
                "`{text}` is not a rate limit: write runs per period, e.g. `10/s`, `600/min` or `1000/hour`"
            )
        };
        let (runs, unit) = text.split_once('/').ok_or_else(bad)?;
        let runs: u32 = runs.parse().map_err(|_| bad())?;
        let per = match unit {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        if runs == 0 {
            return Err(bad());
        }
        Ok(RateLimit { runs, per })
    }
}

impl Serialize for RateLimit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RateLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RateLimit, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for RateLimit {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RateLimit".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": RATE_LIMIT_PATTERN,
            "description": "Most runs started per second, minute or hour, e.g. `600/min`.",
            "x-message": "a rate limit: runs per period, e.g. `10/s`, `600/min` or `1000/hour`"
        })
    }
}

impl FlowDef {
    /// Every entity trigger of the flow.
    pub fn entity_triggers(&self) -> impl Iterator<Item = &EntityTrigger> {
        self.triggers.iter().filter_map(|t| match t {
            Trigger::Entity(e) => Some(e),
            _ => None,
        })
    }

    /// Every manual trigger of the flow.
    pub fn manual_triggers(&self) -> impl Iterator<Item = &ManualTrigger> {
        self.triggers.iter().filter_map(|t| match t {
            Trigger::Manual(m) => Some(&m.manual),
            _ => None,
        })
    }

    /// Every schedule trigger of the flow.
    pub fn schedule_triggers(&self) -> impl Iterator<Item = &ScheduleTrigger> {
        self.triggers.iter().filter_map(|t| match t {
            Trigger::Schedule(s) => Some(&s.schedule),
            _ => None,
        })
    }

    /// Every webhook trigger of the flow.
    pub fn webhook_triggers(&self) -> impl Iterator<Item = &WebhookTrigger> {
        self.triggers.iter().filter_map(|t| match t {
            Trigger::Webhook(w) => Some(&w.webhook),
            _ => None,
        })
    }
}

impl EntityTrigger {
    /// The actions this trigger fires on, all three when `on` is absent.
    pub fn actions(&self) -> Vec<EntityAction> {
        self.on
            .as_ref()
            .map_or_else(|| EntityAction::ALL.to_vec(), OneOrMany::to_vec)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn match_filters_compare_fields_by_dotted_paths() {
        let filter: BTreeMap<String, OneOrMany<MatchValue>> = serde_json::from_value(json!({
            "store": ["S1", "S2"],
            "customer.country": "IT",
            "lines": 2,
            "vip": true,
        }))
        .unwrap();
        let entity =
            json!({"store": "S2", "customer": {"country": "IT"}, "lines": "2", "vip": true});
        assert!(fields_match(Some(&filter), &entity));
        for (key, value) in [
            ("store", json!("S3")),
            ("customer", json!({"country": "FR"})),
            ("lines", json!(3)),
            ("vip", json!("false")),
        ] {
            let mut other = entity.clone();
            other[key] = value;
            assert!(!fields_match(Some(&filter), &other), "{other}");
        }
        assert!(
            !fields_match(Some(&filter), &json!({"store": "S1"})),
            "missing fields"
        );
        assert!(fields_match(None, &json!(null)));
    }
}
