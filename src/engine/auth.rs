//! Which API keys open the API: those of `FLOWD_API_KEYS` (comma-separated) and the stored ones
//! not revoked (`flowd keys`), held as hashes and refreshed with the flows (a key created or
//! revoked by the command line takes effect within a second). Once any key was created, the API
//! asks for one for good: revoking the last key locks the API rather than opening it.

use std::collections::HashSet;

use crate::engine::{Engine, EngineError};
use crate::store::api_keys::{hash_key, list};

/// Hashes of the keys in `FLOWD_API_KEYS`.
pub fn env_key_hashes() -> HashSet<String> {
    std::env::var("FLOWD_API_KEYS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(hash_key)
        .collect()
}

impl Engine {
    /// Reloads the stored keys.
    pub async fn refresh_api_keys(&self) -> Result<(), EngineError> {
        let mut keys = env_key_hashes();
        let stored = list(self.store().reader()).await?;
        let required = !keys.is_empty() || !stored.is_empty();
        keys.extend(
            stored
                .into_iter()
                .filter(|k| k.revoked_at.is_none())
                .map(|k| k.hash),
        );
        match self.inner.api_keys.write() {
            Ok(mut k) => *k = (required, keys),
            Err(poisoned) => *poisoned.into_inner() = (required, keys),
        }
        Ok(())
    }

    /// Whether the API asks for a key (some key exists).
    pub fn auth_required(&self) -> bool {
        self.with_keys(|(required, _)| *required)
    }

    /// Whether `key` is one of the valid keys.
    pub fn key_is_valid(&self, key: &str) -> bool {
        let hash = hash_key(key);
        self.with_keys(|(_, keys)| keys.contains(&hash))
    }

    fn with_keys<T>(&self, f: impl FnOnce(&(bool, HashSet<String>)) -> T) -> T {
        match self.inner.api_keys.read() {
            Ok(k) => f(&k),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }
}
