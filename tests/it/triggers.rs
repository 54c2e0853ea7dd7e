//! How runs begin, through the API of an engine in the test process: entity events with their
//! filters, batches and duplicates; manual actions with `?wait=`; cron schedules (also two
//! engines on one database). Inbound webhooks with Standard Webhooks signatures run against the
//! real `flowd serve`, since their secret is configured through the environment.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::Request;
use chrono::{DateTime, Utc};
use flowd::outbound::sign::sign;
use flowd::store::testing::TestDb;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::api::Api;
use crate::support::engine::{EngineSetup, TestEngine};
use crate::support::flowd::{FlowdEnv, FlowdProcess};
use crate::support::sink::Sink;

const PATIENCE: Duration = Duration::from_secs(90);
const HOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entity_filters_include_and_exclude() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let flows = write_flows(
        dir.path(),
        &[(
            "filters.yaml",
            r#"
id: vip-only
triggers:
  - entity: guest
    on: [create]
    ids: [7, "x-9"]
  - entity: guest
    on: update
    fields: [status]
  - entity: invoice
    if: "{{gt entity.total 100}}"
steps:
  - id: note
    map: {seen: "{{entity.id}}"}
"#,
        )],
    );
    let engine = TestEngine::start(&EngineSetup::new(sqlite_url(dir.path()), flows)).await;
    let api = engine.api();
    let cases = [
        (
            json!({"entity": "guest", "action": "create", "id": 7}),
            1,
            "id in ids",
        ),
        (
            json!({"entity": "guest", "action": "create", "id": "x-9"}),
            1,
            "text id in ids",
        ),
        (
            json!({"entity": "guest", "action": "create", "id": "8"}),
            0,
            "id not in ids",
        ),
        (
            json!({"entity": "guest", "action": "update", "id": "8", "data": {"status": "confirmed", "name": "A"}, "previous": {"status": "invited", "name": "A"}}),
            1,
            "watched field changed",
        ),
        (
            json!({"entity": "guest", "action": "update", "id": "8", "data": {"status": "confirmed", "name": "B"}, "previous": {"status": "confirmed", "name": "A"}}),
            0,
            "only another field changed",
        ),
        (
            json!({"entity": "guest", "action": "delete", "id": "7"}),
            0,
            "action not listened to",
        ),
        (
            json!({"entity": "invoice", "action": "create", "id": "1", "data": {"total": 250}}),
            1,
            "if holds",
        ),
        (
            json!({"entity": "invoice", "action": "update", "id": "1", "data": {"total": 50}}),
            0,
            "if does not hold",
        ),
        (
            json!({"entity": "contact", "action": "create", "id": "1"}),
            0,
            "other entity type",
        ),
    ];
    for (event, runs, why) in cases {
        let acks = api
            .post_events(std::slice::from_ref(&event))
            .await
            .expect("accepted");
        assert_eq!(acks[0].runs.len(), runs, "{why}: {event}");
        for run in &acks[0].runs {
            let run = api
                .wait_for_run(run, |r| r["status"] == "succeeded", PATIENCE)
                .await
                .expect("the run completes");
            assert_eq!(
                run["steps"][0]["output"]["seen"],
                json!(event["id"].to_string().trim_matches('"'))
            );
        }
    }
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_duplicates_and_bad_events() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let flows = write_flows(
        dir.path(),
        &[(
            "count.yaml",
            "id: count\ntriggers:\n  - entity: guest\n    on: create\nsteps:\n  - id: m\n    map: {id: \"{{entity.id}}\"}\n",
        )],
    );
    let engine = TestEngine::start(&EngineSetup::new(sqlite_url(dir.path()), flows)).await;
    let api = engine.api();

    // 1,000 events in one request: 1,000 runs, every one completes.
    let batch: Vec<Value> = (0..1000)
        .map(|i| json!({"entity": "guest", "action": "create", "id": i, "event_id": format!("e-{i}")}))
        .collect();
    let acks = api.post_events(&batch).await.expect("batch accepted");
    let runs: Vec<String> = acks.iter().flat_map(|a| a.runs.clone()).collect();
    assert_eq!(runs.len(), 1000);
    assert_eq!(
        runs.iter().collect::<HashSet<_>>().len(),
        1000,
        "distinct runs"
    );
    let ended = api
        .wait_until_all_terminal(&runs, PATIENCE)
        .await
        .expect("all end");
    assert!(ended.values().all(|r| r["status"] == "succeeded"));

    // The same event ids again: the first answers, no new runs.
    let again = api.post_events(&batch[..10]).await.expect("accepted again");
    for (first, second) in acks.iter().zip(&again) {
        assert_eq!(
            first.runs, second.runs,
            "a repeated event_id gets the first answer"
        );
    }
    assert_eq!(
        api.list_runs(None).await.expect("runs").len(),
        1000,
        "nothing new started"
    );

    // One bad event rejects the batch: 422 naming it, nothing stored.
    let mut bad = vec![json!({"entity": "guest", "action": "create", "id": "fresh-1"})];
    bad.push(json!({"entity": "guest", "action": "explode", "id": "2"}));
    bad.push(json!({"entity": "Guest!", "action": "create", "id": "3"}));
    let (status, answer) = request(&api, "POST", "/api/v1/events", Some(json!(bad))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_event");
    let details = answer["error"]["details"].as_array().expect("details");
    assert_eq!(details.len(), 2, "{answer}");
    assert_eq!(
        (details[0]["index"].clone(), details[0]["field"].clone()),
        (json!(1), json!("action"))
    );
    assert_eq!(
        (details[1]["index"].clone(), details[1]["field"].clone()),
        (json!(2), json!("entity"))
    );
    assert_eq!(
        api.list_runs(None).await.expect("runs").len(),
        1000,
        "nothing stored"
    );
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_actions_run_and_wait() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let sink = Sink::start().await;
    let resend = format!(
        r#"
id: resend-invoice
triggers:
  - manual: {{label: "Resend to accounting", entity: invoice}}
steps:
  - id: pick
    map: {{number: "{{{{entity.number}}}}", reason: "{{{{input.reason}}}}", id: "{{{{entity.id}}}}"}}
  - id: send
    http: {{url: "{}", body: "{{{{steps.pick}}}}"}}
"#,
        sink.url("/accounting")
    );
    let flows = write_flows(
        dir.path(),
        &[
            ("resend.yaml", resend.as_str()),
            (
                "plain.yaml",
                "id: plain\ntriggers:\n  - manual: {label: Ping}\nsteps:\n  - id: m\n    map: {at: \"{{now}}\"}\n",
            ),
            (
                "auto.yaml",
                "id: auto\ntriggers:\n  - entity: invoice\nsteps:\n  - id: m\n    map: {x: 1}\n",
            ),
        ],
    );
    let engine = TestEngine::start(&EngineSetup::new(sqlite_url(dir.path()), flows)).await;
    let api = engine.api();

    let (status, run) = request(
        &api,
        "POST",
        "/api/v1/flows/resend-invoice/trigger?wait=20s",
        Some(json!({"input": {"reason": "lost"}, "entity": {"type": "invoice", "id": 42, "data": {"number": "F-2026-7"}}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        run["steps"][0]["output"],
        json!({"number": "F-2026-7", "reason": "lost", "id": "42"})
    );
    assert_eq!(run["steps"][1]["output"]["status"], 200);
    assert_eq!(
        sink.requests()[0].json(),
        Some(json!({"number": "F-2026-7", "reason": "lost", "id": "42"}))
    );

    // Without wait: 202 and the run id; an empty body is fine for a flow without entity.
    let (status, answer) = request(&api, "POST", "/api/v1/flows/plain/trigger", None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let run_id = answer["run_id"].as_str().expect("run id");
    api.wait_for_run(run_id, |r| r["status"] == "succeeded", PATIENCE)
        .await
        .expect("the manual run completes");

    let refused = [
        (
            "/api/v1/flows/nope/trigger",
            json!({}),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "/api/v1/flows/auto/trigger",
            json!({}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_manual_trigger",
        ),
        (
            "/api/v1/flows/resend-invoice/trigger",
            json!({"entity": {"type": "guest", "id": "1"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "entity_mismatch",
        ),
        (
            "/api/v1/flows/resend-invoice/trigger",
            json!({}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "entity_mismatch",
        ),
        (
            "/api/v1/flows/plain/trigger",
            json!({"input": [1]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            "/api/v1/flows/plain/trigger",
            json!({"inputs": {}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            "/api/v1/flows/plain/trigger?wait=soon",
            json!({}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ];
    for (path, body, code, error) in refused {
        let (status, answer) = request(&api, "POST", path, Some(body.clone())).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (code, Some(error)),
            "{path} {body}: {answer}"
        );
    }

    let (status, actions) = request(&api, "GET", "/api/v1/actions?entity=invoice", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        actions,
        json!({"items": [{"flow": "resend-invoice", "workspace": "default", "label": "Resend to accounting", "entity": "invoice"}]})
    );
    let (_, none) = request(&api, "GET", "/api/v1/actions?entity=guest", None).await;
    assert_eq!(none, json!({"items": []}));
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_verify_signatures_and_run_once() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let flows = write_flows(
        dir.path(),
        &[
            (
                "signed.yaml",
                "id: signed\ntriggers:\n  - webhook: {path: shop/orders, secret: \"{{secrets.HOOK}}\"}\nsteps:\n  - id: m\n    map: {order: \"{{input.order}}\"}\n",
            ),
            (
                "open.yaml",
                "id: open\ntriggers:\n  - webhook: {path: inbox}\nsteps:\n  - id: m\n    map: {got: \"{{input}}\"}\n",
            ),
        ],
    );
    let mut env = FlowdEnv::new(sqlite_url(dir.path()), flows);
    env.extra
        .push(("FLOWD_SECRET_HOOK".into(), HOOK_SECRET.into()));
    let flowd = FlowdProcess::start(&env).await;
    let api = flowd.api();
    let body = br#"{"order":"A-17"}"#;
    let now = Utc::now().timestamp();
    let hook = |headers: &[(&str, String)]| {
        let mut request =
            Request::post("/hooks/shop/orders").header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        request.body(body.to_vec()).expect("a request")
    };
    let signed = |id: &str, timestamp: i64, secret: &str| {
        let signature = sign(secret, id, timestamp, body).expect("sign");
        hook(&[
            ("webhook-id", id.to_owned()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
        ])
    };

    let first = api
        .send(signed("msg_1", now, HOOK_SECRET))
        .await
        .expect("sent");
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let first: Value = first.json_strict().unwrap();
    let run_id = first["run_id"].as_str().expect("run id").to_owned();
    let run = api
        .wait_for_run(&run_id, |r| r["status"] == "succeeded", PATIENCE)
        .await
        .expect("the webhook run completes");
    assert_eq!(run["steps"][0]["output"], json!({"order": "A-17"}));

    let again = api
        .send(signed("msg_1", now, HOOK_SECRET))
        .await
        .expect("sent");
    assert_eq!(again.status, StatusCode::ACCEPTED);
    let again: Value = again.json_strict().unwrap();
    assert_eq!(again, first, "a repeated webhook-id gets the first answer");

    let other_secret = "whsec_dGhpcyBpcyBub3QgdGhlIHNlY3JldA==";
    let rejected = [
        ("wrong secret", signed("msg_2", now, other_secret)),
        ("old timestamp", signed("msg_3", now - 600, HOOK_SECRET)),
        ("no signature", hook(&[])),
    ];
    for (why, request) in rejected {
        let response = api.send(request).await.expect("sent");
        assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{why}");
        let answer: Value = response.json_strict().unwrap();
        assert_eq!(answer["error"]["code"], "invalid_signature", "{why}");
    }
    let runs = api.list_runs(None).await.expect("runs");
    assert_eq!(
        runs.len(),
        1,
        "only the first signed request started a run: {runs:?}"
    );

    // Unsigned hooks take form and text bodies as input; an unknown path is 404.
    let form = api
        .call(
            "POST",
            "/hooks/inbox",
            Some((
                "application/x-www-form-urlencoded",
                "name=Ada+L&tag=vip".as_bytes(),
            )),
            &[],
        )
        .await
        .expect("sent");
    assert_eq!(form.status, StatusCode::ACCEPTED);
    let form: Value = form.json_strict().unwrap();
    let run = api
        .wait_for_run(
            form["run_id"].as_str().unwrap(),
            |r| r["status"] == "succeeded",
            PATIENCE,
        )
        .await
        .expect("the form run completes");
    assert_eq!(
        run["trigger"]["input"],
        json!({"name": "Ada L", "tag": "vip"})
    );
    let text = api
        .call(
            "POST",
            "/hooks/inbox",
            Some(("text/plain", "hello {{there}}".as_bytes())),
            &[],
        )
        .await
        .expect("sent");
    let text: Value = text.json_strict().unwrap();
    let run = api
        .wait_for_run(
            text["run_id"].as_str().unwrap(),
            |r| r["status"] == "succeeded",
            PATIENCE,
        )
        .await
        .expect("the text run completes");
    assert_eq!(run["steps"][0]["output"], json!({"got": "hello {{there}}"}));
    let (status, answer) = request(&api, "POST", "/hooks/nowhere", Some(json!({}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_fires_once_per_second_on_sqlite_with_two_engines() {
    let dir = tempfile::tempdir().expect("temporary directory");
    schedule_fires_once_per_second(&sqlite_url(dir.path()), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_fires_once_per_second_on_postgres_with_two_engines() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    schedule_fires_once_per_second(&db.url, dir.path()).await;
    db.cleanup().await;
}

/// Two engines on one database with a per-second schedule: after a few seconds there is one run
/// per fire time (never two), the fire times are whole, consecutive seconds.
async fn schedule_fires_once_per_second(database_url: &str, dir: &Path) {
    let flows = write_flows(
        dir,
        &[(
            "tick.yaml",
            "id: tick\ntriggers:\n  - schedule: {cron: \"* * * * * *\"}\nsteps:\n  - id: m\n    map: {at: \"{{event.occurred_at}}\"}\n",
        )],
    );
    let one = TestEngine::start(&EngineSetup::new(database_url, &flows)).await;
    let two = TestEngine::start(&EngineSetup::new(database_url, &flows)).await;
    let api = one.api();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let runs = loop {
        let runs = api.list_runs(None).await.expect("runs");
        if runs.len() >= 6 || tokio::time::Instant::now() > deadline {
            break runs;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        runs.len() >= 6,
        "a per-second schedule fired {} times",
        runs.len()
    );
    let mut fires: Vec<DateTime<Utc>> = runs
        .iter()
        .map(|r| {
            r["trigger"]["fire_at"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_else(|| panic!("no fire time in {r}"))
        })
        .collect();
    fires.sort();
    let mut per_second: HashMap<i64, usize> = HashMap::new();
    for fire in &fires {
        assert_eq!(fire.timestamp_subsec_millis(), 0, "whole seconds: {fire}");
        *per_second.entry(fire.timestamp()).or_default() += 1;
    }
    assert!(
        per_second.values().all(|n| *n == 1),
        "a second fired twice: {fires:?}"
    );
    let gaps = fires
        .windows(2)
        .filter(|w| (w[1] - w[0]).num_seconds() > 1)
        .count();
    assert!(gaps <= 1, "fire times skip seconds: {fires:?}");
    one.stop().await;
    two.stop().await;
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("flowd.db").display())
}

fn write_flows(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    let flows = dir.join("flows");
    std::fs::create_dir_all(&flows).expect("create the flows folder");
    for (name, yaml) in files {
        std::fs::write(flows.join(name), yaml).expect("write the flow");
    }
    flows
}

async fn request(api: &Api, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let body = body.map(|body| body.to_string());
    let body = body.as_deref().map(|b| ("application/json", b.as_bytes()));
    let answer = api
        .call(method, path, body, &[])
        .await
        .expect("the server answers");
    let value = answer
        .json_strict()
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    (answer.status, value)
}
