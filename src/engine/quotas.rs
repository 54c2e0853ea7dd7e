//! Quotas per workspace (SPEC §11, `docs/quotas.md`): reading and setting a workspace's
//! quotas, checking a body's values, and keeping this node's cache of them current (read with
//! the flows every second by `follow`, and at once after a change made here).

use std::collections::HashMap;

use serde_json::Value;

use crate::core::workspace::{Access, workspace_name_problem};
use crate::engine::audit::{self, Change};
use crate::engine::{Engine, EngineError};
use crate::store::audit::AuditAction;
use crate::store::quotas::{self, QuotaRow, Quotas};
use crate::store::{Store, StoreError};

/// The largest quota accepted, of either kind: well above anything one database can do, and
/// small enough that no count overflows.
pub const MAX_QUOTA: i64 = 1_000_000_000;

/// The fields of a quota body, as the API and the documentation name them.
pub const QUOTA_FIELDS: [&str; 2] = ["runs_per_day", "http_attempts_per_minute"];

#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    /// A workspace name that cannot be one.
    #[error("{0}")]
    Workspace(String),
    /// A workspace flowd does not know.
    #[error("no workspace `{0}`: it has no quotas set and is not `default`")]
    UnknownWorkspace(String),
    /// A bad body: each problem as (field, message).
    #[error("the quotas are not valid: {}", .0.iter().map(|(f, m)| format!("`{f}` {m}")).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<(String, String)>),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<crate::store::StoreError> for QuotaError {
    fn from(e: crate::store::StoreError) -> QuotaError {
        QuotaError::Engine(e.into())
    }
}

/// A workspace's quotas as read: `None` values mean no limit; `updated_at` is `None` when the
/// workspace never had one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceQuotas {
    pub workspace: String,
    pub quotas: Quotas,
    pub updated_at: Option<i64>,
}

/// Reads a body `{"runs_per_day": n|null, "http_attempts_per_minute": n|null}`: a field left
/// out means no limit (PUT replaces both). Every problem is named, with its field.
pub fn parse_quotas(body: &Value) -> Result<Quotas, QuotaError> {
    let Value::Object(fields) = body else {
        return Err(QuotaError::Invalid(vec![(
            "body".into(),
            "must be an object: {\"runs_per_day\": 100|null, \"http_attempts_per_minute\": 600|null}".into(),
        )]));
    };
    let mut problems: Vec<(String, String)> = fields
        .keys()
        .filter(|k| !QUOTA_FIELDS.contains(&k.as_str()))
        .map(|k| {
            (
                k.clone(),
                format!(
                    "is not a quota; the fields are {}",
                    QUOTA_FIELDS.join(" and ")
                ),
            )
        })
        .collect();
    let mut read = |name: &str| match fields.get(name) {
        None | Some(Value::Null) => None,
        Some(value) => match value.as_i64() {
            Some(n) if (1..=MAX_QUOTA).contains(&n) => Some(n),
            _ => {
                problems.push((
                    name.to_owned(),
                    format!("must be a whole number from 1 to {MAX_QUOTA}, or null for no limit (got {value})"),
                ));
                None
            }
        },
    };
    let quotas = Quotas {
        runs_per_day: read("runs_per_day"),
        http_attempts_per_minute: read("http_attempts_per_minute"),
    };
    if problems.is_empty() {
        Ok(quotas)
    } else {
        Err(QuotaError::Invalid(problems))
    }
}

/// The audit entry of quotas set on `workspace`: in that workspace, with the new values.
fn quotas_set(workspace: &str, new: Quotas) -> Change {
    Change {
        action: AuditAction::QuotasSet,
        target: workspace.to_owned(),
        workspace: workspace.to_owned(),
        detail: serde_json::json!({
            "runs_per_day": new.runs_per_day,
            "http_attempts_per_minute": new.http_attempts_per_minute,
        }),
    }
}

impl Engine {
    /// The quotas of `workspace` (none set: both `None`). A workspace `access` does not see is
    /// unknown, as one that does not exist.
    pub async fn quotas(
        &self,
        access: &Access,
        workspace: &str,
    ) -> Result<WorkspaceQuotas, QuotaError> {
        self.check_known(access, workspace)?;
        let store = self.store();
        let row = quotas::get_one(store.reader(), store.backend(), workspace).await?;
        Ok(workspace_quotas(workspace, row))
    }

    /// Sets the quotas of `workspace` (both `None` removes them), recorded in the audit log in
    /// the same transaction. Runs the quotas held are released in the same transaction, so a raised or removed quota lets them go at once; the
    /// claim holds again whatever is still over.
    pub async fn set_quotas(
        &self,
        access: &Access,
        workspace: &str,
        new: Quotas,
    ) -> Result<WorkspaceQuotas, QuotaError> {
        self.check_known(access, workspace)?;
        let now = self.runner().now_ms();
        let stored = store_quotas(self.store(), access, workspace, new, now).await?;
        self.refresh_quotas().await?;
        self.runner().wake.new_runs();
        Ok(stored)
    }

    /// Reads every workspace's quotas into this node's cache (the claim and the attempts read
    /// the cache, never the table). A workspace whose quotas changed or went gets its held
    /// runs released: this node may have held them on the old settings after the change was
    /// stored, and holds nothing on them once it has read the new ones.
    pub async fn refresh_quotas(&self) -> Result<(), EngineError> {
        let store = self.store();
        let rows = quotas::list(store.reader(), store.backend()).await?;
        let new: HashMap<String, Quotas> =
            rows.into_iter().map(|r| (r.workspace, r.quotas)).collect();
        let old = self.runner().quotas.current();
        self.runner().quotas.replace(new.clone());
        let changed: Vec<&String> = old
            .iter()
            .filter(|(ws, q)| new.get(*ws) != Some(q))
            .map(|(ws, _)| ws)
            .collect();
        for workspace in changed {
            quotas::release_due(store.writer(), store.backend(), workspace, None).await?;
        }
        Ok(())
    }
}

/// Stores `new` as the quotas of `workspace` in one transaction: the settings, the audit entry,
/// and the release of the runs the old quotas held (the claim holds again whatever is still
/// over). For the API through [`Engine::set_quotas`] and for `flowd workspaces quota`; servers
/// read the new settings within a second.
pub async fn store_quotas(
    store: &Store,
    access: &Access,
    workspace: &str,
    new: Quotas,
    now: i64,
) -> Result<WorkspaceQuotas, StoreError> {
    let backend = store.backend();
    let txn = store.begin_write().await?;
    quotas::lock_workspace(&txn, backend, workspace).await?;
    quotas::set(&txn, backend, workspace, new, now).await?;
    audit::record(&txn, backend, access, quotas_set(workspace, new), now).await?;
    quotas::release_due(&txn, backend, workspace, None).await?;
    let row = quotas::get_one(&txn, backend, workspace).await?;
    txn.commit().await.map_err(StoreError::from)?;
    Ok(workspace_quotas(workspace, row))
}

impl Engine {
    fn check_known(&self, access: &Access, workspace: &str) -> Result<(), QuotaError> {
        check_workspace(workspace)?;
        if access.sees(workspace) && self.workspace_exists(workspace) {
            Ok(())
        } else {
            Err(QuotaError::UnknownWorkspace(workspace.to_owned()))
        }
    }
}

fn check_workspace(workspace: &str) -> Result<(), QuotaError> {
    match workspace_name_problem(workspace) {
        Some(problem) => Err(QuotaError::Workspace(problem)),
        None => Ok(()),
    }
}

fn workspace_quotas(workspace: &str, row: Option<QuotaRow>) -> WorkspaceQuotas {
    WorkspaceQuotas {
        workspace: workspace.to_owned(),
        quotas: row.as_ref().map(|r| r.quotas).unwrap_or_default(),
        updated_at: row.map(|r| r.updated_at),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_body_is_read_with_missing_and_null_as_no_limit() {
        let both = parse_quotas(&json!({"runs_per_day": 100, "http_attempts_per_minute": 600}));
        assert_eq!(
            both.unwrap(),
            Quotas {
                runs_per_day: Some(100),
                http_attempts_per_minute: Some(600)
            }
        );
        let one = parse_quotas(&json!({"runs_per_day": null, "http_attempts_per_minute": 5}));
        assert_eq!(one.unwrap().runs_per_day, None);
        assert!(parse_quotas(&json!({})).unwrap().is_empty());
    }

    #[test]
    fn every_bad_value_is_named_with_its_field() {
        let cases = [
            (json!({"runs_per_day": 0}), "runs_per_day"),
            (json!({"runs_per_day": -5}), "runs_per_day"),
            (json!({"runs_per_day": 1.5}), "runs_per_day"),
            (json!({"runs_per_day": "100"}), "runs_per_day"),
            (
                json!({"http_attempts_per_minute": 1_000_000_001_i64}),
                "http_attempts_per_minute",
            ),
            (json!({"runs_per_dya": 5}), "runs_per_dya"),
            (json!([1]), "body"),
        ];
        for (body, field) in cases {
            match parse_quotas(&body) {
                Err(QuotaError::Invalid(problems)) => {
                    assert_eq!(problems[0].0, field, "{body}");
                }
                other => panic!("{body}: expected invalid, got {other:?}"),
            }
        }
    }
}
