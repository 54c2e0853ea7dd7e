//! A flow as a grid row shows it, from its definition: one line per trigger with its filters,
//! and the URLs its steps send to. Pure: the engine adds the stored state and run figures
//! (`engine::flows::FlowSummary`).
//!
//! Targets are shown as written, never rendered: a template expression that reads a secret is
//! shown as `***`, and so is the password of a URL's user information.

use serde::Serialize;
use utoipa::ToSchema;

use crate::flow::model::{EntityTrigger, FlowDef, Trigger};
use crate::step::notify::Channel;

/// The kind of a trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TriggerKind {
    Entity,
    Manual,
    Schedule,
    Webhook,
}

/// One trigger in a line: `guest: create, update`, `Push to CRM (on guest)`,
/// `0 30 9 * * Mon-Fri (Europe/Rome)`, `/hooks/crm-callback (signed)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TriggerSummary {
    pub kind: TriggerKind,
    pub summary: String,
    /// The trigger's filters, one per entry: `ids: 42, 43`, `fields: status`, `if: {{…}}`.
    pub filters: Vec<String>,
}

/// Every trigger of `def`, in order.
pub fn triggers(def: &FlowDef) -> Vec<TriggerSummary> {
    def.triggers.iter().map(trigger).collect()
}

fn trigger(trigger: &Trigger) -> TriggerSummary {
    match trigger {
        Trigger::Entity(t) => entity(t),
        Trigger::Manual(m) => TriggerSummary {
            kind: TriggerKind::Manual,
            summary: match &m.manual.entity {
                Some(entity) => format!("{} (on {entity})", m.manual.label),
                None => m.manual.label.clone(),
            },
            filters: Vec::new(),
        },
        Trigger::Schedule(s) => TriggerSummary {
            kind: TriggerKind::Schedule,
            summary: match &s.schedule.timezone {
                Some(zone) => format!("{} ({zone})", s.schedule.cron),
                None => format!("{} (UTC)", s.schedule.cron),
            },
            filters: Vec::new(),
        },
        Trigger::Webhook(w) => TriggerSummary {
            kind: TriggerKind::Webhook,
            summary: match w.webhook.secret {
                Some(_) => format!("/hooks/{} (signed)", w.webhook.path),
                None => format!("/hooks/{}", w.webhook.path),
            },
            filters: Vec::new(),
        },
    }
}

fn entity(t: &EntityTrigger) -> TriggerSummary {
    let actions: Vec<&str> = t.actions().iter().map(|a| a.as_str()).collect();
    let mut filters = Vec::new();
    if let Some(ids) = &t.ids {
        let ids: Vec<&str> = ids.iter().map(|id| id.0.as_str()).collect();
        filters.push(format!("ids: {}", ids.join(", ")));
    }
    if let Some(fields) = &t.fields {
        filters.push(format!("fields: {}", fields.join(", ")));
    }
    if let Some(condition) = &t.condition {
        filters.push(format!("if: {}", mask_secrets(condition.as_str())));
    }
    TriggerSummary {
        kind: TriggerKind::Entity,
        summary: format!("{}: {}", t.entity, actions.join(", ")),
        filters,
    }
}

/// The URLs the flow's steps send to (`http` steps, Slack and Discord notifications), in step
/// order, each once, with secrets masked.
pub fn targets(def: &FlowDef) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let urls = def.steps.iter().filter_map(|step| {
        if let Some(http) = &step.http {
            return Some(http.url.as_str());
        }
        let notify = step.notify.as_ref()?;
        matches!(notify.channel, Channel::Slack | Channel::Discord)
            .then_some(notify.url.as_ref()?.as_str())
    });
    for url in urls.map(mask_target) {
        if !out.contains(&url) {
            out.push(url);
        }
    }
    out
}

/// A URL template with secret expressions and a user-information password masked.
pub fn mask_target(url: &str) -> String {
    mask_password(&mask_secrets(url))
}

/// Replaces each `{{…}}` expression that mentions `secrets` with `***`.
fn mask_secrets(template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        let expression = &rest[start..start + len + 2];
        out.push_str(&rest[..start]);
        out.push_str(if expression.contains("secrets") {
            "***"
        } else {
            expression
        });
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

/// `https://user:pass@host/…` → `https://user:***@host/…`.
fn mask_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let authority_end = url[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| scheme_end + i);
    let authority = &url[scheme_end..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let Some(colon) = authority[..at].find(':') else {
        return url.to_string();
    };
    format!(
        "{}{}:***{}",
        &url[..scheme_end],
        &authority[..colon],
        &url[scheme_end + at..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(yaml: &str) -> FlowDef {
        let json = crate::flow::yaml::parse(yaml).unwrap().to_json();
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn summarises_each_trigger_kind_with_its_filters() {
        let flow = def(r#"
triggers:
  - entity: guest
    on: [create, update]
    ids: ["42", 43]
    fields: [status]
    if: "{{eq entity.token secrets.TOKEN}}"
  - entity: order
  - manual: {label: Push, entity: guest}
  - schedule: {cron: "0 9 * * *", timezone: Europe/Rome}
  - webhook: {path: crm, secret: "{{secrets.HOOK}}"}
steps: []
"#);
        let lines: Vec<(TriggerKind, String, Vec<String>)> = triggers(&flow)
            .into_iter()
            .map(|t| (t.kind, t.summary, t.filters))
            .collect();
        assert_eq!(
            lines,
            vec![
                (
                    TriggerKind::Entity,
                    "guest: create, update".into(),
                    vec![
                        "ids: 42, 43".into(),
                        "fields: status".into(),
                        "if: ***".into()
                    ]
                ),
                (
                    TriggerKind::Entity,
                    "order: create, update, delete".into(),
                    vec![]
                ),
                (TriggerKind::Manual, "Push (on guest)".into(), vec![]),
                (
                    TriggerKind::Schedule,
                    "0 9 * * * (Europe/Rome)".into(),
                    vec![]
                ),
                (TriggerKind::Webhook, "/hooks/crm (signed)".into(), vec![]),
            ]
        );
    }

    #[test]
    fn targets_are_the_sending_steps_urls_once_each_with_secrets_masked() {
        let flow = def(r#"
triggers: [{manual: {label: Go}}]
steps:
  - {id: a, http: {url: "https://crm.example.com/api/{{entity.id}}?key={{secrets.KEY}}"}}
  - {id: b, http: {url: "https://bot:hunter2@hooks.example.com/x"}}
  - {id: c, notify: {channel: slack, url: "{{secrets.SLACK_WEBHOOK}}"}}
  - {id: d, notify: {channel: inbox, text: hi}}
  - {id: e, http: {url: "https://crm.example.com/api/{{entity.id}}?key={{secrets.KEY}}"}}
  - {id: f, map: {x: 1}}
"#);
        assert_eq!(
            targets(&flow),
            vec![
                "https://crm.example.com/api/{{entity.id}}?key=***".to_string(),
                "https://bot:***@hooks.example.com/x".to_string(),
                "***".to_string(),
            ]
        );
    }

    #[test]
    fn masking_leaves_plain_urls_and_broken_templates_alone() {
        assert_eq!(mask_target("https://a.example/x"), "https://a.example/x");
        assert_eq!(mask_target("https://a@b.example/"), "https://a@b.example/");
        assert_eq!(
            mask_target("https://x/{{secrets.A"),
            "https://x/{{secrets.A"
        );
        assert_eq!(mask_target("no scheme:pw@x"), "no scheme:pw@x");
    }
}
