//! Which API keys open the API: those of `FLOWD_API_KEYS` (comma-separated) and the stored ones
//! not revoked (`flowd keys`), held as hashes and refreshed with the flows (a key created or
//! revoked by the command line takes effect within a second). Once any key was created, the API
//! asks for one for good: revoking the last key locks the API rather than opening it.

use std::collections::HashSet;
use std::fmt;

use crate::engine::{Engine, EngineError};
use crate::store::api_keys::{hash_key, list};

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
        let mut keys = self.inner.config_keys.hashes.clone();
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

    /// The fingerprint of `key` when it is valid: what a console session keeps instead of the
    /// key itself.
    pub fn key_fingerprint(&self, key: &str) -> Option<KeyFingerprint> {
        let hash = hash_key(key);
        self.with_keys(|(_, keys)| keys.contains(&hash))
            .then_some(KeyFingerprint(hash))
    }

    /// Whether the key behind `fingerprint` is still valid (not revoked since).
    pub fn fingerprint_is_valid(&self, fingerprint: &KeyFingerprint) -> bool {
        self.with_keys(|(_, keys)| keys.contains(&fingerprint.0))
    }

    fn with_keys<T>(&self, f: impl FnOnce(&(bool, HashSet<String>)) -> T) -> T {
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
    fn keys_are_kept_as_hashes_and_never_printed() {
        let keys = ApiKeys::parse(" alpha-key, ,fk_0123456789abcdef0123 ,");
        assert_eq!((keys.len(), keys.short()), (2, 1));
        assert!(keys.hashes.contains(&hash_key("alpha-key")));
        assert_eq!(format!("{keys:?}"), "ApiKeys(2 keys)");
        assert!(ApiKeys::parse(" , ").is_empty());
    }
}
