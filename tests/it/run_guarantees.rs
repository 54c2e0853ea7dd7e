//! Run guarantees of SPEC §5 that no other test pinned down (#21, item 12):
//! - a run parked in a delay keeps the revision it was created with after a `PUT` of its flow,
//!   while a replay of it runs the new revision;
//! - `settings.timeout` fails a run, also one parked on a long delay or a long retry backoff;
//! - two `flowd serve` processes on one SQLite file: a step that takes longer than the lease runs
//!   once while its owner lives (the owner renews the lease), and is taken over by the other node
//!   after its owner is killed with SIGKILL.

use std::time::Duration;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::support::api::Api;
use crate::support::engine::{EngineSetup, TestEngine};
use crate::support::flowd::{FlowdEnv, FlowdProcess};
use crate::support::sink::{Behaviour, Failure, Sink};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_run_keeps_its_revision_after_a_put_and_a_replay_takes_the_new_one() {
    let (_dir, engine) = engine().await;
    let api = engine.api();
    let v1 = revision_flow(1);
    create(&api, "POST", "/api/v1/flows", &v1, StatusCode::CREATED).await;
    let run = only_run(
        &api,
        json!({"entity": "parcel", "action": "create", "id": "1"}),
    )
    .await;
    api.wait_for_run(&run, |r| r["status"] == "waiting", Duration::from_secs(30))
        .await
        .expect("the run parks on its delay");
    create(
        &api,
        "PUT",
        "/api/v1/flows/revised",
        &revision_flow(2),
        StatusCode::OK,
    )
    .await;
    let (status, replay) = api
        .request("POST", &format!("/api/v1/runs/{run}/replay"), None)
        .await
        .expect("replay");
    assert_eq!(status, StatusCode::ACCEPTED, "{replay}");
    let replay = replay["run_id"].as_str().expect("a run id").to_owned();
    let runs = api
        .wait_until_all_terminal(&[run.clone(), replay.clone()], Duration::from_secs(60))
        .await
        .expect("both runs end");
    let version = |id: &str| {
        let r = &runs[id];
        (
            r["status"].clone(),
            r["revision"].clone(),
            r["steps"][1]["output"]["version"].clone(),
        )
    };
    assert_eq!(
        version(&run),
        (json!("succeeded"), json!(1), json!(1)),
        "{}",
        runs[&run]
    );
    assert_eq!(
        version(&replay),
        (json!("succeeded"), json!(2), json!(2)),
        "{}",
        runs[&replay]
    );
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_timeout_fails_a_run_also_while_it_waits_on_a_delay_or_a_backoff() {
    let sink = Sink::start_with(Behaviour {
        fail_first: usize::MAX,
        failure: Failure::Status(503),
        ..Behaviour::default()
    })
    .await;
    let (_dir, engine) = engine().await;
    let api = engine.api();
    let flows = [
        ("on-delay", "  - {id: wait, delay: 1h}\n".to_owned()),
        (
            "on-backoff",
            format!(
                "  - id: push\n    http:\n      url: \"{}\"\n      retry: {{attempts: 10, delay: 1h}}\n",
                sink.url("/push")
            ),
        ),
        (
            "on-steps",
            "  - {id: first, delay: 1s}\n  - {id: second, delay: 1s}\n  - {id: third, delay: 1s}\n"
                .to_owned(),
        ),
    ];
    let mut runs = Vec::new();
    for (id, steps) in &flows {
        let yaml = format!(
            "id: {id}\ntriggers:\n  - entity: {id}\n    on: [create]\nsettings:\n  timeout: 2s\nsteps:\n{steps}"
        );
        create(&api, "POST", "/api/v1/flows", &yaml, StatusCode::CREATED).await;
        runs.push(only_run(&api, json!({"entity": id, "action": "create", "id": "1"})).await);
    }
    let ended = api
        .wait_until_all_terminal(&runs, Duration::from_secs(60))
        .await
        .expect("every run ends at its deadline, not after its wait");
    for ((flow, _), id) in flows.iter().zip(&runs) {
        let run = &ended[id];
        assert_eq!(
            (&run["status"], &run["error"]),
            (
                &json!("failed"),
                &json!("the run timed out (settings.timeout)")
            ),
            "{flow}: {run}"
        );
        let lasted = time(&run["finished_at"]) - time(&run["created_at"]);
        assert!(
            lasted >= chrono::Duration::milliseconds(1_990)
                && lasted < chrono::Duration::seconds(30),
            "{flow}: the run lasted {lasted} with a 2s timeout: {run}"
        );
    }
    // The backoff run made its one attempt and waited; nothing more was sent.
    assert_eq!(sink.count(), 1, "{:?}", sink.requests());
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_sqlite_file_run_a_step_longer_than_the_lease_once_and_take_over_after_kill_9()
 {
    // Every answer takes three leases.
    let sink = Sink::start_with(Behaviour {
        delay: Duration::from_secs(6),
        ..Behaviour::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(&flows).expect("create the flows folder");
    std::fs::write(flows.join("long.yaml"), long_step_flow(&sink)).expect("write the flow");
    let url = format!("sqlite://{}", dir.path().join("flowd.db").display());
    let env = FlowdEnv {
        lease: "2s".to_owned(),
        ..FlowdEnv::new(url, flows)
    };

    // Both alive: each run's long step is sent once, whichever node claimed it.
    let mut a = FlowdProcess::start(&env).await;
    let b = FlowdProcess::start(&env).await;
    let mut runs = Vec::new();
    for (i, node) in [&a, &b, &a, &b].into_iter().enumerate() {
        runs.push(
            only_run(
                &node.api(),
                json!({"entity": "job", "action": "create", "id": i.to_string()}),
            )
            .await,
        );
    }
    let ended = b
        .api()
        .wait_until_all_terminal(&runs, Duration::from_secs(120))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", a.stderr_tail(), b.stderr_tail()));
    let counts = sink.count_by_idempotency_key();
    for id in &runs {
        let run = &ended[id];
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(
            counts.get(&format!("{id}_work")),
            Some(&1),
            "a live owner's long step is sent once: {counts:?}\n{}\n{}",
            a.stderr_tail(),
            b.stderr_tail()
        );
        assert_eq!(
            run["steps"][0]["attempts"].as_array().map(Vec::len),
            Some(1),
            "{run}"
        );
    }

    // B stops, so the next run is A's; A dies in the middle of the step and B, back, takes over.
    let mut b = b;
    b.terminate(Duration::from_secs(30)).await.expect("B stops");
    let run = only_run(
        &a.api(),
        json!({"entity": "job", "action": "create", "id": "last"}),
    )
    .await;
    let key = format!("{run}_work");
    assert!(
        sink.wait_for(
            |r| r.iter().any(|r| r.idempotency_key() == Some(&key)),
            Duration::from_secs(60)
        )
        .await,
        "A sends the step\n{}",
        a.stderr_tail()
    );
    let b = FlowdProcess::start(&env).await;
    a.kill_9().await;
    sink.set_behaviour(Behaviour::default());
    let ended = b
        .api()
        .wait_until_all_terminal(std::slice::from_ref(&run), Duration::from_secs(120))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", b.stderr_tail()));
    let run_json = &ended[&run];
    assert_eq!(run_json["status"], "succeeded", "{run_json}");
    assert_eq!(
        sink.count_by_idempotency_key().get(&key),
        Some(&2),
        "sent by A before the kill, again by B after the lease"
    );
    let attempts = run_json["steps"][0]["attempts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let nodes: Vec<&Value> = attempts.iter().map(|a| &a["node"]).collect();
    assert_eq!(
        attempts.len(),
        1,
        "A's attempt died with A; B's is recorded: {run_json}"
    );
    let b_node = b.api().get_json("/api/v1/nodes").await.expect("nodes");
    assert!(
        b_node["items"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|n| n["status"] == "alive" && Some(&&n["id"]) == nodes.first()),
        "the attempt is the live node's: {nodes:?} in {b_node}"
    );
}

async fn engine() -> (tempfile::TempDir, TestEngine) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("flowd.db").display());
    let engine = TestEngine::start(&EngineSetup {
        flows_dir: None,
        ..EngineSetup::new(url, "")
    })
    .await;
    (dir, engine)
}

async fn create(api: &Api, method: &str, path: &str, yaml: &str, expected: StatusCode) {
    let (status, body) = api
        .request(method, path, Some(("application/yaml", yaml)))
        .await
        .expect("the API answers");
    assert_eq!(status, expected, "{method} {path}: {body}");
}

async fn only_run(api: &Api, event: Value) -> String {
    let acks = api
        .post_events(&[event])
        .await
        .expect("the event is accepted");
    assert_eq!(acks[0].runs.len(), 1, "{acks:?}");
    acks[0].runs[0].clone()
}

fn time(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().expect("a time"))
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

fn revision_flow(version: u32) -> String {
    format!(
        "id: revised\ntriggers:\n  - entity: parcel\n    on: [create]\nsteps:\n  - {{id: pause, delay: 1s}}\n  - {{id: mark, map: {{version: {version}}}}}\n"
    )
}

fn long_step_flow(sink: &Sink) -> String {
    format!(
        "id: long\ntriggers:\n  - entity: job\n    on: [create]\nsteps:\n  - id: work\n    http:\n      url: \"{}\"\n      timeout: 1m\n      retry: {{attempts: 5, delay: 100ms}}\n",
        sink.url("/work")
    )
}
