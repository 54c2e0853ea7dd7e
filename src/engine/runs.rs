//! Run operations of the API and the console (SPEC §6): starting runs by hand or from events,
//! and the run controls. The engine only hands them to the part that does the work: the
//! triggers' intake starts runs, the runner controls them.

use std::time::Duration;

use serde_json::{Value, json};

use crate::core::trigger_data::{ManualEntity, TriggerData};
use crate::core::workspace::{Access, split_flow_key};
use crate::engine::audit::Change;
use crate::engine::{Engine, EngineError, EventIn, EventResult};
use crate::runner::control::{Cancelled, ControlError};
use crate::store::audit::AuditAction;
use crate::store::{StoreError, events, run_log};
use crate::trigger::manual::{Action, ManualError, ManualRequest};
use crate::trigger::webhook::{Received, WebhookError};

impl Engine {
    /// Stores events and the runs they start (see [`crate::trigger::entity`]).
    pub async fn emit(&self, events: Vec<EventIn>) -> Result<Vec<EventResult>, EngineError> {
        Ok(self.intake().emit(events).await?)
    }

    /// Starts a run of `flow_id` by hand and returns its id.
    pub async fn trigger_manual(
        &self,
        flow_id: &str,
        request: ManualRequest,
    ) -> Result<String, ManualError> {
        self.intake().trigger_manual(flow_id, request).await
    }

    /// The manual actions of active flows on `entity`, sorted by label.
    pub fn actions(&self, entity: &str) -> Vec<Action> {
        self.intake().actions(entity)
    }

    /// The manual actions on one entity whose `if` holds for it, judged on the entity's last
    /// state flowd received in an event (`{id}` alone when it never received one).
    pub async fn actions_for(&self, entity: &str, id: &str) -> Result<Vec<Action>, EngineError> {
        let store = self.store();
        let data = events::latest_data(store.reader(), store.backend(), entity, id).await?;
        let data = data
            .and_then(|d| serde_json::from_str(&d).ok())
            .unwrap_or_else(|| serde_json::json!({}));
        Ok(self.intake().actions_applying(&ManualEntity {
            entity_type: entity.to_string(),
            id: id.to_string(),
            data,
        }))
    }

    /// Every manual action of active flows (the console's actions page).
    pub fn every_action(&self) -> Vec<Action> {
        self.intake().every_action()
    }

    /// Handles one webhook request.
    pub async fn receive_webhook(
        &self,
        path: &str,
        headers: &axum::http::HeaderMap,
        body: &[u8],
    ) -> Result<Received, WebhookError> {
        self.intake().receive_webhook(path, headers, body).await
    }

    /// Cancels a run: at once when it is not executing, else after its step in flight.
    pub async fn cancel_run(
        &self,
        access: &Access,
        run_id: &str,
    ) -> Result<Cancelled, ControlError> {
        let cancelled = self.runner().cancel_run(run_id).await?;
        let detail = json!({"after_current_step": cancelled == Cancelled::AfterCurrentStep});
        (self.record_run_change(access, AuditAction::RunCancelled, run_id, detail)).await?;
        Ok(cancelled)
    }

    /// Resumes a failed or cancelled run at its first step that did not succeed.
    pub async fn retry_run(&self, access: &Access, run_id: &str) -> Result<(), ControlError> {
        self.runner().retry_run(run_id).await?;
        (self.record_run_change(access, AuditAction::RunRetried, run_id, json!({}))).await?;
        Ok(())
    }

    /// Records a control of a run, made by the runner in its own transaction, right after it:
    /// in the workspace of the run's flow.
    async fn record_run_change(
        &self,
        access: &Access,
        action: AuditAction,
        run_id: &str,
        detail: Value,
    ) -> Result<(), StoreError> {
        let store = self.store();
        let run = run_log::get_run(store.reader(), store.backend(), run_id).await?;
        let workspace = match &run {
            Some(run) => split_flow_key(&run.flow_id).0.to_owned(),
            None => access.workspace.clone(),
        };
        let target = run_id.to_owned();
        let change = Change {
            action,
            target,
            workspace,
            detail,
        };
        self.record_after(access, change).await
    }

    /// Starts a new run with the same trigger data on the flow's current revision.
    pub async fn replay_run(&self, access: &Access, run_id: &str) -> Result<String, ControlError> {
        let store = self.store();
        let run = run_log::get_run(store.reader(), store.backend(), run_id)
            .await?
            .ok_or_else(|| ControlError::UnknownRun(run_id.into()))?;
        let trigger: TriggerData = serde_json::from_str(&run.trigger)
            .map_err(|e| ControlError::BrokenTrigger(run_id.into(), e))?;
        let registry = self.registry();
        let flow = registry
            .get(&run.flow_id)
            .ok_or_else(|| ControlError::FlowGone(run.flow_id.clone()))?;
        let new_run = self
            .intake()
            .start_run(flow, &trigger)
            .await
            .map_err(|e| match e {
                crate::trigger::IntakeError::Store(e) => ControlError::Store(e),
                crate::trigger::IntakeError::TriggerData(e) => {
                    ControlError::BrokenTrigger(run_id.into(), e)
                }
            })?;
        let detail = json!({"run_id": new_run});
        let change = Change::of_flow(AuditAction::RunReplayed, &run.flow_id, detail);
        let change = Change {
            target: run_id.to_owned(),
            ..change
        };
        self.record_after(access, change).await?;
        Ok(new_run)
    }

    /// Waits up to `timeout` for a run to end; returns whether it did.
    pub async fn wait_for_run_end(
        &self,
        run_id: &str,
        timeout: Duration,
    ) -> Result<bool, EngineError> {
        Ok(self.runner().wait_for_run_end(run_id, timeout).await?)
    }
}
