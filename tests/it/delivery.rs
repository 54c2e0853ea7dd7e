//! Delivery control through the API of an engine in the test process, on SQLite and (when
//! `FLOWD_TEST_DATABASE_URL` is set) PostgreSQL: a pause holds (runs in backoff do not retry,
//! new events become `held` runs, resume sends each exactly once, `discard_held` cancels them)
//! and a delete stops (runs waiting for a retry or for a rate limit are cancelled, nothing is
//! delivered afterwards).

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use flowd::store::testing::TestDb;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::api::Api;
use crate::support::engine::{EngineSetup, TestEngine};
use crate::support::sink::{Behaviour, Failure, Sink};

/// Patience for runs on a loaded 2-core machine; conditions end the wait, not this.
const PATIENCE: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_and_resume_sends_each_once_on_sqlite() {
    let dir = tempfile::tempdir().expect("temporary directory");
    pause_holds(&sqlite_url(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_and_resume_sends_each_once_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    pause_holds(&db.url).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_stops_waiting_and_rate_limited_runs_on_sqlite() {
    let dir = tempfile::tempdir().expect("temporary directory");
    delete_stops(&sqlite_url(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_stops_waiting_and_rate_limited_runs_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    delete_stops(&db.url).await;
    db.cleanup().await;
}

/// A flow whose endpoint fails its first answers: one run goes into backoff, the flow is
/// paused, three more events arrive (held), the endpoint recovers. Until well past the backoff's
/// wake-up the sink receives nothing; after the resume each run is delivered exactly once.
/// Paused again, two held runs are discarded by the resume and never sent.
async fn pause_holds(database_url: &str) {
    let (sink, engine) = start(database_url).await;
    let api = engine.api();
    create_flow(
        &api,
        &flow_yaml("held", &sink, "retry: {attempts: 5, delay: 1s}"),
    )
    .await;

    let first = one_event(&api, "1").await;
    let in_backoff = api
        .wait_for_run(&first, |r| r["status"] == "waiting", PATIENCE)
        .await
        .expect("the first attempt fails and the run waits for its retry");
    let (status, _) = send(&api, "POST", "/api/v1/flows/held/pause", None).await;
    assert_eq!(status, StatusCode::OK);
    let mut held = Vec::new();
    for id in ["2", "3", "4"] {
        let run = one_event(&api, id).await;
        assert_eq!(status_of(&api, &run).await, "held");
        held.push(run);
    }
    let wake_at = time(&in_backoff["wake_at"]);
    wait_until(wake_at + chrono::Duration::seconds(2)).await;
    assert_eq!(sink.count(), 1, "nothing is sent while paused");
    assert_eq!(status_of(&api, &first).await, "waiting");

    let (status, resumed) = send(&api, "POST", "/api/v1/flows/held/resume", None).await;
    assert_eq!(
        (status, resumed["paused"].clone()),
        (StatusCode::OK, json!(false))
    );
    for run in held.iter().chain([&first]) {
        api.wait_for_run(run, |r| r["status"] == "succeeded", PATIENCE)
            .await
            .expect("every held and waiting run is sent after the resume");
    }
    let deliveries = sink.deliveries_by_idempotency_key();
    assert_eq!(deliveries.len(), 4, "{deliveries:?}");
    assert!(deliveries.values().all(|n| *n == 1), "{deliveries:?}");

    send(&api, "POST", "/api/v1/flows/held/pause", None).await;
    let discarded = [one_event(&api, "5").await, one_event(&api, "6").await];
    let (status, _) = send(
        &api,
        "POST",
        "/api/v1/flows/held/resume",
        Some(("application/json", r#"{"discard_held": true}"#)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    for run in &discarded {
        let run = api.get_run(run).await.unwrap().unwrap();
        assert_eq!(
            (run["status"].clone(), run["error"].clone()),
            (json!("cancelled"), json!("discarded_on_resume"))
        );
    }
    // A run after the resume is sent; the discarded ones never are.
    let after = one_event(&api, "7").await;
    api.wait_for_run(&after, |r| r["status"] == "succeeded", PATIENCE)
        .await
        .expect("the flow runs again");
    assert_eq!(
        sink.count(),
        6,
        "five deliveries and the first failed attempt"
    );
    let (status, body) = send(
        &api,
        "POST",
        "/api/v1/flows/held/resume",
        Some(("application/json", r#"{"discard_held": "yes"}"#)),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    engine.stop().await;
}

/// A flow limited to one start a minute against an endpoint that fails: one run waits for its
/// retry, two wait for the rate limit. Deleting the flow cancels all three (`flow_deleted`) and
/// nothing is delivered afterwards, even once the retry would have been due.
async fn delete_stops(database_url: &str) {
    let (sink, engine) = start(database_url).await;
    let api = engine.api();
    let settings = "rate_limit: 1/min\n  retry: {attempts: 5, delay: 1s}";
    create_flow(&api, &flow_yaml("doomed", &sink, settings)).await;
    let first = one_event(&api, "1").await;
    let in_backoff = api
        .wait_for_run(&first, |r| r["status"] == "waiting", PATIENCE)
        .await
        .expect("the first attempt fails and the run waits for its retry");
    let limited = [one_event(&api, "2").await, one_event(&api, "3").await];
    for run in &limited {
        assert_eq!(
            status_of(&api, run).await,
            "pending",
            "it waits for the rate limit"
        );
    }

    let (status, _) = send(&api, "DELETE", "/api/v1/flows/doomed", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for run in limited.iter().chain([&first]) {
        let run = api.get_run(run).await.unwrap().unwrap();
        assert_eq!(
            (run["status"].clone(), run["error"].clone()),
            (json!("cancelled"), json!("flow_deleted")),
            "{run}"
        );
    }
    wait_until(time(&in_backoff["wake_at"]) + chrono::Duration::seconds(2)).await;
    assert_eq!(sink.count(), 1, "nothing is delivered after the delete");
    engine.stop().await;
}

/// A sink that fails its first request, and an engine without flow files.
async fn start(database_url: &str) -> (Sink, TestEngine) {
    let sink = Sink::start_with(Behaviour {
        fail_first: 1,
        failure: Failure::Status(500),
        ..Behaviour::default()
    })
    .await;
    let engine = TestEngine::start(&EngineSetup {
        flows_dir: None,
        ..EngineSetup::new(database_url, "")
    })
    .await;
    (sink, engine)
}

fn flow_yaml(id: &str, sink: &Sink, settings: &str) -> String {
    format!(
        "id: {id}\ntriggers:\n  - entity: guest\nsettings:\n  {settings}\nsteps:\n  - id: push\n    http: {{url: \"{}\", body: {{id: \"{{{{entity.id}}}}\"}}}}\n",
        sink.url("/in")
    )
}

async fn create_flow(api: &Api, yaml: &str) {
    let (status, body) = send(
        api,
        "POST",
        "/api/v1/flows",
        Some(("application/yaml", yaml)),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// Posts one `guest` event and returns the one run it started.
async fn one_event(api: &Api, id: &str) -> String {
    let acks = api
        .post_events(&[json!({"entity": "guest", "action": "create", "id": id})])
        .await
        .expect("accepted");
    assert_eq!(acks[0].runs.len(), 1, "one run: {:?}", acks[0].runs);
    acks[0].runs[0].clone()
}

async fn status_of(api: &Api, run: &str) -> Value {
    api.get_run(run).await.unwrap().expect("the run")["status"].clone()
}

/// Waits until the wall clock passes `t`: the condition is the time itself (a retry that
/// would have been due by then), not a guess at how long something takes.
async fn wait_until(t: DateTime<Utc>) {
    while Utc::now() < t {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn time(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("not a time: {value}"))
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("flowd.db").display())
}

async fn send(
    api: &Api,
    method: &str,
    path: &str,
    body: Option<(&str, &str)>,
) -> (StatusCode, Value) {
    api.request(method, path, body)
        .await
        .unwrap_or_else(|e| panic!("the server answers with JSON: {e}"))
}
