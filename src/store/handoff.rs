//! The local hand-off: a run created on this node is stored already leased to this node, in
//! the very transaction that creates it, and goes straight to a free worker once that commits,
//! instead of being committed `pending`, found again by a claim query in a transaction of its
//! own, and only then leased.
//! On SQLite, where one connection writes, those claim transactions queued behind (and in
//! front of) the group commit and were what limited throughput (docs/performance.md).
//!
//! A run is handed off only when a worker permit is free for it (taken before the commit, so a
//! handed-off run never waits in memory for a worker), its flow has no concurrency, rate or
//! order limit and its workspace no runs-per-day quota (the runner's [`Admits`] says so; those
//! runs need the claim's checks), and its flow is not paused (the database says so, read in the
//! same transaction; a paused flow's new runs are stored `held`).
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
use tokio::sync::{OwnedRwLockReadGuard, OwnedSemaphorePermit, RwLock, Semaphore, mpsc};

use crate::core::new_run::NewRun;
use crate::store::runs::{ClaimedRun, NewLease};
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

    /// Chooses, inside the caller's transaction, the new runs this node's workers take at once:
    /// as many as `reserved` holds permits, and more if workers are free, of admitted flows that
    /// are not paused. The caller stores them with [`Choice::lease`] and turns what it stored
    /// into [`Leased`]. The choice keeps the hand-off open until it is dropped, so [`close`]
    /// waits for the batch. `now`: the lease's start.
    ///
    /// [`close`]: HandOff::close
    pub async fn choose(
        &self,
        conn: &impl Conn,
        backend: Backend,
        runs: &[&NewRun],
        reserved: Option<OwnedSemaphorePermit>,
        now: i64,
    ) -> Result<Choice, StoreError> {
        let guard = self.receiver.clone().read_owned().await;
        let Some(receiver) = guard.as_ref() else {
            return Ok(Choice::none(runs.len()));
        };
        let keys: Vec<&str> = runs.iter().map(|r| r.flow_id.as_str()).collect();
        let admitted: Vec<&NewRun> = runs
            .iter()
            .zip((receiver.admits)(&keys))
            .filter(|(_, admitted)| *admitted)
            .map(|(run, _)| *run)
            .collect();
        if admitted.is_empty() {
            return Ok(Choice::none(runs.len()));
        }
        let paused = paused_flows(conn, backend, &admitted).await?;
        let admitted: Vec<&NewRun> = admitted
            .into_iter()
            .filter(|run| !paused.contains(&run.flow_id))
            .collect();
        let Some(permits) = permits_for(receiver, reserved, admitted.len()) else {
            return Ok(Choice::none(runs.len()));
        };
        let chosen = &admitted[..admitted.len().min(permits.num_permits())];
        Ok(Choice {
            ids: chosen.iter().map(|run| run.id.clone()).collect(),
            owner: receiver.owner.clone(),
            now,
            expires: now + receiver.lease_ms,
            permits: Some(permits),
            sender: Some(receiver.runs.clone()),
            candidates: runs.len(),
            _open: Some(guard),
        })
    }
}

/// The runs a batch will store leased, chosen before it stores them.
pub struct Choice {
    ids: HashSet<String>,
    owner: String,
    now: i64,
    expires: i64,
    permits: Option<OwnedSemaphorePermit>,
    sender: Option<mpsc::UnboundedSender<Handed>>,
    /// The batch's new runs, chosen or not.
    candidates: usize,
    _open: Option<OwnedRwLockReadGuard<Option<Receiver>>>,
}

impl Choice {
    fn none(candidates: usize) -> Choice {
        Choice {
            ids: HashSet::new(),
            owner: String::new(),
            now: 0,
            expires: 0,
            permits: None,
            sender: None,
            candidates,
            _open: None,
        }
    }

    /// The lease the chosen runs are stored with; `None` when none was chosen.
    pub fn lease(&self) -> Option<NewLease<'_>> {
        (!self.ids.is_empty()).then_some(NewLease {
            ids: &self.ids,
            owner: &self.owner,
            now: self.now,
            expires: self.expires,
        })
    }

    /// The runs stored leased (`stored`: their ids, as the inserts answered), ready to hand
    /// over once committed. `runs`: the batch's new runs, as given to [`HandOff::choose`].
    pub fn stored(self, runs: &[&NewRun], stored: &[String]) -> Leased {
        let stored: HashSet<&str> = stored.iter().map(String::as_str).collect();
        let handed: Vec<ClaimedRun> = runs
            .iter()
            .filter(|run| stored.contains(run.id.as_str()))
            .map(|run| claimed(run, self.now))
            .collect();
        Leased {
            left_pending: self.candidates.saturating_sub(handed.len()),
            runs: handed,
            permits: self.permits,
            sender: self.sender,
        }
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

/// The paused flows among those of `runs`: their new runs are stored `held`, never leased.
async fn paused_flows(
    conn: &impl Conn,
    backend: Backend,
    runs: &[&NewRun],
) -> Result<HashSet<String>, StoreError> {
    let flows: Vec<&str> = runs
        .iter()
        .map(|r| r.flow_id.as_str())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut paused = HashSet::new();
    for chunk in flows.chunks(IDS_PER_STATEMENT) {
        let sql = format!(
            "SELECT id FROM flows WHERE paused AND id IN ({})",
            placeholders(chunk.len())
        );
        let values = chunk.iter().map(|f| Value::from(f.to_string())).collect();
        for row in conn.query_all_raw(stmt(backend, &sql, values)).await? {
            paused.insert(get::<String>(&row, "id")?);
        }
    }
    Ok(paused)
}

/// Ids per statement: far below both backends' bound-variable limits.
const IDS_PER_STATEMENT: usize = 500;

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
    use crate::store::runs::insert_runs_leased;
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

    /// Chooses among `runs`, stores them all with the choice's lease and answers what to hand
    /// over, inside `txn`.
    async fn store_with_choice(
        hand_off: &HandOff,
        txn: &impl Conn,
        backend: Backend,
        runs: &[NewRun],
    ) -> Leased {
        let refs: Vec<&NewRun> = runs.iter().collect();
        let choice = hand_off
            .choose(txn, backend, &refs, None, 200)
            .await
            .unwrap();
        let lease = choice.lease();
        let stored = insert_runs_leased(txn, backend, runs, lease.as_ref())
            .await
            .unwrap();
        choice.stored(&refs, &stored)
    }

    #[tokio::test]
    async fn new_runs_are_stored_leased_and_handed_over_once_committed() {
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
            let leased = store_with_choice(&hand_off, &txn, backend, &runs).await;
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
    async fn a_paused_flows_runs_are_held_and_a_rollback_gives_the_workers_back() {
        for db in TestDb::all().await {
            let (store, backend) = (&db.store, db.store.backend());
            let (hand_off, permits, mut handed) = opened(4).await;
            let paused = "INSERT INTO flows (id, name, source, path, revision, enabled, paused, load_error, created_at, updated_at) \
                          VALUES ('p', 'p', 'api', NULL, 1, TRUE, TRUE, NULL, 1, 1)";
            sea_orm::ConnectionTrait::execute_unprepared(store.writer(), paused)
                .await
                .unwrap();
            let txn = store.begin_write().await.unwrap();
            let leased = store_with_choice(&hand_off, &txn, backend, &[run_of("p", "held")]).await;
            assert_eq!(leased.left_pending, 1);
            txn.commit().await.unwrap();
            leased.deliver();
            assert!(handed.try_recv().is_err());
            assert_eq!(permits.available_permits(), 4);
            assert_eq!(row(store, "held").await, ("held".into(), None, 0));

            let txn = store.begin_write().await.unwrap();
            let fresh = [run_of("f", "rolled-back")];
            let leased = store_with_choice(&hand_off, &txn, backend, &fresh).await;
            assert_eq!(permits.available_permits(), 3);
            txn.rollback().await.unwrap();
            drop(leased);
            assert_eq!(permits.available_permits(), 4);
            assert!(handed.try_recv().is_err());
            db.cleanup().await;
        }
    }

    #[tokio::test]
    async fn a_run_chosen_but_not_stored_gives_its_worker_back() {
        let db = TestDb::sqlite().await;
        let (store, backend) = (&db.store, db.store.backend());
        let (hand_off, permits, mut handed) = opened(2).await;
        // A repeated event's run: chosen with the others, never stored.
        let runs = [run_of("f", "stored"), run_of("f", "repeat")];
        let refs: Vec<&NewRun> = runs.iter().collect();
        let txn = store.begin_write().await.unwrap();
        let choice = hand_off
            .choose(&txn, backend, &refs, None, 200)
            .await
            .unwrap();
        let lease = choice.lease();
        let stored = insert_runs_leased(&txn, backend, &runs[..1], lease.as_ref())
            .await
            .unwrap();
        let leased = choice.stored(&refs, &stored);
        txn.commit().await.unwrap();
        leased.deliver();
        let Handed { run, permit } = handed.try_recv().unwrap();
        assert_eq!(run.id, "stored");
        assert!(handed.try_recv().is_err());
        assert_eq!(
            permits.available_permits(),
            1,
            "one worker busy, the other back"
        );
        drop(permit);
        db.cleanup().await;
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
        let txn = store.begin_write().await.unwrap();
        let leased = store_with_choice(&hand_off, &txn, backend, &[run_of("f", "a")]).await;
        assert_eq!(leased.left_pending, 1);
        txn.commit().await.unwrap();
        assert_eq!(row(store, "a").await, ("pending".into(), None, 0));
        assert_eq!(permits.available_permits(), 2);
        db.cleanup().await;
    }
}
