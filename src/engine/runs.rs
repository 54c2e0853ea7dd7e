//! Run controls (SPEC §6): cancel, retry and replay, and the one way every trigger creates a
//! run of a flow's current revision.

use chrono::Utc;
use tracing::warn;

use crate::engine::registry::FlowEntry;
use crate::engine::{Engine, EngineError};
use crate::runner::context::TriggerData;
use crate::runner::status::RunStatus;
use crate::store::StoreError;
use crate::store::run_log;
use crate::store::runs::{self, CancelOutcome, NewRun};
use crate::trigger::entity::new_id;

/// Why a run control was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no run `{0}`")]
    UnknownRun(String),
    #[error("run `{0}` has already finished")]
    AlreadyFinished(String),
    #[error("run `{0}` is {1}; only failed or cancelled runs can be retried")]
    NotRetryable(String, String),
    #[error("flow `{0}` no longer exists, so its runs cannot be replayed")]
    FlowGone(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<StoreError> for ControlError {
    fn from(e: StoreError) -> ControlError {
        ControlError::Engine(e.into())
    }
}

/// What a cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// The run was not executing and is cancelled now.
    Now,
    /// The run is executing: it stops after the step in flight.
    AfterCurrentStep,
}

/// A new pending run of `flow`'s current revision started by `trigger`, due now.
pub fn new_run(
    flow: &FlowEntry,
    trigger: &TriggerData,
    now_ms: i64,
) -> Result<NewRun, EngineError> {
    let entity = trigger.entity_ref();
    Ok(NewRun {
        id: new_id(),
        flow_id: flow.id.clone(),
        revision: flow.revision,
        trigger: serde_json::to_string(trigger).map_err(|e| EngineError::Config(e.to_string()))?,
        entity: entity.map(|(t, _)| t.to_string()),
        entity_id: entity.map(|(_, id)| id.to_string()),
        created_at: now_ms,
        deadline_at: flow.flow.timeout.map(|t| now_ms + t.as_millis() as i64),
    })
}

impl Engine {
    /// Stores new runs in one transaction and wakes the runner.
    pub async fn insert_runs(&self, new_runs: &[NewRun]) -> Result<(), EngineError> {
        let store = self.store();
        let txn = store.begin_write().await?;
        runs::insert_runs(&txn, store.backend(), new_runs).await?;
        txn.commit().await.map_err(StoreError::from)?;
        self.wake_runner();
        Ok(())
    }

    /// Cancels a run: at once when it is not executing, else after its step in flight.
    pub async fn cancel_run(&self, run_id: &str) -> Result<Cancelled, ControlError> {
        let store = self.store();
        let now = Utc::now().timestamp_millis();
        match runs::cancel(store.writer(), store.backend(), run_id, now).await? {
            CancelOutcome::Cancelled => {
                self.count_cancelled(run_id).await;
                Ok(Cancelled::Now)
            }
            CancelOutcome::Requested => Ok(Cancelled::AfterCurrentStep),
            CancelOutcome::AlreadyTerminal => Err(ControlError::AlreadyFinished(run_id.into())),
            CancelOutcome::NotFound => Err(ControlError::UnknownRun(run_id.into())),
        }
    }

    /// Counts a run cancelled without a worker (the runner counts the runs it ends). Its flow
    /// is read back: cancels are rare, and the cancel itself needs no read.
    async fn count_cancelled(&self, run_id: &str) {
        let store = self.store();
        match run_log::get_run(store.reader(), store.backend(), run_id).await {
            Ok(Some(run)) => self
                .metrics()
                .run_finished(&run.flow_id, RunStatus::Cancelled),
            Ok(None) => {}
            Err(error) => {
                warn!(%run_id, %error, "Reading a cancelled run for metrics failed; it is not counted.")
            }
        }
    }

    /// Resumes a failed or cancelled run at its first step that did not succeed, on the
    /// revision it was created with; its timeout counts again from now.
    pub async fn retry_run(&self, run_id: &str) -> Result<(), ControlError> {
        let store = self.store();
        let run = run_log::get_run(store.reader(), store.backend(), run_id)
            .await?
            .ok_or_else(|| ControlError::UnknownRun(run_id.into()))?;
        let now = Utc::now().timestamp_millis();
        let timeout = match self.compiled(&run.flow_id, run.revision).await {
            Ok(flow) => flow.timeout,
            Err(_) => None,
        };
        let deadline = timeout.map(|t| now + t.as_millis() as i64);
        if !runs::retry(store.writer(), store.backend(), run_id, now, deadline).await? {
            return Err(ControlError::NotRetryable(run_id.into(), run.status));
        }
        self.wake_runner();
        Ok(())
    }

    /// Starts a new run with the same trigger data on the flow's current revision.
    pub async fn replay_run(&self, run_id: &str) -> Result<String, ControlError> {
        let store = self.store();
        let run = run_log::get_run(store.reader(), store.backend(), run_id)
            .await?
            .ok_or_else(|| ControlError::UnknownRun(run_id.into()))?;
        let trigger: TriggerData = serde_json::from_str(&run.trigger).map_err(|e| {
            EngineError::Config(format!("run `{run_id}` has unreadable trigger data: {e}"))
        })?;
        let registry = self.registry();
        let flow = registry
            .get(&run.flow_id)
            .ok_or_else(|| ControlError::FlowGone(run.flow_id.clone()))?;
        let new = new_run(flow, &trigger, Utc::now().timestamp_millis())?;
        self.insert_runs(std::slice::from_ref(&new)).await?;
        Ok(new.id)
    }
}

/// How often a waiting request looks at the database even without a signal: runs executed by
/// another node end without signalling this one.
const WAIT_RECHECK: std::time::Duration = std::time::Duration::from_millis(250);

impl Engine {
    /// Waits up to `timeout` for a run to end; returns whether it did.
    pub async fn wait_for_run_end(
        &self,
        run_id: &str,
        timeout: std::time::Duration,
    ) -> Result<bool, EngineError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before the look, so an end between the look and the wait is not missed.
            let ended = self.inner.run_ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            let store = self.store();
            let status = run_log::get_run(store.reader(), store.backend(), run_id)
                .await?
                .map(|r| r.status);
            if status
                .as_deref()
                .is_none_or(|s| s.parse::<RunStatus>().is_ok_and(RunStatus::is_terminal))
            {
                return Ok(status.is_some());
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            let _ = tokio::time::timeout(WAIT_RECHECK.min(deadline - now), ended).await;
        }
    }
}
