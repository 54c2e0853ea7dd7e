//! The local hand-off: a run created on this node is leased to this node in the very
//! transaction that creates it and goes straight to a free worker, instead of being committed
//! `pending`, found again by a claim query in a transaction of its own, and only then leased.
//! On SQLite, where one connection writes, those claim transactions queued behind (and in
//! front of) the group commit and were what limited throughput (docs/performance.md).
//!
//! A run is handed off only when a worker permit is free for it (taken before the commit, so a
//! handed-off run never waits in memory for a worker), its flow has no concurrency, rate or
//! order limit and its workspace no runs-per-day quota (the runner's [`Admits`] says so; those
//! runs need the claim's checks), and its flow is not paused (the database says so: the lease
//! is taken with `status = 'pending'` as its condition, and a paused flow's runs are `held`).
//! Everything else is stored `pending` as before and the runner is woken to claim it; other
//! nodes find runs through the claim as they always did. A handed-off run is `running` with a
//! lease like any claimed run, so a crash loses nothing: the lease expires and the run is
//! claimed again.
//!
//! It is also how intake keeps pace with the runner: a request that starts runs first reserves
//! the workers for them, waiting up to [`RESERVE_WAIT`] when all are busy. So while the runner
//! keeps up, every run goes straight to a worker; when it cannot, answers slow down instead of
//! a backlog growing behind fast answers; and when the workers are stuck (a target that hangs),
//! events are still accepted after the wait, stored `pending` for a claim.

/// How long a request waits for free workers before its runs are stored `pending` instead.
pub const RESERVE_WAIT: Duration = Duration::from_millis(250);

/// Workers one request may reserve at most, so a large batch does not hold up the requests
/// behind it (the semaphore is fair) until every worker is free.
const RESERVE_AT_MOST: usize = 16;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::Value;
use tokio::sync::{OwnedSemaphorePermit, RwLock, Semaphore, mpsc};

use crate::core::new_run::NewRun;
use crate::store::runs::ClaimedRun;
use crate::store::sql::{Conn, get, placeholders, stmt};
use crate::store::{Backend, StoreError};

/// Which flows' new runs may skip the claim: given the flow keys of a batch's new runs, one
/// answer per key.
pub type Admits = Box<dyn Fn(&[&str]) -> Vec<bool> + Send + Sync>;

/// A run leased at its creation, with the worker permit taken for it.
pub struct Handed {
    pub run: ClaimedRun,
    pub permit: OwnedSemaphorePermit,
}

/// The worker pool's side of the hand-off, installed while the pool runs.
pub struct Receiver {
    pub owner: String,
    /// The pool's size.
    pub workers: usize,
    pub lease_ms: i64,
    /// The pool's worker permits.
    pub permits: Arc<Semaphore>,
    pub admits: Admits,
    pub runs: mpsc::UnboundedSender<Handed>,
}

/// Where the group commit hands runs to; empty while no worker pool runs on this node.
#[derive(Clone, Default)]
pub struct HandOff {
    receiver: Arc<RwLock<Option<Receiver>>>,
}

impl HandOff {
    /// The worker pool starts taking runs.
    pub async fn open(&self, receiver: Receiver) {
        *self.receiver.write().await = Some(receiver);
    }

    /// The worker pool stops taking runs. Waits for a commit that is handing runs off, so no
    /// run is leased to this node after this returns.
    pub async fn close(&self) {
        *self.receiver.write().await = None;
    }

    /// Reserves free workers for the new runs of one request, waiting up to [`RESERVE_WAIT`]
    /// when none is free; `None` when no worker pool runs here or none of the runs may skip
    /// the claim. The group commit leases the runs with these permits.
    pub async fn reserve(&self, flow_keys: &[&str]) -> Option<OwnedSemaphorePermit> {
        let (permits, wanted) = {
            let guard = self.receiver.read().await;
            let receiver = guard.as_ref()?;
            let admitted = (receiver.admits)(flow_keys)
                .into_iter()
                .filter(|a| *a)
                .count();
            let wanted = admitted.min(RESERVE_AT_MOST).min(receiver.workers);
            (receiver.permits.clone(), wanted)
        };
        if wanted == 0 {
            return None;
        }
        let waited = tokio::time::timeout(
            RESERVE_WAIT,
            permits.clone().acquire_many_owned(wanted as u32),
        );
        match waited.await {
            Ok(Ok(reserved)) => Some(reserved),
            // Still busy: whatever is free now, maybe nothing.
            _ => {
                let free = permits.available_permits().min(wanted) as u32;
                let reserved = permits.try_acquire_many_owned(free).ok();
                reserved.filter(|r| r.num_permits() > 0)
            }
        }
    }

    /// Leases to this node, inside the caller's transaction, the new runs a worker can take:
    /// as many as `reserved` holds permits, and more if workers are free; returns them, to be
    /// handed over with [`Leased::deliver`] once committed. `now`: the lease's start.
    pub async fn lease(
        &self,
        conn: &impl Conn,
        backend: Backend,
        runs: &[&NewRun],
        reserved: Option<OwnedSemaphorePermit>,
        now: i64,
    ) -> Result<Leased, StoreError> {
        let guard = self.receiver.read().await;
        let Some(receiver) = guard.as_ref() else {
            return Ok(Leased::none(runs.len()));
        };
        let keys: Vec<&str> = runs.iter().map(|r| r.flow_id.as_str()).collect();
        let admitted: Vec<&NewRun> = runs
            .iter()
            .zip((receiver.admits)(&keys))
            .filter(|(_, admitted)| *admitted)
            .map(|(run, _)| *run)
            .collect();
        let Some(permits) = permits_for(receiver, reserved, admitted.len()) else {
            return Ok(Leased::none(runs.len()));
        };
        let chosen = &admitted[..admitted.len().min(permits.num_permits())];
        let expires = now + receiver.lease_ms;
        let ids = lease_pending(conn, backend, chosen, &receiver.owner, now, expires).await?;
        let handed: Vec<ClaimedRun> = chosen
            .iter()
            .filter(|run| ids.contains(&run.id))
            .map(|run| claimed(run, now))
            .collect();
        Ok(Leased {
            left_pending: runs.len() - handed.len(),
            runs: handed,
            permits: Some(permits),
            sender: Some(receiver.runs.clone()),
        })
    }
}

/// The permits for `wanted` runs: the reserved ones, topped up with free ones; `None` when
/// there are none.
fn permits_for(
    receiver: &Receiver,
    reserved: Option<OwnedSemaphorePermit>,
    wanted: usize,
) -> Option<OwnedSemaphorePermit> {
    let have = reserved.as_ref().map_or(0, |r| r.num_permits());
    let more = wanted
        .saturating_sub(have)
        .min(receiver.permits.available_permits());
    let extra = (more > 0)
        .then(|| {
            receiver
                .permits
                .clone()
                .try_acquire_many_owned(more as u32)
                .ok()
        })
        .flatten();
    match (reserved, extra) {
        (Some(mut reserved), Some(extra)) => {
            reserved.merge(extra);
            Some(reserved)
        }
        (reserved, extra) => reserved.or(extra),
    }
    .filter(|permits| permits.num_permits() > 0 && wanted > 0)
}

/// Runs leased in a transaction not committed yet. Dropped without [`Leased::deliver`] (the
/// transaction failed), the permits go back and the runs are not handed over: with the
/// transaction rolled back they do not exist.
pub struct Leased {
    runs: Vec<ClaimedRun>,
    permits: Option<OwnedSemaphorePermit>,
    sender: Option<mpsc::UnboundedSender<Handed>>,
    /// New runs not leased: stored `pending` (or `held`) for a claim to find.
    pub left_pending: usize,
}

impl Leased {
    fn none(runs: usize) -> Leased {
        Leased {
            runs: Vec::new(),
            permits: None,
            sender: None,
            left_pending: runs,
        }
    }

    /// Hands the runs to the worker pool; call once their lease is committed. A pool that
    /// stopped meanwhile loses nothing: its node gives its leases back as it stops.
    pub fn deliver(self) {
        let (Some(mut permits), Some(sender)) = (self.permits, self.sender) else {
            return;
        };
        for run in self.runs {
            let Some(permit) = permits.split(1) else {
                break;
            };
            if sender.send(Handed { run, permit }).is_err() {
                break;
            }
        }
    }
}

/// Leases the given runs if they are still `pending` (a paused flow's are `held`, a repeated
/// event's were never stored); returns the ids leased.
async fn lease_pending(
    conn: &impl Conn,
    backend: Backend,
    runs: &[&NewRun],
    owner: &str,
    now: i64,
    expires: i64,
) -> Result<HashSet<String>, StoreError> {
    let mut leased = HashSet::with_capacity(runs.len());
    for chunk in runs.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "UPDATE runs SET status = 'running', lease_owner = ?, lease_epoch = lease_epoch + 1, \
             lease_expires_at = ?, due_at = ?, started_at = ? \
             WHERE id IN ({}) AND status = 'pending' RETURNING id",
            placeholders(chunk.len())
        );
        let mut values: Vec<Value> = vec![
            owner.to_string().into(),
            expires.into(),
            expires.into(),
            now.into(),
        ];
        values.extend(chunk.iter().map(|r| Value::from(r.id.clone())));
        for row in conn.query_all_raw(stmt(backend, &sql, values)).await? {
            leased.insert(get::<String>(&row, "id")?);
        }
    }
    Ok(leased)
}

/// Ids per statement: far below both backends' bound-variable limits.
const ROWS_PER_STATEMENT: usize = 500;

/// The run as a claim would have returned it: first lease, nothing executed yet.
fn claimed(run: &NewRun, now: i64) -> ClaimedRun {
    ClaimedRun {
        id: run.id.clone(),
        flow_id: run.flow_id.clone(),
        revision: run.revision,
        trigger: run.trigger.clone(),
        next_step: 0,
        attempt: 1,
        epoch: 1,
        cancel_requested: false,
        deadline_at: run.deadline_at,
        started_at: now,
        created_at: run.created_at,
        resumed: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::runs::insert_runs;
    use crate::store::testing::{TestDb, pending_run};

    /// A hand-off open for a pool of `workers` that admits every flow but `g`.
    async fn opened(workers: usize) -> (HandOff, Arc<Semaphore>, mpsc::UnboundedReceiver<Handed>) {
        let hand_off = HandOff::default();
        let permits = Arc::new(Semaphore::new(workers));
        let (runs, handed) = mpsc::unbounded_channel();
        let admits: Admits = Box::new(|keys| keys.iter().map(|k| *k != "g").collect());
        hand_off
            .open(Receiver {
                owner: "n1".into(),
                workers,
                lease_ms: 30_000,
                permits: permits.clone(),
                admits,
                runs,
            })
            .await;
        (hand_off, permits, handed)
    }

    fn run_of(flow: &str, id: &str) -> NewRun {
        NewRun {
            flow_id: flow.into(),
            ..pending_run(id, 100)
        }
    }

    async fn row(store: &crate::store::Store, id: &str) -> (String, Option<String>, i64) {
        let sql = "SELECT status, lease_owner, lease_epoch FROM runs WHERE id = ?";
        let row = store
            .reader()
            .query_one_raw(stmt(store.backend(), sql, vec![id.into()]))
            .await
            .unwrap()
            .unwrap();
        (
            get(&row, "status").unwrap(),
            get(&row, "lease_owner").unwrap(),
            get(&row, "lease_epoch").unwrap(),
        )
    }

    #[tokio::test]
    async fn new_runs_are_leased_in_their_transaction_and_handed_over_once_committed() {
        for db in TestDb::all().await {
            let (store, backend) = (&db.store, db.store.backend());
            let (hand_off, permits, mut handed) = opened(3).await;
            let runs = [
                run_of("f", "a"),
                run_of("g", "b"),
                run_of("f", "c"),
                run_of("f", "d"),
            ];
            let txn = store.begin_write().await.unwrap();
            insert_runs(&txn, backend, &runs).await.unwrap();
            let refs: Vec<&NewRun> = runs.iter().collect();
            let leased = hand_off
                .lease(&txn, backend, &refs, None, 200)
                .await
                .unwrap();
            // Three workers, and `g` is not admitted: a, c and d are leased, b is left.
            assert_eq!(leased.left_pending, 1);
            assert_eq!(permits.available_permits(), 0);
            txn.commit().await.unwrap();
            assert!(
                handed.try_recv().is_err(),
                "nothing is handed over before delivery"
            );
            leased.deliver();
            let mut got = Vec::new();
            while let Ok(Handed { run, permit }) = handed.try_recv() {
                assert_eq!((run.epoch, run.next_step, run.resumed), (1, 0, false));
                assert_eq!(permit.num_permits(), 1);
                got.push(run.id);
            }
            assert_eq!(got, ["a", "c", "d"]);
            for id in ["a", "c", "d"] {
                assert_eq!(
                    row(store, id).await,
                    ("running".into(), Some("n1".into()), 1)
                );
            }
            assert_eq!(row(store, "b").await, ("pending".into(), None, 0));
            db.cleanup().await;
        }
    }

    #[tokio::test]
    async fn a_run_no_longer_pending_is_not_leased_and_a_rollback_gives_the_workers_back() {
        for db in TestDb::all().await {
            let (store, backend) = (&db.store, db.store.backend());
            let (hand_off, permits, mut handed) = opened(4).await;
            let runs = [run_of("f", "held"), run_of("f", "never-stored")];
            let txn = store.begin_write().await.unwrap();
            insert_runs(&txn, backend, &runs[..1]).await.unwrap();
            // What a paused flow's new run is.
            txn.execute_raw(stmt(
                backend,
                "UPDATE runs SET status = 'held', due_at = NULL WHERE id = ?",
                vec!["held".into()],
            ))
            .await
            .unwrap();
            let refs: Vec<&NewRun> = runs.iter().collect();
            let leased = hand_off
                .lease(&txn, backend, &refs, None, 200)
                .await
                .unwrap();
            assert_eq!(leased.left_pending, 2);
            txn.commit().await.unwrap();
            leased.deliver();
            assert!(handed.try_recv().is_err());
            assert_eq!(permits.available_permits(), 4);
            assert_eq!(row(store, "held").await, ("held".into(), None, 0));

            let txn = store.begin_write().await.unwrap();
            let fresh = [run_of("f", "rolled-back")];
            insert_runs(&txn, backend, &fresh).await.unwrap();
            let refs: Vec<&NewRun> = fresh.iter().collect();
            let leased = hand_off
                .lease(&txn, backend, &refs, None, 200)
                .await
                .unwrap();
            assert_eq!(permits.available_permits(), 3);
            txn.rollback().await.unwrap();
            drop(leased);
            assert_eq!(permits.available_permits(), 4);
            assert!(handed.try_recv().is_err());
            db.cleanup().await;
        }
    }

    #[tokio::test]
    async fn reserving_waits_for_a_free_worker_then_settles_for_what_is_free() {
        let (hand_off, permits, _handed) = opened(2).await;
        let busy = permits.clone().acquire_many_owned(2).await.unwrap();
        // Every worker busy: the wait ends empty-handed, and the runs will be left pending.
        assert!(hand_off.reserve(&["f"]).await.is_none());
        // A worker freed during the wait is taken.
        let freeing = tokio::spawn(async move {
            tokio::task::yield_now().await;
            drop(busy);
        });
        let reserved = hand_off.reserve(&["f", "f", "g"]).await.unwrap();
        assert_eq!(reserved.num_permits(), 2, "two runs admitted, two workers");
        freeing.await.unwrap();
        // Flows the hand-off does not admit reserve nothing.
        drop(reserved);
        assert!(hand_off.reserve(&["g"]).await.is_none());
        assert_eq!(permits.available_permits(), 2);
    }

    #[tokio::test]
    async fn a_closed_hand_off_leases_nothing() {
        let db = TestDb::sqlite().await;
        let (store, backend) = (&db.store, db.store.backend());
        let (hand_off, permits, _handed) = opened(2).await;
        hand_off.close().await;
        assert!(hand_off.reserve(&["f"]).await.is_none());
        let runs = [run_of("f", "a")];
        let txn = store.begin_write().await.unwrap();
        insert_runs(&txn, backend, &runs).await.unwrap();
        let leased = hand_off
            .lease(&txn, backend, &[&runs[0]], None, 200)
            .await
            .unwrap();
        assert_eq!(leased.left_pending, 1);
        txn.commit().await.unwrap();
        assert_eq!(row(store, "a").await, ("pending".into(), None, 0));
        assert_eq!(permits.available_permits(), 2);
        db.cleanup().await;
    }
}
