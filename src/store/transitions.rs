//! Applying the runner's transitions: the new state of each run plus the step and attempt rows
//! it produced. Many runs' transitions are applied with a constant number of statements (one
//! conditional multi-row `UPDATE … FROM (VALUES …)`, one step upsert, one attempt insert), so a
//! group commit of a hundred runs costs about what one run did. Every run row is updated on
//! condition of its lease (owner and epoch); a run whose lease was lost gets nothing written.

use std::collections::{HashMap, HashSet};

use sea_orm::{ConnectionTrait, Value};

use crate::store::runs::{self, AttemptWrite, RunState, RunWrite, StepWrite};
use crate::store::sql::{Conn, get, placeholders, stmt};
use crate::store::{Backend, StoreError};

/// Rows per multi-row statement: 11 values a row stays well under the bound-variable limits.
const ROWS_PER_STATEMENT: usize = 200;

/// What a committed transition tells the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Someone asked to cancel the run: stop after the step in flight.
    pub cancel_requested: bool,
}

/// One transition to apply, with the lease expiry it sets while the run keeps running.
#[derive(Debug, Clone)]
pub struct Transition {
    pub write: RunWrite,
    pub lease_expires_at: i64,
}

/// Applies one transition inside the caller's transaction; `LeaseLost` when the caller no
/// longer owns the run (then nothing is written).
pub async fn apply(
    conn: &impl ConnectionTrait,
    backend: Backend,
    write: &RunWrite,
    lease_expires_at: i64,
) -> Result<Applied, StoreError> {
    let transition = Transition {
        write: write.clone(),
        lease_expires_at,
    };
    let now = chrono::Utc::now().timestamp_millis();
    let mut applied = apply_many(conn, backend, &[&transition], now).await?;
    applied.pop().unwrap_or(Err(StoreError::LeaseLost))
}

/// Applies transitions of distinct runs inside the caller's transaction. The answer has one
/// entry per transition, in order: `Applied`, or `LeaseLost` for runs whose lease was lost.
/// A run parked (waiting) while someone asked to cancel it is cancelled at once, at `now`.
pub async fn apply_many(
    conn: &impl Conn,
    backend: Backend,
    transitions: &[&Transition],
    now: i64,
) -> Result<Vec<Result<Applied, StoreError>>, StoreError> {
    let mut cancel_requested: HashMap<String, bool> = HashMap::with_capacity(transitions.len());
    for chunk in transitions.chunks(ROWS_PER_STATEMENT) {
        cancel_requested.extend(update_runs(conn, backend, chunk).await?);
    }
    let owned: Vec<&Transition> = transitions
        .iter()
        .filter(|t| cancel_requested.contains_key(&t.write.run_id))
        .copied()
        .collect();
    upsert_steps(conn, backend, &owned).await?;
    insert_attempts(conn, backend, &owned).await?;
    cancel_parked(conn, backend, &owned, &cancel_requested, now).await?;
    Ok(transitions
        .iter()
        .map(|t| match cancel_requested.get(&t.write.run_id) {
            Some(&cancel_requested) => Ok(Applied { cancel_requested }),
            None => Err(StoreError::LeaseLost),
        })
        .collect())
}

/// The new column values of one run row, one VALUES row of the batched update.
struct RunRow<'a> {
    write: &'a RunWrite,
    /// `running`, `waiting` or `finished`: which columns the transition owns.
    kind: &'static str,
    status: &'static str,
    next_step: Option<i32>,
    lease_expires_at: Option<i64>,
    due_at: Option<i64>,
    wake_at: Option<i64>,
    error: Option<String>,
    finished_at: Option<i64>,
}

impl RunRow<'_> {
    fn of(transition: &Transition) -> RunRow<'_> {
        let write = &transition.write;
        let base = RunRow {
            write,
            kind: "running",
            status: "running",
            next_step: None,
            lease_expires_at: None,
            due_at: None,
            wake_at: None,
            error: None,
            finished_at: None,
        };
        match &write.state {
            RunState::Running { next_step } => RunRow {
                next_step: Some(*next_step as i32),
                lease_expires_at: Some(transition.lease_expires_at),
                due_at: Some(transition.lease_expires_at),
                ..base
            },
            RunState::Waiting {
                next_step,
                wake_at,
                due_at,
            } => RunRow {
                kind: "waiting",
                status: "waiting",
                next_step: Some(*next_step as i32),
                due_at: Some(*due_at),
                wake_at: Some(*wake_at),
                ..base
            },
            RunState::Finished {
                status,
                error,
                finished_at,
            } => RunRow {
                kind: "finished",
                status: status.as_str(),
                error: error.clone(),
                finished_at: Some(*finished_at),
                ..base
            },
        }
    }

    fn values(self) -> [Value; 11] {
        [
            self.write.run_id.clone().into(),
            self.write.owner.clone().into(),
            self.write.epoch.into(),
            self.kind.into(),
            self.status.into(),
            self.next_step.into(),
            self.lease_expires_at.into(),
            self.due_at.into(),
            self.wake_at.into(),
            self.error.into(),
            self.finished_at.into(),
        ]
    }
}

/// Updates the run rows the caller still owns; returns their ids with `cancel_requested`.
/// VALUES columns are `column1…column11` on both backends (see [`RunRow::values`]).
async fn update_runs(
    conn: &impl Conn,
    backend: Backend,
    transitions: &[&Transition],
) -> Result<Vec<(String, bool)>, StoreError> {
    let rows = vec![format!("({})", placeholders(11)); transitions.len()].join(", ");
    let sql = format!(
        "UPDATE runs SET status = v.column5, next_step = COALESCE(v.column6, runs.next_step), \
         lease_owner = CASE WHEN v.column4 = 'running' THEN runs.lease_owner ELSE NULL END, \
         lease_expires_at = v.column7, due_at = v.column8, wake_at = v.column9, \
         error = CASE WHEN v.column4 = 'finished' THEN v.column10 ELSE runs.error END, \
         finished_at = CASE WHEN v.column4 = 'finished' THEN v.column11 ELSE runs.finished_at END \
         FROM (VALUES {rows}) AS v \
         WHERE runs.id = v.column1 AND runs.lease_owner = v.column2 AND runs.lease_epoch = v.column3 \
         AND runs.status = 'running' RETURNING runs.id, runs.cancel_requested"
    );
    let values: Vec<Value> = transitions
        .iter()
        .flat_map(|t| RunRow::of(t).values())
        .collect();
    let rows = conn.query_all_raw(stmt(backend, &sql, values)).await?;
    rows.iter()
        .map(|row| Ok((get(row, "id")?, get(row, "cancel_requested")?)))
        .collect()
}

async fn upsert_steps(
    conn: &impl Conn,
    backend: Backend,
    owned: &[&Transition],
) -> Result<(), StoreError> {
    let steps: Vec<(&str, &StepWrite)> = owned
        .iter()
        .flat_map(|t| t.write.steps.iter().map(|s| (t.write.run_id.as_str(), s)))
        .collect();
    for chunk in steps.chunks(ROWS_PER_STATEMENT) {
        let rows = vec![format!("({})", placeholders(10)); chunk.len()].join(", ");
        let sql = format!(
            "INSERT INTO step_runs (run_id, step_index, step_id, kind, status, output, error, attempts, started_at, finished_at) \
             VALUES {rows} ON CONFLICT (run_id, step_index) DO UPDATE SET status = excluded.status, output = excluded.output, \
             error = excluded.error, attempts = excluded.attempts, \
             started_at = COALESCE(step_runs.started_at, excluded.started_at), finished_at = excluded.finished_at"
        );
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 10);
        for (run_id, s) in chunk {
            values.extend([
                run_id.to_string().into(),
                (s.step_index as i32).into(),
                s.step_id.clone().into(),
                s.kind.into(),
                s.status.as_str().into(),
                s.output.clone().into(),
                s.error.clone().into(),
                (s.attempts as i32).into(),
                s.started_at.into(),
                s.finished_at.into(),
            ]);
        }
        conn.execute_raw(stmt(backend, &sql, values)).await?;
    }
    Ok(())
}

async fn insert_attempts(
    conn: &impl Conn,
    backend: Backend,
    owned: &[&Transition],
) -> Result<(), StoreError> {
    let attempts: Vec<(&str, &AttemptWrite)> = owned
        .iter()
        .flat_map(|t| {
            t.write
                .attempts
                .iter()
                .map(|a| (t.write.run_id.as_str(), a))
        })
        .collect();
    for chunk in attempts.chunks(ROWS_PER_STATEMENT) {
        let rows = vec![format!("({})", placeholders(10)); chunk.len()].join(", ");
        // A node that crashed after sending but before recording leaves no row; the retry that
        // follows reuses the number, so a conflict can only be a replayed write: keep the first.
        let sql = format!(
            "INSERT INTO attempts (run_id, step_index, n, node, started_at, finished_at, duration_ms, request, response, error) \
             VALUES {rows} ON CONFLICT (run_id, step_index, n) DO NOTHING"
        );
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 10);
        for (run_id, a) in chunk {
            values.extend([
                run_id.to_string().into(),
                (a.step_index as i32).into(),
                (a.n as i32).into(),
                a.node.clone().into(),
                a.started_at.into(),
                a.finished_at.into(),
                a.duration_ms.into(),
                a.request.clone().into(),
                a.response.clone().into(),
                a.error.clone().into(),
            ]);
        }
        conn.execute_raw(stmt(backend, &sql, values)).await?;
    }
    Ok(())
}

/// A cancel asked for while a step was in flight ends a run that would now park, instead of
/// leaving it to wait for its wake-up first.
async fn cancel_parked(
    conn: &impl Conn,
    backend: Backend,
    owned: &[&Transition],
    cancel_requested: &HashMap<String, bool>,
    now: i64,
) -> Result<(), StoreError> {
    let parked: HashSet<&str> = owned
        .iter()
        .filter(|t| matches!(t.write.state, RunState::Waiting { .. }))
        .map(|t| t.write.run_id.as_str())
        .filter(|id| cancel_requested.get(*id).copied().unwrap_or(false))
        .collect();
    for run_id in parked {
        runs::cancel(conn, backend, run_id, now).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::status::{RunStatus, StepStatus};
    use crate::store::runs::{Claim, claim, insert_runs, load_steps};
    use crate::store::testing::{TestDb, pending_run as new_run};

    fn step(index: i64, status: StepStatus) -> StepWrite {
        StepWrite {
            step_index: index,
            step_id: format!("s{index}"),
            kind: "http",
            status,
            output: Some("{}".into()),
            error: None,
            attempts: 1,
            started_at: Some(10),
            finished_at: None,
        }
    }

    fn attempt(index: i64) -> AttemptWrite {
        AttemptWrite {
            step_index: index,
            n: 1,
            node: "a".into(),
            started_at: 10,
            finished_at: 12,
            duration_ms: 2,
            request: Some("{}".into()),
            response: None,
            error: None,
        }
    }

    fn transition(run: &str, owner: &str, epoch: i64, state: RunState) -> Transition {
        Transition {
            write: RunWrite {
                run_id: run.into(),
                owner: owner.into(),
                epoch,
                state,
                steps: vec![step(0, StepStatus::Succeeded)],
                attempts: vec![attempt(0)],
            },
            lease_expires_at: 5_000,
        }
    }

    async fn row(db: &TestDb, id: &str) -> (String, i32, Option<String>, Option<i64>, Option<i64>) {
        let sql = "SELECT status, next_step, lease_owner, due_at, wake_at FROM runs WHERE id = ?";
        let r = Conn::query_one_raw(
            db.store.reader(),
            stmt(db.store.backend(), sql, vec![id.to_string().into()]),
        )
        .await
        .unwrap()
        .unwrap();
        (
            get(&r, "status").unwrap(),
            get(&r, "next_step").unwrap(),
            get(&r, "lease_owner").unwrap(),
            get(&r, "due_at").unwrap(),
            get(&r, "wake_at").unwrap(),
        )
    }

    /// One batch of three states, a run whose lease is lost and a parked run asked to cancel:
    /// each run gets exactly its own outcome, and the lost one gets nothing written.
    #[tokio::test]
    async fn a_batch_applies_each_run_on_its_own_lease() {
        for db in TestDb::all().await {
            let (store, backend) = (&db.store, db.store.backend());
            let ids = ["run", "wait", "done", "lost", "parked"];
            insert_runs(store.writer(), backend, &ids.map(|id| new_run(id, 1)))
                .await
                .unwrap();
            let claim_all = Claim {
                owner: "a",
                now: 100,
                lease_ms: 1_000,
                limit: 10,
                skip_flows: &[],
                only_flow: None,
                started: None,
                ordered: false,
                workspaces: Default::default(),
            };
            let claimed = claim(store.writer(), backend, &claim_all).await.unwrap();
            assert_eq!(claimed.len(), ids.len());
            let epoch = claimed[0].epoch;
            crate::store::runs::cancel(store.writer(), backend, "parked", 150)
                .await
                .unwrap();

            let waiting = RunState::Waiting {
                next_step: 0,
                wake_at: 9_000,
                due_at: 8_000,
            };
            let batch = [
                transition("run", "a", epoch, RunState::Running { next_step: 1 }),
                transition("wait", "a", epoch, waiting.clone()),
                transition(
                    "done",
                    "a",
                    epoch,
                    RunState::Finished {
                        status: RunStatus::Failed,
                        error: Some("boom".into()),
                        finished_at: 200,
                    },
                ),
                transition("lost", "a", epoch + 1, RunState::Running { next_step: 1 }),
                transition("parked", "a", epoch, waiting),
            ];
            let txn = store.begin_write().await.unwrap();
            let applied = apply_many(&txn, backend, &batch.iter().collect::<Vec<_>>(), 300)
                .await
                .unwrap();
            txn.commit().await.unwrap();

            let flags: Vec<_> = applied
                .iter()
                .map(|a| a.as_ref().map(|a| a.cancel_requested).ok())
                .collect();
            assert_eq!(
                flags,
                [Some(false), Some(false), Some(false), None, Some(true)]
            );
            assert!(matches!(applied[3], Err(StoreError::LeaseLost)));

            let running = row(&db, "run").await;
            assert_eq!(
                running,
                ("running".into(), 1, Some("a".into()), Some(5_000), None)
            );
            let wait = row(&db, "wait").await;
            assert_eq!(wait, ("waiting".into(), 0, None, Some(8_000), Some(9_000)));
            let done = row(&db, "done").await;
            assert_eq!((done.0.as_str(), done.2, done.3), ("failed", None, None));
            assert_eq!(row(&db, "lost").await.0, "running");
            assert_eq!(row(&db, "parked").await.0, "cancelled");

            let all: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
            let steps = load_steps(store.reader(), backend, &all).await.unwrap();
            let with_steps: HashSet<&str> = steps.iter().map(|s| s.run_id.as_str()).collect();
            assert_eq!(
                with_steps,
                HashSet::from(["run", "wait", "done", "parked"]),
                "the run whose lease was lost must get no step rows"
            );
            db.cleanup().await;
        }
    }
}
