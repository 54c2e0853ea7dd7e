//! Flow management for the API: create, replace, delete, pause and resume, validate, read and
//! restore revisions; and the flow list as a grid shows it ([`FlowSummary`]). API flows get a
//! new revision on every change; file flows belong to their files (409 `managed_by_file`),
//! except for pause and resume, which are stored for both.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::core::diagnostic::Pos;
use crate::core::diagnostic::{Diagnostic, FlowPath};
use crate::core::workspace::{Access, flow_key, hook_key, split_flow_key};
use crate::engine::audit::{self, Change};
use crate::engine::{Engine, EngineError, flow_input};
use crate::flow::model::FlowDef;
use crate::flow::registry::webhook_taken_message;
use crate::flow::summary::{self, TriggerSummary};
use crate::flow::validate::{Options, ValidFlow, validate_source};
use crate::store::StoreError;
use crate::store::audit::AuditAction;
use crate::store::flows::{
    self, FlowRow, FlowSource, PauseReason, Revision, RevisionRow, RunFigures, Which,
};
use crate::store::runs::{self, FlowRuns};

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("no flow `{0}`")]
    UnknownFlow(String),
    #[error("the flow is not valid: {} problem(s)", .0.len())]
    Invalid(Vec<Diagnostic>),
    #[error("a flow with id `{0}` exists already")]
    IdTaken(String),
    #[error("flow `{0}` comes from a file in the flows folder: change the file instead")]
    ManagedByFile(String),
    #[error("flow `{flow}` has no revision {revision}")]
    UnknownRevision { flow: String, revision: i64 },
    #[error("no workspace `{0}`")]
    UnknownWorkspace(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<StoreError> for FlowError {
    fn from(e: StoreError) -> FlowError {
        FlowError::Engine(e.into())
    }
}

/// A flow as the flow list (API and console grid) shows it: what it is, what starts it, where
/// it sends, its state with dates, and its runs of the last 24 hours. Built by
/// [`Engine::flow_summaries`] from one query, however many flows there are.
#[derive(Debug, Clone)]
pub struct FlowSummary {
    /// The flow's id within its workspace (never the flow key).
    pub id: String,
    /// The workspace it belongs to.
    pub workspace: String,
    pub name: String,
    pub description: Option<String>,
    /// `false` when the flow says `enabled: false`.
    pub enabled: bool,
    pub paused: bool,
    pub source: FlowSource,
    /// The file of a file flow.
    pub path: Option<String>,
    pub revision: i64,
    /// One line per trigger, with its filters.
    pub triggers: Vec<TriggerSummary>,
    /// The URLs its steps send to, secrets masked (`***`).
    pub targets: Vec<String>,
    /// Why the flow's file does not load (the last good revision keeps running).
    pub load_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub paused_at: Option<DateTime<Utc>>,
    pub pause_reason: Option<PauseReason>,
    /// For `auto_paused`: what tripped the breaker.
    pub pause_detail: Option<String>,
    pub deleted_at: Option<DateTime<Utc>>,
    /// When its latest run was created.
    pub last_run_at: Option<DateTime<Utc>>,
    /// Runs created in the last 24 hours, and how many of them failed.
    pub runs_24h: u64,
    pub failed_24h: u64,
}

/// One flow with its definition: what `GET /api/v1/flows/{id}` shows.
#[derive(Debug, Clone)]
pub struct FlowView {
    pub summary: FlowSummary,
    /// The current revision's definition as JSON.
    pub definition: String,
    /// The current revision's YAML as written.
    pub yaml: String,
    /// What validation warned about when it was just saved (create or replace); `None` for a
    /// flow read back.
    pub warnings: Option<Vec<Diagnostic>>,
}

/// Which flows [`Engine::flow_summaries`] lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowFilter {
    /// Deleted flows too (`?include_deleted=true`).
    pub include_deleted: bool,
}

/// A flow that passed validation, with its warnings.
pub struct Checked {
    pub flow: ValidFlow,
    pub warnings: Vec<Diagnostic>,
}

impl Engine {
    /// Validates a flow given as YAML or JSON, including the rules across flows (its webhook
    /// paths must be free in its workspace). `id` is the flow's id when the caller names it
    /// (PUT). The flow lands in the access's workspace, or, for an admin's request that names
    /// none, in the workspace the flow declares; a flow declaring another workspace than the
    /// request's is refused.
    pub fn check_flow(
        &self,
        access: &Access,
        source: &str,
        id: Option<&str>,
    ) -> Result<Checked, FlowError> {
        let declared = crate::flow::yaml::parse(source).ok().and_then(|node| {
            node.get("workspace")
                .and_then(|n| n.as_str())
                .map(str::to_string)
        });
        let workspace = match &declared {
            Some(ws) if access.all_workspaces => ws.clone(),
            _ => access.workspace.clone(),
        };
        // Warn about the secrets the flow reads that are not set now in its workspace.
        let options = Options {
            known_secrets: Some(std::sync::Arc::new(self.secret_names_set(&workspace))),
            secrets: Some(self.inner.secrets.current_in(&workspace)),
            ..self.validation().clone()
        };
        let report = validate_source(source, id, &options);
        let (errors, warnings): (Vec<Diagnostic>, Vec<Diagnostic>) = report
            .diagnostics
            .into_iter()
            .partition(Diagnostic::is_error);
        let Some(mut flow) = report.flow.filter(|_| errors.is_empty()) else {
            return Err(FlowError::Invalid(errors));
        };
        if flow.declares_workspace() && flow.workspace != workspace {
            return Err(FlowError::Invalid(vec![Diagnostic::error(
                FlowPath::root().key("workspace"),
                Pos::START,
                format!(
                    "the flow's workspace `{}` differs from `{workspace}`, the workspace of this \
                     request; leave `workspace:` out or send the request in that workspace",
                    flow.workspace
                ),
            )]));
        }
        flow.workspace = workspace;
        if !self.workspace_exists(&flow.workspace) {
            return Err(FlowError::UnknownWorkspace(flow.workspace));
        }
        if let Some(id) = id
            && flow.id != id
        {
            return Err(FlowError::Invalid(vec![Diagnostic::error(
                FlowPath::root().key("id"),
                flow.id_pos,
                format!("the flow's id `{}` differs from `{id}` in the URL", flow.id),
            )]));
        }
        let registry = self.registry();
        let taken: Vec<Diagnostic> = flow
            .webhook_paths
            .iter()
            .filter_map(|(path, at, pos)| {
                let (other, spelling) = registry.webhook_alike(&hook_key(&flow.workspace, path))?;
                (other.id != flow.key()).then(|| {
                    Diagnostic::error(
                        at.clone(),
                        *pos,
                        webhook_taken_message(path, &flow.id, spelling, other.bare_id(), ""),
                    )
                })
            })
            .collect();
        if !taken.is_empty() {
            return Err(FlowError::Invalid(taken));
        }
        Ok(Checked { flow, warnings })
    }

    /// Creates an API flow. `source` is YAML (or JSON, which is YAML too).
    pub async fn create_flow(&self, access: &Access, source: &str) -> Result<FlowView, FlowError> {
        let checked = self.check_flow(access, source, None)?;
        let store = self.store();
        if flows::get_flow(store.reader(), store.backend(), &checked.flow.key())
            .await?
            .is_some()
        {
            return Err(FlowError::IdTaken(checked.flow.id));
        }
        let saved = self
            .save_api_flow(
                access,
                &checked.flow,
                source,
                (AuditAction::FlowCreated, None),
            )
            .await?;
        Ok(FlowView {
            warnings: Some(checked.warnings),
            ..saved
        })
    }

    /// Replaces an API flow with a new revision (a no-op when nothing changed).
    pub async fn replace_flow(
        &self,
        access: &Access,
        id: &str,
        source: &str,
    ) -> Result<FlowView, FlowError> {
        self.api_flow(access, id).await?;
        let checked = self.check_flow(&in_own_workspace(access), source, Some(id))?;
        let saved = self
            .save_api_flow(
                access,
                &checked.flow,
                source,
                (AuditAction::FlowUpdated, None),
            )
            .await?;
        Ok(FlowView {
            warnings: Some(checked.warnings),
            ..saved
        })
    }

    /// Deletes an API flow: it is marked deleted (listed with `include_deleted`), and in the
    /// same transaction its runs not finished are cancelled (`flow_deleted`; a run executing
    /// stops after its step in flight). Its runs and revisions stay readable.
    pub async fn delete_flow(&self, access: &Access, id: &str) -> Result<(), FlowError> {
        self.api_flow(access, id).await?;
        let key = key_of(access, id);
        let store = self.store();
        let now = Utc::now().timestamp_millis();
        let txn = store.begin_write().await?;
        if !delete_with_runs(&txn, store.backend(), &key, now).await? {
            // Deleted meanwhile by another request: that one is recorded.
            return Err(FlowError::UnknownFlow(id.into()));
        }
        let change = Change::of_flow(AuditAction::FlowDeleted, &key, serde_json::json!({}));
        audit::record(&txn, store.backend(), access, change, self.audit_now()).await?;
        txn.commit().await.map_err(StoreError::from)?;
        self.reload_registry().await?;
        Ok(())
    }

    /// Pauses a flow (file flows too) by hand: its runs not started yet become `held`, new
    /// events and webhooks make `held` runs (unless it says `on_pause: drop`), runs waiting for
    /// a retry or a delay do not start their next attempt. Pausing a paused flow keeps its
    /// first date.
    pub async fn pause_flow(&self, access: &Access, id: &str) -> Result<FlowSummary, FlowError> {
        self.pause(access, &key_of(access, id), PauseReason::Manual, None)
            .await
    }

    /// Pauses the flow with key `id` for `reason`, with a detail for people.
    pub(crate) async fn pause(
        &self,
        access: &Access,
        id: &str,
        reason: PauseReason,
        detail: Option<&str>,
    ) -> Result<FlowSummary, FlowError> {
        let store = self.store();
        let now = Utc::now().timestamp_millis();
        let txn = store.begin_write().await?;
        let pause = Some((reason, detail));
        if !flows::set_paused(&txn, store.backend(), id, pause, now).await? {
            return Err(FlowError::UnknownFlow(split_flow_key(id).1.into()));
        }
        runs::hold_pending(&txn, store.backend(), id).await?;
        let detail = serde_json::json!({"reason": reason.as_str()});
        let change = Change::of_flow(AuditAction::FlowPaused, id, detail);
        audit::record(&txn, store.backend(), access, change, self.audit_now()).await?;
        txn.commit().await.map_err(StoreError::from)?;
        self.reload_registry().await?;
        self.summary_by_key(id).await
    }

    /// Resumes a paused flow: its held runs are released in creation order under the flow's
    /// limits, or, with `discard_held`, cancelled (`discarded_on_resume`).
    pub async fn resume_flow(
        &self,
        access: &Access,
        id: &str,
        discard_held: bool,
    ) -> Result<FlowSummary, FlowError> {
        let key = key_of(access, id);
        let id = key.as_str();
        let store = self.store();
        let now = Utc::now().timestamp_millis();
        let txn = store.begin_write().await?;
        if !flows::set_paused(&txn, store.backend(), id, None, now).await? {
            return Err(FlowError::UnknownFlow(id.into()));
        }
        if discard_held {
            let (held, reason) = (FlowRuns::Held, DISCARDED_ON_RESUME);
            runs::cancel_flow_runs(&txn, store.backend(), id, held, reason, now).await?;
        } else {
            runs::release_held(&txn, store.backend(), Some(id)).await?;
        }
        let detail = serde_json::json!({"discard_held": discard_held});
        let change = Change::of_flow(AuditAction::FlowResumed, id, detail);
        audit::record(&txn, store.backend(), access, change, self.audit_now()).await?;
        txn.commit().await.map_err(StoreError::from)?;
        self.reload_registry().await?;
        self.runner().wake.new_runs();
        self.summary_by_key(id).await
    }

    /// The flows as a grid shows them, by id: one query for all of them with their run
    /// figures (never one per flow). Deleted flows only when the filter asks.
    pub async fn flow_summaries(
        &self,
        access: &Access,
        filter: FlowFilter,
    ) -> Result<Vec<FlowSummary>, FlowError> {
        let which = if filter.include_deleted {
            Which::WithDeleted
        } else {
            Which::Live
        };
        let mut all = self.summaries(which).await?;
        all.retain(|f| access.sees(&f.workspace));
        Ok(all)
    }

    /// One flow as [`Engine::flow_summaries`] shows it; a deleted flow is not found.
    pub async fn flow_summary(&self, access: &Access, id: &str) -> Result<FlowSummary, FlowError> {
        self.summary_by_key(&key_of(access, id)).await
    }

    async fn summary_by_key(&self, key: &str) -> Result<FlowSummary, FlowError> {
        self.summaries(Which::One(key))
            .await?
            .into_iter()
            .find(|f| f.deleted_at.is_none())
            .ok_or_else(|| FlowError::UnknownFlow(split_flow_key(key).1.into()))
    }

    async fn summaries(&self, which: Which<'_>) -> Result<Vec<FlowSummary>, FlowError> {
        Ok(self
            .summaries_with_rows(which)
            .await?
            .into_iter()
            .map(|(summary, _)| summary)
            .collect())
    }

    /// One flow (not deleted) with its summary and definition, from one query.
    pub async fn flow_view(&self, access: &Access, id: &str) -> Result<FlowView, FlowError> {
        self.view_by_key(&key_of(access, id)).await
    }

    async fn view_by_key(&self, id: &str) -> Result<FlowView, FlowError> {
        self.summaries_with_rows(Which::One(id))
            .await?
            .into_iter()
            .find(|(summary, _)| summary.deleted_at.is_none())
            .map(|(summary, row)| FlowView {
                summary,
                definition: row.definition,
                yaml: row.yaml,
                warnings: None,
            })
            .ok_or_else(|| FlowError::UnknownFlow(split_flow_key(id).1.into()))
    }

    async fn summaries_with_rows(
        &self,
        which: Which<'_>,
    ) -> Result<Vec<(FlowSummary, FlowRow)>, FlowError> {
        let store = self.store();
        let since = Utc::now().timestamp_millis() - DAY_MS;
        let rows = flows::list_with_figures(store.reader(), store.backend(), which, since).await?;
        let registry = self.registry();
        Ok(rows
            .into_iter()
            .map(|(row, figures)| {
                // The registry has the current revision parsed already; deleted flows are not
                // in it and are parsed here.
                let compiled = registry
                    .get(&row.id)
                    .filter(|e| e.revision == row.revision)
                    .map(|e| Arc::clone(&e.flow));
                let parsed = match compiled {
                    Some(_) => None,
                    None => serde_json::from_str::<FlowDef>(&row.definition).ok(),
                };
                let def = compiled.as_ref().map(|c| &c.def).or(parsed.as_ref());
                (self.summary(&row, figures, def), row)
            })
            .collect())
    }

    fn summary(&self, row: &FlowRow, figures: RunFigures, def: Option<&FlowDef>) -> FlowSummary {
        // Targets are shown as written, secret expressions masked; a secret's value written
        // into a URL literally is masked by the redactor as well.
        let redactor = &self.step_env().redactor;
        let targets = def
            .map(summary::targets)
            .unwrap_or_default()
            .iter()
            .map(|t| redactor.redact(t))
            .collect();
        let (workspace, id) = split_flow_key(&row.id);
        FlowSummary {
            id: id.to_string(),
            workspace: workspace.to_string(),
            name: row.name.clone(),
            description: def.and_then(|d| d.description.clone()),
            enabled: row.enabled,
            paused: row.paused,
            source: row.source,
            path: row.path.clone(),
            revision: row.revision,
            triggers: def.map(summary::triggers).unwrap_or_default(),
            targets,
            load_error: row.load_error.clone(),
            created_at: time(row.created_at).unwrap_or_default(),
            updated_at: time(row.updated_at).unwrap_or_default(),
            paused_at: row.paused_at.and_then(time),
            pause_reason: row.pause_reason,
            pause_detail: row.pause_detail.clone(),
            deleted_at: row.deleted_at.and_then(time),
            last_run_at: figures.last_run_at.and_then(time),
            runs_24h: u64::try_from(figures.runs_since).unwrap_or(0),
            failed_24h: u64::try_from(figures.failed_since).unwrap_or(0),
        }
    }

    /// One revision of a flow, whole (deleted flows' revisions too, for their runs' history).
    pub async fn flow_revision(
        &self,
        access: &Access,
        id: &str,
        revision: i64,
    ) -> Result<Revision, FlowError> {
        let store = self.store();
        flows::revision(
            store.reader(),
            store.backend(),
            &key_of(access, id),
            revision,
        )
        .await?
        .ok_or_else(|| FlowError::UnknownRevision {
            flow: id.into(),
            revision,
        })
    }

    /// Makes an old revision of an API flow current again, as a new revision (like a revert:
    /// history only grows). It is validated as today's rules and other flows require; restoring
    /// the current revision changes nothing.
    pub async fn restore_flow_revision(
        &self,
        access: &Access,
        id: &str,
        revision: i64,
    ) -> Result<FlowView, FlowError> {
        self.api_flow(access, id).await?;
        let old = self.flow_revision(access, id, revision).await?;
        let checked = self.check_flow(&in_own_workspace(access), &old.yaml, Some(id))?;
        let restored = (AuditAction::FlowRestored, Some(revision));
        self.save_api_flow(access, &checked.flow, &old.yaml, restored)
            .await
    }

    /// One flow of the access's workspace with its current definition (its `id` is the key).
    pub async fn flow(&self, access: &Access, id: &str) -> Result<FlowRow, FlowError> {
        let store = self.store();
        flows::get_flow(store.reader(), store.backend(), &key_of(access, id))
            .await?
            .ok_or_else(|| FlowError::UnknownFlow(id.into()))
    }

    /// Every flow `access` sees that is not deleted, by key, with its definition.
    pub async fn flows(&self, access: &Access) -> Result<Vec<FlowRow>, FlowError> {
        let store = self.store();
        let mut rows = flows::list(store.reader(), store.backend()).await?;
        rows.retain(|row| access.sees(split_flow_key(&row.id).0));
        Ok(rows)
    }

    /// The revisions of a flow, newest first.
    pub async fn flow_revisions(
        &self,
        access: &Access,
        id: &str,
    ) -> Result<Vec<RevisionRow>, FlowError> {
        let store = self.store();
        let key = key_of(access, id);
        let revisions = flows::revisions(store.reader(), store.backend(), &key).await?;
        if revisions.is_empty() {
            return Err(FlowError::UnknownFlow(id.into()));
        }
        Ok(revisions)
    }

    async fn api_flow(&self, access: &Access, id: &str) -> Result<FlowRow, FlowError> {
        let flow = self.flow(access, id).await?;
        if flow.source == FlowSource::File {
            return Err(FlowError::ManagedByFile(id.into()));
        }
        Ok(flow)
    }

    /// Stores an API flow as a new revision, with its audit entry (`action`, and the revision
    /// it restores, if it does) in the same transaction.
    async fn save_api_flow(
        &self,
        access: &Access,
        flow: &ValidFlow,
        source: &str,
        (action, from): (AuditAction, Option<i64>),
    ) -> Result<FlowView, FlowError> {
        let yaml = as_yaml(source, flow);
        let input = flow_input(
            &flow.key(),
            &flow.name,
            &flow.def,
            &yaml,
            FlowSource::Api,
            None,
        )?;
        let store = self.store();
        let txn = store.begin_write().await?;
        let now = Utc::now().timestamp_millis();
        let revision = flows::save(&txn, store.backend(), &input, now).await?;
        let detail = match from {
            Some(from) => serde_json::json!({"revision": revision, "restored_from": from}),
            None => serde_json::json!({"revision": revision}),
        };
        let change = Change::of_flow(action, &flow.key(), detail);
        audit::record(&txn, store.backend(), access, change, self.audit_now()).await?;
        txn.commit().await.map_err(StoreError::from)?;
        self.reload_registry().await?;
        self.view_by_key(&flow.key()).await
    }
}

/// The flow key of flow `id` in the access's workspace: names resolve there (for an admin key
/// without `?workspace=`, in its own workspace), so another workspace's flow is never reached.
pub fn key_of(access: &Access, id: &str) -> String {
    flow_key(&access.workspace, id)
}

/// The access limited to its own workspace: a flow changed by id stays where it is.
fn in_own_workspace(access: &Access) -> Access {
    Access {
        all_workspaces: false,
        ..access.clone()
    }
}

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// The reason of runs cancelled because their flow was deleted.
pub const FLOW_DELETED: &str = "flow_deleted";
/// The reason of held runs cancelled by a resume with `discard_held`.
pub const DISCARDED_ON_RESUME: &str = "discarded_on_resume";

/// Marks a flow deleted and cancels its runs not finished, in the caller's transaction (the
/// API's delete and the removal of a flow file). False when it was not there (or deleted).
pub(crate) async fn delete_with_runs(
    conn: &impl sea_orm::ConnectionTrait,
    backend: crate::store::Backend,
    id: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let deleted = flows::delete(conn, backend, id, now).await?;
    if deleted {
        runs::cancel_flow_runs(conn, backend, id, FlowRuns::Unfinished, FLOW_DELETED, now).await?;
    }
    Ok(deleted)
}

fn time(millis: i64) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_millis(millis)
}

/// The YAML kept as the flow's source: YAML as written (comments and all); a JSON body is
/// turned into YAML, so `Accept: application/yaml` and `flowd export` give YAML either way.
fn as_yaml(source: &str, flow: &ValidFlow) -> String {
    if !source.trim_start().starts_with('{') {
        return source.to_string();
    }
    crate::flow::yaml::to_string(&flow.def).unwrap_or_else(|_| source.to_string())
}

/// A diagnostic for a body that is not a flow at all.
pub fn body_problem(message: impl Into<String>) -> FlowError {
    FlowError::Invalid(vec![Diagnostic::error(
        FlowPath::root(),
        Pos::START,
        message,
    )])
}
