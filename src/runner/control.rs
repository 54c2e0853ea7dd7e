//! Run controls (SPEC §6) that act on runs the runner owns: cancel, retry, and waiting for a
//! run to end (`?wait=`). Replay starts a new run, so it belongs to the triggers' write path.

use std::time::Duration;

use tracing::warn;

use crate::core::status::RunStatus;
use crate::runner::Runner;
use crate::runner::revision;
use crate::store::runs::{self, CancelOutcome};
use crate::store::{StoreError, run_log};

/// Why a run control was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no run `{0}`")]
    UnknownRun(String),
    #[error("run `{0}` has already finished")]
    AlreadyFinished(String),
    #[error("run `{0}` is {1}; only failed or cancelled runs can be retried")]
    NotRetryable(String, RunStatus),
    #[error("flow `{0}` no longer exists, so its runs cannot be replayed")]
    FlowGone(String),
    #[error("run `{0}` has unreadable trigger data: {1}")]
    BrokenTrigger(String, serde_json::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// The run was not executing and is cancelled now.
    Now,
    /// The run is executing: it stops after the step in flight.
    AfterCurrentStep,
}

/// How often a waiting request looks at the database even without a signal: runs executed by
/// another node end without signalling this one.
const WAIT_RECHECK: Duration = Duration::from_millis(250);

impl Runner {
    /// Cancels a run: at once when it is not executing, else after its step in flight.
    pub async fn cancel_run(&self, run_id: &str) -> Result<Cancelled, ControlError> {
        let store = &self.store;
        match runs::cancel(store.writer(), store.backend(), run_id, self.now_ms()).await? {
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
        let store = &self.store;
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
        let store = &self.store;
        let run = run_log::get_run(store.reader(), store.backend(), run_id)
            .await?
            .ok_or_else(|| ControlError::UnknownRun(run_id.into()))?;
        let now = self.now_ms();
        // A revision that cannot be loaded has no timeout to apply; the run then fails again
        // with the reason when it is executed.
        let timeout = revision::compiled(&self.catalog, store, &run.flow_id, run.revision)
            .await
            .ok()
            .and_then(|flow| flow.timeout);
        let deadline = timeout.map(|t| now + t.as_millis() as i64);
        let txn = store.begin_write().await?;
        let retried = runs::retry(&txn, store.backend(), run_id, now, deadline).await?;
        txn.commit().await.map_err(StoreError::from)?;
        if !retried {
            return Err(ControlError::NotRetryable(run_id.into(), run.status));
        }
        self.wake.new_runs();
        Ok(())
    }

    /// Waits up to `timeout` for a run to end; returns whether it did.
    pub async fn wait_for_run_end(
        &self,
        run_id: &str,
        timeout: Duration,
    ) -> Result<bool, StoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before the look, so an end between the look and the wait is not missed.
            let ended = self.wake.run_ended_signal();
            tokio::pin!(ended);
            ended.as_mut().enable();
            let store = &self.store;
            let status = run_log::get_run(store.reader(), store.backend(), run_id)
                .await?
                .map(|r| r.status);
            if status.is_none_or(RunStatus::is_terminal) {
                return Ok(status.is_some());
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            // Timing out here is the normal way round the loop: look again.
            let _recheck = tokio::time::timeout(WAIT_RECHECK.min(deadline - now), ended).await;
        }
    }
}
