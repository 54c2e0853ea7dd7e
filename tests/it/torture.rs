//! Crash torture of the real `flowd serve` (#21, SPEC §5): runs of map → http → http against a
//! target that answers after 0–50 ms, while the process is killed with SIGKILL again and again at
//! seeded random moments and restarted on the same database each time. Afterwards: every
//! acknowledged run succeeded, once per event; no step has two succeeded attempts; every request
//! for one (run, step) carried that pair's `Idempotency-Key`; and re-deliveries stay within what
//! the kills can explain.
//!
//! A kill moment is counted in deliveries, not in time: "after the next k requests reach the
//! target", k drawn from the seeded generator (sometimes 0: a kill right after the start, during
//! recovery). That spreads the kills over the work on a fast or a loaded machine alike. The seed
//! is printed; `FLOWD_TORTURE_SEED=<seed>` replays one.
//!
//! CI sizes: 1,000 runs and 20 kills on SQLite (`synchronous=NORMAL` and `FULL`) and PostgreSQL
//! (when `FLOWD_TEST_DATABASE_URL` is set). The long versions (`--ignored`): 10,000 runs and 200
//! kills.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use flowd::store::testing::TestDb;
use serde_json::{Value, json};

use crate::support::api::Api;
use crate::support::checks::succeeded_with_steps;
use crate::support::flowd::{FlowdEnv, FlowdProcess};
use crate::support::sink::{Recorded, Sink};

/// Runs executing at once: with the kills, the bound on re-deliveries.
const WORKERS: usize = 8;
/// Events per `POST /api/v1/events`.
const BATCH: usize = 50;
/// The target's answers take 0–50 ms.
const TARGET_SPREAD: Duration = Duration::from_millis(50);
/// The HTTP steps, in flow order.
const HTTP_STEPS: [&str; 2] = ["first", "second"];
/// At most this many problems are listed in a failure message.
const SHOWN_PROBLEMS: usize = 30;

/// How big one torture is.
#[derive(Clone, Copy)]
struct Size {
    runs: usize,
    kills: usize,
}

const CI: Size = Size {
    runs: 1_000,
    kills: 20,
};
const LONG: Size = Size {
    runs: 10_000,
    kills: 200,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_torture_on_sqlite() {
    on_sqlite(CI, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_torture_on_sqlite_with_full_sync() {
    on_sqlite(CI, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_torture_on_postgres() {
    on_postgres(CI).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: 10,000 runs and 200 kills; run with --ignored"]
async fn crash_torture_on_sqlite_long() {
    on_sqlite(LONG, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: 10,000 runs and 200 kills; run with --ignored"]
async fn crash_torture_on_sqlite_with_full_sync_long() {
    on_sqlite(LONG, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: 10,000 runs and 200 kills; run with --ignored"]
async fn crash_torture_on_postgres_long() {
    on_postgres(LONG).await;
}

async fn on_sqlite(size: Size, full_sync: bool) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("flowd.db").display());
    let sync = if full_sync { "full" } else { "normal" };
    torture(size, &url, dir.path(), &[("FLOWD_SQLITE_SYNC", sync)]).await;
}

async fn on_postgres(size: Size) {
    // Prints "skipped: FLOWD_TEST_DATABASE_URL not set" when there is no server (fatal in CI).
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    torture(size, &db.url, dir.path(), &[]).await;
    db.cleanup().await;
}

async fn torture(size: Size, database_url: &str, dir: &Path, extra: &[(&str, &str)]) {
    let seed = seed();
    let mut rng = SplitMix(seed);
    println!("crash torture: seed {seed} (replay with FLOWD_TORTURE_SEED={seed})");
    let sink = Sink::start().await;
    sink.set_random_delay(TARGET_SPREAD);
    let flows = dir.join("flows");
    std::fs::create_dir_all(&flows).expect("create the flows folder");
    std::fs::write(flows.join("torture.yaml"), torture_flow(&sink)).expect("write the flow");
    let env = FlowdEnv {
        workers: WORKERS,
        lease: "2s".to_owned(),
        extra: extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..FlowdEnv::new(database_url, flows)
    };
    let feed = Feed::new(size.runs);
    let began = Instant::now();
    // Deliveries between two kills, on average: the work (two per run) spread over the kills.
    let mean_gap = (2 * size.runs / (size.kills + 1)).max(1) as u64;
    let mut tails = Vec::new();
    for _ in 0..size.kills {
        let mut process = FlowdProcess::start(&env).await;
        check_sync_mode(&process, extra);
        let feeder = tokio::spawn(feed.clone().post_all(process.api()));
        let gap = if rng.below(10) == 0 {
            0
        } else {
            1 + rng.below(2 * mean_gap)
        };
        let target = sink.count() + gap as usize;
        // Nothing left to deliver makes the count stall; then the kill comes after the wait.
        sink.wait_for(|r| r.len() >= target, Duration::from_secs(20))
            .await;
        process.kill_9().await;
        if let Ok(Err(error)) = feeder.await {
            println!("posting stopped at the kill: {error}");
        }
        tails.push(process.stderr_tail());
        tails.truncate(2);
    }
    let last = FlowdProcess::start(&env).await;
    let api = last.api();
    if let Err(error) = feed.clone().post_all(api.clone()).await {
        panic!(
            "posting after the last restart failed: {error}\n{}",
            last.stderr_tail()
        );
    }
    let acks = feed.acks();
    let run_ids: Vec<String> = acks.values().flatten().cloned().collect();
    let runs = api
        .wait_until_all_terminal(&run_ids, Duration::from_secs(600))
        .await
        .unwrap_or_else(|e| panic!("{e}\nseed {seed}\n{}", last.stderr_tail()));
    let stored = api
        .list_runs(None)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", last.stderr_tail()));
    let report = check(&feed, &acks, &runs, &stored, &sink.requests(), size.kills);
    println!(
        "crash torture ({}): {} runs, {} kills, seed {seed}: all terminal after {:?}; {report}",
        database_url.split(':').next().unwrap_or("?"),
        size.runs,
        size.kills,
        began.elapsed(),
    );
    if !report.problems.is_empty() {
        let shown = report.problems.len().min(SHOWN_PROBLEMS);
        panic!(
            "crash torture broke a guarantee ({} problems, first {shown}; replay with \
             FLOWD_TORTURE_SEED={seed}):\n- {}\n{report}\n{}\n{}",
            report.problems.len(),
            report.problems[..shown].join("\n- "),
            tails.join("\n"),
            last.stderr_tail()
        );
    }
}

/// The SQLite synchronous mode asked for is the one the process opened the database with.
fn check_sync_mode(process: &FlowdProcess, extra: &[(&str, &str)]) {
    let Some((_, sync)) = extra.iter().find(|(k, _)| *k == "FLOWD_SQLITE_SYNC") else {
        return;
    };
    let expected = format!("sync_full={}", *sync == "full");
    let (lines, _) = process.output_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("Database opened.") && l.contains(&expected)),
        "flowd did not log \"Database opened.\" with {expected}\n{}",
        process.stderr_tail()
    );
}

/// What the check found: counts for the log line, and every broken guarantee.
struct Report {
    requests: usize,
    /// (run, step) pairs the target accepted more than once.
    redelivered: usize,
    problems: Vec<String>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "target: {} requests, {} (run, step) pairs accepted more than once",
            self.requests, self.redelivered
        )
    }
}

fn check(
    feed: &Feed,
    acks: &HashMap<String, Vec<String>>,
    runs: &HashMap<String, Value>,
    stored: &[Value],
    requests: &[Recorded],
    kills: usize,
) -> Report {
    let mut problems = Vec::new();
    for event_id in &feed.event_ids {
        match acks.get(event_id).map(Vec::len) {
            Some(1) => {}
            None => problems.push(format!("event {event_id} was never acknowledged")),
            Some(n) => problems.push(format!("event {event_id} started {n} runs")),
        }
    }
    if stored.len() != runs.len() {
        problems.push(format!(
            "{} runs are stored, {} were acknowledged",
            stored.len(),
            runs.len()
        ));
    }
    for (id, run) in runs {
        problems.extend(check_run(id, run));
    }
    // Every request names its run and step in the body; the key must be that pair's.
    let mut accepted: HashMap<(String, String), usize> = HashMap::new();
    for request in requests {
        let body = request.json().unwrap_or_default();
        let (Some(run), Some(step)) = (body["run"].as_str(), body["step"].as_str()) else {
            problems.push(format!("a request without run and step: {request:?}"));
            continue;
        };
        let expected = format!("{run}_{step}");
        if request.idempotency_key() != Some(expected.as_str()) {
            problems.push(format!(
                "a request for {expected} carried Idempotency-Key {:?}",
                request.idempotency_key()
            ));
        }
        if !runs.contains_key(run) {
            problems.push(format!(
                "a request for run {run}, which nobody acknowledged"
            ));
        }
        if request.accepted() {
            *accepted
                .entry((run.to_owned(), step.to_owned()))
                .or_insert(0) += 1;
        }
    }
    for id in runs.keys() {
        for step in HTTP_STEPS {
            if !accepted.contains_key(&(id.clone(), step.to_owned())) {
                problems.push(format!("the target never accepted step {step} of run {id}"));
            }
        }
    }
    // A kill repeats at most the steps in flight then: one per worker.
    let redelivered = accepted.values().filter(|&&n| n > 1).count();
    if redelivered > kills * WORKERS {
        problems.push(format!(
            "{redelivered} steps were delivered more than once; {kills} kills with {WORKERS} \
             workers explain at most {}",
            kills * WORKERS
        ));
    }
    Report {
        requests: requests.len(),
        redelivered,
        problems,
    }
}

/// A run succeeded with every step, and no step has two succeeded attempts.
fn check_run(id: &str, run: &Value) -> Vec<String> {
    let mut problems = succeeded_with_steps(id, run, &["label", "first", "second"]);
    for step in run["steps"].as_array().into_iter().flatten() {
        let succeeded = step["attempts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["error"].is_null())
            .count();
        if succeeded > 1 {
            problems.push(format!(
                "run {id}: step {} has {succeeded} succeeded attempts",
                step["id"]
            ));
        }
    }
    problems
}

/// The events of one torture, posted in batches across the restarts, and their answers.
struct Feed {
    event_ids: Vec<String>,
    queue: Mutex<VecDeque<Vec<Value>>>,
    acks: Mutex<HashMap<String, Vec<String>>>,
}

impl Feed {
    fn new(runs: usize) -> Arc<Feed> {
        let prefix = uuid::Uuid::now_v7().simple().to_string();
        let events: Vec<Value> = (0..runs)
            .map(|n| {
                json!({
                    "entity": "parcel",
                    "action": "create",
                    "id": n.to_string(),
                    "data": {"n": n},
                    "event_id": format!("{prefix}-{n}"),
                })
            })
            .collect();
        Arc::new(Feed {
            event_ids: events
                .iter()
                .map(|e| e["event_id"].as_str().unwrap_or_default().to_owned())
                .collect(),
            queue: Mutex::new(events.chunks(BATCH).map(<[Value]>::to_vec).collect()),
            acks: Mutex::new(HashMap::new()),
        })
    }

    /// Posts the queued batches until none is left or a post fails; a failed batch goes back
    /// to the queue and is posted again (same event ids) after the restart.
    async fn post_all(self: Arc<Feed>, api: Api) -> Result<(), String> {
        loop {
            let Some(batch) = self.lock_queue().pop_front() else {
                return Ok(());
            };
            match api.post_events(&batch).await {
                Ok(acks) => {
                    let mut known = self.acks.lock().unwrap_or_else(PoisonError::into_inner);
                    for ack in acks {
                        known.insert(ack.event_id, ack.runs);
                    }
                }
                Err(error) => {
                    self.lock_queue().push_front(batch);
                    return Err(error);
                }
            }
        }
    }

    fn acks(&self) -> HashMap<String, Vec<String>> {
        self.acks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Vec<Value>>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `FLOWD_TORTURE_SEED`, or a fresh one.
fn seed() -> u64 {
    std::env::var("FLOWD_TORTURE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        // The low 62 bits of a UUIDv7 are random; no extra crate for one number.
        .unwrap_or_else(|| uuid::Uuid::now_v7().as_u128() as u64)
}

/// SplitMix64: a tiny seedable generator, enough to pick kill moments reproducibly.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn torture_flow(sink: &Sink) -> String {
    format!(
        r#"id: torture
triggers:
  - entity: parcel
    on: [create]
settings:
  retry: {{attempts: 30, delay: 100ms, max_delay: 1s}}
steps:
  - id: label
    map: {{run: "{{{{run.id}}}}", parcel: "{{{{entity.id}}}}"}}
  - id: first
    http:
      url: "{first}"
      body: {{run: "{{{{steps.label.run}}}}", step: first, parcel: "{{{{steps.label.parcel}}}}"}}
      timeout: 5s
  - id: second
    http:
      url: "{second}"
      body: {{run: "{{{{steps.label.run}}}}", step: second, parcel: "{{{{steps.label.parcel}}}}"}}
      timeout: 5s
"#,
        first = sink.url("/first"),
        second = sink.url("/second"),
    )
}
