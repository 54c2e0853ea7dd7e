//! Run operations of the API and the console (SPEC §6): starting runs by hand or from events,
//! and the run controls. The engine only hands them to the part that does the work: the
//! triggers' intake starts runs, the runner controls them.

use std::time::Duration;

use serde_json::{Value, json};

use crate::core::trigger_data::{ManualEntity, TriggerData};
use crate::core::workspace::{Access, DEFAULT_WORKSPACE};
use crate::engine::audit::Change;
use crate::engine::flows::key_of;
use crate::engine::{Engine, EngineError, EventIn, EventResult};
use crate::runner::control::{Cancelled, ControlError};
use crate::store::audit::AuditAction;
use crate::store::run_log::RunRow;
use crate::store::{StoreError, events};
use crate::trigger::manual::{Action, ManualError, ManualRequest};
use crate::trigger::webhook::{Received, WebhookError};

impl Engine {
    /// Stores events and the runs they start (see [`crate::trigger::entity`]). Each event
    /// belongs to the access's workspace; an admin's may name another in `workspace` (else
    /// `default`), another key's only its own: `Err(name)` names a workspace the access may
    /// not use or that does not exist, and then nothing is stored.
    pub async fn emit(
        &self,
        access: &Access,
        mut events: Vec<EventIn>,
    ) -> Result<Result<Vec<EventResult>, String>, EngineError> {
        for event in &mut events {
            let workspace = match event.workspace.take() {
                Some(named) if access.all_workspaces || named == access.workspace => named,
                Some(named) => return Ok(Err(named)),
                None if access.all_workspaces => DEFAULT_WORKSPACE.to_string(),
                None => access.workspace.clone(),
            };
            if !self.workspace_exists(&workspace) {
                return Ok(Err(workspace));
            }
            event.workspace = Some(workspace);
        }
        Ok(Ok(self.intake().emit(events).await?))
    }

    /// Starts a run of flow `flow_id` of the access's workspace by hand and returns its id.
    pub async fn trigger_manual(
        &self,
        access: &Access,
        flow_id: &str,
        request: ManualRequest,
    ) -> Result<String, ManualError> {
        let key = key_of(access, flow_id);
        self.intake().trigger_manual(&key, request).await
    }

    /// The manual actions of active flows of the workspaces `access` sees on `entity`, sorted
    /// by label.
    pub fn actions(&self, access: &Access, entity: &str) -> Vec<Action> {
        let mut actions = self.intake().actions(entity);
        actions.retain(|a| access.sees(&a.workspace));
        actions
    }

    /// The manual actions on one entity whose `if` holds for it, judged on the entity's last
    /// state flowd received in an event (`{id}` alone when it never received one).
    pub async fn actions_for(
        &self,
        access: &Access,
        entity: &str,
        id: &str,
    ) -> Result<Vec<Action>, EngineError> {
        let store = self.store();
        let (reader, backend) = (store.reader(), store.backend());
        let data = events::latest_data(reader, backend, &access.workspace, entity, id).await?;
        let data = data
            .and_then(|d| serde_json::from_str(&d).ok())
            .unwrap_or_else(|| serde_json::json!({}));
        let mut actions = self.intake().actions_applying(&ManualEntity {
            entity_type: entity.to_string(),
            id: id.to_string(),
            data,
        });
        actions.retain(|a| access.sees(&a.workspace));
        Ok(actions)
    }

    /// Every manual action of active flows of the workspaces `access` sees (the console's
    /// actions page).
    pub fn every_action(&self, access: &Access) -> Vec<Action> {
        let mut actions = self.intake().every_action();
        actions.retain(|a| access.sees(&a.workspace));
        actions
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
        let run = self.run_of(access, run_id).await?;
        let cancelled = self.runner().cancel_run(run_id).await?;
        let detail = json!({"after_current_step": cancelled == Cancelled::AfterCurrentStep});
        (self.record_run_change(access, AuditAction::RunCancelled, &run, detail)).await?;
        Ok(cancelled)
    }

    /// Resumes a failed or cancelled run at its first step that did not succeed.
    pub async fn retry_run(&self, access: &Access, run_id: &str) -> Result<(), ControlError> {
        let run = self.run_of(access, run_id).await?;
        self.runner().retry_run(run_id).await?;
        (self.record_run_change(access, AuditAction::RunRetried, &run, json!({}))).await?;
        Ok(())
    }

    /// Records a control of `run`, made by the runner in its own transaction, right after it:
    /// in the workspace of the run's flow, with the run as its target.
    async fn record_run_change(
        &self,
        access: &Access,
        action: AuditAction,
        run: &RunRow,
        detail: Value,
    ) -> Result<(), StoreError> {
        let change = Change {
            target: run.id.clone(),
            ..Change::of_flow(action, &run.flow_id, detail)
        };
        self.record_after(access, change).await
    }

    /// The run `run_id` when `access` sees it, else `UnknownRun` (another workspace's run is
    /// answered like none).
    async fn run_of(&self, access: &Access, run_id: &str) -> Result<RunRow, ControlError> {
        self.visible_run(access, run_id)
            .await?
            .ok_or_else(|| ControlError::UnknownRun(run_id.into()))
    }

    /// Starts a new run with the same trigger data on the flow's current revision.
    pub async fn replay_run(&self, access: &Access, run_id: &str) -> Result<String, ControlError> {
        let run = self.run_of(access, run_id).await?;
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
        (self.record_run_change(access, AuditAction::RunReplayed, &run, detail)).await?;
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
