//! Run-level controls, through the API of an engine in the test process: per-flow `concurrency` and `rate_limit`
//! (excess runs wait, none is dropped; held in the database, so on PostgreSQL too), and the
//! run API's cancel, retry and replay.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use flowd::store::testing::TestDb;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::api::Api;
use crate::support::engine::{EngineSetup, TestEngine};
use crate::support::sink::{Behaviour, Failure, Sink, most_open_at_once};

/// Patience for runs on a loaded 2-core machine; conditions end the wait, not this.
const PATIENCE: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_holds_on_sqlite() {
    let dir = tempfile::tempdir().expect("temporary directory");
    concurrency_limit_holds(&sqlite_url(dir.path()), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_holds_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    concurrency_limit_holds(&db.url, dir.path()).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_spreads_starts_on_sqlite() {
    let dir = tempfile::tempdir().expect("temporary directory");
    rate_limit_spreads_starts(&sqlite_url(dir.path()), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_spreads_starts_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    rate_limit_spreads_starts(&db.url, dir.path()).await;
    db.cleanup().await;
}

/// Eight runs of a flow limited to two at once, against an endpoint that holds each request:
/// never more than two requests are open at the sink, two are (the limit is used), all arrive.
async fn concurrency_limit_holds(database_url: &str, dir: &Path) {
    let hold = Duration::from_millis(400);
    let sink = Sink::start_with(Behaviour {
        delay: hold,
        ..Behaviour::default()
    })
    .await;
    let runs = run_limited_flow(database_url, dir, "concurrency: 2", &sink, 8).await;
    assert_eq!(runs.len(), 8);
    let arrivals: Vec<Instant> = sink.requests().iter().map(|r| r.at).collect();
    assert_eq!(arrivals.len(), 8, "one delivery per run");
    let most = most_open_at_once(&arrivals, hold);
    assert_eq!(most, 2, "requests open at once: {most} (limit 2)");
}

/// Twelve runs of a flow limited to four starts a second all succeed, no second-long window
/// holds more than four starts, so they span at least two seconds.
async fn rate_limit_spreads_starts(database_url: &str, dir: &Path) {
    let sink = Sink::start().await;
    let runs = run_limited_flow(database_url, dir, "rate_limit: 4/s", &sink, 12).await;
    let mut starts: Vec<DateTime<Utc>> = runs.values().map(|r| time(&r["started_at"])).collect();
    starts.sort();
    for (i, start) in starts.iter().enumerate() {
        let window_end = *start + chrono::Duration::milliseconds(1000);
        let in_window = starts[i..].iter().take_while(|s| **s < window_end).count();
        assert!(
            in_window <= 4,
            "{in_window} runs started within one second from {start}: {starts:?}"
        );
    }
    let span = starts[11] - starts[0];
    assert!(
        span >= chrono::Duration::milliseconds(2000),
        "12 starts at 4/s took only {span}"
    );
    assert_eq!(sink.count(), 12, "one delivery per run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_waiting_and_executing_runs() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let sink = Sink::start_with(Behaviour {
        delay: Duration::from_secs(2),
        ..Behaviour::default()
    })
    .await;
    let flows = write_flow(
        dir.path(),
        "slow.yaml",
        &format!(
            r#"id: slow
triggers:
  - entity: guest
    on: [create]
  - entity: invoice
    on: [create]
    if: "{{{{eq entity.kind 'waits'}}}}"
steps:
  - id: push
    if: "{{{{eq event.entity 'guest'}}}}"
    http: {{url: "{url}", body: {{id: "{{{{entity.id}}}}"}}}}
  - id: pause
    delay: 1h
  - id: after
    http: {{url: "{url}", body: {{after: true}}}}
"#,
            url = sink.url("/slow")
        ),
    );
    let engine = TestEngine::start(&EngineSetup::new(sqlite_url(dir.path()), flows)).await;
    let api = engine.api();

    // A run in its hour-long delay is cancelled at once.
    let waiting = post_event(
        &api,
        json!({"entity": "invoice", "action": "create", "id": "1", "data": {"kind": "waits"}}),
    )
    .await;
    api.wait_for_run(&waiting, |r| r["status"] == "waiting", PATIENCE)
        .await
        .expect("the run waits in its delay");
    let (status, answer) = post(&api, &format!("/api/v1/runs/{waiting}/cancel")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["status"], "cancelled");
    let run = api.get_run(&waiting).await.unwrap().expect("the run");
    assert_eq!(run["status"], "cancelled");

    // Cancelling again is a conflict; an unknown run is not found.
    let (status, answer) = post(&api, &format!("/api/v1/runs/{waiting}/cancel")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"]["code"], "run_finished");
    let (status, answer) = post(&api, "/api/v1/runs/no-such-run/cancel").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(answer["error"]["code"], "not_found");

    // A run in the middle of its slow request stops after that step, before the delay.
    let executing = post_event(
        &api,
        json!({"entity": "guest", "action": "create", "id": "2"}),
    )
    .await;
    assert!(
        sink.wait_for(|r| !r.is_empty(), PATIENCE).await,
        "the request reaches the sink"
    );
    let (status, answer) = post(&api, &format!("/api/v1/runs/{executing}/cancel")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["status"], "cancelling");
    let run = api
        .wait_for_run(&executing, |r| r["status"] == "cancelled", PATIENCE)
        .await
        .expect("the run ends cancelled");
    let steps = run["steps"].as_array().expect("steps");
    assert_eq!(
        steps[0]["status"], "succeeded",
        "the step in flight finishes: {run}"
    );
    assert_eq!(
        steps[1]["status"], "failed",
        "the delay ends with the run: {run}"
    );
    assert_eq!(steps[1]["error"], "cancelled");
    assert_eq!(
        steps[2]["status"], "pending",
        "no step runs after a cancel: {run}"
    );
    assert_eq!(sink.count(), 1, "nothing is sent after the cancel");
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_resumes_a_failed_run_and_replay_starts_a_new_one() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let sink = Sink::start_with(Behaviour {
        fail_first: 1,
        failure: Failure::Status(400),
        ..Behaviour::default()
    })
    .await;
    let flows = write_flow(
        dir.path(),
        "push.yaml",
        &format!(
            r#"id: push
triggers:
  - entity: guest
    on: [create]
steps:
  - id: contact
    map: {{guest: "{{{{entity.id}}}}", stamp: "{{{{now}}}}"}}
  - id: push
    http: {{url: "{}", body: "{{{{steps.contact}}}}"}}
"#,
            sink.url("/push")
        ),
    );
    let engine = TestEngine::start(&EngineSetup::new(sqlite_url(dir.path()), flows)).await;
    let api = engine.api();
    let run_id = post_event(
        &api,
        json!({"entity": "guest", "action": "create", "id": "7"}),
    )
    .await;
    let failed = api
        .wait_for_run(&run_id, |r| r["status"] == "failed", PATIENCE)
        .await
        .expect("a 400 fails the run at once");
    let contact_before = failed["steps"][0]["output"].clone();

    // Replaying or retrying something that is not finished the right way is refused.
    let (status, answer) = post(&api, "/api/v1/runs/nope/retry").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");

    let (status, answer) = post(&api, &format!("/api/v1/runs/{run_id}/retry")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let run = api
        .wait_for_run(&run_id, |r| r["status"] == "succeeded", PATIENCE)
        .await
        .expect("the retried run succeeds");
    assert_eq!(
        run["steps"][0]["output"], contact_before,
        "the succeeded map step is not executed again"
    );
    assert_eq!(
        run["steps"][1]["attempts"].as_array().map(Vec::len),
        Some(2),
        "{run}"
    );
    let requests = sink.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].idempotency_key(), requests[1].idempotency_key());

    let (status, answer) = post(&api, &format!("/api/v1/runs/{run_id}/retry")).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a succeeded run is not retried: {answer}"
    );
    assert_eq!(answer["error"]["code"], "run_not_retryable");

    let (status, answer) = post(&api, &format!("/api/v1/runs/{run_id}/replay")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let replay_id = answer["run_id"]
        .as_str()
        .expect("the new run's id")
        .to_owned();
    assert_ne!(replay_id, run_id);
    let replay = api
        .wait_for_run(&replay_id, |r| r["status"] == "succeeded", PATIENCE)
        .await
        .expect("the replay succeeds");
    assert_eq!(replay["trigger"], run["trigger"], "same trigger data");
    let requests = sink.requests();
    assert_eq!(requests.len(), 3);
    assert_ne!(requests[2].idempotency_key(), requests[1].idempotency_key());
    assert_eq!(
        requests[2].json().map(|b| b["guest"].clone()),
        Some(json!("7"))
    );
    engine.stop().await;
}

/// Starts an engine with one flow under `setting` that POSTs each guest to `sink`, posts `n` guest
/// events and returns the runs once they all ended, each checked to have succeeded.
async fn run_limited_flow(
    database_url: &str,
    dir: &Path,
    setting: &str,
    sink: &Sink,
    n: usize,
) -> HashMap<String, Value> {
    let flow = format!(
        r#"id: limited
triggers:
  - entity: guest
    on: [create]
settings:
  {setting}
steps:
  - id: push
    http: {{url: "{}", body: {{id: "{{{{entity.id}}}}"}}}}
"#,
        sink.url("/limited")
    );
    let flows = write_flow(dir, "limited.yaml", &flow);
    let engine = TestEngine::start(&EngineSetup::new(database_url, flows)).await;
    let api = engine.api();
    let run_ids = post_guests(&api, n).await;
    let runs = api
        .wait_until_all_terminal(&run_ids, PATIENCE)
        .await
        .expect("every run ends");
    assert!(
        runs.values().all(|r| r["status"] == "succeeded"),
        "{runs:?}"
    );
    engine.stop().await;
    runs
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("flowd.db").display())
}

fn write_flow(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let flows = dir.join("flows");
    std::fs::create_dir_all(&flows).expect("create the flows folder");
    std::fs::write(flows.join(name), yaml).expect("write the flow");
    flows
}

async fn post_guests(api: &Api, n: usize) -> Vec<String> {
    let events: Vec<Value> = (0..n)
        .map(|i| json!({"entity": "guest", "action": "create", "id": i.to_string()}))
        .collect();
    let acks = api.post_events(&events).await.expect("events accepted");
    let ids: Vec<String> = acks.into_iter().flat_map(|a| a.runs).collect();
    assert_eq!(ids.len(), n, "one run per event");
    ids
}

async fn post_event(api: &Api, event: Value) -> String {
    let acks = api.post_events(&[event]).await.expect("event accepted");
    match acks.as_slice() {
        [ack] if ack.runs.len() == 1 => ack.runs[0].clone(),
        _ => panic!("expected one run, got {acks:?}"),
    }
}

async fn post(api: &Api, path: &str) -> (StatusCode, Value) {
    let answer = api
        .call("POST", path, None, &[])
        .await
        .expect("the server answers");
    let body = answer
        .json_strict()
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    (answer.status, body)
}

fn time(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("not a time: {value}"))
}
