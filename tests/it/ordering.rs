//! Per-entity ordering (`settings.order_key`): 200 events over 10 entity ids against a target
//! that answers in a pseudo-random 0–20 ms. Each entity's deliveries reach the sink in creation
//! order (run ids are UUIDv7, so the order of ids), each exactly once, one at a time (the next
//! request of a key arrives after the answer to the one before it), while different entities
//! run side by side.
//! On SQLite in the test process, and across two real `flowd serve` nodes on one PostgreSQL
//! database (skipped without `FLOWD_TEST_DATABASE_URL`). A run waiting for a retry holds the
//! runs behind it, which say `waiting_reason: order`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use flowd::store::testing::TestDb;
use serde_json::{Value, json};

use crate::support::api::Api;
use crate::support::engine::{EngineSetup, TestEngine};
use crate::support::flowd::{FlowdEnv, FlowdProcess};
use crate::support::sink::{Behaviour, Failure, Sink};

const EVENTS: usize = 200;
const ENTITIES: usize = 10;
/// Events per request: several runs of one key are created in one commit.
const BATCH: usize = 20;
const SLOWEST_ANSWER: Duration = Duration::from_millis(20);
/// Patience for runs on a loaded 2-core machine; conditions end the wait, not this.
const PATIENCE: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_entity_is_delivered_in_creation_order_on_sqlite() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let sink = Sink::start().await;
    sink.set_random_delay(SLOWEST_ANSWER);
    let flows = flows_dir(dir.path());
    std::fs::write(flows.join("ordered.yaml"), ordered_flow(&sink, "")).expect("write a flow");
    let engine = TestEngine::start(&EngineSetup::new(sqlite_url(dir.path()), flows)).await;
    let problems = deliver_in_order(&[engine.api()], &sink).await;
    engine.stop().await;
    assert!(
        problems.is_empty(),
        "ordering broken:\n- {}",
        problems.join("\n- ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_entity_is_delivered_in_creation_order_across_two_postgres_nodes() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let sink = Sink::start().await;
    sink.set_random_delay(SLOWEST_ANSWER);
    let flows = flows_dir(dir.path());
    std::fs::write(flows.join("ordered.yaml"), ordered_flow(&sink, "")).expect("write a flow");
    let env = FlowdEnv::new(&db.url, flows);
    let (mut a, mut b) = tokio::join!(FlowdProcess::start(&env), FlowdProcess::start(&env));
    let mut problems = deliver_in_order(&[a.api(), b.api()], &sink).await;
    let mut nodes = Vec::new();
    for run in a.api().list_runs(None).await.unwrap_or_default() {
        let id = run["id"].as_str().unwrap_or_default();
        if let Ok(Some(detail)) = a.api().get_run(id).await {
            nodes.extend(
                detail["steps"][0]["attempts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|at| at["node"].as_str().map(str::to_owned)),
            );
        }
    }
    let distinct: std::collections::BTreeSet<&String> = nodes.iter().collect();
    if distinct.len() < 2 {
        problems.push(format!("one node executed every run: {distinct:?}"));
    }
    if !problems.is_empty() {
        panic!(
            "ordering broken across nodes:\n- {}\n{}\n{}",
            problems.join("\n- "),
            a.stderr_tail(),
            b.stderr_tail()
        );
    }
    for node in [&mut a, &mut b] {
        let _ = node.terminate(Duration::from_secs(30)).await;
    }
    db.cleanup().await;
}

/// A run waiting for its retry holds the later run of its key (`waiting_reason: order`), not
/// the run of another key; once it succeeds, the held one follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_waiting_for_a_retry_holds_the_runs_behind_it() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let sink = Sink::start_with(Behaviour {
        fail_first: 1,
        failure: Failure::Status(500),
        ..Behaviour::default()
    })
    .await;
    let flows = flows_dir(dir.path());
    let retry = "  retry: {attempts: 3, delay: 2s, max_delay: 2s}\n";
    std::fs::write(flows.join("ordered.yaml"), ordered_flow(&sink, retry)).expect("write a flow");
    let engine = TestEngine::start(&EngineSetup::new(sqlite_url(dir.path()), flows)).await;
    let api = engine.api();
    let first = one_run(&api, "7", 1).await;
    api.wait_for_run(&first, |r| r["waiting_reason"] == "backoff", PATIENCE)
        .await
        .expect("the first run waits for its retry");
    let second = one_run(&api, "7", 2).await;
    let other = one_run(&api, "8", 1).await;
    api.wait_for_run(&other, |r| r["status"] == "succeeded", PATIENCE)
        .await
        .expect("another entity is not held");
    let held = api.get_run(&second).await.unwrap().expect("the second run");
    let first_now = api.get_run(&first).await.unwrap().expect("the first run");
    if first_now["status"] == "waiting" {
        assert_eq!(held["status"], "pending", "{held}");
        assert_eq!(held["waiting_reason"], "order", "{held}");
    }
    let done = api
        .wait_until_all_terminal(&[first.clone(), second.clone()], PATIENCE)
        .await
        .expect("both runs finish");
    assert!(
        done.values().all(|r| r["status"] == "succeeded"),
        "{done:?}"
    );
    let order: Vec<(String, i64)> = sink
        .requests()
        .iter()
        .filter_map(|r| r.json())
        .filter(|b| b["id"] == "7")
        .map(|b| (b["id"].to_string(), b["seq"].as_i64().unwrap_or(-1)))
        .collect();
    assert_eq!(
        order.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        vec![1, 1, 2],
        "the failed attempt, its retry, then the run behind it"
    );
    engine.stop().await;
}

/// Sends `EVENTS` events over `ENTITIES` ids, batch `i` to node `i % nodes`, waits for every
/// run, and lists what broke the ordering promise.
async fn deliver_in_order(apis: &[Api], sink: &Sink) -> Vec<String> {
    let events: Vec<Value> = (0..EVENTS)
        .map(|n| {
            json!({"entity": "guest", "action": "update", "id": format!("g{}", n % ENTITIES),
                   "data": {"seq": n}})
        })
        .collect();
    let mut run_ids = Vec::new();
    for (i, batch) in events.chunks(BATCH).enumerate() {
        let acks = apis[i % apis.len()]
            .post_events(batch)
            .await
            .expect("events accepted");
        run_ids.extend(acks.into_iter().flat_map(|a| a.runs));
    }
    assert_eq!(run_ids.len(), EVENTS, "one run per event");
    let runs = apis[0]
        .wait_until_all_terminal(&run_ids, PATIENCE)
        .await
        .expect("every run finishes");
    let mut problems = Vec::new();
    for (id, run) in &runs {
        if run["status"] != "succeeded" {
            problems.push(format!("run {id} did not succeed: {run}"));
        }
    }
    problems.extend(sink_order_problems(sink));
    problems.extend(overlap_problems(sink));
    problems
}

/// Deliveries per entity must arrive in run-id order, each run once.
fn sink_order_problems(sink: &Sink) -> Vec<String> {
    let mut by_entity: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for request in sink.requests().iter().filter(|r| r.accepted()) {
        let entity = request
            .json()
            .map(|b| b["id"].to_string())
            .unwrap_or_default();
        let run = request
            .idempotency_key()
            .and_then(|k| k.split('_').next())
            .unwrap_or_default()
            .to_owned();
        by_entity.entry(entity).or_default().push(run);
    }
    let mut problems = Vec::new();
    let delivered: usize = by_entity.values().map(Vec::len).sum();
    if delivered != EVENTS || by_entity.len() != ENTITIES {
        problems.push(format!(
            "{delivered} deliveries over {} entities, expected {EVENTS} over {ENTITIES}",
            by_entity.len()
        ));
    }
    for (entity, runs) in &by_entity {
        let mut sorted = runs.clone();
        sorted.sort();
        sorted.dedup();
        if &sorted != runs {
            problems.push(format!(
                "entity {entity}: delivered out of creation order or twice: {runs:?}"
            ));
        }
    }
    problems
}

/// Requests of one entity never overlap (the next arrives after the answer to the one before
/// left the sink); requests of different entities do (keys run in parallel). Measured at the
/// sink, on one clock.
fn overlap_problems(sink: &Sink) -> Vec<String> {
    let mut by_entity: BTreeMap<String, Vec<(Instant, Instant)>> = BTreeMap::new();
    for request in sink.requests() {
        let entity = request
            .json()
            .map(|b| b["id"].to_string())
            .unwrap_or_default();
        by_entity
            .entry(entity)
            .or_default()
            .push((request.at, request.at + request.held));
    }
    let mut problems = Vec::new();
    let mut all = Vec::new();
    for (entity, spans) in &by_entity {
        for (n, pair) in spans.windows(2).enumerate() {
            if pair[1].0 < pair[0].1 {
                problems.push(format!(
                    "entity {entity}: request {} arrived before the answer to request {n} left",
                    n + 1
                ));
            }
        }
        all.extend(spans.iter().map(|(s, e)| (entity.clone(), *s, *e)));
    }
    let parallel = all.iter().any(|(k1, s1, e1)| {
        all.iter()
            .any(|(k2, s2, e2)| k1 != k2 && s1 < e2 && s2 < e1)
    });
    if !parallel {
        problems.push("no two entities were ever in flight at the same time".to_owned());
    }
    problems
}

/// Posts one `guest` update with a sequence number; returns its run.
async fn one_run(api: &Api, id: &str, seq: i64) -> String {
    let acks = api
        .post_events(&[
            json!({"entity": "guest", "action": "update", "id": id, "data": {"seq": seq}}),
        ])
        .await
        .expect("accepted");
    acks[0].runs.first().cloned().expect("one run")
}

fn ordered_flow(sink: &Sink, extra_settings: &str) -> String {
    format!(
        "id: ordered\ntriggers:\n  - entity: guest\nsettings:\n  order_key: \"{{{{entity.id}}}}\"\n{extra_settings}steps:\n  - id: push\n    http: {{url: \"{}\", body: {{id: \"{{{{entity.id}}}}\", seq: \"{{{{entity.seq}}}}\"}}}}\n",
        sink.url("/in")
    )
}

fn flows_dir(dir: &Path) -> std::path::PathBuf {
    let flows = dir.join("flows");
    std::fs::create_dir_all(&flows).expect("create the flows folder");
    flows
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("flowd.db").display())
}
