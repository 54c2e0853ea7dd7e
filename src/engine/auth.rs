//! Which API keys open the API: those of `FLOWD_API_KEYS` (comma-separated) and the stored ones
//! not revoked (`flowd keys`), held as hashes and refreshed with the flows (a key created or
//! revoked by the command line takes effect within a second). Once any key was created, the API
//! asks for one for good: revoking the last key locks the API rather than opening it. Each key
//! grants an [`Access`]: its workspace and role (SPEC §11), kept in memory with its hash so a
//! request costs no database round trip. `FLOWD_API_KEYS` keys are `admin` of `default`.

use std::collections::{HashMap, HashSet};
use std::fmt;

use tracing::warn;

use crate::core::workspace::{Access, Actor, DEFAULT_WORKSPACE, Role};
use crate::engine::{Engine, EngineError};
use crate::store::api_keys::{hash_key, list};
use crate::store::workspaces;

/// What a valid key grants: who it is (its id, never the key) and its workspace and role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyGrant {
    pub id: String,
    pub workspace: String,
    pub role: Role,
}

impl KeyGrant {
    /// The access of a request made with this key; `named` is the workspace an admin key asked
    /// for with `?workspace=` (a non-admin key may only name its own).
    pub fn access(&self, named: Option<&str>) -> Option<Access> {
        let actor = Actor::Key {
            id: self.id.clone(),
        };
        let admin = self.role == Role::Admin;
        match named {
            Some(ws) if admin || ws == self.workspace => Some(Access {
                workspace: ws.to_string(),
                all_workspaces: false,
                role: self.role,
                actor,
            }),
            Some(_) => None,
            None => Some(Access {
                workspace: self.workspace.clone(),
                all_workspaces: admin,
                role: self.role,
                actor,
            }),
        }
    }
}

/// The valid keys by hash, and whether the API asks for a key at all.
#[derive(Default)]
pub(crate) struct KeyTable {
    required: bool,
    grants: HashMap<String, KeyGrant>,
    /// The workspaces that exist, refreshed with the keys: `?workspace=` is checked here.
    workspaces: HashSet<String>,
}

/// Keys shorter than this are easy to guess; the configuration warns about them. Keys made by
/// `flowd keys create` have 67 characters.
pub const MIN_KEY_LEN: usize = 16;

/// The keys given in the configuration (`FLOWD_API_KEYS`), held only as hashes from the moment
/// they are parsed. Prints as a count.
#[derive(Clone, Default)]
pub struct ApiKeys {
    hashes: HashSet<String>,
    /// How many of the keys are shorter than [`MIN_KEY_LEN`].
    short: usize,
}

impl ApiKeys {
    /// The keys of a comma-separated list; blanks around keys and empty items are ignored.
    pub fn parse(list: &str) -> ApiKeys {
        let keys: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .collect();
        ApiKeys {
            hashes: keys.iter().map(|k| hash_key(k)).collect(),
            short: keys
                .iter()
                .filter(|k| k.chars().count() < MIN_KEY_LEN)
                .count(),
        }
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// How many keys are shorter than [`MIN_KEY_LEN`].
    pub fn short(&self) -> usize {
        self.short
    }
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeys({} keys)", self.hashes.len())
    }
}

impl Engine {
    /// Reloads the stored keys.
    pub async fn refresh_api_keys(&self) -> Result<(), EngineError> {
        let configured = &self.inner.config_keys.hashes;
        let stored = list(self.store().reader()).await?;
        let required = !configured.is_empty() || !stored.is_empty();
        let mut grants: HashMap<String, KeyGrant> = HashMap::new();
        // Numbered in a sorted order so a configured key keeps its id across restarts.
        let mut sorted: Vec<&String> = configured.iter().collect();
        sorted.sort();
        for (n, hash) in sorted.into_iter().enumerate() {
            let grant = KeyGrant {
                id: format!("FLOWD_API_KEYS#{}", n + 1),
                workspace: DEFAULT_WORKSPACE.to_string(),
                role: Role::Admin,
            };
            grants.insert(hash.clone(), grant);
        }
        for key in stored.into_iter().filter(|k| k.revoked_at.is_none()) {
            let Some(role) = Role::parse(&key.role) else {
                warn!(key = %key.id, role = %key.role, "Ignoring an API key with an unknown role.");
                continue;
            };
            let grant = KeyGrant {
                id: key.id,
                workspace: key.workspace,
                role,
            };
            grants.insert(key.hash, grant);
        }
        let workspaces = workspaces::list(self.store().reader(), self.store().backend())
            .await?
            .into_iter()
            .map(|w| w.name)
            .collect();
        let table = KeyTable {
            required,
            grants,
            workspaces,
        };
        match self.inner.api_keys.write() {
            Ok(mut k) => *k = table,
            Err(poisoned) => *poisoned.into_inner() = table,
        }
        Ok(())
    }

    /// Whether the API asks for a key (some key exists).
    pub fn auth_required(&self) -> bool {
        self.with_keys(|keys| keys.required)
    }

    /// Whether `key` is one of the valid keys.
    pub fn key_is_valid(&self, key: &str) -> bool {
        self.key_grant(key).is_some()
    }

    /// Whether workspace `name` exists (as of the last refresh, at most a second old on other
    /// nodes; this node refreshes when it creates one).
    pub fn workspace_exists(&self, name: &str) -> bool {
        self.with_keys(|keys| keys.workspaces.contains(name))
    }

    /// What `key` grants when it is valid.
    pub fn key_grant(&self, key: &str) -> Option<KeyGrant> {
        let hash = hash_key(key);
        self.with_keys(|keys| keys.grants.get(&hash).cloned())
    }

    /// The access `key` gives in its own workspace (all of them for an admin key), when it is
    /// valid: what the console's login and the API's auth layer start from.
    pub fn access_for_key(&self, key: &str) -> Option<Access> {
        self.key_grant(key)?.access(None)
    }

    /// The fingerprint of `key` when it is valid: what a console session keeps instead of the
    /// key itself.
    pub fn key_fingerprint(&self, key: &str) -> Option<KeyFingerprint> {
        let hash = hash_key(key);
        self.with_keys(|keys| keys.grants.contains_key(&hash))
            .then_some(KeyFingerprint(hash))
    }

    /// Whether the key behind `fingerprint` is still valid (not revoked since).
    pub fn fingerprint_is_valid(&self, fingerprint: &KeyFingerprint) -> bool {
        self.with_keys(|keys| keys.grants.contains_key(&fingerprint.0))
    }

    fn with_keys<T>(&self, f: impl FnOnce(&KeyTable) -> T) -> T {
        match self.inner.api_keys.read() {
            Ok(k) => f(&k),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }
}

/// A valid key as a session remembers it: its hash, never the key. Prints as a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyFingerprint(String);

impl fmt::Debug for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyFingerprint(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_acts_in_its_workspace_and_only_an_admin_key_names_another() {
        let viewer = KeyGrant {
            id: "k1".into(),
            workspace: "acme".into(),
            role: Role::Viewer,
        };
        let own = viewer.access(None).unwrap();
        assert_eq!(
            (own.workspace.as_str(), own.all_workspaces),
            ("acme", false)
        );
        assert_eq!(viewer.access(Some("acme")), Some(own));
        assert_eq!(viewer.access(Some("other")), None);
        let admin = KeyGrant {
            role: Role::Admin,
            workspace: "default".into(),
            ..viewer
        };
        assert!(admin.access(None).unwrap().all_workspaces);
        let named = admin.access(Some("acme")).unwrap();
        assert_eq!(
            (named.workspace.as_str(), named.all_workspaces),
            ("acme", false)
        );
    }

    #[test]
    fn keys_are_kept_as_hashes_and_never_printed() {
        let keys = ApiKeys::parse(" alpha-key, ,fk_0123456789abcdef0123 ,");
        assert_eq!((keys.len(), keys.short()), (2, 1));
        assert!(keys.hashes.contains(&hash_key("alpha-key")));
        assert_eq!(format!("{keys:?}"), "ApiKeys(2 keys)");
        assert!(ApiKeys::parse(" , ").is_empty());
    }
}
