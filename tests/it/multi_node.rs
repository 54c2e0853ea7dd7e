//! Several `flowd serve` nodes on one database (SPEC §8), driven only through their REST APIs.
//!
//! The node registry test runs on SQLite and, when `FLOWD_TEST_DATABASE_URL` is set, on
//! PostgreSQL: a node shows as alive with a moving heartbeat, as stopped after SIGTERM and as
//! lost after `kill -9`. The two-node test needs PostgreSQL and prints "skipped: ..." without
//! it: two real processes on one fresh database take 2,000 events sent to both APIs; every run
//! executes exactly once and both nodes execute some; a per-second schedule fires once per fire
//! time; a flow created on one node starts runs on the other, and pausing it there stops it here;
//! then one node is killed with SIGKILL in the middle of a batch, and the other takes over every
//! run it held once the lease expired, recording no step as succeeded twice.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use flowd::store::nodes::{self, NodeStatus};
use flowd::store::testing::TestDb;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::support::api::Api;
use crate::support::flowd::{FlowdEnv, FlowdProcess};
use crate::support::sink::{Behaviour, Sink, most_open_at_once};

const EVENTS: usize = 2_000;
const BATCH: usize = 50;
const FEEDERS: usize = 4;
const WORKERS: usize = 16;
/// The batch sent to the node that is killed while it executes it.
const KILL_BATCH: usize = 200;
/// How long the sink holds its answers during that batch, so the node dies with requests in
/// flight.
const SLOW_SINK: Duration = Duration::from_millis(1500);
/// Runs the doomed node must hold before it is killed.
const HELD_BEFORE_KILL: u64 = 4;
/// Deadline of waits that take a few seconds on an idle machine, for a loaded 2-core one.
const PATIENCE: Duration = Duration::from_secs(90);
/// A flow change must reach the other node well within this (it polls every second).
const PROPAGATION_LIMIT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(100);
const SHOWN_PROBLEMS: usize = 30;
/// Runs of each limited flow.
const LIMITED_RUNS: usize = 12;
/// `FLOWD_LEASE` of the test nodes (`FlowdEnv::new`'s default).
const LEASE: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_registry_on_sqlite() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("flowd.db").display());
    node_registry(&url, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_registry_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    node_registry(&db.url, dir.path()).await;
    db.cleanup().await;
}

/// One node alive with a moving heartbeat; then stopped (SIGTERM) next to a new one; then a
/// third killed with SIGKILL turns lost once its lease passed.
async fn node_registry(url: &str, dir: &Path) {
    let env = FlowdEnv::new(url, flows_dir(dir));
    let mut first = FlowdProcess::start(&env).await;
    let api = first.api();
    let first_id = or_fail(node_id(&api).await, &[&first]);
    let me = or_fail(node(&api, &first_id).await, &[&first]);
    assert_eq!(
        (
            &me["status"],
            &me["runs_held"],
            &me["lease_ms"],
            &me["version"]
        ),
        (
            &json!("alive"),
            &json!(0),
            &json!(3000),
            &json!(env!("CARGO_PKG_VERSION"))
        ),
        "{me}"
    );
    assert!(
        me["hostname"].as_str().is_some_and(|h| !h.is_empty()),
        "{me}"
    );
    let ready = or_fail(api.get_json("/readyz").await, &[&first]);
    assert!(ready["heartbeat_at"].is_string(), "{ready}");
    // The runner refreshes the heartbeat with every lease renewal (a third of the lease).
    let beat = me["heartbeat_at"].clone();
    let moved = poll("the heartbeat moves on", async || {
        let now = node(&api, &first_id).await?;
        Ok((now["heartbeat_at"] != beat).then_some(()))
    })
    .await;
    or_fail(moved, &[&first]);

    let stop = first.terminate(Duration::from_secs(30)).await;
    assert!(
        stop.as_ref().is_ok_and(|s| s.success()),
        "SIGTERM: {stop:?}"
    );
    let second = FlowdProcess::start(&env).await;
    let mut third = FlowdProcess::start(&env).await;
    let api = second.api();
    let (second_id, third_id) = (
        or_fail(node_id(&api).await, &[&second]),
        or_fail(node_id(&third.api()).await, &[&third]),
    );
    let listed = or_fail(api.get_json("/api/v1/nodes").await, &[&second]);
    let seen: Vec<(&str, &str)> = listed["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|n| {
                    (
                        n["id"].as_str().unwrap_or(""),
                        n["status"].as_str().unwrap_or(""),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        seen,
        [
            (third_id.as_str(), "alive"),
            (second_id.as_str(), "alive"),
            (first_id.as_str(), "stopped")
        ],
        "newest first: {listed}"
    );
    let stopped = or_fail(node(&api, &first_id).await, &[&second]);
    assert!(stopped["stopped_at"].is_string(), "{stopped}");

    third.kill_9().await;
    let lost = poll("the killed node shows as lost", async || {
        let node = node(&api, &third_id).await?;
        Ok((node["status"] == "lost").then_some(()))
    })
    .await;
    or_fail(lost, &[&second, &third]);
    let alive = or_fail(node(&api, &second_id).await, &[&second]);
    assert_eq!(alive["status"], "alive", "{alive}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_postgres_database() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let sink = Sink::start().await;
    let flows = flows_dir(dir.path());
    write(&flows, "sync-guest.yaml", &sync_flow(&sink));
    write(&flows, "tick.yaml", &tick_flow(&sink));
    write(
        &flows,
        "limited.yaml",
        &limited_flow(&sink, "limited", "member", "concurrency: 2"),
    );
    write(
        &flows,
        "metered.yaml",
        &limited_flow(&sink, "metered", "visitor", "rate_limit: 4/s"),
    );
    let env = FlowdEnv {
        workers: WORKERS,
        lease: format!("{}s", LEASE.as_secs()),
        ..FlowdEnv::new(&db.url, flows)
    };
    // Started together, as replicas are: both load the same flow files into a fresh database.
    let (mut a, mut b) = tokio::join!(FlowdProcess::start(&env), FlowdProcess::start(&env));
    let both_up = Utc::now();
    let mut problems = quiet_start(&[&a, &b]);
    let (a_api, b_api) = (a.api(), b.api());
    let a_id = or_fail(node_id(&a_api).await, &[&a]);
    let b_id = or_fail(node_id(&b_api).await, &[&b]);

    let began = Instant::now();
    let steady = steady_load(&[a_api.clone(), b_api.clone()], &sink).await;
    let steady = or_fail(steady, &[&a, &b]);
    let runs_per_node: BTreeMap<String, usize> = steady.by_node.clone();
    println!(
        "{EVENTS} events over two nodes: all runs succeeded after {:?}; runs per node: {runs_per_node:?}",
        began.elapsed()
    );
    problems.extend(steady.problems);
    for id in [&a_id, &b_id] {
        if runs_per_node.get(id).copied().unwrap_or(0) == 0 {
            problems.push(format!("node {id} executed no run: {runs_per_node:?}"));
        }
    }

    let limits = limits_hold(&[a_api.clone(), b_api.clone()], &sink).await;
    problems.extend(or_fail(limits, &[&a, &b]));

    let (created, paused) = or_fail(flow_changes_travel(&a_api, &b_api).await, &[&a, &b]);
    println!(
        "a flow created on A started runs on B after {created:?}; paused on B, A stopped after {paused:?}"
    );
    for (what, took) in [("creation", created), ("pause", paused)] {
        if took > PROPAGATION_LIMIT {
            problems.push(format!(
                "the flow {what} took {took:?} to reach the other node"
            ));
        }
    }

    let takeover = kill_in_the_middle(&mut a, &a_id, &b, &b_id, &sink).await;
    let takeover = or_fail(takeover, &[&a, &b]);
    println!("{}", takeover.summary);
    problems.extend(takeover.problems);

    let schedule_end = Utc::now() - chrono::Duration::seconds(1);
    let all_runs = or_fail(b_api.list_runs(None).await, &[&b]);
    problems.extend(check_schedule(
        &all_runs,
        both_up + chrono::Duration::seconds(2),
        schedule_end,
    ));

    problems.extend(registry_after_stop(&db, &mut b, &a_id, &b_id).await);
    if !problems.is_empty() {
        let shown = problems.len().min(SHOWN_PROBLEMS);
        panic!(
            "several nodes on one database broke a guarantee ({} problems, first {shown}):\n- {}\n{}\n{}",
            problems.len(),
            problems[..shown].join("\n- "),
            a.stderr_tail(),
            b.stderr_tail()
        );
    }
    db.cleanup().await;
}

/// Warnings and errors the nodes logged while starting (e.g. a flow file one of them could not
/// store because the other stored it at the same moment).
fn quiet_start(nodes: &[&FlowdProcess]) -> Vec<String> {
    let mut problems = Vec::new();
    for node in nodes {
        let (lines, _) = node.output_lines();
        problems.extend(
            lines
                .iter()
                .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
                .map(|l| format!("node {} logged while starting: {l}", node.pid())),
        );
    }
    problems
}

/// What the steady phase found.
struct Steady {
    /// Runs whose push succeeded on each node, by node id.
    by_node: BTreeMap<String, usize>,
    problems: Vec<String>,
}

/// `EVENTS` events split across every node; each run must succeed once and deliver once.
async fn steady_load(apis: &[Api], sink: &Sink) -> Result<Steady, String> {
    let acks = feed(apis, guest_events("steady", EVENTS)).await?;
    let mut problems = Vec::new();
    let run_ids = one_run_each(&acks, &mut problems);
    let runs = wait_all(apis, &run_ids).await?;
    let mut by_node = BTreeMap::new();
    for (id, run) in &runs {
        let (node, run_problems) = check_run(id, run);
        problems.extend(run_problems);
        if let Some(node) = node {
            *by_node.entry(node).or_insert(0) += 1;
        }
    }
    let deliveries = sink.deliveries_by_idempotency_key();
    for id in &run_ids {
        let key = format!("{id}_push");
        match deliveries.get(&key).copied().unwrap_or(0) {
            1 => {}
            n => problems.push(format!("run {id} was delivered {n} times, expected once")),
        }
    }
    Ok(Steady { by_node, problems })
}

/// Runs of a flow limited to two at once and of one limited to four starts a second, sent to
/// both nodes at once: the limits hold for the two nodes together, not for each.
async fn limits_hold(apis: &[Api], sink: &Sink) -> Result<Vec<String>, String> {
    let hold = Duration::from_millis(400);
    sink.set_behaviour(Behaviour {
        delay: hold,
        ..Behaviour::default()
    });
    let mut events = entity_events("member", "limits", LIMITED_RUNS);
    events.extend(entity_events("visitor", "limits", LIMITED_RUNS));
    let acks = feed(apis, events).await?;
    let mut problems = Vec::new();
    let run_ids = one_run_each(&acks, &mut problems);
    let runs = wait_all(apis, &run_ids).await?;
    sink.set_behaviour(Behaviour::default());
    for (id, run) in &runs {
        problems.extend(check_run(id, run).1);
    }
    let arrivals: Vec<Instant> = sink
        .requests()
        .iter()
        .filter(|r| r.path == "/limited")
        .map(|r| r.at)
        .collect();
    let open = most_open_at_once(&arrivals, hold);
    let starts: Vec<DateTime<Utc>> = runs
        .values()
        .filter(|r| r["flow"] == "metered")
        .filter_map(|r| time(&r["started_at"]))
        .collect();
    let per_second = most_within(&starts, chrono::Duration::seconds(1));
    println!(
        "limits over two nodes: at most {open} runs of `concurrency: 2` at once, at most \
         {per_second} starts of `rate_limit: 4/s` within a second"
    );
    if arrivals.len() != LIMITED_RUNS || open > 2 {
        problems.push(format!(
            "concurrency 2: {} deliveries for {LIMITED_RUNS} runs, {open} open at once",
            arrivals.len()
        ));
    }
    if starts.len() != LIMITED_RUNS || per_second > 4 {
        problems.push(format!(
            "rate limit 4/s: {} runs started, {per_second} within one second",
            starts.len()
        ));
    }
    Ok(problems)
}

/// The most times that fall within one `window` (starting at one of them).
fn most_within(times: &[DateTime<Utc>], window: chrono::Duration) -> usize {
    times
        .iter()
        .map(|&t| times.iter().filter(|&&u| t <= u && u < t + window).count())
        .max()
        .unwrap_or(0)
}

/// A flow created through node A's API starts runs on node B; paused through B, it stops
/// starting runs on A. Returns how long each took to reach the other node.
async fn flow_changes_travel(a: &Api, b: &Api) -> Result<(Duration, Duration), String> {
    // `on_pause: drop`: a paused flow then starts no runs at all, which A can observe (by
    // default it would hold them).
    let yaml = "id: vip\ntriggers:\n  - entity: vip\n    on: [create]\nsettings: {on_pause: drop}\nsteps:\n  - id: note\n    map: {id: \"{{entity.id}}\"}\n";
    let (status, body) = a
        .request("POST", "/api/v1/flows", Some(("application/yaml", yaml)))
        .await?;
    if status != StatusCode::CREATED {
        return Err(format!("creating a flow on A answered {status}: {body}"));
    }
    let created = Instant::now();
    poll("a flow created on A starts runs on B", async || {
        Ok(vip_runs(b).await?.then_some(()))
    })
    .await?;
    let created = created.elapsed();
    let (status, body) = b.request("POST", "/api/v1/flows/vip/pause", None).await?;
    if status != StatusCode::OK {
        return Err(format!("pausing on B answered {status}: {body}"));
    }
    let paused = Instant::now();
    poll("a flow paused on B stops starting runs on A", async || {
        Ok((!vip_runs(a).await?).then_some(()))
    })
    .await?;
    Ok((created, paused.elapsed()))
}

/// Whether a `vip` event posted to `api` starts a run.
async fn vip_runs(api: &Api) -> Result<bool, String> {
    let event = json!({"entity": "vip", "action": "create", "id": "1", "data": {}});
    let acks = api.post_events(&[event]).await?;
    Ok(acks.iter().any(|ack| !ack.runs.is_empty()))
}

/// What the takeover phase found.
struct Takeover {
    summary: String,
    problems: Vec<String>,
}

/// Sends a batch to node A while the sink answers slowly, kills A with SIGKILL once it holds
/// runs in flight, and checks that B completes every one of them after the lease, with each
/// step recorded as succeeded once.
async fn kill_in_the_middle(
    a: &mut FlowdProcess,
    a_id: &str,
    b: &FlowdProcess,
    b_id: &str,
    sink: &Sink,
) -> Result<Takeover, String> {
    let b_api = b.api();
    sink.set_behaviour(Behaviour {
        delay: SLOW_SINK,
        ..Behaviour::default()
    });
    let acks = feed(&[a.api()], guest_events("kill", KILL_BATCH)).await?;
    let mut problems = Vec::new();
    let run_ids = one_run_each(&acks, &mut problems);
    poll("node A holds runs in flight", async || {
        let held = node(&b_api, a_id).await?["runs_held"].as_u64().unwrap_or(0);
        Ok((held >= HELD_BEFORE_KILL).then_some(()))
    })
    .await?;
    let killed_at = Utc::now();
    a.kill_9().await;
    // Listed at once: until the lease expires (2 to 3 seconds from now) A still owns them.
    let held: Vec<String> = b_api
        .list_runs(Some("running"))
        .await?
        .iter()
        .filter(|run| run["node"] == a_id)
        .filter_map(|run| run["id"].as_str().map(str::to_owned))
        .collect();
    sink.set_behaviour(Behaviour::default());
    if held.is_empty() {
        problems.push("node A held no run when it was killed".to_owned());
    }
    let runs = wait_all(std::slice::from_ref(&b_api), &run_ids).await?;
    // A renews its leases every third of the lease, so at the kill each had at least two thirds
    // left; a takeover within the first third would mean B ignored a live lease.
    let earliest_takeover = killed_at + LEASE / 3;
    let mut delays = Vec::new();
    for (id, run) in &runs {
        let (node, run_problems) = check_run(id, run);
        problems.extend(run_problems);
        if !held.contains(id) {
            continue;
        }
        match (node.as_deref(), push_started(run)) {
            (Some(node), Some(started)) if node == b_id && started > earliest_takeover => {
                delays.push((started - killed_at).to_std().unwrap_or_default());
            }
            (node, started) => problems.push(format!(
                "run {id}, held by A at the kill ({killed_at}), succeeded on {node:?} at {started:?}, \
                 expected on B after the lease ({earliest_takeover} at the earliest)"
            )),
        }
    }
    let deliveries = sink.deliveries_by_idempotency_key();
    for id in run_ids.iter().filter(|id| !held.contains(id)) {
        let n = deliveries.get(&format!("{id}_push")).copied().unwrap_or(0);
        if n != 1 {
            problems.push(format!(
                "run {id}, not held by A at the kill, was delivered {n} times"
            ));
        }
    }
    delays.sort();
    let summary = format!(
        "killed A holding {} of {KILL_BATCH} runs; B took them over {:?} to {:?} after the kill",
        held.len(),
        delays.first().copied().unwrap_or_default(),
        delays.last().copied().unwrap_or_default()
    );
    Ok(Takeover { summary, problems })
}

/// Each (flow, fire time) of the per-second schedule ran once, and nearly every second of the
/// window fired.
fn check_schedule(runs: &[Value], from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut fires: BTreeMap<DateTime<Utc>, usize> = BTreeMap::new();
    for run in runs.iter().filter(|r| r["flow"] == "tick") {
        match time(&run["trigger"]["fire_at"]) {
            Some(at) => *fires.entry(at).or_insert(0) += 1,
            None => problems.push(format!("a scheduled run without fire_at: {run}")),
        }
        if run["status"] == "failed" || run["status"] == "cancelled" {
            problems.push(format!(
                "scheduled run {} ended {}",
                run["id"], run["status"]
            ));
        }
    }
    for (at, n) in fires.iter().filter(|(_, n)| **n > 1) {
        problems.push(format!("the schedule fired {n} runs for {at}"));
    }
    let seconds = (to - from).num_seconds().max(0) as usize;
    let fired = fires.range(from..=to).count();
    println!("the per-second schedule fired {fired} times in {seconds} s, each fire time once");
    // A node that wakes late fires only the latest time it missed: some seconds may go by
    // unfired under load, but never a second run for one time and never more runs than seconds.
    if fired * 2 < seconds || fired > seconds + 1 {
        problems.push(format!(
            "the per-second schedule fired {fired} times in {seconds} s ({from} to {to})"
        ));
    }
    problems
}

/// Stops B in an orderly way and reads the registry from the database: A lost, B stopped.
async fn registry_after_stop(
    db: &TestDb,
    b: &mut FlowdProcess,
    a_id: &str,
    b_id: &str,
) -> Vec<String> {
    let mut problems = Vec::new();
    match b.terminate(Duration::from_secs(30)).await {
        Ok(status) if status.success() => {}
        Ok(status) => problems.push(format!("B exited with {status} after SIGTERM")),
        Err(error) => problems.push(error),
    }
    let now = Utc::now().timestamp_millis();
    let listed = nodes::list(db.store.reader(), db.store.backend(), now).await;
    let statuses: BTreeMap<String, NodeStatus> = match listed {
        Ok(rows) => rows.into_iter().map(|n| (n.id, n.status)).collect(),
        Err(error) => return vec![format!("reading the node registry failed: {error}")],
    };
    let expected = BTreeMap::from([
        (a_id.to_owned(), NodeStatus::Lost),
        (b_id.to_owned(), NodeStatus::Stopped),
    ]);
    if statuses != expected {
        problems.push(format!("node registry {statuses:?}, expected {expected:?}"));
    }
    problems
}

/// The node that recorded the run's succeeded push, and the problems of the run: it must have
/// succeeded, and no step may have more than one succeeded attempt.
fn check_run(id: &str, run: &Value) -> (Option<String>, Vec<String>) {
    let mut problems = Vec::new();
    if run["status"] != "succeeded" {
        problems.push(format!(
            "run {id} ended {} ({})",
            run["status"], run["error"]
        ));
    }
    let mut node = None;
    for step in run["steps"].as_array().into_iter().flatten() {
        let succeeded = succeeded_attempts(step);
        if succeeded.len() != 1 || step["status"] != "succeeded" {
            problems.push(format!(
                "run {id}: step {} is {} with {} succeeded attempts, expected succeeded once",
                step["id"],
                step["status"],
                succeeded.len()
            ));
        }
        if step["id"] == "push" {
            node = succeeded
                .first()
                .and_then(|a| a["node"].as_str())
                .map(str::to_owned);
        }
    }
    (node, problems)
}

fn succeeded_attempts(step: &Value) -> Vec<&Value> {
    step["attempts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["error"].is_null())
        .filter(|a| {
            a["response"]["status"]
                .as_u64()
                .is_some_and(|s| (200..300).contains(&s))
        })
        .collect()
}

/// When the succeeded attempt of the run's push started.
fn push_started(run: &Value) -> Option<DateTime<Utc>> {
    let push = run["steps"]
        .as_array()?
        .iter()
        .find(|s| s["id"] == "push")?;
    time(&succeeded_attempts(push).first()?["started_at"])
}

/// The run of each event; an event with no run or several is a problem.
fn one_run_each(acks: &HashMap<String, Vec<String>>, problems: &mut Vec<String>) -> Vec<String> {
    let mut ids = Vec::with_capacity(acks.len());
    for (event, runs) in acks {
        match runs.as_slice() {
            [run] => ids.push(run.clone()),
            runs => problems.push(format!("event {event} started runs {runs:?}")),
        }
    }
    ids
}

/// Posts `events` in batches of `BATCH` from `FEEDERS` tasks, batch `i` to node `i % nodes`;
/// answers each event's runs.
async fn feed(apis: &[Api], events: Vec<Value>) -> Result<HashMap<String, Vec<String>>, String> {
    let batches: VecDeque<(usize, Vec<Value>)> = events
        .chunks(BATCH)
        .map(<[Value]>::to_vec)
        .enumerate()
        .collect();
    let queue = Arc::new(Mutex::new(batches));
    let mut feeders = JoinSet::new();
    for _ in 0..FEEDERS {
        let (queue, apis) = (queue.clone(), apis.to_vec());
        feeders.spawn(async move {
            let mut acks = HashMap::new();
            loop {
                let next = queue
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .pop_front();
                let Some((i, batch)) = next else {
                    return Ok::<_, String>(acks);
                };
                for ack in apis[i % apis.len()].post_events(&batch).await? {
                    acks.insert(ack.event_id, ack.runs);
                }
            }
        });
    }
    let mut acks = HashMap::new();
    while let Some(joined) = feeders.join_next().await {
        acks.extend(joined.map_err(|e| format!("a feeder panicked: {e}"))??);
    }
    Ok(acks)
}

/// Waits until every run is terminal, spreading the lookups over the nodes' APIs.
async fn wait_all(apis: &[Api], ids: &[String]) -> Result<HashMap<String, Value>, String> {
    let per_node = ids.len().div_ceil(apis.len()).max(1);
    let mut waits = JoinSet::new();
    for (api, chunk) in apis.iter().zip(ids.chunks(per_node)) {
        let (api, chunk) = (api.clone(), chunk.to_vec());
        waits.spawn(async move { api.wait_until_all_terminal(&chunk, PATIENCE).await });
    }
    let mut runs = HashMap::new();
    while let Some(joined) = waits.join_next().await {
        runs.extend(joined.map_err(|e| format!("a wait panicked: {e}"))??);
    }
    Ok(runs)
}

/// Looks until `look` finds something or `PATIENCE` passes.
async fn poll<T>(
    what: &str,
    mut look: impl AsyncFnMut() -> Result<Option<T>, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(found) = look().await? {
            return Ok(found);
        }
        if Instant::now() >= deadline {
            return Err(format!("{what}: not within {PATIENCE:?}"));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// This node's id, as `/readyz` gives it.
async fn node_id(api: &Api) -> Result<String, String> {
    let ready = api.get_json("/readyz").await?;
    ready["node"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("/readyz names no node: {ready}"))
}

/// One node of `GET /api/v1/nodes`.
async fn node(api: &Api, id: &str) -> Result<Value, String> {
    let listed = api.get_json("/api/v1/nodes").await?;
    listed["items"]
        .as_array()
        .and_then(|items| items.iter().find(|n| n["id"] == id))
        .cloned()
        .ok_or_else(|| format!("node {id} is not in {listed}"))
}

fn or_fail<T>(result: Result<T, String>, nodes: &[&FlowdProcess]) -> T {
    result.unwrap_or_else(|error| {
        let tails: Vec<String> = nodes.iter().map(|n| n.stderr_tail()).collect();
        panic!("{error}\n{}", tails.join("\n"))
    })
}

fn time(value: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn guest_events(prefix: &str, n: usize) -> Vec<Value> {
    entity_events("guest", prefix, n)
}

fn entity_events(entity: &str, prefix: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({
                "entity": entity,
                "action": "create",
                "id": i.to_string(),
                "data": {"id": i.to_string()},
                "event_id": format!("{prefix}-{entity}-{i}"),
            })
        })
        .collect()
}

fn flows_dir(dir: &Path) -> PathBuf {
    let flows = dir.join("flows");
    std::fs::create_dir_all(&flows).expect("create the flows folder");
    flows
}

fn write(flows: &Path, name: &str, yaml: &str) {
    std::fs::write(flows.join(name), yaml).expect("write a flow");
}

fn sync_flow(sink: &Sink) -> String {
    format!(
        r#"id: sync-guest
triggers:
  - entity: guest
    on: [create]
settings:
  retry: {{attempts: 20, delay: 200ms, max_delay: 1s}}
steps:
  - id: push
    http:
      url: "{url}"
      body: {{guest_id: "{{{{entity.id}}}}"}}
      timeout: 10s
"#,
        url = sink.url("/deliver")
    )
}

fn tick_flow(sink: &Sink) -> String {
    format!(
        r#"id: tick
triggers:
  - schedule:
      cron: "* * * * * *"
steps:
  - id: ping
    http:
      url: "{url}"
      body: {{tick: true}}
      timeout: 10s
"#,
        url = sink.url("/tick")
    )
}

/// A flow on `entity` with one `setting` (a limit) that POSTs to the sink's `/<id>`.
fn limited_flow(sink: &Sink, id: &str, entity: &str, setting: &str) -> String {
    format!(
        r#"id: {id}
triggers:
  - entity: {entity}
    on: [create]
settings:
  {setting}
steps:
  - id: push
    http:
      url: "{url}"
      body: {{id: "{{{{entity.id}}}}"}}
      timeout: 10s
"#,
        url = sink.url(&format!("/{id}"))
    )
}
