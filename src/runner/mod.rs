//! The persisted state-machine runner: every run is a row whose state moves
//! `pending` → `running` → `succeeded` | `failed` | `cancelled` (with `waiting` for delays and
//! retry backoff). Each transition is committed before the next side effect starts; a node
//! holds a lease on the runs it executes and every write is conditional on still holding it.
//!
//! The decisions are pure functions in `transition` (one file per event) over a run's `view`,
//! with the backoff maths in `backoff`; the `driver` commits what they decide and does the rest
//! (attempts, wake-ups, metrics, the log); `worker` claims runs and hands each to the driver.

pub mod backoff;
pub mod breaker;
pub mod claim;
pub mod context;
pub mod control;
pub mod driver;
pub mod operations;
pub mod quota;
pub mod retention;
pub mod revision;
pub mod transition;
pub mod usage_rollup;
pub mod view;
pub mod worker;

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use crate::core::clock::SharedClock;
use crate::core::jitter::Jitter;
use crate::core::wake::Wake;
use crate::flow::catalog::Catalog;
use crate::metrics::Metrics;
use crate::secrets::SharedSecrets;
use crate::step::StepEnv;
use crate::store::Store;
use crate::store::group_commit::GroupCommit;

/// What the runner needs from the engine. Cheap to clone: one copy per run in flight.
#[derive(Clone)]
pub struct Runner {
    parts: Arc<RunnerParts>,
}

pub struct RunnerParts {
    pub catalog: Arc<Catalog>,
    pub store: Store,
    /// The group-committed write path of run transitions.
    pub writes: GroupCommit,
    pub step_env: StepEnv,
    /// The live secrets: each run execution takes the snapshot of its start.
    pub secrets: SharedSecrets,
    /// This node's name: lease owner and attempt records.
    pub node_id: String,
    pub clock: SharedClock,
    pub jitter: Jitter,
    pub wake: Wake,
    /// The workspaces' quotas as last read (refreshed with the flows).
    pub quotas: quota::SharedQuotas,
}

impl Runner {
    pub fn new(parts: RunnerParts) -> Runner {
        Runner {
            parts: Arc::new(parts),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.parts.step_env.metrics
    }

    pub fn now_ms(&self) -> i64 {
        self.parts.clock.now_ms()
    }

    /// Wakes the runner when a parked run of this node becomes due, instead of polling for it.
    pub fn schedule_wake(&self, due_at: i64) {
        let runner = self.clone();
        tokio::spawn(async move {
            let wait = (due_at - runner.now_ms()).max(0) as u64;
            tokio::time::sleep(Duration::from_millis(wait)).await;
            runner.wake.new_runs();
        });
    }
}

/// Waits `pause`, or less if `shutdown` turns true meanwhile; returns whether it did (the
/// caller's loop then ends). For the runner's background loops.
pub async fn pause_unless_stopped(
    pause: Duration,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(pause) => {}
        _ = shutdown.changed() => {}
    }
    *shutdown.borrow()
}

impl Deref for Runner {
    type Target = RunnerParts;

    fn deref(&self) -> &RunnerParts {
        &self.parts
    }
}
