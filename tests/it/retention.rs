//! Retention through the real `flowd` binary on SQLite with `FLOWD_RETENTION=1s`: while events
//! keep arriving, finished runs disappear in batches (the run log shrinks below what was
//! created, during the load), and once everything is delivered and pruned, `GET /api/v1/usage`
//! still counts every run, success and HTTP attempt exactly as the sink counted them. And runs
//! that fail, are folded into the usage rollup, are retried, succeed and are pruned stay
//! counted once, as the sink saw them.

use std::path::Path;
use std::time::{Duration, Instant};

use flowd::store::sql::{get, stmt};
use flowd::store::{Store, StoreOptions};
use reqwest::StatusCode;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::support::api::Api;
use crate::support::flowd::{FlowdEnv, FlowdProcess};
use crate::support::sink::{Behaviour, Failure, Sink};

const ROUNDS: usize = 30;
const BATCH: usize = 50;
const PATIENCE: Duration = Duration::from_secs(180);
const POLL: Duration = Duration::from_millis(100);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_runs_are_pruned_under_load_and_usage_stays_exact() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let sink = Sink::start().await;
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(&flows).expect("create the flows folder");
    let yaml = format!(
        "id: kept\ntriggers:\n  - entity: guest\nsteps:\n  - id: push\n    http: {{url: \"{}\", body: {{id: \"{{{{entity.id}}}}\"}}}}\n",
        sink.url("/in")
    );
    std::fs::write(flows.join("kept.yaml"), yaml).expect("write a flow");
    let env = FlowdEnv {
        extra: vec![("FLOWD_RETENTION".into(), "1s".into())],
        ..FlowdEnv::new(sqlite_url(dir.path()), flows)
    };
    let server = FlowdProcess::start(&env).await;
    let api = server.api();

    for round in 0..ROUNDS {
        let events: Vec<Value> = (0..BATCH)
            .map(|i| json!({"entity": "guest", "action": "create", "id": format!("{round}-{i}")}))
            .collect();
        api.post_events(&events).await.expect("events accepted");
        if round % 10 == 9 {
            // Mid-load: some of the runs created so far must be gone already.
            wait_until(|| async { runs_listed(&api).await < (round + 1) * BATCH }).await;
        }
    }
    let total = ROUNDS * BATCH;
    assert!(
        sink.wait_for(|all| all.len() == total, PATIENCE).await,
        "every run is delivered once: {} of {total}",
        sink.count()
    );
    wait_until(|| async { runs_listed(&api).await == 0 }).await;

    let usage = usage_of(&api, "kept").await;
    let sum = |key: &str| usage_sum(&usage, key);
    let delivered = sink.requests().iter().filter(|r| r.accepted()).count() as i64;
    assert_eq!(
        (
            sum("runs_started"),
            sum("runs_succeeded"),
            sum("http_attempts")
        ),
        (delivered, delivered, sink.count() as i64),
        "usage after pruning: {usage}"
    );
}

const FAILING: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_folded_retried_and_pruned_runs_are_counted_once() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let sink = Sink::start_with(Behaviour {
        fail_first: FAILING,
        failure: Failure::Status(500),
        ..Behaviour::default()
    })
    .await;
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(&flows).expect("create the flows folder");
    let yaml = format!(
        "id: again\ntriggers:\n  - entity: guest\nsettings:\n  retry: {{attempts: 1}}\n  auto_pause: off\nsteps:\n  - id: push\n    http: {{url: \"{}\", body: {{id: \"{{{{entity.id}}}}\"}}}}\n",
        sink.url("/in")
    );
    std::fs::write(flows.join("again.yaml"), yaml).expect("write a flow");
    let url = sqlite_url(dir.path());
    let env = FlowdEnv::new(url.clone(), flows.clone());
    let mut server = FlowdProcess::start(&env).await;
    let api = server.api();

    let events: Vec<Value> = (0..FAILING)
        .map(|i| json!({"entity": "guest", "action": "create", "id": format!("g{i}")}))
        .collect();
    let runs: Vec<String> = api
        .post_events(&events)
        .await
        .expect("events accepted")
        .into_iter()
        .flat_map(|ack| ack.runs)
        .collect();
    let ended = api
        .wait_until_all_terminal(&runs, PATIENCE)
        .await
        .expect("every run ends");
    assert!(ended.values().all(|r| r["status"] == "failed"), "{ended:?}");
    // The background fold takes the failed runs into the rollup before they are retried.
    wait_until(|| async { folded_runs(&url).await == FAILING as i64 }).await;
    let failed = usage_of(&api, "again").await;
    assert_eq!(
        ["runs_started", "runs_failed", "http_attempts"].map(|k| usage_sum(&failed, k)),
        [FAILING as i64, sink.count() as i64, sink.count() as i64],
        "{failed}"
    );

    let (status, body) = api
        .request(
            "POST",
            "/api/v1/runs/retry",
            Some((
                "application/json",
                r#"{"flow": "again", "status": "failed"}"#,
            )),
        )
        .await
        .expect("an answer in JSON");
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let delivered = || sink.requests().iter().filter(|r| r.accepted()).count();
    assert!(
        sink.wait_for(
            |all| all.iter().filter(|r| r.accepted()).count() == FAILING,
            PATIENCE
        )
        .await,
        "every retried run is delivered: {} of {FAILING}",
        delivered()
    );
    api.wait_until_all_terminal(&runs, PATIENCE)
        .await
        .expect("every retried run ends");
    server.terminate(PATIENCE).await.expect("the server stops");

    // Now prune them all: FLOWD_RETENTION=1s.
    let env = FlowdEnv {
        extra: vec![("FLOWD_RETENTION".into(), "1s".into())],
        ..FlowdEnv::new(url.clone(), flows)
    };
    let server = FlowdProcess::start(&env).await;
    let api = server.api();
    wait_until(|| async { runs_listed(&api).await == 0 }).await;
    let usage = usage_of(&api, "again").await;
    let at_sink = (delivered() as i64, sink.count() as i64);
    assert_eq!(
        at_sink,
        (FAILING as i64, 2 * FAILING as i64),
        "the sink saw a failure and a delivery per run"
    );
    assert_eq!(
        [
            "runs_started",
            "runs_succeeded",
            "runs_failed",
            "http_attempts"
        ]
        .map(|k| usage_sum(&usage, k)),
        [FAILING as i64, at_sink.0, 0, at_sink.1],
        "usage after retry and pruning: {usage}"
    );
}

async fn usage_of(api: &Api, flow: &str) -> Value {
    api.get_json(&format!("/api/v1/usage?flow={flow}"))
        .await
        .expect("usage")
}

fn usage_sum(usage: &Value, key: &str) -> i64 {
    usage["items"]
        .as_array()
        .expect("usage items")
        .iter()
        .map(|d| d[key].as_i64().unwrap_or(0))
        .sum()
}

/// How many runs the background fold has taken into the usage rollup, read from the file.
async fn folded_runs(database_url: &str) -> i64 {
    let store = Store::connect(database_url, &StoreOptions::default())
        .await
        .expect("open the database");
    let sql = "SELECT COUNT(*) AS n FROM runs WHERE usage_folded = TRUE";
    let row = store
        .reader()
        .query_one_raw(stmt(store.backend(), sql, Vec::new()))
        .await
        .expect("query the runs")
        .expect("one row");
    let folded = get::<i64>(&row, "n").expect("a count");
    store.close().await;
    folded
}

async fn runs_listed(api: &Api) -> usize {
    api.list_runs(None).await.expect("the run log").len()
}

async fn wait_until<F: Future<Output = bool>>(check: impl Fn() -> F) {
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {PATIENCE:?}");
        tokio::time::sleep(POLL).await;
    }
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("flowd.db").display())
}
