//! The usage fold at work: every node folds finished runs into the daily rollup in batches of
//! `BATCH` runs per write transaction (see `store/usage/rollup.rs`), off the runs' own commit
//! path, so finishing a run costs nothing more. After a run ends it waits `GATHER` so that one
//! transaction folds many runs; with nothing ended it only looks again after `IDLE` (runs
//! ended on other nodes). Usage is exact at any time: the read counts live what is not folded.

use std::time::Duration;

use tokio::sync::watch;
use tracing::error;

use crate::runner::{Runner, pause_unless_stopped};
use crate::store::StoreError;
use crate::store::usage::rollup;

/// Runs folded per transaction.
const BATCH: u64 = 1_000;
/// The pause between two full batches: the hot path gets the writer in between.
const BETWEEN_BATCHES: Duration = Duration::from_millis(50);
/// How long ended runs gather before a fold.
const GATHER: Duration = Duration::from_secs(1);
const IDLE: Duration = Duration::from_secs(30);

/// Folds until `shutdown` turns true.
pub async fn run(runner: Runner, mut shutdown: watch::Receiver<bool>) {
    loop {
        // Registered before the fold, so a run ending during it is not missed.
        let ended = runner.wake.run_ended_signal();
        tokio::pin!(ended);
        ended.as_mut().enable();
        let pause = match fold_one_batch(&runner).await {
            Ok(folded) if folded >= BATCH => BETWEEN_BATCHES,
            Ok(_) => {
                tokio::select! {
                    _ = ended => {}
                    _ = tokio::time::sleep(IDLE) => {}
                    _ = shutdown.changed() => {}
                }
                GATHER
            }
            Err(e) => {
                error!(error = %e, "Folding finished runs into usage failed; trying again later.");
                IDLE
            }
        };
        if pause_unless_stopped(pause, &mut shutdown).await {
            return;
        }
    }
}

async fn fold_one_batch(runner: &Runner) -> Result<u64, StoreError> {
    let store = &runner.store;
    let txn = store.begin_write().await?;
    let folded = rollup::fold_finished(&txn, store.backend(), BATCH).await?;
    txn.commit().await.map_err(StoreError::from)?;
    Ok(folded)
}
