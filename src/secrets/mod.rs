//! Secrets: the values templates read as `{{secrets.NAME}}`. They come from two places, the
//! encrypted secret store in the database (managed at run time through the API and
//! `flowd secrets`) and the environment variables `FLOWD_SECRET_<NAME>` (read once at start by the
//! command line's `Config`). When both hold a name, the environment wins: whoever runs the node
//! pins it; the listing says so (`source: environment`).
//!
//! [`Secrets`] is one snapshot and never prints a value (`***`); [`SharedSecrets`] is the live
//! handle every part of an engine holds: readers take the current snapshot (an `Arc` clone under
//! a read lock) and compare a generation number to know whether what they derived from it (the
//! redactor) is stale. The store's rows are encrypted with the master key ([`cipher`]).

pub mod cipher;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde_json::{Map, Value};

/// What an environment variable's name starts with when it holds a secret.
pub const ENV_PREFIX: &str = "FLOWD_SECRET_";

/// The longest value the store keeps (SPEC §6).
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// The longest name: `[A-Z][A-Z0-9_]{0,63}`.
pub const MAX_NAME_CHARS: usize = 64;

/// A stored secret opened: `(workspace, name, value)`.
pub type OpenedSecret = (String, String, String);

/// Which stored secret: `(workspace, name)`.
pub type SecretRef = (String, String);

/// Where a secret's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Store,
    Environment,
}

/// A name or value the store refuses; the message says what is wrong and never shows a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSecret {
    #[error(
        "`{0}` is not a secret name: names are an upper-case letter then up to 63 upper-case letters, digits or `_` (like `CRM_TOKEN`)"
    )]
    Name(String),
    #[error("the value is {0} bytes; secrets may be at most 65536 bytes (64 KiB)")]
    TooLong(usize),
    #[error("the value is empty; delete the secret instead")]
    Empty,
}

/// Checks a name against `[A-Z][A-Z0-9_]{0,63}`.
pub fn check_name(name: &str) -> Result<(), InvalidSecret> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_uppercase());
    let rest_ok = chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if first_ok && rest_ok && name.len() <= MAX_NAME_CHARS {
        Ok(())
    } else {
        // Names are shown in messages; cut a runaway one so a pasted value does not echo back.
        let shown: String = name.chars().take(MAX_NAME_CHARS + 1).collect();
        Err(InvalidSecret::Name(shown))
    }
}

/// Checks a value: not empty (an empty secret is what "never silently empty" is about), at most
/// 64 KiB.
pub fn check_value(value: &str) -> Result<(), InvalidSecret> {
    if value.is_empty() {
        return Err(InvalidSecret::Empty);
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(InvalidSecret::TooLong(value.len()));
    }
    Ok(())
}

/// One snapshot of every secret: values by name with their source, and the names the store holds
/// but cannot decrypt.
#[derive(Clone, Default)]
pub struct Secrets {
    values: BTreeMap<String, (String, Source)>,
    unreadable: BTreeSet<String>,
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

    /// Secrets set by the environment (or a test), by name.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Secrets {
        Secrets {
            values: pairs
                .into_iter()
                .filter(|(name, _)| !name.is_empty())
                .map(|(name, value)| (name, (value, Source::Environment)))
                .collect(),
            unreadable: BTreeSet::new(),
        }
    }

    /// These (environment) secrets with the store's decrypted values added; a name set in both
    /// keeps the environment's value. `unreadable` names the rows that could not be decrypted.
    pub fn with_stored(
        &self,
        stored: impl IntoIterator<Item = (String, String)>,
        unreadable: BTreeSet<String>,
    ) -> Secrets {
        let mut values: BTreeMap<String, (String, Source)> = self
            .values
            .iter()
            .filter(|(_, (_, source))| *source == Source::Environment)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (name, value) in stored {
            values.entry(name).or_insert((value, Source::Store));
        }
        let unreadable = unreadable
            .into_iter()
            .filter(|name| !values.contains_key(name))
            .collect();
        Secrets { values, unreadable }
    }

    /// These values as a fixed set, as if all came from the environment: what a throw-away
    /// engine (a test run's) keeps for its life, whatever its own store holds.
    pub fn fixed(&self) -> Secrets {
        Secrets::from_pairs(
            self.values
                .iter()
                .map(|(name, (value, _))| (name.clone(), value.clone())),
        )
    }

    /// The `secrets` object of a template context.
    pub fn to_context(&self) -> Value {
        let map: Map<String, Value> = self
            .values
            .iter()
            .map(|(k, (v, _))| (k.clone(), Value::String(v.clone())))
            .collect();
        Value::Object(map)
    }

    /// Every secret value, for redaction; empty values are left out (they would redact nothing
    /// useful and everything else).
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.values
            .values()
            .map(|(v, _)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// Whether `name` has a value a template can use.
    pub fn is_set(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    pub fn source(&self, name: &str) -> Option<Source> {
        self.values.get(name).map(|(_, source)| *source)
    }

    /// Names the store holds but cannot decrypt (a corrupted row, or another master key).
    pub fn unreadable(&self) -> &BTreeSet<String> {
        &self.unreadable
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.values.keys().map(|k| (k, "***")))
            .finish()
    }
}

/// The live secrets of one engine: the environment's, fixed at start, and the store's, replaced
/// whenever the store changes. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct SharedSecrets {
    inner: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    env: Secrets,
    current: RwLock<Arc<ByWorkspace>>,
    generation: AtomicU64,
}

/// One snapshot per workspace (SPEC §11): a run sees only its workspace's secrets. The
/// environment's belong to `default` only: a customer's flow must not read the host's secrets.
#[derive(Default)]
struct ByWorkspace {
    default: Arc<Secrets>,
    others: BTreeMap<String, Arc<Secrets>>,
    /// Every value of every workspace, for redaction.
    all: Arc<Secrets>,
}

impl SharedSecrets {
    /// Starts with the environment's secrets only; the store's join on the first
    /// [`SharedSecrets::set_stored`].
    pub fn new(env: Secrets) -> SharedSecrets {
        let env = Arc::new(env);
        let current = ByWorkspace {
            default: env.clone(),
            others: BTreeMap::new(),
            all: env.clone(),
        };
        SharedSecrets {
            inner: Arc::new(Shared {
                current: RwLock::new(Arc::new(current)),
                env: (*env).clone(),
                generation: AtomicU64::new(0),
            }),
        }
    }

    fn snapshot(&self) -> Arc<ByWorkspace> {
        match self.inner.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The secrets of the `default` workspace as of now (the environment's and its stored ones).
    pub fn current(&self) -> Arc<Secrets> {
        self.snapshot().default.clone()
    }

    /// The secrets of `workspace` as of now: what its runs' templates see.
    pub fn current_in(&self, workspace: &str) -> Arc<Secrets> {
        let snapshot = self.snapshot();
        if workspace == crate::core::workspace::DEFAULT_WORKSPACE {
            return snapshot.default.clone();
        }
        snapshot.others.get(workspace).cloned().unwrap_or_default()
    }

    /// Every secret value of every workspace: what redaction hides.
    pub fn all(&self) -> Arc<Secrets> {
        self.snapshot().all.clone()
    }

    /// Bumped on every change: what was derived from an older snapshot is stale.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// Replaces the store's part with these decrypted values, `(workspace, name, value)`;
    /// `unreadable` holds `(workspace, name)` of the rows that could not be decrypted.
    pub fn set_stored(
        &self,
        stored: impl IntoIterator<Item = OpenedSecret>,
        unreadable: BTreeSet<SecretRef>,
    ) {
        let mut values: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        let mut all = self.inner.env.clone();
        for (workspace, name, value) in stored {
            all.values
                .entry(format!("{workspace}/{name}"))
                .or_insert((value.clone(), Source::Store));
            values.entry(workspace).or_default().push((name, value));
        }
        let mut unreadable_in: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (workspace, name) in unreadable {
            unreadable_in.entry(workspace).or_default().insert(name);
        }
        let default_ws = crate::core::workspace::DEFAULT_WORKSPACE;
        let workspaces: BTreeSet<String> =
            values.keys().chain(unreadable_in.keys()).cloned().collect();
        let mut of = |ws: &str, base: &Secrets| {
            Arc::new(base.with_stored(
                values.remove(ws).unwrap_or_default(),
                unreadable_in.remove(ws).unwrap_or_default(),
            ))
        };
        let default = of(default_ws, &self.inner.env);
        let others = workspaces
            .into_iter()
            .filter(|ws| ws != default_ws)
            .map(|ws| {
                let secrets = of(&ws, &Secrets::default());
                (ws, secrets)
            })
            .collect();
        let next = Arc::new(ByWorkspace {
            default,
            others,
            all: Arc::new(all),
        });
        match self.inner.current.write() {
            Ok(mut guard) => *guard = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
    }
}

impl fmt::Debug for SharedSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.all(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_values() {
        let secrets = Secrets::from_pairs([("TOKEN".to_string(), "s3cr3t".to_string())]);
        let shown = format!("{secrets:?} {:?}", SharedSecrets::new(secrets.clone()));
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

    #[test]
    fn names_and_values_are_checked() {
        for good in ["A", "CRM_TOKEN", "X1_2", &format!("A{}", "B".repeat(63))] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "a",
            "1A",
            "_A",
            "CRM-TOKEN",
            "CRM TOKEN",
            "Crm",
            "É",
            &format!("A{}", "B".repeat(64)),
        ] {
            let error = check_name(bad).expect_err(bad);
            assert!(
                error.to_string().contains("[A-Z]") || error.to_string().contains("upper-case")
            );
        }
        assert_eq!(check_value(&"x".repeat(MAX_VALUE_BYTES)), Ok(()));
        assert_eq!(
            check_value(&"x".repeat(MAX_VALUE_BYTES + 1)),
            Err(InvalidSecret::TooLong(MAX_VALUE_BYTES + 1))
        );
        assert_eq!(check_value(""), Err(InvalidSecret::Empty));
    }

    /// The environment wins over the store; a live change bumps the generation.
    #[test]
    fn the_environment_wins_and_changes_are_seen_live() {
        let env = Secrets::from_pairs([("PINNED".to_string(), "from-env".to_string())]);
        let shared = SharedSecrets::new(env);
        let before = shared.generation();
        let row =
            |name: &str, value: &str| ("default".to_string(), name.to_string(), value.to_string());
        let default = |name: &str| ("default".to_string(), name.to_string());
        shared.set_stored(
            [row("PINNED", "from-store"), row("TOKEN", "t")],
            BTreeSet::from([default("BROKEN"), default("PINNED")]),
        );
        let now = shared.current();
        assert!(shared.generation() > before);
        assert_eq!(now.to_context()["PINNED"], "from-env");
        assert_eq!(now.source("PINNED"), Some(Source::Environment));
        assert_eq!(now.source("TOKEN"), Some(Source::Store));
        assert_eq!(now.unreadable().iter().collect::<Vec<_>>(), ["BROKEN"]);
        shared.set_stored([], BTreeSet::new());
        assert!(!shared.current().is_set("TOKEN"));
        assert!(shared.current().is_set("PINNED"));
    }

    /// A workspace sees its own stored secrets and neither another's nor the environment's;
    /// redaction hides them all.
    #[test]
    fn each_workspace_sees_only_its_own_secrets() {
        let env = Secrets::from_pairs([("HOST".to_string(), "host-value".to_string())]);
        let shared = SharedSecrets::new(env);
        let row = |ws: &str, name: &str, value: &str| {
            (ws.to_string(), name.to_string(), value.to_string())
        };
        shared.set_stored(
            [
                row("acme", "TOKEN", "acme-token"),
                row("beta", "TOKEN", "beta-token"),
            ],
            BTreeSet::new(),
        );
        let acme = shared.current_in("acme");
        assert_eq!(
            acme.to_context(),
            serde_json::json!({"TOKEN": "acme-token"})
        );
        assert!(!shared.current().is_set("TOKEN"));
        assert!(shared.current().is_set("HOST"));
        assert!(!shared.current_in("gamma").is_set("HOST"));
        let everything = shared.all();
        let all: BTreeSet<&str> = everything.values().collect();
        assert!(
            all.contains("acme-token") && all.contains("beta-token") && all.contains("host-value")
        );
    }
}
