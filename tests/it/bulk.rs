//! Bulk retry and replay through the real `flowd` binary on SQLite. 2,000 runs fail against a
//! target that answers 500; `POST /api/v1/runs/retry` starts an operation; the server is
//! restarted while the operation is half-way; the operation resumes where it was and ends
//! `done` with every run retried exactly once, counted at the sink by run id (one failed
//! request and one delivery each) and by each run's attempt number. Bad filters get a 400
//! naming what is wrong, and a replay starts one new run per matched run.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::api::Api;
use crate::support::flowd::{FlowdEnv, FlowdProcess};
use crate::support::sink::{Behaviour, Failure, Sink};

const RUNS: usize = 2_000;
const BATCH: usize = 100;
const PATIENCE: Duration = Duration::from_secs(240);
const POLL: Duration = Duration::from_millis(50);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_retry_survives_a_restart_and_retries_each_run_once() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let sink = Sink::start_with(Behaviour {
        fail_first: RUNS,
        failure: Failure::Status(500),
        ..Behaviour::default()
    })
    .await;
    let env = FlowdEnv::new(sqlite_url(dir.path()), flows(dir.path(), &sink));
    let mut server = FlowdProcess::start(&env).await;
    let api = server.api();
    let runs = failed_runs(&api).await;

    let (status, bad) = post(&api, "/api/v1/runs/retry", json!({"status": "succeeded"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    assert!(
        bad.to_string().contains("only failed or cancelled"),
        "{bad}"
    );
    let (status, bad) = post(&api, "/api/v1/runs/retry", json!({"flows": "bulk"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    assert!(
        bad.to_string().contains("unknown filter key `flows`"),
        "{bad}"
    );

    let (status, started) = post(
        &api,
        "/api/v1/runs/retry",
        json!({"flow": "bulk", "status": "failed"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    assert_eq!(started["matched"], RUNS, "{started}");
    let op_path = format!(
        "/api/v1/operations/{}",
        started["operation_id"].as_str().expect("an operation id")
    );
    let midway = wait_for_op(&api, &op_path, |op| {
        op["done"]
            .as_i64()
            .is_some_and(|d| d > 0 && d < RUNS as i64)
    })
    .await;
    assert_eq!(midway["state"], "running", "{midway}");
    server
        .terminate(Duration::from_secs(60))
        .await
        .expect("the server stops");
    let server = FlowdProcess::start(&env).await;
    let api = server.api();
    let shown = api.get_json(&op_path).await.expect("the operation");
    assert!(
        shown["done"].as_i64() < Some(RUNS as i64),
        "the restart came after the end: {shown}"
    );
    let end = wait_for_op(&api, &op_path, |op| op["state"] != "running").await;
    assert_eq!(
        (&end["state"], &end["done"], &end["skipped"]),
        (&json!("done"), &json!(RUNS), &json!(0)),
        "{end}"
    );
    let finished = api
        .wait_until_all_terminal(&runs, PATIENCE)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.stderr_tail()));
    let mut problems = Vec::new();
    for (id, run) in &finished {
        if run["status"] != "succeeded" || run["attempt"] != 2 {
            problems.push(format!(
                "run {id}: {} attempt {}",
                run["status"], run["attempt"]
            ));
        }
    }
    let mut at_sink: HashMap<String, (usize, usize)> = HashMap::new();
    for request in sink.requests() {
        let run = request
            .idempotency_key()
            .and_then(|k| k.split('_').next())
            .unwrap_or_default()
            .to_owned();
        let counts = at_sink.entry(run).or_default();
        if request.accepted() {
            counts.1 += 1;
        } else {
            counts.0 += 1;
        }
    }
    for id in &runs {
        if at_sink.get(id) != Some(&(1, 1)) {
            problems.push(format!(
                "run {id}: (failed, delivered) at the sink {:?}",
                at_sink.get(id)
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} runs not retried exactly once, e.g.:\n{}",
        problems.len(),
        problems[..problems.len().min(20)].join("\n")
    );

    // A replay starts one new run per matched run, here the ten newest.
    let since = finished
        .values()
        .filter_map(|r| r["created_at"].as_str())
        .max()
        .expect("a creation time")
        .to_owned();
    let (status, replay) = post(
        &api,
        "/api/v1/runs/replay",
        json!({"flow": "bulk", "since": since}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{replay}");
    let replay_path = format!(
        "/api/v1/operations/{}",
        replay["operation_id"].as_str().unwrap()
    );
    let replayed = wait_for_op(&api, &replay_path, |op| op["state"] == "done").await;
    assert!(replayed["done"].as_i64() >= Some(1), "{replayed}");
    assert!(
        sink.wait_for(
            |all| all.iter().filter(|r| r.accepted()).count()
                == RUNS + replayed["done"].as_u64().unwrap() as usize,
            PATIENCE
        )
        .await,
        "the replayed runs are delivered"
    );
}

/// `RUNS` events whose runs all fail (one attempt each against the failing sink).
async fn failed_runs(api: &Api) -> Vec<String> {
    let mut runs = Vec::with_capacity(RUNS);
    for batch in 0..RUNS / BATCH {
        let events: Vec<Value> = (0..BATCH)
            .map(|i| json!({"entity": "guest", "action": "create", "id": format!("{}", batch * BATCH + i)}))
            .collect();
        let acks = api.post_events(&events).await.expect("events accepted");
        runs.extend(acks.into_iter().flat_map(|a| a.runs));
    }
    assert_eq!(runs.len(), RUNS);
    let ended = api
        .wait_until_all_terminal(&runs, PATIENCE)
        .await
        .expect("every run ends");
    assert!(
        ended.values().all(|r| r["status"] == "failed"),
        "every run failed first"
    );
    runs
}

async fn wait_for_op(api: &Api, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let op = api.get_json(path).await.expect("the operation");
        if done(&op) {
            return op;
        }
        assert!(
            Instant::now() < deadline,
            "the operation did not get there: {op}"
        );
        tokio::time::sleep(POLL).await;
    }
}

async fn post(api: &Api, path: &str, body: Value) -> (StatusCode, Value) {
    api.request("POST", path, Some(("application/json", &body.to_string())))
        .await
        .expect("an answer in JSON")
}

fn flows(dir: &Path, sink: &Sink) -> std::path::PathBuf {
    let flows = dir.join("flows");
    std::fs::create_dir_all(&flows).expect("create the flows folder");
    let yaml = format!(
        "id: bulk\ntriggers:\n  - entity: guest\nsettings:\n  retry: {{attempts: 1}}\n  auto_pause: off\nsteps:\n  - id: push\n    http: {{url: \"{}\", body: {{id: \"{{{{entity.id}}}}\"}}}}\n",
        sink.url("/in")
    );
    std::fs::write(flows.join("bulk.yaml"), yaml).expect("write a flow");
    flows
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("flowd.db").display())
}
