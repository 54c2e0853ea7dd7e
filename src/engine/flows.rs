//! Flow management for the API: create, replace, delete, pause and resume, validate. API flows
//! get a new revision on every change; file flows belong to their files (409
//! `managed_by_file`), except for pause and resume, which are stored for both.

use chrono::Utc;

use crate::core::diagnostic::Pos;
use crate::core::diagnostic::{Diagnostic, FlowPath};
use crate::engine::{Engine, EngineError, flow_input};
use crate::flow::validate::{Options, ValidFlow, validate_source};
use crate::store::StoreError;
use crate::store::flows::{self, FlowRow, FlowSource, RevisionRow};

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
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<StoreError> for FlowError {
    fn from(e: StoreError) -> FlowError {
        FlowError::Engine(e.into())
    }
}

/// A flow that passed validation, with its warnings.
pub struct Checked {
    pub flow: ValidFlow,
    pub warnings: Vec<Diagnostic>,
}

impl Engine {
    /// Validates a flow given as YAML or JSON, including the rules across flows (its webhook
    /// paths must be free). `id` is the flow's id when the caller names it (PUT).
    pub fn check_flow(&self, source: &str, id: Option<&str>) -> Result<Checked, FlowError> {
        // Warn about the secrets the flow reads that are not set now.
        let options = Options {
            known_secrets: Some(std::sync::Arc::new(self.secret_names_set())),
            ..self.validation().clone()
        };
        let report = validate_source(source, id, &options);
        let (errors, warnings): (Vec<Diagnostic>, Vec<Diagnostic>) = report
            .diagnostics
            .into_iter()
            .partition(Diagnostic::is_error);
        let Some(flow) = report.flow.filter(|_| errors.is_empty()) else {
            return Err(FlowError::Invalid(errors));
        };
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
                let (other, _) = registry.webhook(path)?;
                (other.id != flow.id).then(|| {
                    Diagnostic::error(
                        at.clone(),
                        *pos,
                        format!(
                            "webhook path `{path}` is used by flow `{}` already",
                            other.id
                        ),
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
    pub async fn create_flow(&self, source: &str) -> Result<FlowRow, FlowError> {
        let checked = self.check_flow(source, None)?;
        let store = self.store();
        if flows::get_flow(store.reader(), store.backend(), &checked.flow.id)
            .await?
            .is_some()
        {
            return Err(FlowError::IdTaken(checked.flow.id));
        }
        self.save_api_flow(&checked.flow, source).await
    }

    /// Replaces an API flow with a new revision (a no-op when nothing changed).
    pub async fn replace_flow(&self, id: &str, source: &str) -> Result<FlowRow, FlowError> {
        self.api_flow(id).await?;
        let checked = self.check_flow(source, Some(id))?;
        self.save_api_flow(&checked.flow, source).await
    }

    /// Deletes an API flow; its runs and revisions stay.
    pub async fn delete_flow(&self, id: &str) -> Result<(), FlowError> {
        self.api_flow(id).await?;
        let store = self.store();
        flows::delete(store.writer(), store.backend(), id).await?;
        self.reload_registry().await?;
        Ok(())
    }

    /// Pauses or resumes a flow (file flows too) and returns it.
    pub async fn set_flow_paused(&self, id: &str, paused: bool) -> Result<FlowRow, FlowError> {
        let store = self.store();
        let now = Utc::now().timestamp_millis();
        if !flows::set_paused(store.writer(), store.backend(), id, paused, now).await? {
            return Err(FlowError::UnknownFlow(id.into()));
        }
        self.reload_registry().await?;
        self.flow(id).await
    }

    /// One flow with its current definition.
    pub async fn flow(&self, id: &str) -> Result<FlowRow, FlowError> {
        let store = self.store();
        flows::get_flow(store.reader(), store.backend(), id)
            .await?
            .ok_or_else(|| FlowError::UnknownFlow(id.into()))
    }

    /// Every flow, by id.
    pub async fn flows(&self) -> Result<Vec<FlowRow>, FlowError> {
        let store = self.store();
        Ok(flows::list(store.reader(), store.backend()).await?)
    }

    /// The revisions of a flow, newest first.
    pub async fn flow_revisions(&self, id: &str) -> Result<Vec<RevisionRow>, FlowError> {
        let store = self.store();
        let revisions = flows::revisions(store.reader(), store.backend(), id).await?;
        if revisions.is_empty() {
            return Err(FlowError::UnknownFlow(id.into()));
        }
        Ok(revisions)
    }

    async fn api_flow(&self, id: &str) -> Result<FlowRow, FlowError> {
        let flow = self.flow(id).await?;
        if flow.source == FlowSource::File {
            return Err(FlowError::ManagedByFile(id.into()));
        }
        Ok(flow)
    }

    async fn save_api_flow(&self, flow: &ValidFlow, source: &str) -> Result<FlowRow, FlowError> {
        let yaml = as_yaml(source, flow);
        let input = flow_input(
            &flow.id,
            &flow.name,
            &flow.def,
            &yaml,
            FlowSource::Api,
            None,
        )?;
        let store = self.store();
        let txn = store.begin_write().await?;
        flows::save(&txn, store.backend(), &input, Utc::now().timestamp_millis()).await?;
        txn.commit().await.map_err(StoreError::from)?;
        self.reload_registry().await?;
        self.flow(&flow.id).await
    }
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
