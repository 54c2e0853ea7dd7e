//! End-to-end crash tests of the persisted runner (SPEC §5): the real `flowd serve` binary is fed
//! events over HTTP, killed with SIGKILL at a random moment, and started again on the same
//! database. Every acknowledged run must then finish, each step exactly once as recorded, and
//! each HTTP side effect must have reached a local sink at least once, with re-deliveries only
//! for steps that were in flight at the kill. A second test checks that a durable `delay` outlives
//! a restart. Both drive the binary only through its environment and REST API, as a user would.
//!
//! The PostgreSQL variant runs when `FLOWD_TEST_DATABASE_URL` is set, on a fresh database.
//! The kill moment is random; set `FLOWD_CRASH_KILL_AFTER_MS` to replay a failing one.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use flowd::store::testing::TestDb;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::support::api::{Api, EventAck};
use crate::support::checks::succeeded_with_steps;
use crate::support::flowd::{FlowdEnv, FlowdProcess};
use crate::support::sink::{Behaviour, Failure, Sink};

const EVENTS: usize = 500;
const BATCH: usize = 50;
const FEEDERS: usize = 4;
/// `FLOWD_WORKERS`: also the bound on steps in flight, hence on re-deliveries per kill.
const WORKERS: usize = 16;
/// Generous for a loaded 2-core machine: the runs themselves need a few seconds plus the lease.
const ALL_TERMINAL: Duration = Duration::from_secs(180);
/// Where a kill may fall, counted from the first acknowledged batch.
const KILL_AFTER_MS: std::ops::Range<u64> = 100..1500;
/// The push step's steps, in flow order.
const CRASH_STEPS: [&str; 4] = ["contact", "push", "cool_off", "done"];
/// At most this many problems are listed in a failure message.
const SHOWN_PROBLEMS: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_and_restart_loses_nothing_on_sqlite() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("flowd.db").display());
    crash_and_restart(&url, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_and_restart_loses_nothing_on_postgres() {
    // Prints "skipped: FLOWD_TEST_DATABASE_URL not set" when there is no server.
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    crash_and_restart(&db.url, dir.path()).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_survives_a_restart() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("flowd.db").display());
    let flows = write_flow(dir.path(), "delayed-guest.yaml", &delay_flow(&sink));
    let env = FlowdEnv::new(url, flows);

    let mut first = FlowdProcess::start(&env).await;
    let posted_at = Instant::now();
    let acks = first
        .api()
        .post_events(&[guest_event("delay", 7)])
        .await
        .unwrap_or_else(|e| panic!("posting the event failed: {e}\n{}", first.stderr_tail()));
    let run_id = only_run(&acks).unwrap_or_else(|e| panic!("{e}\n{}", first.stderr_tail()));
    let waiting = first
        .api()
        .wait_for_run(
            &run_id,
            |run| run["status"] == "waiting",
            Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", first.stderr_tail()));
    println!("run {run_id} is waiting: {waiting}");

    let mut problems = Vec::new();
    // An orderly stop this time (the other tests crash): SPEC §7 says SIGTERM stops gracefully.
    match first.terminate(Duration::from_secs(30)).await {
        Ok(status) if status.success() => {}
        Ok(status) => problems.push(format!("flowd exited with {status} after SIGTERM")),
        Err(error) => problems.push(error),
    }
    // Server timestamps may be stored with less precision; whole seconds compare safely.
    let restarted_at = Utc::now().trunc_subsecs(0);
    let second = FlowdProcess::start(&env).await;
    let runs = second
        .api()
        .wait_until_all_terminal(std::slice::from_ref(&run_id), Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", first.stderr_tail(), second.stderr_tail()));
    let run = &runs[&run_id];
    let report_key = format!("{run_id}_report");
    let delivered = sink
        .wait_for(
            |requests| {
                requests
                    .iter()
                    .any(|r| r.idempotency_key() == Some(&report_key))
            },
            Duration::from_secs(10),
        )
        .await;

    check_delayed_run(run, restarted_at, &mut problems);
    if !delivered {
        problems.push(format!(
            "no request with Idempotency-Key {report_key} reached the sink"
        ));
    }
    let requests = sink.requests();
    let reports: Vec<_> = requests
        .iter()
        .filter(|r| r.idempotency_key() == Some(&report_key))
        .collect();
    if reports.len() > 1 {
        problems.push(format!(
            "the step after the delay ran {} times, expected once",
            reports.len()
        ));
    }
    if let Some(report) = reports.first() {
        let expected = json!({"guest_id": "7", "waited": true});
        if report.json() != Some(expected.clone()) {
            problems.push(format!(
                "the sink got {:?}, expected {expected}",
                String::from_utf8_lossy(&report.body)
            ));
        }
        // Measured on the test's own clock, independent of what the engine records.
        let after = report.at.duration_since(posted_at);
        if after < Duration::from_secs(2) {
            problems.push(format!(
                "the step after a 2s delay ran {after:?} after the event was posted"
            ));
        }
    }
    if requests.len() != reports.len() {
        problems.push(format!("unexpected requests at the sink: {requests:?}"));
    }
    if !problems.is_empty() {
        panic!(
            "delay_survives_a_restart failed:\n- {}\nrun: {run:#}\n{}\n{}",
            problems.join("\n- "),
            first.stderr_tail(),
            second.stderr_tail()
        );
    }
}

/// Feeds `EVENTS` events, kills the engine at a random moment, restarts it, feeds the rest and
/// checks every guarantee of SPEC §5 that can be seen from outside.
async fn crash_and_restart(database_url: &str, dir: &Path) {
    // A short hold widens the window in which a push is in flight at the kill (so re-delivery
    // is exercised); the first answers fail, so retries with the same key are exercised too.
    let sink = Sink::start_with(Behaviour {
        fail_first: 20,
        failure: Failure::Status(500),
        delay: Duration::from_millis(20),
    })
    .await;
    let flows = write_flow(dir, "crash-guest.yaml", &crash_flow(&sink));
    let env = FlowdEnv {
        workers: WORKERS,
        ..FlowdEnv::new(database_url, flows)
    };
    let feed = Feed::new(&format!("crash-{}", Uuid::now_v7().simple()));
    let kill_after = kill_delay();
    let began = Instant::now();

    let mut first = FlowdProcess::start(&env).await;
    let feeders = feed.spawn(&first.api());
    if let Err(error) = feed.wait_for_first_ack(Duration::from_secs(60)).await {
        panic!("{error}\n{}", first.stderr_tail());
    }
    // The chaos itself, not synchronisation: the kill lands at a random point of the work.
    tokio::time::sleep(kill_after).await;
    first.kill_9().await;
    // After the kill every post fails at once, so the feeders end promptly.
    for error in join_feeders(feeders).await {
        println!("feeding before the kill stopped: {error}");
    }
    let acked_before_kill = feed.acked_events();
    println!(
        "killed flowd {kill_after:?} after the first 202, with {acked_before_kill} of {EVENTS} \
         events acknowledged"
    );

    let second = FlowdProcess::start(&env).await;
    let api = second.api();
    // Batches the kill interrupted are posted again with the same event ids: any that were
    // committed without an answer are answered now with their existing runs (SPEC §6).
    let errors = join_feeders(feed.spawn(&api)).await;
    if !errors.is_empty() {
        panic!(
            "posting events after the restart failed:\n{}\n{}",
            errors.join("\n"),
            second.stderr_tail()
        );
    }
    let acks = feed.acks();
    let run_ids: Vec<String> = acks.values().flatten().cloned().collect();
    let runs = api
        .wait_until_all_terminal(&run_ids, ALL_TERMINAL)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e}\nsink: {} requests\nkilled {kill_after:?} after the first 202\n{}\n{}",
                sink.count(),
                first.stderr_tail(),
                second.stderr_tail()
            )
        });
    let finished = began.elapsed();
    let stored = api
        .list_runs(None)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", second.stderr_tail()));

    let report = check_crash(&feed, &acks, &runs, &stored, &sink);
    println!(
        "{database}: {EVENTS} events, {acked_before_kill} acknowledged before the kill at \
         {kill_after:?}; all runs terminal after {finished:?}; {report}",
        database = database_url.split(':').next().unwrap_or("?"),
    );
    if !report.problems.is_empty() {
        let shown = report.problems.len().min(SHOWN_PROBLEMS);
        panic!(
            "crash and restart lost or repeated work ({} problems, first {shown}; replay with \
             FLOWD_CRASH_KILL_AFTER_MS={}):\n- {}\n{report}\n{}\n{}",
            report.problems.len(),
            kill_after.as_millis(),
            report.problems[..shown].join("\n- "),
            first.stderr_tail(),
            second.stderr_tail()
        );
    }
}

/// What the crash check found: counts for the log line, and every broken guarantee.
struct CrashReport {
    deliveries: usize,
    requests: usize,
    redelivered_keys: usize,
    problems: Vec<String>,
}

impl std::fmt::Display for CrashReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sink: {} requests, {} accepted deliveries, {} keys delivered more than once",
            self.requests, self.deliveries, self.redelivered_keys
        )
    }
}

fn check_crash(
    feed: &Feed,
    acks: &HashMap<String, Vec<String>>,
    runs: &HashMap<String, Value>,
    stored: &[Value],
    sink: &Sink,
) -> CrashReport {
    let mut problems = Vec::new();

    // Every event acknowledged, each with exactly one run of its own.
    let mut guest_of_run: HashMap<String, String> = HashMap::new();
    for (event_id, guest) in &feed.guests {
        match acks.get(event_id).map(Vec::as_slice) {
            None => problems.push(format!("event {event_id} was never acknowledged")),
            Some([run]) => {
                if let Some(other) = guest_of_run.insert(run.clone(), guest.clone()) {
                    problems.push(format!("run {run} answers for guests {other} and {guest}"));
                }
            }
            Some(runs) => problems.push(format!("event {event_id} started runs {runs:?}")),
        }
    }

    // Every acknowledged run succeeded, each step once, in order, as the flow says.
    for (run_id, run) in runs {
        problems.extend(check_crash_run(run_id, run));
    }

    // Nothing stored that was not acknowledged: a re-posted event id started nothing new.
    let stored_ids: HashSet<&str> = stored.iter().filter_map(|r| r["id"].as_str()).collect();
    for id in &stored_ids {
        if !guest_of_run.contains_key(*id) {
            problems.push(format!("run {id} is stored but no event acknowledged it"));
        }
    }
    for id in guest_of_run.keys() {
        if !stored_ids.contains(id.as_str()) {
            problems.push(format!("run {id} was acknowledged but is not listed"));
        }
    }

    // Deliveries: at least once per run, at most once more for a push in flight at the kill,
    // the same body on every attempt, and nothing for runs nobody knows about.
    let requests = sink.requests();
    let mut by_key: BTreeMap<&str, Vec<&crate::support::sink::Recorded>> = BTreeMap::new();
    for request in &requests {
        match request.idempotency_key() {
            Some(key) => by_key.entry(key).or_default().push(request),
            None => problems.push(format!("a request without Idempotency-Key: {request:?}")),
        }
        if request.method != "POST" || request.path != "/deliver" {
            problems.push(format!(
                "unexpected request {} {}",
                request.method, request.path
            ));
        }
    }
    let mut redelivered_keys = 0;
    for (run_id, guest) in &guest_of_run {
        let key = format!("{run_id}_push");
        let Some(attempts) = by_key.get(key.as_str()) else {
            problems.push(format!("no delivery reached the sink for run {run_id}"));
            continue;
        };
        let accepted = attempts.iter().filter(|r| r.accepted()).count();
        if accepted == 0 {
            problems.push(format!(
                "run {run_id}: {} attempts reached the sink, none accepted",
                attempts.len()
            ));
        }
        if accepted > 1 {
            redelivered_keys += 1;
        }
        let expected = json!({"guest_id": guest, "email": format!("guest{guest}@example.com")});
        for attempt in attempts {
            if attempt.json().as_ref() != Some(&expected) {
                problems.push(format!(
                    "run {run_id}: delivered {:?}, expected {expected}",
                    String::from_utf8_lossy(&attempt.body)
                ));
            }
        }
    }
    for key in by_key.keys() {
        let known = key
            .strip_suffix("_push")
            .is_some_and(|run| guest_of_run.contains_key(run));
        if !known {
            problems.push(format!("a delivery with key {key} belongs to no known run"));
        }
    }
    // One kill: only the pushes in flight then (at most one per worker) may be repeated.
    if redelivered_keys > WORKERS {
        problems.push(format!(
            "{redelivered_keys} keys were delivered more than once; at most {WORKERS} pushes \
             can be in flight at one kill"
        ));
    }

    CrashReport {
        deliveries: requests.iter().filter(|r| r.accepted()).count(),
        requests: requests.len(),
        redelivered_keys,
        problems,
    }
}

/// The problems of one terminal run of the crash flow.
fn check_crash_run(run_id: &str, run: &Value) -> Vec<String> {
    let mut problems = succeeded_with_steps(run_id, run, &CRASH_STEPS);
    let steps = run["steps"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let step = |id: &str| steps.iter().find(|s| s["id"] == id);
    if let Some(push) = step("push") {
        if push["output"]["status"] != 200 {
            problems.push(format!(
                "run {run_id}: push output {}, expected status 200",
                push["output"]
            ));
        }
        if push["attempts"].as_array().is_none_or(Vec::is_empty) {
            problems.push(format!("run {run_id}: push has no recorded attempt"));
        }
    }
    if let Some(done) = step("done")
        && done["output"]["status"] != 200
    {
        problems.push(format!(
            "run {run_id}: done output {}, expected {{\"status\": 200}}",
            done["output"]
        ));
    }
    problems
}

/// The checks on the delayed run that need the engine's own timestamps.
fn check_delayed_run(run: &Value, restarted_at: DateTime<Utc>, problems: &mut Vec<String>) {
    if run["status"] != "succeeded" {
        problems.push(format!(
            "the run ended {} (error {})",
            run["status"], run["error"]
        ));
    }
    let steps = run["steps"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let ids: Vec<&str> = steps.iter().filter_map(|s| s["id"].as_str()).collect();
    let expected = ["before", "pause", "after", "report"];
    if ids != expected {
        problems.push(format!("steps {ids:?}, expected {expected:?}"));
    }
    for step in steps {
        if step["status"] != "succeeded" {
            problems.push(format!("step {} is {}", step["id"], step["status"]));
        }
    }
    let step = |id: &str| steps.iter().find(|s| s["id"] == id);
    if let Some(after) = step("after") {
        if after["output"] != json!({"guest_id": "7", "waited": true}) {
            problems.push(format!("the second map's output is {}", after["output"]));
        }
        if after["attempts"].as_array().is_some_and(|a| a.len() > 1) {
            problems.push(format!("the second map ran more than once: {after}"));
        }
    }
    if let Some(pause) = step("pause") {
        match (time(&pause["started_at"]), time(&pause["finished_at"])) {
            (Some(started), Some(finished)) => {
                // A few milliseconds of slack for where exactly the engine takes each reading.
                let waited = finished - started;
                if waited < chrono::Duration::milliseconds(1950) {
                    problems.push(format!(
                        "the 2s delay took {waited} ({started} to {finished})"
                    ));
                }
            }
            _ => problems.push(format!("the delay step's times are missing: {pause}")),
        }
    }
    match time(&run["finished_at"]) {
        // The first process must not have waited out the delay while stopping: the second
        // one has to pick the run up from the database.
        Some(finished) if finished < restarted_at => problems.push(format!(
            "the run finished at {finished}, before the restart at {restarted_at}"
        )),
        Some(_) => {}
        None => problems.push("the run has no finished_at".to_owned()),
    }
}

fn time(value: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Events waiting to be posted, in batches, and the acknowledgements so far.
struct Feed {
    /// Event id → guest (entity) id, for every event of the test.
    guests: HashMap<String, String>,
    queue: Mutex<VecDeque<Vec<Value>>>,
    /// Event id → its runs, as answered.
    acks: Mutex<HashMap<String, Vec<String>>>,
    acked: AtomicUsize,
    /// Feeders that have stopped, for or without an error.
    stopped: AtomicUsize,
}

impl Feed {
    fn new(prefix: &str) -> Arc<Feed> {
        let events: Vec<Value> = (0..EVENTS).map(|n| guest_event(prefix, n)).collect();
        let guests = events
            .iter()
            .map(|e| {
                (
                    e["event_id"].as_str().unwrap_or_default().to_owned(),
                    e["id"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let queue = events.chunks(BATCH).map(<[Value]>::to_vec).collect();
        Arc::new(Feed {
            guests,
            queue: Mutex::new(queue),
            acks: Mutex::new(HashMap::new()),
            acked: AtomicUsize::new(0),
            stopped: AtomicUsize::new(0),
        })
    }

    /// Starts `FEEDERS` tasks posting the queued batches to `api`. A feeder stops at its first
    /// error and puts the batch back: after a kill, every later post would fail too.
    fn spawn(self: &Arc<Feed>, api: &Api) -> JoinSet<Result<(), String>> {
        self.stopped.store(0, Ordering::SeqCst);
        let mut feeders = JoinSet::new();
        for _ in 0..FEEDERS {
            let (feed, api) = (self.clone(), api.clone());
            feeders.spawn(async move {
                let result = feed.run(&api).await;
                feed.stopped.fetch_add(1, Ordering::SeqCst);
                result
            });
        }
        feeders
    }

    async fn run(&self, api: &Api) -> Result<(), String> {
        loop {
            let Some(batch) = self.lock_queue().pop_front() else {
                return Ok(());
            };
            match api.post_events(&batch).await {
                Ok(acks) => self.record(&batch, acks)?,
                Err(error) => {
                    self.lock_queue().push_back(batch);
                    return Err(error);
                }
            }
        }
    }

    fn record(&self, batch: &[Value], acks: Vec<EventAck>) -> Result<(), String> {
        let mut known = self.acks.lock().unwrap_or_else(PoisonError::into_inner);
        for (event, ack) in batch.iter().zip(acks) {
            if event["event_id"] != ack.event_id.as_str() {
                return Err(format!(
                    "posted event {} was answered as {}",
                    event["event_id"], ack.event_id
                ));
            }
            known.insert(ack.event_id, ack.runs);
        }
        self.acked.fetch_add(batch.len(), Ordering::SeqCst);
        Ok(())
    }

    /// Polls until a batch was acknowledged; fails when the deadline passes or every feeder
    /// gave up first.
    async fn wait_for_first_ack(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.acked.load(Ordering::SeqCst) > 0 {
                return Ok(());
            }
            if self.stopped.load(Ordering::SeqCst) == FEEDERS {
                return Err("every feeder failed before any event was acknowledged".to_owned());
            }
            if Instant::now() >= deadline {
                return Err(format!("no event was acknowledged within {timeout:?}"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn acked_events(&self) -> usize {
        self.acked.load(Ordering::SeqCst)
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

/// Waits for every feeder and returns their errors.
async fn join_feeders(mut feeders: JoinSet<Result<(), String>>) -> Vec<String> {
    let mut errors = Vec::new();
    while let Some(joined) = feeders.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(error)) => errors.push(error),
            Err(error) => errors.push(format!("a feeder panicked: {error}")),
        }
    }
    errors
}

/// A random point in `KILL_AFTER_MS`, or `FLOWD_CRASH_KILL_AFTER_MS` to replay one.
fn kill_delay() -> Duration {
    if let Some(ms) = std::env::var("FLOWD_CRASH_KILL_AFTER_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return Duration::from_millis(ms);
    }
    // The low 62 bits of a UUIDv7 are random; no extra crate needed for one number.
    let random = Uuid::now_v7().as_u128() as u64;
    let span = KILL_AFTER_MS.end - KILL_AFTER_MS.start;
    Duration::from_millis(KILL_AFTER_MS.start + random % span)
}

/// Guest `n` created: its id and e-mail are what the flow maps and delivers.
fn guest_event(prefix: &str, n: usize) -> Value {
    let id = n.to_string();
    json!({
        "entity": "guest",
        "action": "create",
        "id": id,
        // The id is in the data too, so `{{entity.id}}` works whether or not flowd adds it.
        "data": {"id": id, "email": format!("guest{n}@example.com")},
        "event_id": format!("{prefix}-{n}"),
    })
}

/// The single run of a single acknowledged event.
fn only_run(acks: &[EventAck]) -> Result<String, String> {
    match acks {
        [EventAck { runs, .. }] if runs.len() == 1 => Ok(runs[0].clone()),
        _ => Err(format!("expected one event with one run, got {acks:?}")),
    }
}

/// Writes one flow file into `<dir>/flows` and returns that folder.
fn write_flow(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let flows = dir.join("flows");
    std::fs::create_dir_all(&flows).expect("create the flows folder");
    std::fs::write(flows.join(name), yaml).expect("write the flow");
    flows
}

fn crash_flow(sink: &Sink) -> String {
    format!(
        r#"id: crash-guest
triggers:
  - entity: guest
    on: [create]
settings:
  retry: {{attempts: 20, delay: 200ms, max_delay: 1s}}
steps:
  - id: contact
    map: {{guest_id: "{{{{entity.id}}}}", email: "{{{{entity.email}}}}"}}
  - id: push
    http:
      url: "{url}"
      body: "{{{{steps.contact}}}}"
      timeout: 5s
  - id: cool_off
    delay: 1s
  - id: done
    map: {{status: "{{{{steps.push.status}}}}"}}
"#,
        url = sink.url("/deliver")
    )
}

/// Two maps around a durable delay, then an HTTP step: a map leaves no trace outside the
/// engine, so the request at the sink is what shows that the work after the delay ran once.
fn delay_flow(sink: &Sink) -> String {
    format!(
        r#"id: delayed-guest
triggers:
  - entity: guest
    on: [create]
steps:
  - id: before
    map: {{guest_id: "{{{{entity.id}}}}"}}
  - id: pause
    delay: 2s
  - id: after
    map: {{guest_id: "{{{{steps.before.guest_id}}}}", waited: true}}
  - id: report
    http:
      url: "{url}"
      body: "{{{{steps.after}}}}"
      timeout: 5s
"#,
        url = sink.url("/after")
    )
}
