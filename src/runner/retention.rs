//! Retention at work: every node prunes finished runs older than their flow's
//! `settings.retention` (else `FLOWD_RETENTION`), and events and audit log entries older than
//! `FLOWD_RETENTION`, in batches of `BATCH` rows per write transaction with a pause between
//! batches, so pruning a long history never holds the writer long (see `store/retention.rs` for what one batch does).
//! When a pass finds nothing, it looks again after a quarter of the shortest retention (at
//! least `MIN_IDLE`, at most `MAX_IDLE`).

use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, error};

use crate::flow::registry::Registry;
use crate::runner::{Runner, pause_unless_stopped};
use crate::store::StoreError;
use crate::store::audit;
use crate::store::retention::{self, Scope};

/// Runs deleted per transaction.
const BATCH: u64 = 500;
/// The pause between two batches: the hot path gets the writer in between.
const BETWEEN_BATCHES: Duration = Duration::from_millis(50);
const MIN_IDLE: Duration = Duration::from_millis(250);
const MAX_IDLE: Duration = Duration::from_secs(60);

/// Prunes until `shutdown` turns true.
pub async fn run(runner: Runner, keep: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        let registry = runner.catalog.registry();
        let pause = match prune_one_batch(&runner, &registry, keep).await {
            Ok(0) => idle(&registry, keep),
            Ok(pruned) => {
                debug!(
                    pruned,
                    "Pruned finished runs and events past their retention."
                );
                BETWEEN_BATCHES
            }
            Err(e) => {
                error!(error = %e, "Pruning old runs failed; trying again later.");
                MAX_IDLE
            }
        };
        if pause_unless_stopped(pause, &mut shutdown).await {
            return;
        }
    }
}

/// One batch of each scope that has something to prune: flows with their own retention, the
/// others, old events, old audit entries. Returns how many rows went.
async fn prune_one_batch(
    runner: &Runner,
    registry: &Registry,
    keep: Duration,
) -> Result<u64, StoreError> {
    let store = &runner.store;
    let backend = store.backend();
    let now = runner.now_ms();
    let cutoff = |keep: Duration| now - keep.as_millis() as i64;
    let own: Vec<(String, Duration)> = registry
        .flows()
        .filter_map(|f| {
            let keep = f.flow.def.settings.as_ref()?.retention?;
            Some((f.id.clone(), keep.to_std()))
        })
        .collect();
    let own_ids: Vec<String> = own.iter().map(|(id, _)| id.clone()).collect();
    let mut pruned = 0;
    let txn = store.begin_write().await?;
    for (flow, keep) in &own {
        pruned +=
            retention::prune_runs(&txn, backend, &Scope::Flow(flow), cutoff(*keep), BATCH).await?;
    }
    pruned +=
        retention::prune_runs(&txn, backend, &Scope::AllBut(&own_ids), cutoff(keep), BATCH).await?;
    pruned += retention::prune_events(&txn, backend, cutoff(keep), BATCH).await?;
    pruned += audit::prune(&txn, backend, cutoff(keep), BATCH).await?;
    txn.commit().await.map_err(StoreError::from)?;
    Ok(pruned)
}

/// How long to wait when nothing was due: a quarter of the shortest retention in force.
fn idle(registry: &Registry, keep: Duration) -> Duration {
    let shortest = registry
        .flows()
        .filter_map(|f| f.flow.def.settings.as_ref()?.retention)
        .map(|d| d.to_std())
        .fold(keep, Duration::min);
    (shortest / 4).clamp(MIN_IDLE, MAX_IDLE)
}
