//! Usage and active-run counts on hand-made rows spanning days, flows, statuses and step
//! kinds, on SQLite and (when configured) PostgreSQL.

use sea_orm::{ActiveModelTrait, IntoActiveModel};

use super::*;
use crate::core::status::StepStatus;
use crate::store::entity::{attempts, runs, step_runs};
use crate::store::testing::TestDb;

/// 2026-11-22T00:00:00Z.
const NOV_22: i64 = 1_795_305_600_000;
const HOUR: i64 = 3_600_000;

fn date(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

/// A run: id, flow, status, creation time, rate-limited waits, and (kind, attempts) per step.
type RunSpec<'a> = (&'a str, &'a str, &'a str, i64, i32, &'a [(&'a str, i32)]);

async fn insert(conn: &impl ConnectionTrait, spec: RunSpec<'_>) {
    let (id, flow, status, created_at, waits, steps) = spec;
    let finished = ["succeeded", "failed", "cancelled"].contains(&status);
    runs::Model {
        id: id.into(),
        flow_id: flow.into(),
        revision: 1,
        status: status.parse().unwrap(),
        trigger: "{}".into(),
        entity: None,
        entity_id: None,
        next_step: 0,
        attempt: 1,
        due_at: (!finished).then_some(created_at),
        wake_at: None,
        lease_owner: None,
        lease_epoch: 1,
        lease_expires_at: None,
        cancel_requested: false,
        deadline_at: None,
        rate_limited_waits: waits,
        order_key: None,
        error: None,
        created_at,
        // Started and finished on a later day: usage still counts the run on its creation day.
        started_at: Some(created_at + 30 * HOUR),
        finished_at: finished.then_some(created_at + 31 * HOUR),
    }
    .into_active_model()
    .insert(conn)
    .await
    .unwrap();
    for (index, (kind, tries)) in steps.iter().enumerate() {
        insert_step(conn, id, index as i32, kind, *tries).await;
    }
}

async fn insert_step(
    conn: &impl ConnectionTrait,
    run_id: &str,
    index: i32,
    kind: &str,
    tries: i32,
) {
    step_runs::Model {
        run_id: run_id.into(),
        step_index: index,
        step_id: format!("s{index}"),
        kind: kind.into(),
        status: StepStatus::Succeeded,
        output: None,
        error: None,
        attempts: tries,
        retry_base: 0,
        started_at: None,
        finished_at: None,
    }
    .into_active_model()
    .insert(conn)
    .await
    .unwrap();
    for n in 1..=tries {
        attempts::Model {
            run_id: run_id.into(),
            step_index: index,
            n,
            node: "n".into(),
            started_at: 0,
            finished_at: 0,
            duration_ms: 0,
            request: Some("{}".into()),
            response: None,
            error: None,
        }
        .into_active_model()
        .insert(conn)
        .await
        .unwrap();
    }
}

async fn fill(store: &crate::store::Store) {
    let w = store.writer();
    let http2_notify1: &[(&str, i32)] = &[("map", 0), ("http", 2), ("notify", 1)];
    let runs: [RunSpec; 7] = [
        ("a1", "sync", "succeeded", NOV_22 + HOUR, 0, http2_notify1),
        (
            "a2",
            "sync",
            "succeeded",
            NOV_22 + 2 * HOUR,
            1,
            &[("http", 1)],
        ),
        (
            "a3",
            "sync",
            "failed",
            NOV_22 + 23 * HOUR,
            2,
            &[("http", 3)],
        ),
        ("a4", "sync", "running", NOV_22 + 24 * HOUR, 0, &[]),
        (
            "b1",
            "alert",
            "cancelled",
            NOV_22 + 5 * HOUR,
            0,
            &[("notify", 4)],
        ),
        ("b2", "alert", "pending", NOV_22 - 1, 5, &[]),
        (
            "c1",
            "Zeta",
            "waiting",
            NOV_22 + 3 * HOUR,
            0,
            &[("http", 1)],
        ),
    ];
    for spec in runs {
        insert(w, spec).await;
    }
}

fn row(flow: &str, day: &str, counts: [i64; 5]) -> DayUsage {
    DayUsage {
        flow_id: flow.into(),
        day: date(day),
        runs_started: counts[0],
        runs_succeeded: counts[1],
        runs_failed: counts[2],
        http_attempts: counts[3],
        rate_limited_waits: counts[4],
        quota_held: 0,
    }
}

#[tokio::test]
async fn usage_groups_runs_by_flow_and_creation_day() {
    for db in TestDb::all().await {
        let (store, backend) = (&db.store, db.store.backend());
        fill(store).await;
        let all = UsageFilter {
            flow: None,
            since: NOV_22 - 10 * DAY_MS,
            until: NOV_22 + 10 * DAY_MS,
        };
        let rows = usage(store.reader(), backend, &all).await.unwrap();
        assert_eq!(
            rows,
            vec![
                row("sync", "2026-11-23", [1, 0, 0, 0, 0]),
                // Byte order: upper-case before lower-case, on both backends.
                row("Zeta", "2026-11-22", [1, 0, 0, 1, 0]),
                row("alert", "2026-11-22", [1, 0, 0, 0, 0]),
                row("sync", "2026-11-22", [3, 2, 1, 6, 3]),
                row("alert", "2026-11-21", [1, 0, 0, 0, 5]),
            ],
            "{backend}"
        );

        let one_flow = UsageFilter {
            flow: Some("sync".into()),
            ..all.clone()
        };
        let rows = usage(store.reader(), backend, &one_flow).await.unwrap();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert!(rows.iter().all(|r| r.flow_id == "sync"));

        // The window is [since, until): the run at 23:00 is out, the one at midnight in.
        let window = UsageFilter {
            flow: None,
            since: NOV_22,
            until: NOV_22 + 23 * HOUR,
        };
        let rows = usage(store.reader(), backend, &window).await.unwrap();
        let sync = rows.iter().find(|r| r.flow_id == "sync").unwrap();
        assert_eq!(*sync, row("sync", "2026-11-22", [2, 2, 0, 3, 1]));
        assert_eq!(rows.len(), 3, "{rows:?}");

        let empty = UsageFilter {
            flow: Some("nope".into()),
            ..all
        };
        assert!(
            usage(store.reader(), backend, &empty)
                .await
                .unwrap()
                .is_empty()
        );
        db.cleanup().await;
    }
}

#[tokio::test]
async fn active_runs_count_unfinished_runs_by_status() {
    for db in TestDb::all().await {
        let (store, backend) = (&db.store, db.store.backend());
        assert_eq!(
            active_runs(store.reader(), backend).await.unwrap(),
            ActiveRuns::default()
        );
        fill(store).await;
        assert_eq!(
            active_runs(store.reader(), backend).await.unwrap(),
            ActiveRuns {
                pending: 1,
                running: 1,
                waiting: 1,
                held: 0,
            },
            "{backend}"
        );
        db.cleanup().await;
    }
}

/// A run fails, is folded into the rollup, is retried (taken out again), succeeds with one more
/// HTTP attempt, is folded again and pruned: at every step usage counts it once, as written
/// out by hand here.
#[tokio::test]
async fn a_retried_run_is_counted_once_through_fold_retry_and_pruning() {
    use crate::store::retention::{Scope, prune_runs};
    use crate::store::runs::retry;
    for db in TestDb::all().await {
        let (store, backend) = (&db.store, db.store.backend());
        let conn = store.writer();
        insert(conn, ("r1", "a", "failed", NOV_22, 1, &[("http", 2)])).await;
        insert(
            conn,
            ("r2", "a", "succeeded", NOV_22 + HOUR, 0, &[("http", 1)]),
        )
        .await;
        insert(
            conn,
            ("r3", "a", "running", NOV_22 + 2 * HOUR, 2, &[("http", 1)]),
        )
        .await;
        let window = UsageFilter {
            flow: None,
            since: NOV_22,
            until: NOV_22 + DAY_MS,
        };
        let read = || async { usage(store.reader(), backend, &window).await.unwrap() };
        let failed_once = vec![row("a", "2026-11-22", [3, 1, 1, 4, 3])];
        assert_eq!(read().await, failed_once);

        let fold = || async {
            let txn = store.begin_write().await.unwrap();
            let folded = rollup::fold_finished(&txn, backend, 10).await.unwrap();
            txn.commit().await.unwrap();
            folded
        };
        assert_eq!(fold().await, 2, "the two finished runs are folded");
        assert_eq!(fold().await, 0, "and only once");
        assert_eq!(read().await, failed_once);
        // A window that cuts the day counts the cut part from the runs, folded or not.
        let cut = UsageFilter {
            since: NOV_22 + 1,
            ..window.clone()
        };
        assert_eq!(
            usage(store.reader(), backend, &cut).await.unwrap(),
            vec![row("a", "2026-11-22", [2, 1, 0, 2, 2])]
        );

        let txn = store.begin_write().await.unwrap();
        assert!(
            retry(&txn, backend, "r1", NOV_22 + 3 * HOUR, None)
                .await
                .unwrap()
        );
        txn.commit().await.unwrap();
        // Started still, neither failed nor succeeded while it runs again.
        assert_eq!(read().await, vec![row("a", "2026-11-22", [3, 1, 0, 4, 3])]);

        let finish = [
            "UPDATE runs SET status = 'succeeded', finished_at = created_at + 1 WHERE id IN ('r1', 'r3')",
            "UPDATE step_runs SET attempts = attempts + 1 WHERE run_id = 'r1'",
        ];
        for sql in finish {
            conn.execute_raw(stmt(backend, sql, vec![])).await.unwrap();
        }
        let succeeded = vec![row("a", "2026-11-22", [3, 3, 0, 5, 3])];
        assert_eq!(read().await, succeeded);
        assert_eq!(fold().await, 2, "the retried run and the third one");
        assert_eq!(read().await, succeeded);

        let txn = store.begin_write().await.unwrap();
        let cutoff = NOV_22 + DAY_MS * 10;
        assert_eq!(
            prune_runs(&txn, backend, &Scope::AllBut(&[]), cutoff, 10)
                .await
                .unwrap(),
            3
        );
        txn.commit().await.unwrap();
        assert_eq!(read().await, succeeded, "pruned runs stay counted once");
        db.cleanup().await;
    }
}

/// The figure for docs/performance.md: usage over 30 days of 1,000,000 runs (20 flows, one
/// `http` step each, a tenth failed, 1,000 still running) in a SQLite file, counted live as
/// before the rollup, then read from the rollup after the background fold took the finished
/// runs in. Run with `cargo test --lib usage_over_a_million_runs -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "a measurement: fills a SQLite file with 1,000,000 runs (minutes)"]
async fn usage_over_a_million_runs() {
    const RUNS: i64 = 1_000_000;
    const IN_FLIGHT: i64 = 1_000;
    let db = TestDb::sqlite().await;
    let (store, backend) = (&db.store, db.store.backend());
    let spacing = 30 * DAY_MS / RUNS;
    let fill = [
        format!(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {RUNS} - 1) \
             INSERT INTO runs (id, flow_id, revision, status, trigger, next_step, attempt, lease_epoch, \
               cancel_requested, rate_limited_waits, created_at, started_at, finished_at) \
             SELECT printf('r%07d', i), 'flow' || (i % 20), 1, \
               CASE WHEN i >= {RUNS} - {IN_FLIGHT} THEN 'running' WHEN i % 10 = 0 THEN 'failed' ELSE 'succeeded' END, \
               '{{}}', 1, 1, 1, FALSE, i % 3, {NOV_22} + i * {spacing}, {NOV_22} + i * {spacing}, \
               CASE WHEN i >= {RUNS} - {IN_FLIGHT} THEN NULL ELSE {NOV_22} + i * {spacing} + 50 END FROM n"
        ),
        "INSERT INTO step_runs (run_id, step_index, step_id, kind, status, attempts, retry_base) \
         SELECT id, 0, 's0', 'http', 'succeeded', 1 + rate_limited_waits, 0 FROM runs"
            .to_string(),
    ];
    for sql in fill {
        store
            .writer()
            .execute_raw(stmt(backend, &sql, vec![]))
            .await
            .unwrap();
    }
    let window = UsageFilter {
        flow: None,
        since: NOV_22,
        until: NOV_22 + 30 * DAY_MS,
    };
    let timed = || async {
        let started = std::time::Instant::now();
        let rows = usage(store.reader(), backend, &window).await.unwrap();
        (rows, started.elapsed())
    };
    let (live, live_took) = timed().await;
    let mut folded_runs = 0;
    loop {
        let txn = store.begin_write().await.unwrap();
        let folded = rollup::fold_finished(&txn, backend, 1_000).await.unwrap();
        txn.commit().await.unwrap();
        if folded == 0 {
            break;
        }
        folded_runs += folded;
    }
    assert_eq!(folded_runs as i64, RUNS - IN_FLIGHT);
    let mut took = Vec::new();
    for _ in 0..5 {
        let (rows, elapsed) = timed().await;
        assert_eq!(rows, live, "the rollup answers what the live count did");
        took.push(elapsed);
    }
    let started: i64 = live.iter().map(|d| d.runs_started).sum();
    assert_eq!(started, RUNS);
    eprintln!(
        "usage over {RUNS} runs, {} flow-days: counted live {live_took:?}; from the rollup {took:?}",
        live.len()
    );
    db.cleanup().await;
}

#[test]
fn a_window_splits_into_whole_days_and_cut_parts() {
    let day = |n: i64| n * DAY_MS;
    let w = Window::of(day(3), day(5));
    assert_eq!((w.whole_days, w.cut_parts()), (Some((3, 5)), vec![]));
    let w = Window::of(day(3) - HOUR, day(5) + HOUR);
    assert_eq!(
        (w.whole_days, w.cut_parts()),
        (
            Some((3, 5)),
            vec![(day(3) - HOUR, day(3)), (day(5), day(5) + HOUR)]
        )
    );
    let w = Window::of(day(3) + HOUR, day(3) + 2 * HOUR);
    assert_eq!(
        (w.whole_days, w.cut_parts()),
        (None, vec![(day(3) + HOUR, day(3) + 2 * HOUR)])
    );
    let w = Window::of(day(3) + HOUR, day(4) + HOUR);
    assert_eq!(
        (w.whole_days, w.cut_parts()),
        (None, vec![(day(3) + HOUR, day(4) + HOUR)])
    );
}
