//! Bulk operations at work: every node looks for a running operation nobody holds, takes it
//! under a lease and handles its runs a page at a time. Each page (the retries, or the new runs
//! of a replay) commits in one transaction with the operation's cursor and counts, on condition
//! that this node still holds the operation: a crash loses at most the page in flight, which
//! was not committed, and the next holder starts after the cursor, so no run is handled twice.
//! A short pause between pages leaves the single writer to the hot path.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{error, info};

use crate::core::new_run::{NewRun, TriggerRecord};
use crate::core::trigger_data::TriggerData;
use crate::runner::revision;
use crate::runner::{Runner, pause_unless_stopped};
use crate::store::operations::{self, Held, OperationRun, PageOutcome};
use crate::store::{StoreError, runs};

/// Runs per page: one short write transaction each.
const PAGE: u64 = 100;
/// The pause between two pages, so an operation of 100,000 runs never holds the writer long.
const BETWEEN_PAGES: Duration = Duration::from_millis(100);

/// What a bulk operation does to each run it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationKind {
    /// Resume a failed or cancelled run at its first step that did not succeed.
    Retry,
    /// Start a new run with the same trigger data on the flow's current revision.
    Replay,
}

impl OperationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Retry => "retry",
            OperationKind::Replay => "replay",
        }
    }

    pub fn parse(text: &str) -> Option<OperationKind> {
        match text {
            "retry" => Some(OperationKind::Retry),
            "replay" => Some(OperationKind::Replay),
            _ => None,
        }
    }
}

/// Works on operations until `shutdown` turns true: a page, a pause, the next page; when there
/// is nothing to do, looks again every `poll`.
pub async fn run(
    runner: Runner,
    lease: Duration,
    poll: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let lease_ms = lease.as_millis() as i64;
    loop {
        let pause = match work_one_page(&runner, lease_ms).await {
            Ok(true) => BETWEEN_PAGES,
            Ok(false) => poll,
            Err(e) => {
                error!(error = %e, "A bulk operation could not go on; trying again shortly.");
                poll
            }
        };
        if pause_unless_stopped(pause, &mut shutdown).await {
            return;
        }
    }
}

/// Handles one page of the oldest operation this node can take. Returns whether there was one.
async fn work_one_page(runner: &Runner, lease_ms: i64) -> Result<bool, StoreError> {
    let store = &runner.store;
    let (backend, owner) = (store.backend(), runner.node_id.as_str());
    let now = runner.now_ms();
    let Some(op) = operations::take(store.writer(), backend, owner, now, lease_ms).await? else {
        return Ok(false);
    };
    let txn = store.begin_write().await?;
    let page = operations::next_page(&txn, backend, &op, PAGE).await?;
    let Some(last) = page.last().map(|r| r.id.clone()) else {
        let error = OperationKind::parse(&op.kind)
            .is_none()
            .then(|| format!("unknown operation kind `{}`", op.kind));
        operations::finish(&txn, backend, &op.id, owner, error.as_deref(), now).await?;
        txn.commit().await.map_err(StoreError::from)?;
        info!(operation = %op.id, kind = %op.kind, "Bulk operation finished.");
        return Ok(true);
    };
    let outcome = match OperationKind::parse(&op.kind) {
        Some(OperationKind::Retry) => retry_page(runner, &txn, &page, now).await?,
        Some(OperationKind::Replay) => replay_page(runner, &txn, &page, now).await?,
        None => PageOutcome {
            done: 0,
            skipped: page.len() as i64,
        },
    };
    if operations::record_page(
        &txn,
        backend,
        Held {
            op_id: &op.id,
            owner,
        },
        &last,
        outcome,
        now,
        lease_ms,
    )
    .await?
    {
        txn.commit().await.map_err(StoreError::from)?;
        runner.wake.new_runs();
    } else {
        // Another node took the operation over meanwhile: this page is its to do.
        txn.rollback().await.map_err(StoreError::from)?;
    }
    Ok(true)
}

/// Retries each failed or cancelled run of the page; the others are skipped.
async fn retry_page(
    runner: &Runner,
    txn: &impl sea_orm::ConnectionTrait,
    page: &[OperationRun],
    now: i64,
) -> Result<PageOutcome, StoreError> {
    let mut timeouts: HashMap<(String, i64), Option<Duration>> = HashMap::new();
    let mut outcome = PageOutcome::default();
    for run in page {
        let key = (run.flow_id.clone(), run.revision);
        if !timeouts.contains_key(&key) {
            let timeout =
                revision::compiled(&runner.catalog, &runner.store, &run.flow_id, run.revision)
                    .await
                    .ok()
                    .and_then(|flow| flow.timeout);
            timeouts.insert(key.clone(), timeout);
        }
        let deadline = timeouts[&key].map(|t| now + t.as_millis() as i64);
        if runs::retry(txn, runner.store.backend(), &run.id, now, deadline).await? {
            outcome.done += 1;
        } else {
            outcome.skipped += 1;
        }
    }
    Ok(outcome)
}

/// Starts a new run for each run of the page whose flow still exists; the others are skipped.
async fn replay_page(
    runner: &Runner,
    txn: &impl sea_orm::ConnectionTrait,
    page: &[OperationRun],
    now: i64,
) -> Result<PageOutcome, StoreError> {
    let registry = runner.catalog.registry();
    let new_runs: Vec<NewRun> = page
        .iter()
        .filter_map(|run| {
            let flow = registry.get(&run.flow_id)?;
            let trigger: TriggerData = serde_json::from_str(&run.trigger).ok()?;
            let record = TriggerRecord::of(&trigger).ok()?;
            Some(flow.new_run(&trigger, &record, now))
        })
        .collect();
    runs::insert_runs(txn, runner.store.backend(), &new_runs).await?;
    Ok(PageOutcome {
        done: new_runs.len() as i64,
        skipped: (page.len() - new_runs.len()) as i64,
    })
}
