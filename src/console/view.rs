//! Small shaping helpers for the pages: times as people read them, JSON as indented text, what
//! started a run in a few words. Pages build plain strings with these so that templates only
//! place values.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::core::trigger_data::TriggerData;

/// An RFC 3339 time as `2026-12-05 19:30:12 UTC`; `—` for none.
pub fn when(rfc3339: Option<&str>) -> String {
    rfc3339
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| {
            t.with_timezone(&Utc)
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string()
        })
        .unwrap_or_else(|| "—".to_string())
}

/// UTC milliseconds as [`when`] shows them.
pub fn when_millis(millis: Option<i64>) -> String {
    millis
        .and_then(DateTime::<Utc>::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "—".to_string())
}

/// JSON indented for a `<pre>`; empty for null.
pub fn pretty(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(v) => serde_json::to_string_pretty(v).unwrap_or_default(),
    }
}

/// What started a run, in a few words: `guest 42 (create)`, `manual on guest 42`, …
pub fn trigger_summary(trigger: &Value) -> String {
    match serde_json::from_value::<TriggerData>(trigger.clone()) {
        Ok(TriggerData::Entity { event, .. }) => {
            format!("{} {} ({})", event.entity, event.entity_id, event.action)
        }
        Ok(TriggerData::Manual {
            entity: Some(e), ..
        }) => format!("manual on {} {}", e.entity_type, e.id),
        Ok(TriggerData::Manual { entity: None, .. }) => "manual".to_string(),
        Ok(TriggerData::Schedule { fire_at }) => {
            format!("schedule {}", fire_at.format("%Y-%m-%d %H:%M UTC"))
        }
        Ok(TriggerData::Webhook { path, .. }) => format!("webhook /hooks/{path}"),
        Err(_) => "—".to_string(),
    }
}

/// The JSON a person typed in a form field named `what`: `None` when left empty, else the value
/// or a sentence saying where the JSON is wrong.
pub fn json_field(what: &str, text: Option<&str>) -> Result<Option<Value>, String> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(text) => serde_json::from_str(text)
            .map(Some)
            .map_err(|e| format!("The {what} is not valid JSON: {e}.")),
    }
}

/// A query string of the given pairs, empty values left out: `?a=1&b=x`.
pub fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            out.append_pair(name, value);
        }
    }
    let out = out.finish();
    if out.is_empty() {
        out
    } else {
        format!("?{out}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times_read_as_utc() {
        assert_eq!(
            when(Some("2026-12-05T19:30:12.345Z")),
            "2026-12-05 19:30:12 UTC"
        );
        assert_eq!(when(None), "—");
        assert_eq!(when_millis(Some(0)), "1970-01-01 00:00:00 UTC");
    }

    #[test]
    fn queries_leave_out_empty_values() {
        assert_eq!(
            query(&[("a", Some("1")), ("b", None), ("c", Some(""))]),
            "?a=1"
        );
        assert_eq!(query(&[("s", Some("a b&c"))]), "?s=a+b%26c");
        assert_eq!(query(&[]), "");
    }

    #[test]
    fn triggers_in_a_few_words() {
        let manual =
            json!({"kind": "manual", "input": {}, "entity": {"type": "guest", "id": "42"}});
        assert_eq!(trigger_summary(&manual), "manual on guest 42");
        assert_eq!(
            trigger_summary(&json!({"kind": "webhook", "path": "shop/paid"})),
            "webhook /hooks/shop/paid"
        );
        assert_eq!(trigger_summary(&json!(null)), "—");
    }
}
