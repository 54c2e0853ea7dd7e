//! Group commit: one task takes the writes callers queue (events with the runs they start, run
//! transitions) and commits everything that is waiting in one transaction, then answers each
//! caller. A caller still gets its answer only after its rows are committed, so the guarantees
//! of a transaction per write hold; what changes is that a hundred runs share one `BEGIN`, a few
//! multi-row statements and one `COMMIT` instead of paying for them each. The writer is the
//! bottleneck on SQLite (one connection, one round trip to its thread per statement) and each
//! commit costs an fsync on PostgreSQL, so this is what lets throughput grow with load.
//!
//! Every trigger starts its runs here: entity events through `ingest` (keyed by event id),
//! manual runs, replays, webhooks and schedule fires through `start` (keyed by `webhook-id` or
//! fire time, see `starts.rs`).
//!
//! Ingest and the runner share the queue, so a burst of events cannot starve running runs: both
//! get into every batch. A batch that fails as a whole (a database error) is retried job by job,
//! so one bad write fails alone.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{Mutex, OwnedSemaphorePermit, mpsc, oneshot};
use tracing::{debug, trace, warn};

use crate::core::new_run::NewRun;
use crate::core::wake::Wake;
use crate::store::events::{NewEvent, ingest};
use crate::store::handoff::{HandOff, Leased};
use crate::store::sql::Conn;
use crate::store::starts::{self, RunStart, Started};
use crate::store::transitions::{Applied, Transition, apply_many};
use crate::store::wal::WalWatch;
use crate::store::{Backend, Store, StoreError, sqlite_raw};

/// Jobs taken into one transaction at most: bounds the transaction's size and the wait of the
/// first caller in it.
const MAX_JOBS_PER_BATCH: usize = 512;

/// Batches committing at once on PostgreSQL: each holds a pool connection while it commits.
const POSTGRES_COMMITTERS: usize = 4;

/// Run ids per event id, as `POST /api/v1/events` answers them.
pub type IngestAnswers = HashMap<String, Vec<String>>;

/// The handle callers queue writes on; cheap to clone.
#[derive(Clone)]
pub struct GroupCommit {
    jobs: mpsc::UnboundedSender<Job>,
    hand_off: HandOff,
}

/// What the committing tasks share: the store, where new runs go, and the runner's wake-up
/// for the runs left for a claim.
#[derive(Clone)]
struct Committer {
    store: Store,
    hand_off: HandOff,
    wake: Wake,
}

enum Job {
    Ingest {
        events: Vec<NewEvent>,
        /// Workers reserved for the runs (see [`HandOff::reserve`]).
        reserved: Option<OwnedSemaphorePermit>,
        reply: oneshot::Sender<Result<IngestAnswers, StoreError>>,
    },
    Start {
        starts: Vec<RunStart>,
        reserved: Option<OwnedSemaphorePermit>,
        reply: oneshot::Sender<Result<Vec<Started>, StoreError>>,
    },
    Transition {
        transition: Transition,
        reply: oneshot::Sender<Result<Applied, StoreError>>,
    },
}

impl GroupCommit {
    /// Starts the committing tasks; they end when the last handle is dropped. SQLite has one
    /// writer, so one task; PostgreSQL commits in parallel on several connections, and a
    /// commit waits for its fsync, so several batches are in flight at once there.
    /// Runs stored `pending` ring `wake`'s new runs once committed; runs handed off do not.
    pub fn start(store: Store, wake: Wake) -> GroupCommit {
        let (jobs, queue) = mpsc::unbounded_channel();
        let queue = Arc::new(Mutex::new(queue));
        let committers = match store.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => POSTGRES_COMMITTERS,
        };
        let hand_off = HandOff::default();
        let committer = Committer {
            store,
            hand_off: hand_off.clone(),
            wake,
        };
        if committer.store.backend() == Backend::Sqlite {
            spawn_sqlite_committer(committer, queue);
        } else {
            for _ in 0..committers {
                tokio::spawn(commit_loop(committer.clone(), queue.clone()));
            }
        }
        GroupCommit { jobs, hand_off }
    }

    /// Where new runs go straight to this node's worker pool (see [`HandOff`]).
    pub fn hand_off(&self) -> &HandOff {
        &self.hand_off
    }

    /// Stores events and their runs (see [`ingest`]); answers once they are committed. Waits
    /// first, a little, for free workers to take the runs (see [`HandOff::reserve`]).
    pub async fn ingest(&self, events: Vec<NewEvent>) -> Result<IngestAnswers, StoreError> {
        let keys: Vec<&str> = events
            .iter()
            .flat_map(|e| e.runs.iter().map(|r| r.flow_id.as_str()))
            .collect();
        let reserved = self.hand_off.reserve(&keys).await;
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Ingest {
            events,
            reserved,
            reply,
        })?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// Stores runs started by triggers, each once per key (see [`start_runs`]); answers once
    /// they are committed, one answer per start.
    pub async fn start_runs(&self, starts: Vec<RunStart>) -> Result<Vec<Started>, StoreError> {
        let keys: Vec<&str> = starts.iter().map(|s| s.run.flow_id.as_str()).collect();
        let reserved = self.hand_off.reserve(&keys).await;
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Start {
            starts,
            reserved,
            reply,
        })?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// Applies one run's transition; answers once it is committed, or `LeaseLost`.
    pub async fn transition(&self, transition: Transition) -> Result<Applied, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Transition { transition, reply })?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }

    fn submit(&self, job: Job) -> Result<(), StoreError> {
        self.jobs.send(job).map_err(|_| StoreError::WriterStopped)
    }
}

/// SQLite's committer runs on a thread of its own, with a runtime of its own: it makes
/// SQLite's calls itself (`sqlite_raw`), which block, and it is the one writer, so it should not
/// wait in the shared runtime's queue either. It ends with the last handle, like the others.
fn spawn_sqlite_committer(committer: Committer, queue: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let spawned = runtime.and_then(|runtime| {
        std::thread::Builder::new()
            .name("flowd-sqlite-committer".into())
            .spawn(move || runtime.block_on(commit_loop(committer, queue)))
    });
    if let Err(error) = spawned {
        // Without its committer nothing is written: every write answers `WriterStopped`.
        tracing::error!(%error, "The SQLite committer could not start.");
    }
}

/// Takes what is queued (waiting for something when nothing is), then commits it. The queue
/// is locked only while taking, so other committers take the next batch meanwhile.
async fn commit_loop(committer: Committer, queue: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>) {
    let mut jobs = Vec::with_capacity(MAX_JOBS_PER_BATCH);
    let mut wal = WalWatch::new();
    loop {
        let taken = queue
            .lock()
            .await
            .recv_many(&mut jobs, MAX_JOBS_PER_BATCH)
            .await;
        if taken == 0 {
            return;
        }
        commit_jobs(&committer, std::mem::take(&mut jobs)).await;
        wal.after_commit(&committer.store).await;
    }
}

/// Commits the jobs together; if that fails, one by one, so only the failing job errs.
async fn commit_jobs(committer: &Committer, jobs: Vec<Job>) {
    if jobs.len() == 1 {
        return commit_batch(committer, jobs).await.unwrap_or_else(drop);
    }
    let count = jobs.len();
    if let Err((jobs, error)) = commit_batch(committer, jobs).await {
        warn!(jobs = count, %error, "A group commit failed; committing its writes one by one.");
        for job in jobs {
            commit_batch(committer, vec![job])
                .await
                .unwrap_or_else(drop);
        }
    }
}

/// One batch, one transaction. On failure the jobs come back unanswered, with the error; a
/// single job is answered with the error instead.
async fn commit_batch(
    committer: &Committer,
    mut jobs: Vec<Job>,
) -> Result<(), (Vec<Job>, StoreError)> {
    let written = {
        let reserved = take_reserved(&mut jobs);
        // Borrowed, not cloned: events and attempts carry whole bodies.
        let batch = Batch::of(&jobs);
        let clock = std::time::Instant::now();
        let written = write(committer, &batch, reserved).await;
        trace!(
            events = batch.events.len(),
            starts = batch.starts.len(),
            transitions = batch.transitions.len(),
            micros = clock.elapsed().as_micros() as u64,
            "Group commit."
        );
        written
    };
    match written {
        Ok((written, leased)) => {
            // The runs first: a caller answered may ask about its run at once.
            if leased.left_pending > 0 {
                committer.wake.new_runs();
            }
            leased.deliver();
            answer(jobs, written);
            Ok(())
        }
        Err(error) if jobs.len() == 1 => {
            if let Some(job) = jobs.into_iter().next() {
                fail(job, error);
            }
            Ok(())
        }
        Err(error) => Err((jobs, error)),
    }
}

/// The workers the batch's jobs reserved, as one permit. A batch retried job by job has given
/// them up: its runs take whatever workers are free then.
fn take_reserved(jobs: &mut [Job]) -> Option<OwnedSemaphorePermit> {
    let mut all: Option<OwnedSemaphorePermit> = None;
    for job in jobs {
        let reserved = match job {
            Job::Ingest { reserved, .. } | Job::Start { reserved, .. } => reserved.take(),
            Job::Transition { .. } => None,
        };
        match (&mut all, reserved) {
            (Some(all), Some(reserved)) => all.merge(reserved),
            (None, reserved) => all = reserved,
            (Some(_), None) => {}
        }
    }
    all
}

/// What one batch writes, borrowed from its jobs: events and attempts carry whole bodies.
struct Batch<'a> {
    events: Vec<&'a NewEvent>,
    starts: Vec<&'a RunStart>,
    transitions: Vec<&'a Transition>,
}

impl<'a> Batch<'a> {
    fn of(jobs: &'a [Job]) -> Batch<'a> {
        let mut batch = Batch {
            events: Vec::new(),
            starts: Vec::new(),
            transitions: Vec::new(),
        };
        for job in jobs {
            match job {
                Job::Ingest { events, .. } => batch.events.extend(events),
                Job::Start { starts, .. } => batch.starts.extend(starts),
                Job::Transition { transition, .. } => batch.transitions.push(transition),
            }
        }
        batch
    }
}

impl Batch<'_> {
    /// The runs the batch may store: every event's and every start's (a repeated event's or
    /// start's are not stored, so a worker chosen for one is given back unused).
    fn candidate_runs(&self) -> Vec<&NewRun> {
        let events = self.events.iter().flat_map(|e| e.runs.iter());
        let starts = self.starts.iter().map(|start| &start.run);
        events.chain(starts).collect()
    }
}

/// The answers of one committed batch, in the order of its jobs.
struct Written {
    ingested: IngestAnswers,
    started: Vec<Started>,
    applied: Vec<Result<Applied, StoreError>>,
}

/// Commits the batch; the runs it leased to this node are handed over once committed. SQLite
/// goes through the writer connection's raw handle, PostgreSQL through a sea-orm transaction.
async fn write(
    committer: &Committer,
    batch: &Batch<'_>,
    reserved: Option<OwnedSemaphorePermit>,
) -> Result<(Written, Leased), StoreError> {
    let store = &committer.store;
    let now = chrono::Utc::now().timestamp_millis();
    match store.backend() {
        Backend::Sqlite => {
            sqlite_raw::transaction(store, async |raw| {
                write_in(raw, committer, batch, reserved, now).await
            })
            .await
        }
        Backend::Postgres => {
            let txn = store.begin_write().await?;
            let written = write_in(&txn, committer, batch, reserved, now).await?;
            txn.commit().await?;
            Ok(written)
        }
    }
}

/// The batch's statements, inside the caller's transaction.
async fn write_in(
    conn: &impl Conn,
    committer: &Committer,
    batch: &Batch<'_>,
    reserved: Option<OwnedSemaphorePermit>,
    now: i64,
) -> Result<(Written, Leased), StoreError> {
    let backend = committer.store.backend();
    let candidates = batch.candidate_runs();
    let choice = committer
        .hand_off
        .choose(conn, backend, &candidates, reserved, now)
        .await?;
    let lease = choice.lease();
    let (ingested, mut stored) = if batch.events.is_empty() {
        (IngestAnswers::new(), Vec::new())
    } else {
        ingest(conn, backend, &batch.events, lease.as_ref()).await?
    };
    let started = if batch.starts.is_empty() {
        Vec::new()
    } else {
        let (started, leased) =
            starts::start_runs(conn, backend, &batch.starts, now, lease.as_ref()).await?;
        stored.extend(leased);
        started
    };
    let applied = if batch.transitions.is_empty() {
        Vec::new()
    } else {
        apply_many(conn, backend, &batch.transitions, now).await?
    };
    let leased = choice.stored(&candidates, &stored);
    Ok((
        Written {
            ingested,
            started,
            applied,
        },
        leased,
    ))
}

/// Hands each caller its part of the batch's result.
fn answer(jobs: Vec<Job>, written: Written) {
    let mut applied = written.applied.into_iter();
    let mut started = written.started.into_iter();
    for job in jobs {
        match job {
            Job::Ingest { events, reply, .. } => {
                let mine = events
                    .iter()
                    .filter_map(|e| Some((e.id.clone(), written.ingested.get(&e.id)?.clone())))
                    .collect();
                deliver(reply, Ok(mine));
            }
            Job::Start { starts, reply, .. } => {
                let mine: Vec<Started> = started.by_ref().take(starts.len()).collect();
                deliver(reply, Ok(mine));
            }
            Job::Transition { reply, .. } => {
                deliver(
                    reply,
                    applied.next().unwrap_or(Err(StoreError::WriterStopped)),
                );
            }
        }
    }
}

fn fail(job: Job, error: StoreError) {
    match job {
        Job::Ingest { reply, .. } => deliver(reply, Err(error)),
        Job::Start { reply, .. } => deliver(reply, Err(error)),
        Job::Transition { reply, .. } => deliver(reply, Err(error)),
    }
}

/// A caller that stopped waiting (its request was cancelled) is fine: the write is committed
/// all the same, and the next reader sees it.
fn deliver<T>(reply: oneshot::Sender<T>, value: T) {
    if reply.send(value).is_err() {
        debug!("A writer's caller stopped waiting before its commit was answered.");
    }
}
