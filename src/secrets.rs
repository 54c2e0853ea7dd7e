//! Secrets: values of the environment variables `FLOWD_SECRET_<NAME>`, available to templates as
//! `{{secrets.NAME}}`. The command line's `Config` reads them once at start and hands them down.
//! The type never prints a value (`***`), and every stored request, error and log line passes
//! through redaction of these values.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

/// What an environment variable's name starts with when it holds a secret.
pub const ENV_PREFIX: &str = "FLOWD_SECRET_";

#[derive(Clone, Default)]
pub struct Secrets {
    values: BTreeMap<String, String>,
}

impl Secrets {
    /// The `FLOWD_SECRET_<NAME>` variables among `vars` (name, value), by `NAME`; the others
    /// are left out.
    pub fn from_env_vars(vars: impl IntoIterator<Item = (String, String)>) -> Secrets {
        Secrets::from_pairs(
            vars.into_iter().filter_map(|(name, value)| {
                Some((name.strip_prefix(ENV_PREFIX)?.to_string(), value))
            }),
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

    #[test]
    fn only_prefixed_variables_are_secrets() {
        let vars = [
            ("FLOWD_SECRET_TOKEN", "t"),
            ("FLOWD_SECRET_", "nameless"),
            ("FLOWD_LISTEN", "127.0.0.1:8080"),
            ("HOME", "/root"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let secrets = Secrets::from_env_vars(vars);
        assert_eq!(secrets.names().collect::<Vec<_>>(), ["TOKEN"]);
    }
}
