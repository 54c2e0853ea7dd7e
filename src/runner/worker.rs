//! The worker pool: claims due runs (with a lease), executes each on its own task, renews the
//! leases of runs in flight, and wakes up when runs are created in this process, when a waiting
//! run's time comes, or — for runs created by other nodes — on a slow fallback poll. On shutdown
//! it stops claiming, lets runs in flight finish up to a deadline and gives back their leases.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use crate::core::workspace::split_flow_key;
use crate::runner::Runner;
use crate::runner::claim::claim_due;
use crate::runner::driver::{ExecError, LeaseSettings, execute};
use crate::store::handoff::{self, Handed};
use crate::store::nodes;
use crate::store::runs::{self, ClaimedRun};

/// How the runner is set up.
#[derive(Debug, Clone, Copy)]
pub struct RunnerConfig {
    /// Runs executing at once on this node.
    pub workers: usize,
    pub lease: Duration,
    /// Fallback poll for runs created elsewhere; new local runs wake the runner at once.
    pub poll: Duration,
    /// How long shutdown waits for runs in flight.
    pub shutdown_grace: Duration,
    /// How long finished runs are kept (`FLOWD_RETENTION`); `None`: this process prunes nothing
    /// (`flowd run`, which only executes one run).
    pub retention: Option<Duration>,
}

impl Default for RunnerConfig {
    fn default() -> RunnerConfig {
        RunnerConfig {
            workers: 64,
            lease: Duration::from_secs(30),
            poll: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(10),
            retention: None,
        }
    }
}

/// Runs the worker pool until `shutdown` turns true.
pub async fn run(runner: Runner, config: RunnerConfig, mut shutdown: watch::Receiver<bool>) {
    let permits = Arc::new(Semaphore::new(config.workers.max(1)));
    let backlog = Arc::new(AtomicBool::new(false));
    let mut tasks = JoinSet::new();
    let heartbeat = tokio::spawn(renew_leases(runner.clone(), config, shutdown.clone()));
    let bulk = tokio::spawn(crate::runner::operations::run(
        runner.clone(),
        config.lease,
        config.poll,
        shutdown.clone(),
    ));
    let folder = tokio::spawn(crate::runner::usage_rollup::run(
        runner.clone(),
        shutdown.clone(),
    ));
    let pruner = config.retention.map(|keep| {
        tokio::spawn(crate::runner::retention::run(
            runner.clone(),
            keep,
            shutdown.clone(),
        ))
    });
    let mut handed = open_hand_off(&runner, &config, &permits).await;
    info!(
        workers = config.workers,
        lease_ms = config.lease.as_millis() as u64,
        node = runner.node_id.as_str(),
        "Runner started."
    );
    // An interval, not a sleep per turn: runs handed over keep the loop turning, and the poll
    // for other nodes' runs must come all the same.
    let mut poll = tokio::time::interval(config.poll);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut claim = true;
    loop {
        if *shutdown.borrow() {
            break;
        }
        if claim {
            if let Err(e) = claim_and_start(&runner, &config, &permits, &mut tasks, &backlog).await
            {
                error!(error = %e, "Claiming runs failed; trying again shortly.");
            }
            poll.reset();
        }
        while tasks.try_join_next().is_some() {}
        // Runs handed over need no claim; a wake-up, the poll and a stop do.
        claim = true;
        tokio::select! {
            _ = runner.wake.wait_new_runs() => {}
            Some(run) = handed.recv() => {
                start_handed(&runner, &config, &mut tasks, &backlog, run);
                while let Ok(run) = handed.try_recv() {
                    start_handed(&runner, &config, &mut tasks, &backlog, run);
                }
                claim = false;
            }
            _ = poll.tick() => {}
            _ = shutdown.changed() => {}
        }
    }
    // Runs still in the channel hold leases of this node: they are given back with the rest
    // once the runs in flight end (`drain`).
    runner.writes.hand_off().close().await;
    drop(handed);
    drain(&runner, config, tasks).await;
    heartbeat.abort();
    bulk.abort();
    folder.abort();
    if let Some(pruner) = pruner {
        pruner.abort();
    }
}

/// Lets the group commit lease new runs of this node to this pool and hand them over, within
/// the free permits (see `store::handoff`). Flows with limits and workspaces with a
/// runs-per-day quota are left to the claim, which checks them.
async fn open_hand_off(
    runner: &Runner,
    config: &RunnerConfig,
    permits: &Arc<Semaphore>,
) -> mpsc::UnboundedReceiver<Handed> {
    let (runs, handed) = mpsc::unbounded_channel();
    let (catalog, quotas) = (runner.catalog.clone(), runner.quotas.clone());
    let admits: handoff::Admits = Box::new(move |flow_keys| {
        let registry = catalog.registry();
        let quotas = quotas.current();
        let limited = registry.limited_ids();
        flow_keys
            .iter()
            .map(|key| {
                let over_quota = || {
                    quotas
                        .get(split_flow_key(key).0)
                        .is_some_and(|q| q.runs_per_day.is_some())
                };
                !limited.iter().any(|l| l == key) && (quotas.is_empty() || !over_quota())
            })
            .collect()
    });
    let receiver = handoff::Receiver {
        owner: runner.node_id.clone(),
        workers: config.workers.max(1),
        lease_ms: config.lease.as_millis() as i64,
        permits: permits.clone(),
        admits,
        runs,
    };
    runner.writes.hand_off().open(receiver).await;
    handed
}

/// Starts a run handed over by the group commit, leased and with its permit.
fn start_handed(
    runner: &Runner,
    config: &RunnerConfig,
    tasks: &mut JoinSet<()>,
    backlog: &Arc<AtomicBool>,
    handed: Handed,
) {
    let Handed { run, permit } = handed;
    spawn_run(runner, config, tasks, backlog, (run, Vec::new()), permit);
}

/// Claims as many due runs as there are free workers and starts them.
async fn claim_and_start(
    runner: &Runner,
    config: &RunnerConfig,
    permits: &Arc<Semaphore>,
    tasks: &mut JoinSet<()>,
    backlog: &Arc<AtomicBool>,
) -> Result<(), ExecError> {
    loop {
        // Reap finished runs here too: under a steady backlog this loop does not return, and
        // finished tasks would pile up in the set.
        while tasks.try_join_next().is_some() {}
        // The permits are taken before the claim: the group commit hands runs over meanwhile,
        // and a claimed run without a worker would sit leased to this node.
        let free = permits.available_permits();
        let reserved = match permits.clone().try_acquire_many_owned(free as u32) {
            Ok(reserved) if free > 0 => reserved,
            _ => {
                backlog.store(true, Ordering::Relaxed);
                return Ok(());
            }
        };
        let lease_ms = config.lease.as_millis() as i64;
        let claimed = claim_due(runner, lease_ms, free as u64).await?;
        claimed
            .wake_at
            .iter()
            .for_each(|&at| runner.schedule_wake(at));
        let full_batch = claimed.runs.len() == free;
        backlog.store(full_batch || claimed.held_back, Ordering::Relaxed);
        start_runs(runner, config, reserved, tasks, backlog, claimed.runs).await?;
        if !full_batch {
            return Ok(());
        }
    }
}

/// Starts claimed runs, each on its own task holding one of the permits reserved for them (the
/// ones left over go back).
async fn start_runs(
    runner: &Runner,
    config: &RunnerConfig,
    mut reserved: tokio::sync::OwnedSemaphorePermit,
    tasks: &mut JoinSet<()>,
    backlog: &Arc<AtomicBool>,
    claimed: Vec<ClaimedRun>,
) -> Result<(), ExecError> {
    let resumed: Vec<String> = claimed
        .iter()
        .filter(|r| r.resumed || r.next_step > 0 || r.attempt > 1)
        .map(|r| r.id.clone())
        .collect();
    let store = &runner.store;
    let mut rows = runs::load_steps(store.writer(), store.backend(), &resumed).await?;
    for run in claimed {
        let Some(permit) = reserved.split(1) else {
            break;
        };
        let (mine, rest): (Vec<_>, Vec<_>) = rows.into_iter().partition(|r| r.run_id == run.id);
        rows = rest;
        spawn_run(runner, config, tasks, backlog, (run, mine), permit);
    }
    Ok(())
}

/// Executes a run on its own task, holding its worker permit until it ends.
fn spawn_run(
    runner: &Runner,
    config: &RunnerConfig,
    tasks: &mut JoinSet<()>,
    backlog: &Arc<AtomicBool>,
    (run, rows): (ClaimedRun, Vec<runs::StepRow>),
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let runner = runner.clone();
    let backlog = backlog.clone();
    let lease = LeaseSettings {
        lease: config.lease,
    };
    tasks.spawn(async move {
        execute_one(&runner, run, rows, lease).await;
        drop(permit);
        // A worker is free: claim again if due runs were left behind.
        if backlog.load(Ordering::Relaxed) {
            runner.wake.new_runs();
        }
    });
}

async fn execute_one(
    runner: &Runner,
    run: ClaimedRun,
    rows: Vec<runs::StepRow>,
    lease: LeaseSettings,
) {
    let run_id = run.id.clone();
    match execute(runner, run, rows, lease).await {
        Ok(()) => {}
        Err(ExecError::QuotaHeld) => {
            debug!(%run_id, "Held by its workspace's HTTP quota until the next minute.")
        }
        Err(ExecError::ShuttingDown) => {
            info!(%run_id, "Shutting down; the run's next attempt is left for the next node.")
        }
        Err(e) => {
            error!(%run_id, error = %e, "Run execution stopped; it will be retried after its lease expires.")
        }
    }
}

/// Renews this node's leases every third of the lease, so a live node never loses them.
async fn renew_leases(runner: Runner, config: RunnerConfig, mut shutdown: watch::Receiver<bool>) {
    let every = config.lease / 3;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        let store = &runner.store;
        let now = runner.now_ms();
        if let Err(e) = runs::renew_leases(
            store.writer(),
            store.backend(),
            runner.node_id.as_str(),
            now,
            config.lease.as_millis() as i64,
        )
        .await
        {
            warn!(error = %e, "Renewing leases failed.");
        }
        beat(&runner, now).await;
    }
}

/// Refreshes this node's heartbeat in the node registry: one statement per renewal tick.
async fn beat(runner: &Runner, now: i64) {
    let store = &runner.store;
    if let Err(e) = nodes::heartbeat(
        store.writer(),
        store.backend(),
        runner.node_id.as_str(),
        now,
    )
    .await
    {
        warn!(error = %e, "Refreshing the node heartbeat failed.");
    }
}

/// Stops the attempts still in flight so each is recorded (`cancelled by shutdown`) with the
/// run parked for its retry; runs that do not get there within `CUT_OFF_RECORDING` (a commit
/// stuck on the database) are aborted and taken up again when their lease is given back.
async fn cut_off(runner: &Runner, tasks: &mut JoinSet<()>) {
    runner.wake.cut_off_attempts();
    if !all_end_within(tasks, CUT_OFF_RECORDING).await {
        warn!(
            remaining = tasks.len(),
            "Runs cut off at shutdown could not record their attempt in time; stopping them."
        );
        tasks.abort_all();
    }
}

/// Waits up to `limit` for every task to end; whether they all did.
async fn all_end_within(tasks: &mut JoinSet<()>, limit: Duration) -> bool {
    let all = async { while tasks.join_next().await.is_some() {} };
    tokio::time::timeout(limit, all).await.is_ok()
}

/// How long runs cut off at shutdown get to commit the record of their attempt.
const CUT_OFF_RECORDING: Duration = Duration::from_secs(5);

/// Waits for runs in flight up to the grace period, then gives back the leases still held.
async fn drain(runner: &Runner, config: RunnerConfig, mut tasks: JoinSet<()>) {
    let in_flight = tasks.len();
    if in_flight > 0 {
        info!(in_flight, "Waiting for runs in flight.");
    }
    if !all_end_within(&mut tasks, config.shutdown_grace).await {
        warn!(
            remaining = tasks.len(),
            "Shutdown grace period over; cutting off attempts in flight."
        );
        cut_off(runner, &mut tasks).await;
    }
    let store = &runner.store;
    match runs::release_leases(
        store.writer(),
        store.backend(),
        runner.node_id.as_str(),
        runner.now_ms(),
    )
    .await
    {
        Ok(released) if released > 0 => info!(released, "Leases given back."),
        Ok(_) => {}
        Err(e) => warn!(error = %e, "Giving back leases failed; they expire on their own."),
    }
    info!("Runner stopped.");
}
