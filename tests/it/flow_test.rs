//! `POST /api/v1/flows/{id}/test` (docs/api.md, "Testing a flow") on an engine of this process:
//! a dry run shows each step's output and the exact request the http step would send, secrets as
//! `***`, and sends and stores nothing; `"send": true` starts a real run of that flow only, which
//! reaches a real sink; an earlier run's trigger data can be tested again; and bad tests get a
//! 4xx naming what is wrong.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::support::api::{Api, is_terminal};
use crate::support::engine::{EngineSetup, TestEngine};
use crate::support::sink::Sink;

const DEADLINE: Duration = Duration::from_secs(60);
const TOKEN: &str = "tok-Very-Secret-42";

fn flows(dir: &std::path::Path, sink: &Sink) -> std::path::PathBuf {
    let flows = dir.join("flows");
    std::fs::create_dir_all(&flows).expect("create the flows folder");
    let push = format!(
        r#"id: push
name: Push guests
triggers:
  - entity: guest
    on: [create]
steps:
  - id: contact
    map: {{email: "{{{{entity.email}}}}", id: "{{{{entity.id}}}}"}}
  - id: wait
    delay: 1h
  - id: send
    http:
      url: "{}"
      headers: {{X-Token: "t={{{{secrets.TOKEN}}}}"}}
      body: "{{{{steps.contact}}}}"
"#,
        sink.url("/crm")
    );
    let other = r#"id: other
triggers:
  - entity: guest
    on: [create]
steps:
  - id: m
    map: {a: 1}
"#;
    let manual = r#"id: hello
triggers:
  - manual: {label: Say hello}
steps:
  - id: m
    map: {greeting: "Hello {{input.name}}"}
"#;
    for (name, yaml) in [
        ("push.yaml", push.as_str()),
        ("other.yaml", other),
        ("hello.yaml", manual),
    ] {
        std::fs::write(flows.join(name), yaml).expect("write a flow");
    }
    flows
}

async fn test(api: &Api, flow: &str, body: &str) -> (StatusCode, Value) {
    api.request(
        "POST",
        &format!("/api/v1/flows/{flow}/test"),
        Some(("application/json", body)),
    )
    .await
    .expect("the test request")
}

fn step<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("step {id} in {run}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_is_dry_run_then_sent_for_real() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let sink = Sink::start().await;
    let setup = EngineSetup {
        secrets: vec![("TOKEN".into(), TOKEN.into())],
        ..EngineSetup::new(
            format!("sqlite://{}", dir.path().join("flowd.db").display()),
            flows(dir.path(), &sink),
        )
    };
    let engine = TestEngine::start(&setup).await;
    let api = engine.api();
    let event = json!({"entity": "guest", "action": "create", "id": 42, "data": {"email": "ada@example.com"}});

    // The dry run: every step ran, the delay was not waited, the request is rendered.
    let (status, answer) = test(&api, "push", &json!({"event": event}).to_string()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["dry_run"], true);
    let run = &answer["run"];
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["flow"], "push");
    assert_eq!(
        step(run, "contact")["output"],
        json!({"email": "ada@example.com", "id": "42"})
    );
    assert!(
        answer["notes"]
            .to_string()
            .contains("step wait: not waited"),
        "{answer}"
    );
    let request = &step(run, "send")["attempts"][0]["request"];
    assert_eq!(request["method"], "POST");
    assert_eq!(request["url"], sink.url("/crm"));
    let headers = request["headers"].to_string();
    assert!(
        headers.contains(r#"{"name":"x-token","value":"***"}"#),
        "the secret is masked: {headers}"
    );
    assert!(
        !answer.to_string().contains(TOKEN),
        "no secret anywhere: {answer}"
    );
    let body: Value =
        serde_json::from_str(request["body"].as_str().expect("a body")).expect("JSON");
    assert_eq!(body, json!({"email": "ada@example.com", "id": "42"}));
    // Nothing was sent, and the real database holds no run.
    assert_eq!(sink.count(), 0);
    assert!(api.list_runs(None).await.expect("the runs").is_empty());

    // Sent for real: one run of this flow only (not of `other`, which takes the same event).
    let body = json!({"event": event, "send": true}).to_string();
    let (status, answer) = test(&api, "push", &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["dry_run"], false);
    let run_id = answer["run"]["id"].as_str().expect("a run id").to_string();
    let runs = api.list_runs(None).await.expect("the runs");
    assert_eq!(runs.len(), 1, "one run, of push only: {runs:?}");
    assert_eq!(runs[0]["flow"], "push");

    // An earlier run's trigger data, dry-run again: the same entity.
    let (status, answer) = test(&api, "push", &json!({"run_id": run_id}).to_string()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(step(&answer["run"], "contact")["output"]["id"], "42");

    // A manual flow takes `input`.
    let (status, answer) = test(&api, "hello", r#"{"input": {"name": "Ada"}}"#).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(step(&answer["run"], "m")["output"]["greeting"], "Hello Ada");

    // The real run is the flow's: it waits an hour at the delay; cancel it.
    let run = api
        .wait_for_run(&run_id, |r| r["status"] == "waiting", DEADLINE)
        .await
        .expect("the real run waits at its delay");
    assert_eq!(step(&run, "contact")["status"], "succeeded");
    let (status, _) = api
        .request("POST", &format!("/api/v1/runs/{run_id}/cancel"), None)
        .await
        .expect("cancel");
    assert!(status.is_success(), "{status}");
    api.wait_for_run(&run_id, is_terminal, DEADLINE)
        .await
        .expect("the run ends");
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sent_test_reaches_the_sink_with_the_secret() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let sink = Sink::start().await;
    let flows = flows(dir.path(), &sink);
    let push = std::fs::read_to_string(flows.join("push.yaml")).expect("the flow");
    std::fs::write(
        flows.join("push.yaml"),
        push.replace("delay: 1h", "delay: 0s"),
    )
    .expect("write the flow");
    let setup = EngineSetup {
        secrets: vec![("TOKEN".into(), TOKEN.into())],
        ..EngineSetup::new(
            format!("sqlite://{}", dir.path().join("flowd.db").display()),
            flows,
        )
    };
    let engine = TestEngine::start(&setup).await;
    let api = engine.api();
    let body = json!({"event": {"entity": "guest", "action": "create", "id": "7", "data": {"email": "bo@example.com"}}, "send": true});
    let (status, answer) = test(&api, "push", &body.to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let run_id = answer["run"]["id"].as_str().expect("a run id");
    let run = api
        .wait_for_run(run_id, is_terminal, DEADLINE)
        .await
        .expect("the run ends");
    assert_eq!(run["status"], "succeeded", "{run}");
    let received = sink.requests();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].header("x-token"),
        Some(format!("t={TOKEN}").as_str())
    );
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tests_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let sink = Sink::start().await;
    let engine = TestEngine::start(&EngineSetup::new(
        format!("sqlite://{}", dir.path().join("flowd.db").display()),
        flows(dir.path(), &sink),
    ))
    .await;
    let api = engine.api();
    let guest = r#"{"entity": "guest", "action": "create", "id": "1"}"#;
    let cases: Vec<(&str, String, StatusCode, &str, &str)> = vec![
        (
            "push",
            "{\"event\": ".into(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "JSON",
        ),
        (
            "push",
            "[]".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "JSON object",
        ),
        (
            "push",
            "{}".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "give one of `event`",
        ),
        (
            "push",
            format!(r#"{{"event": {guest}, "input": {{}}}}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "give one of",
        ),
        (
            "push",
            r#"{"event": {"entity": "guest", "id": "1"}}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "`event` is not an event: missing field `action`",
        ),
        (
            "push",
            r#"{"event": {"entity": "Guest!", "action": "create", "id": "1"}}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "`event.entity` must be an entity type",
        ),
        (
            "push",
            r#"{"event": {"entity": "order", "action": "create", "id": "1"}}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "trigger_mismatch",
            "matches none of flow `push`'s triggers: entity `guest` on create",
        ),
        (
            "push",
            r#"{"input": {"a": 1}}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "trigger_mismatch",
            "flow `push` has no manual trigger or webhook trigger; its triggers: entity `guest` on create",
        ),
        (
            "hello",
            format!(r#"{{"event": {guest}}}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "trigger_mismatch",
            "flow `hello` has no entity trigger, so no event starts it; its triggers: manual (`input`). Use `input`",
        ),
        (
            "hello",
            r#"{"input": [1]}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "`input` must be an object",
        ),
        (
            "push",
            r#"{"run_id": "0190f5d0-0000-7000-8000-000000000000"}"#.into(),
            StatusCode::NOT_FOUND,
            "not_found",
            "no run `0190f5d0-0000-7000-8000-000000000000` of flow `push`",
        ),
        (
            "nope",
            format!(r#"{{"event": {guest}}}"#),
            StatusCode::NOT_FOUND,
            "not_found",
            "no flow `nope`",
        ),
        (
            "push",
            r#"{"event": {}, "sent": true}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "unknown field `sent`",
        ),
    ];
    for (flow, body, status, code, message) in cases {
        let (got, answer) = test(&api, flow, &body).await;
        assert_eq!(got, status, "{flow} {body}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{flow} {body}: {answer}");
        let text = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(text.contains(message), "{flow} {body}: {text}");
    }
    // A paused flow is not sent to; a dry run still shows what it would do.
    let (status, _) = api
        .request("POST", "/api/v1/flows/push/pause", None)
        .await
        .expect("pause");
    assert!(status.is_success());
    let event = format!(r#"{{"event": {guest}, "send": true}}"#);
    let (status, answer) = test(&api, "push", &event).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"]["code"], "flow_paused");
    let (status, answer) = test(&api, "push", &format!(r#"{{"event": {guest}}}"#)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(api.list_runs(None).await.expect("the runs").is_empty());
    engine.stop().await;
}
