//! Triggers: how runs begin. One file per trigger kind: `entity` (events of the host
//! application), `manual` (a person runs an action), `schedule` (cron), `webhook` (an inbound
//! request). Each turns what arrived into runs with [`NewRun::new`](crate::core::new_run::NewRun)
//! and stores them through the one write path, the group commit, with its once-only key (event
//! id, `webhook-id`, fire time). The group commit hands each new run to a free worker of this
//! node, or wakes the runner to claim it (`store::handoff`).

pub mod entity;
pub mod manual;
pub mod schedule;
pub mod webhook;

use std::sync::Arc;

use crate::core::clock::SharedClock;
use crate::core::new_run::TriggerRecord;
use crate::flow::catalog::Catalog;
use crate::flow::registry::Registry;
use crate::metrics::Metrics;
use crate::secrets::SharedSecrets;
use crate::store::group_commit::GroupCommit;
use crate::store::starts::RunStart;
use crate::store::{Store, StoreError};

/// What the triggers need from the engine: the flows to match, the write path, the clock.
#[derive(Clone)]
pub struct Intake {
    pub catalog: Arc<Catalog>,
    pub store: Store,
    pub writes: GroupCommit,
    /// The live secrets, for webhook signing keys.
    pub secrets: SharedSecrets,
    pub metrics: Metrics,
    pub clock: SharedClock,
}

impl Intake {
    fn registry(&self) -> Arc<Registry> {
        self.catalog.registry()
    }
}

/// Why a trigger could not store what it started.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the trigger data cannot be stored: {0}")]
    TriggerData(#[from] serde_json::Error),
}

impl Intake {
    /// Starts one run of `flow`'s current revision (manual runs, replays): stored through the
    /// group commit, then the runner is woken. Returns the run's id.
    pub async fn start_run(
        &self,
        flow: &crate::flow::registry::FlowEntry,
        trigger: &crate::core::trigger_data::TriggerData,
    ) -> Result<String, IntakeError> {
        let start = RunStart {
            run: flow.new_run(trigger, &TriggerRecord::of(trigger)?, self.clock.now_ms()),
            once: None,
        };
        let id = start.run.id.clone();
        self.writes.start_runs(vec![start]).await?;
        Ok(id)
    }
}
