//! Quotas per workspace (issue #19, `docs/quotas.md`), end to end on in-process engines with a
//! clock the test moves, a real sink on 127.0.0.1 and real SQLite files and PostgreSQL
//! databases: runs over a runs-per-day quota are held (`waiting_reason: quota`) and delivered
//! the next day, none lost or doubled; HTTP attempts per minute are counted at the sink; two
//! nodes on one database share a quota; the inbox hears once a day; a workspace without a quota
//! is untouched; the quota routes round-trip and refuse bad values with nothing stored.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flowd::core::clock::TestClock;
use flowd::store::testing::TestDb;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::api::Api;
use crate::support::engine::{EngineSetup, TestEngine};
use crate::support::sink::Sink;

/// Patience for runs on a loaded 2-core machine; conditions end the wait, not this.
const PATIENCE: Duration = Duration::from_secs(120);
/// 2026-03-10T12:00:01Z: a day with room before and after midnight, one second into a minute.
const NOON: i64 = 1_773_144_001_000;
const DAY_MS: i64 = 86_400_000;
/// Leases far longer than the clock's jumps within a day, so moving the clock a minute never
/// makes a live run look abandoned.
const LEASE: Duration = Duration::from_secs(600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_over_the_daily_quota_are_held_and_delivered_the_next_day_on_sqlite() {
    let db = TestDb::sqlite().await;
    daily_quota_holds_and_releases(&db.url).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_over_the_daily_quota_are_held_and_delivered_the_next_day_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    daily_quota_holds_and_releases(&db.url).await;
    db.cleanup().await;
}

/// 150 events with `runs_per_day: 100`: 100 delivered today, 50 held and counted in usage, one
/// inbox notice; past midnight the 50 follow, each delivered once.
async fn daily_quota_holds_and_releases(url: &str) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let sink = Sink::start().await;
    let clock = TestClock::at(NOON);
    let engine = start(url, &flows(dir.path(), &sink), &clock).await;
    let api = engine.api();
    put_quotas(&api, "default", json!({"runs_per_day": 100})).await;
    let runs = post_guests(&api, 150).await;
    let held = wait_for_held(&api, 50).await;
    assert!(
        sink.wait_for(|r| r.len() >= 100, PATIENCE).await,
        "100 runs are delivered on the first day; the sink saw {}",
        sink.count()
    );
    assert_eq!(sink.count(), 100, "no more than the quota is delivered");
    for run in &held {
        assert_eq!(run["waiting_reason"], "quota", "{run}");
        assert_eq!(run["wake_at"], "2026-03-11T00:00:00.000Z", "{run}");
    }
    let day = usage_of(&api, "2026-03-10").await;
    assert_eq!(day["runs_started"], 150, "{day}");
    assert_eq!(day["quota_held"], 50, "{day}");
    assert_eq!(day["exceeded"], true, "{day}");
    assert_eq!(quota_notices(&api).await.len(), 1, "one inbox notice");

    clock.set(NOON + DAY_MS / 2);
    let done = api
        .wait_until_all_terminal(&runs, PATIENCE)
        .await
        .expect("the held runs are delivered after midnight");
    assert!(done.values().all(|r| r["status"] == "succeeded"));
    assert_each_delivered_once(&sink, &runs);
    let next = usage_of(&api, "2026-03-10").await;
    assert_eq!(next["quota_held"], 50, "the hold stays counted: {next}");
    assert_eq!(
        quota_notices(&api).await.len(),
        1,
        "no notice without a new hold"
    );
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_attempts_per_minute_are_counted_at_the_sink() {
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let sink = Sink::start().await;
    let clock = TestClock::at(NOON);
    let engine = start(&db.url, &flows(dir.path(), &sink), &clock).await;
    let api = engine.api();
    put_quotas(&api, "default", json!({"http_attempts_per_minute": 5})).await;
    let runs = post_guests(&api, 12).await;
    for (minute, delivered, held) in [(0, 5, 7), (1, 10, 2), (2, 12, 0)] {
        clock.set(NOON + minute * 60_000);
        assert!(
            sink.wait_for(|r| r.len() >= delivered, PATIENCE).await,
            "minute {minute}: {delivered} requests expected, the sink saw {}",
            sink.count()
        );
        if held > 0 {
            let runs = wait_for_held(&api, held).await;
            assert!(runs.iter().all(|r| r["waiting_reason"] == "quota"));
        }
        assert_eq!(
            sink.count(),
            delivered,
            "minute {minute}: at most 5 a minute"
        );
    }
    api.wait_until_all_terminal(&runs, PATIENCE)
        .await
        .expect("every run ends");
    assert_each_delivered_once(&sink, &runs);
    for id in &runs {
        let run = api.get_run(id).await.unwrap().expect("the run");
        let attempts = run["steps"][1]["attempts"].as_array().map_or(0, Vec::len);
        assert_eq!(attempts, 1, "waiting for a slot used no attempt: {run}");
    }
    assert_eq!(quota_notices(&api).await.len(), 1, "one notice that day");
    engine.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_sqlite_file_share_the_quota() {
    let db = TestDb::sqlite().await;
    two_nodes_share_the_quota(&db.url).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_postgres_share_the_quota() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    two_nodes_share_the_quota(&db.url).await;
    db.cleanup().await;
}

/// 80 events spread over two nodes with `runs_per_day: 30`: 30 delivered in all, each day.
async fn two_nodes_share_the_quota(url: &str) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let sink = Sink::start().await;
    let clock = TestClock::at(NOON);
    let flows = flows(dir.path(), &sink);
    let a = start(url, &flows, &clock).await;
    put_quotas(&a.api(), "default", json!({"runs_per_day": 30})).await;
    // Opened after the quota is set, so it reads it at start.
    let b = start(url, &flows, &clock).await;
    let mut runs = Vec::new();
    for round in 0..4 {
        let node = if round % 2 == 0 { &a } else { &b };
        runs.extend(post_guests(&node.api(), 20).await);
    }
    wait_for_held(&a.api(), 50).await;
    assert!(sink.wait_for(|r| r.len() >= 30, PATIENCE).await);
    assert_eq!(
        sink.count(),
        30,
        "two nodes together deliver the quota, no more"
    );
    clock.set(NOON + DAY_MS);
    assert!(sink.wait_for(|r| r.len() >= 60, PATIENCE).await);
    for run in wait_for_held(&a.api(), 20).await {
        assert_eq!(run["wake_at"], "2026-03-12T00:00:00.000Z", "{run}");
    }
    assert_eq!(sink.count(), 60, "the next day's quota, no more");
    assert_eq!(quota_notices(&a.api()).await.len(), 2, "one notice per day");
    put_quotas(&b.api(), "default", json!({})).await;
    api_done(&a.api(), &runs).await;
    assert_each_delivered_once(&sink, &runs);
    a.stop().await;
    b.stop().await;
}

/// Without a quota nothing is held or told; a quota of another workspace holds nothing here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_quota_holds_nothing_and_another_workspaces_quota_does_not_apply() {
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let sink = Sink::start().await;
    let clock = TestClock::at(NOON);
    let engine = start(&db.url, &flows(dir.path(), &sink), &clock).await;
    let api = engine.api();
    let first = post_guests(&api, 10).await;
    api_done(&api, &first).await;
    put_quotas(
        &api,
        "acme",
        json!({"runs_per_day": 1, "http_attempts_per_minute": 1}),
    )
    .await;
    let second = post_guests(&api, 10).await;
    api_done(&api, &second).await;
    assert_eq!(sink.count(), 20);
    assert!(
        quota_notices(&api).await.is_empty(),
        "no notice without a hold"
    );
    let day = usage_of(&api, "2026-03-10").await;
    assert_eq!(
        (day["quota_held"].clone(), day["exceeded"].clone()),
        (json!(0), json!(false))
    );
    engine.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_round_trip_and_bad_values_store_nothing() {
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let sink = Sink::start().await;
    let engine = start(&db.url, &flows(dir.path(), &sink), &TestClock::at(NOON)).await;
    let api = engine.api();
    let path = "/api/v1/workspaces/acme/quotas";
    let (status, unknown) = api.request("GET", path, None).await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND, "{unknown}");
    let (status, unknown) = api
        .request("PUT", path, Some(("application/json", "{}")))
        .await
        .unwrap();
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a workspace must exist: {unknown}"
    );
    let none = api
        .get_json("/api/v1/workspaces/default/quotas")
        .await
        .unwrap();
    assert_eq!(none["runs_per_day"], Value::Null, "{none}");
    assert_eq!(none["updated_at"], Value::Null, "{none}");
    let set = put_quotas(
        &api,
        "acme",
        json!({"runs_per_day": 100, "http_attempts_per_minute": 600}),
    )
    .await;
    assert_eq!(set["workspace"], "acme");
    assert_eq!(
        api.get_json(path).await.unwrap(),
        set,
        "GET answers what PUT stored"
    );
    let bad = [
        (
            json!({"runs_per_day": 5, "http_attempts_per_minute": 0}),
            "http_attempts_per_minute",
        ),
        (json!({"runs_per_day": -1}), "runs_per_day"),
        (json!({"runs_per_day": "100"}), "runs_per_day"),
        (json!({"runs_per_day": 2.5}), "runs_per_day"),
        (json!({"runs_per_day": 5, "runs": 1}), "runs"),
    ];
    for (body, field) in bad {
        let (status, error) = api
            .request("PUT", path, Some(("application/json", &body.to_string())))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {error}");
        assert_eq!(error["error"]["code"], "invalid_quota", "{error}");
        assert_eq!(error["error"]["details"][0]["field"], field, "{error}");
        assert!(error["error"]["message"].as_str().unwrap().contains(field));
        assert_eq!(
            api.get_json(path).await.unwrap(),
            set,
            "{body}: nothing stored"
        );
    }
    let (status, error) = api
        .request(
            "PUT",
            "/api/v1/workspaces/Not%20One/quotas",
            Some(("application/json", "{}")),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["error"]["code"], "invalid_workspace", "{error}");
    let cleared = put_quotas(&api, "acme", json!({"runs_per_day": null})).await;
    assert_eq!(cleared["runs_per_day"], Value::Null, "{cleared}");
    assert_eq!(
        cleared["http_attempts_per_minute"],
        Value::Null,
        "{cleared}"
    );
    engine.stop().await;
    db.cleanup().await;
}

async fn start(url: &str, flows: &Path, clock: &Arc<TestClock>) -> TestEngine {
    TestEngine::start(&EngineSetup {
        clock: Some(clock.clone()),
        lease: LEASE,
        ..EngineSetup::new(url, flows)
    })
    .await
}

/// One flow: each created guest is mapped and POSTed to the sink.
fn flows(dir: &Path, sink: &Sink) -> PathBuf {
    let flows = dir.join("flows");
    std::fs::create_dir_all(&flows).expect("create the flows folder");
    let flow = format!(
        "id: guests\ntriggers: [{{entity: guest, on: [create]}}]\nsteps:\n  - id: body\n    map: {{id: \"{{{{entity.id}}}}\"}}\n  - id: push\n    http: {{url: \"{}\", body: \"{{{{steps.body}}}}\"}}\n",
        sink.url("/guests")
    );
    std::fs::write(flows.join("guests.yaml"), flow).expect("write the flow");
    flows
}

/// Sets `workspace`'s quotas, creating the workspace first when it is not there yet.
async fn put_quotas(api: &Api, workspace: &str, body: Value) -> Value {
    let create = json!({ "name": workspace }).to_string();
    let (status, answer) = api
        .request(
            "POST",
            "/api/v1/workspaces",
            Some(("application/json", &create)),
        )
        .await
        .expect("create the workspace");
    assert!(
        status == StatusCode::CREATED || status == StatusCode::CONFLICT,
        "create {workspace}: {status} {answer}"
    );
    let path = format!("/api/v1/workspaces/{workspace}/quotas");
    let (status, answer) = api
        .request("PUT", &path, Some(("application/json", &body.to_string())))
        .await
        .expect("PUT the quotas");
    assert_eq!(status, StatusCode::OK, "PUT {path} {body}: {answer}");
    answer
}

/// Posts `n` guest creations (new ids each call); returns their runs.
async fn post_guests(api: &Api, n: usize) -> Vec<String> {
    let events: Vec<Value> = (0..n)
        .map(|_| {
            let id = uuid::Uuid::now_v7().to_string();
            json!({"entity": "guest", "action": "create", "id": id, "data": {"id": id}})
        })
        .collect();
    let acks = api.post_events(&events).await.expect("events accepted");
    acks.into_iter().flat_map(|ack| ack.runs).collect()
}

/// Waits until exactly `n` runs are held; returns them.
async fn wait_for_held(api: &Api, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let held = api.list_runs(Some("held")).await.expect("list held runs");
        if held.len() == n {
            return held;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{n} held runs expected, {} seen",
            held.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn api_done(api: &Api, runs: &[String]) {
    let done = api
        .wait_until_all_terminal(runs, PATIENCE)
        .await
        .expect("every run ends");
    assert!(
        done.values().all(|r| r["status"] == "succeeded"),
        "{done:?}"
    );
}

/// The usage of the one flow on `day`.
async fn usage_of(api: &Api, day: &str) -> Value {
    let usage = api
        .get_json(&format!("/api/v1/usage?since={day}&until={day}"))
        .await
        .expect("usage");
    usage["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["flow"] == "guests"))
        .cloned()
        .unwrap_or_else(|| panic!("no usage for {day}: {usage}"))
}

async fn quota_notices(api: &Api) -> Vec<Value> {
    let inbox = api.get_json("/api/v1/notifications").await.expect("inbox");
    inbox["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["step"] == "quota")
        .cloned()
        .collect()
}

/// Each run reached the sink exactly once (its idempotency key once), and nothing else did.
fn assert_each_delivered_once(sink: &Sink, runs: &[String]) {
    let by_key = sink.count_by_idempotency_key();
    let expected: HashMap<String, usize> = runs.iter().map(|r| (format!("{r}_push"), 1)).collect();
    assert_eq!(
        by_key, expected,
        "every run delivered once, none lost or doubled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_sets_quotas_that_a_server_reads_and_audits() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let cli = |args: &[&str]| crate::support::flowd::cli_in(dir.path(), args);
    let (ok, _, err) = cli(&["migrate"]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&["workspaces", "quota", "acme", "--runs-per-day", "5"]);
    assert!(!ok && err.contains("flowd workspaces create acme"), "{err}");
    let (ok, _, err) = cli(&["workspaces", "create", "acme"]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&["workspaces", "quota", "acme", "--runs-per-day", "0"]);
    assert!(
        !ok && err.contains("runs_per_day"),
        "a bad value names the field: {err}"
    );
    let set = [
        "workspaces",
        "quota",
        "acme",
        "--runs-per-day",
        "5",
        "--http-per-minute",
        "60",
    ];
    let (ok, _, err) = cli(&set);
    assert!(ok && err.contains("runs per day 5"), "{err}");

    let url = format!("sqlite://{}", dir.path().join("flowd.db").display());
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(&flows).expect("flows folder");
    let engine = TestEngine::start(&EngineSetup::new(url, &flows)).await;
    let api = engine.api();
    let quotas = api
        .get_json("/api/v1/workspaces/acme/quotas")
        .await
        .expect("the quotas");
    assert_eq!(
        (&quotas["runs_per_day"], &quotas["http_attempts_per_minute"]),
        (&json!(5), &json!(60)),
        "{quotas}"
    );
    let audit = api
        .get_json("/api/v1/audit?action=quotas.set")
        .await
        .expect("the audit log");
    let entry = &audit["items"][0];
    assert_eq!(
        (&entry["workspace"], &entry["actor"], &entry["target"]),
        (&json!("acme"), &json!("local"), &json!("acme")),
        "{audit}"
    );
    engine.stop().await;
}
