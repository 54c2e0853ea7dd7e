//! Secrets: values of the environment variables `FLOWD_SECRET_<NAME>`, available to templates as
//! `{{secrets.NAME}}`. They are read once at start. The type never prints a value (`***`), and
//! every stored request, error and log line passes through redaction of these values.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

const PREFIX: &str = "FLOWD_SECRET_";

#[derive(Clone, Default)]
pub struct Secrets {
    values: BTreeMap<String, String>,
}

impl Secrets {
    /// Every `FLOWD_SECRET_<NAME>` variable of the process environment.
    pub fn from_env() -> Secrets {
        Secrets::from_pairs(
            std::env::vars().filter_map(|(k, v)| Some((k.strip_prefix(PREFIX)?.to_string(), v))),
        )
    }

    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Secrets {
        Secrets {
            values: pairs
                .into_iter()
                .filter(|(name, _)| !name.is_empty())
                .collect(),
        }
    }

    /// The `secrets` object of a template context.
    pub fn to_context(&self) -> Value {
        let map: Map<String, Value> = self
            .values
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        Value::Object(map)
    }

    /// Every secret value, for redaction; empty values are left out (they would redact nothing
    /// useful and everything else).
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.values
            .values()
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.values.keys().map(|k| (k, "***")))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_values() {
        let secrets = Secrets::from_pairs([("TOKEN".to_string(), "s3cr3t".to_string())]);
        let shown = format!("{secrets:?}");
        assert!(shown.contains("TOKEN") && shown.contains("***") && !shown.contains("s3cr3t"));
        assert_eq!(secrets.to_context()["TOKEN"], "s3cr3t");
    }
}
