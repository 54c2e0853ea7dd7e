//! The secret store at run time: the master key checked against the store at start, values
//! sealed on the way in and opened on the way out, and every node kept current. A change made
//! here is in effect at once on this node; other nodes (and changes made with `flowd secrets`)
//! are noticed by [`Engine::refresh_secrets`], which the follower runs every second and which
//! costs one small summary query unless something changed. The runner's hot path only reads the
//! in-memory snapshot.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::json;
use tracing::{info, warn};

use crate::core::workspace::{Access, DEFAULT_WORKSPACE, flow_key};
use crate::engine::Engine;
use crate::engine::audit::{self, Change};
use crate::secrets::cipher::{KeyError, MasterKey};
use crate::secrets::{InvalidSecret, OpenedSecret, SecretRef, Source, check_name, check_value};
use crate::store::audit::AuditAction;
use crate::store::secrets::{self as stored, StoredSecret};
use crate::store::{Store, StoreError};

/// Where the master key comes from.
#[derive(Debug, Clone, Default)]
pub enum MasterKeySource {
    /// No key: the store's secrets cannot be read or set (a test, `flowd run`).
    #[default]
    None,
    /// `FLOWD_MASTER_KEY`.
    Given(MasterKey),
    /// A key file, created on first start when there is none and the store is empty.
    File(PathBuf),
}

/// Why a secret cannot be set, deleted or listed.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(transparent)]
    Invalid(#[from] InvalidSecret),
    #[error(
        "no master key is set up to encrypt secrets: set FLOWD_MASTER_KEY or start `flowd serve`, which creates a key file"
    )]
    NoMasterKey,
    #[error("there is no stored secret `{0}`")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why the master key cannot open the store; the node does not start, and nothing is changed.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(
        "the master key does not open the secret store: {count} secret(s) were encrypted with the key whose fingerprint is {stored}, this key's is {given}. Start with the key the store was made with (FLOWD_MASTER_KEY or the key file); nothing was changed"
    )]
    Wrong {
        count: usize,
        stored: String,
        given: String,
    },
    #[error(
        "the secret store holds {count} secret(s) but the master key file {path} is missing: put it back or set FLOWD_MASTER_KEY; no new key was made, so nothing was overwritten"
    )]
    MissingFile { count: usize, path: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One secret as listed: never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    pub workspace: String,
    pub name: String,
    /// Times of the stored value; `None` for a secret set only by the environment.
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
    /// Where the value in effect comes from (the environment wins over the store).
    pub source: Source,
    /// Flows whose templates read it.
    pub used_by: Vec<String>,
    /// False when the stored value cannot be decrypted (corrupted, or another key).
    pub readable: bool,
}

/// The master key of a store: the given one, or the key file's (created when missing and the
/// store holds no secret yet), checked against the fingerprints of the stored secrets.
pub async fn open_master_key(
    store: &Store,
    source: &MasterKeySource,
) -> Result<Option<MasterKey>, MasterKeyError> {
    let rows = stored::list(store.reader()).await?;
    let key = match source {
        MasterKeySource::None => return Ok(None),
        MasterKeySource::Given(key) => key.clone(),
        MasterKeySource::File(path) if !path.exists() && !rows.is_empty() => {
            return Err(MasterKeyError::MissingFile {
                count: rows.len(),
                path: path.display().to_string(),
            });
        }
        MasterKeySource::File(path) => {
            let (key, created) = MasterKey::load_or_create(path)?;
            if created {
                info!(
                    path = %path.display(),
                    "Created the master key file that encrypts stored secrets (mode 0600). Back it up, and give every node the same key."
                );
            }
            key
        }
    };
    let given = key.fingerprint();
    if let Some(other) = rows.iter().find(|r| r.key_fingerprint != given) {
        return Err(MasterKeyError::Wrong {
            count: rows.len(),
            stored: other.key_fingerprint.clone(),
            given,
        });
    }
    Ok(Some(key))
}

/// What a stored value is sealed to (the cipher's associated data): its name in `default`, as
/// before workspaces, and `workspace/NAME` elsewhere, so a sealed value copied to another
/// workspace's row (or another name) does not open there.
fn sealed_as(workspace: &str, name: &str) -> String {
    flow_key(workspace, name)
}

/// Opens every stored value it can; the others are named as unreadable.
/// Values come as `(workspace, name, value)`, unreadable ones as `(workspace, name)`.
pub fn open_all(
    key: Option<&MasterKey>,
    rows: &[StoredSecret],
) -> (Vec<OpenedSecret>, BTreeSet<SecretRef>) {
    let mut values = Vec::with_capacity(rows.len());
    let mut unreadable = BTreeSet::new();
    for row in rows {
        match key.map(|k| k.open(&sealed_as(&row.workspace, &row.name), &row.sealed)) {
            Some(Ok(value)) => values.push((row.workspace.clone(), row.name.clone(), value)),
            Some(Err(_)) | None => {
                unreadable.insert((row.workspace.clone(), row.name.clone()));
            }
        }
    }
    (values, unreadable)
}

/// Checks and stores one secret in the access's workspace, sealed with `key`, and records who
/// set it (its name only: the audit log never sees a value) in the same transaction.
pub async fn put(
    store: &Store,
    access: &Access,
    key: Option<&MasterKey>,
    (name, value): (&str, &str),
    now: i64,
) -> Result<StoredSecret, SecretError> {
    check_name(name)?;
    check_value(value)?;
    let key = key.ok_or(SecretError::NoMasterKey)?;
    let workspace = access.workspace.as_str();
    let sealed = key.seal(&sealed_as(workspace, name), value);
    let (txn, backend) = (store.begin_write().await?, store.backend());
    let fingerprint = key.fingerprint();
    let row = stored::put(&txn, backend, workspace, name, &sealed, &fingerprint, now).await?;
    let change = Change::in_workspace(access, AuditAction::SecretSet, name, json!({}));
    audit::record(&txn, backend, access, change, now).await?;
    txn.commit().await.map_err(StoreError::from)?;
    Ok(row)
}

/// Deletes one stored secret of the access's workspace, and records it in the same
/// transaction.
pub async fn delete(
    store: &Store,
    access: &Access,
    name: &str,
    now: i64,
) -> Result<(), SecretError> {
    check_name(name)?;
    let txn = store.begin_write().await?;
    if !stored::delete(&txn, &access.workspace, name).await? {
        return Err(SecretError::NotFound(name.to_string()));
    }
    let change = Change::in_workspace(access, AuditAction::SecretDeleted, name, json!({}));
    audit::record(&txn, store.backend(), access, change, now).await?;
    txn.commit().await.map_err(StoreError::from)?;
    Ok(())
}

/// Why a master key rotation was refused; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error(
        "the stored secret `{0}` cannot be decrypted with the current master key; set it again or delete it, then rotate"
    )]
    Unreadable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Re-encrypts every stored secret from `old` to `new`, all or nothing; returns how many.
pub async fn rotate(store: &Store, old: &MasterKey, new: &MasterKey) -> Result<usize, RotateError> {
    let fingerprint = new.fingerprint();
    stored::reseal_all(store.writer(), |row| {
        let bound_to = sealed_as(&row.workspace, &row.name);
        let value = old
            .open(&bound_to, &row.sealed)
            .map_err(|_| RotateError::Unreadable(row.name.clone()))?;
        Ok((new.seal(&bound_to, &value), fingerprint.clone()))
    })
    .await?
}

impl Engine {
    /// Reloads the stored secrets when the store changed since the last look (one summary
    /// query otherwise). Values that no longer decrypt (another node rotated the master key)
    /// are reported unreadable.
    pub async fn refresh_secrets(&self) -> Result<(), StoreError> {
        let store = self.store();
        let now = stored::fingerprint(store.reader(), store.backend()).await?;
        let changed = match self.inner.secrets_seen.lock() {
            Ok(seen) => *seen != now,
            Err(_) => true,
        };
        if changed {
            self.load_secrets().await?;
            if let Ok(mut seen) = self.inner.secrets_seen.lock() {
                *seen = now;
            }
        }
        Ok(())
    }

    /// Reads and opens every stored secret, and puts them in effect.
    async fn load_secrets(&self) -> Result<(), StoreError> {
        let rows = stored::list(self.store().reader()).await?;
        let (values, unreadable) = open_all(self.inner.master_key.as_ref(), &rows);
        for (workspace, name) in &unreadable {
            warn!(%workspace, secret = %name, "The stored secret cannot be decrypted with this node's master key; steps that use it fail with missing_secret until it is set again.");
        }
        self.inner.secrets.set_stored(values, unreadable);
        Ok(())
    }

    /// Stores a secret; in effect on this node at once, on the others within a second.
    /// The secret lands in the access's workspace.
    pub async fn set_secret(
        &self,
        access: &Access,
        name: &str,
        value: &str,
    ) -> Result<SecretInfo, SecretError> {
        let workspace = access.workspace.as_str();
        let key = self.inner.master_key.as_ref();
        put(self.store(), access, key, (name, value), self.audit_now()).await?;
        self.refresh_secrets().await?;
        self.secret_info(workspace, name)
            .await?
            .ok_or_else(|| SecretError::NotFound(name.to_string()))
    }

    /// Deletes a stored secret of the access's workspace (one set by the environment stays).
    pub async fn delete_secret(&self, access: &Access, name: &str) -> Result<(), SecretError> {
        delete(self.store(), access, name, self.audit_now()).await?;
        self.refresh_secrets().await?;
        Ok(())
    }

    /// The secrets `access` sees (its workspace's; an admin's without a named workspace: every
    /// workspace's), stored or set by the environment (those belong to `default`), by workspace
    /// and name; never a value.
    pub async fn list_secrets(&self, access: &Access) -> Result<Vec<SecretInfo>, SecretError> {
        let rows = stored::list(self.store().reader()).await?;
        let mut workspaces: BTreeSet<&str> = rows.iter().map(|r| r.workspace.as_str()).collect();
        workspaces.insert(DEFAULT_WORKSPACE);
        let mut out = Vec::new();
        for workspace in workspaces.into_iter().filter(|ws| access.sees(ws)) {
            let in_ws: Vec<&StoredSecret> =
                rows.iter().filter(|r| r.workspace == workspace).collect();
            out.extend(self.secrets_of(workspace, &in_ws));
        }
        Ok(out)
    }

    /// The secrets of one workspace, by name, from its stored rows and (for `default`) the
    /// environment.
    fn secrets_of(&self, workspace: &str, rows: &[&StoredSecret]) -> Vec<SecretInfo> {
        let current = self.inner.secrets.current_in(workspace);
        let registry = self.registry();
        let used_by = |name: &str| -> Vec<String> {
            registry
                .flows()
                .filter(|f| f.workspace() == workspace)
                .filter(|f| f.flow.secret_names().iter().any(|n| n == name))
                .map(|f| f.bare_id().to_string())
                .collect()
        };
        let mut out: Vec<SecretInfo> = rows
            .iter()
            .map(|row| SecretInfo {
                workspace: workspace.to_string(),
                name: row.name.clone(),
                created_at: Some(row.created_at),
                updated_at: Some(row.updated_at),
                source: current.source(&row.name).unwrap_or(Source::Store),
                used_by: used_by(&row.name),
                readable: !current.unreadable().contains(&row.name),
            })
            .collect();
        for name in current.names() {
            if current.source(name) == Some(Source::Environment)
                && !rows.iter().any(|r| r.name == name)
            {
                out.push(SecretInfo {
                    workspace: workspace.to_string(),
                    name: name.to_string(),
                    created_at: None,
                    updated_at: None,
                    source: Source::Environment,
                    used_by: used_by(name),
                    readable: true,
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    async fn secret_info(
        &self,
        workspace: &str,
        name: &str,
    ) -> Result<Option<SecretInfo>, SecretError> {
        let rows = stored::list_in(self.store().reader(), workspace).await?;
        let rows: Vec<&StoredSecret> = rows.iter().collect();
        Ok(self
            .secrets_of(workspace, &rows)
            .into_iter()
            .find(|s| s.name == name))
    }

    /// `(flow key, secret)` for every secret a current flow reads that is not set in its
    /// workspace.
    pub fn missing_secrets(&self) -> Vec<(String, String)> {
        let registry = self.registry();
        registry
            .flows()
            .flat_map(|f| {
                let current = self.inner.secrets.current_in(f.workspace());
                f.flow
                    .secret_names()
                    .into_iter()
                    .filter(|name| !current.is_set(name))
                    .map(|name| (f.id.clone(), name))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The names of the secrets set now in `workspace`, for validation's warnings.
    pub fn secret_names_set(&self, workspace: &str) -> BTreeSet<String> {
        self.inner
            .secrets
            .current_in(workspace)
            .names()
            .map(str::to_string)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(workspace: &str, name: &str, sealed: String) -> StoredSecret {
        StoredSecret {
            workspace: workspace.into(),
            name: name.into(),
            sealed,
            key_fingerprint: String::new(),
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn a_sealed_value_opens_only_in_its_own_workspace() {
        let key = MasterKey::generate();
        let acme = key.seal(&sealed_as("acme", "TOKEN"), "s3cr3t");
        let default = key.seal(&sealed_as("default", "TOKEN"), "d3f");
        let rows = [
            row("acme", "TOKEN", acme.clone()),
            row("beta", "TOKEN", acme),
            row("default", "TOKEN", default.clone()),
        ];
        let (values, unreadable) = open_all(Some(&key), &rows);
        assert_eq!(
            values,
            [
                ("acme".into(), "TOKEN".into(), "s3cr3t".into()),
                ("default".into(), "TOKEN".into(), "d3f".into())
            ]
        );
        assert_eq!(
            unreadable,
            BTreeSet::from([("beta".into(), "TOKEN".into())])
        );
        // `default` keeps the binding stored values had before workspaces: the name alone.
        assert_eq!(key.open("TOKEN", &default).as_deref(), Ok("d3f"));
    }
}
