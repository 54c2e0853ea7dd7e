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

use crate::api_flows::wait_for_flow;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_flow_pauses_itself_and_loses_nothing_on_sqlite() {
    let dir = tempfile::tempdir().expect("temporary directory");
    auto_pause(&sqlite_url(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_flow_pauses_itself_and_loses_nothing_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    auto_pause(&db.url).await;
    db.cleanup().await;
}

/// A flow against an endpoint that answers 500 (to its first three requests) pauses itself
/// after three failed runs, says so in the inbox, holds the next event, and delivers it once
/// the endpoint works and the flow is resumed.
async fn auto_pause(database_url: &str) {
    let (sink, engine) = start(database_url, 3).await;
    let api = engine.api();
    let settings = "auto_pause: {after_failed_runs: 3}\n  retry: {attempts: 1}";
    create_flow(&api, &flow_yaml("flaky", &sink, settings)).await;
    for id in ["1", "2", "3"] {
        let run = one_event(&api, id).await;
        api.wait_for_run(&run, |r| r["status"] == "failed", PATIENCE)
            .await
            .expect("the run fails");
    }
    let flow = wait_for_flow(&api, "flaky", |f| f["paused"] == true).await;
    assert_eq!(flow["pause_reason"], "auto_paused", "{flow}");
    let detail = flow["pause_detail"].as_str().unwrap_or_default();
    assert!(detail.contains("3 runs failed in a row"), "{flow}");
    let (_, inbox) = send(&api, "GET", "/api/v1/notifications", None).await;
    let notes: Vec<&Value> = inbox["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["flow"] == "flaky")
        .collect();
    assert_eq!(notes.len(), 1, "one notification for one trip: {inbox}");
    assert!(
        notes[0]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("3 runs failed"),
        "{inbox}"
    );

    let held = one_event(&api, "4").await;
    let shown = api.get_run(&held).await.unwrap().unwrap();
    assert_eq!(shown["status"], "held", "{shown}");
    let (status, _) = send(&api, "POST", "/api/v1/flows/flaky/resume", None).await;
    assert_eq!(status, StatusCode::OK);
    api.wait_for_run(&held, |r| r["status"] == "succeeded", PATIENCE)
        .await
        .expect("the held run is delivered after the resume");
    assert_eq!(
        (sink.count(), sink.deliveries_by_idempotency_key().len()),
        (4, 1)
    );
    engine.stop().await;
}

/// `auto_pause.notify` also tells a Slack-style channel (a real local HTTP receiver) when the
/// breaker trips, once, with the numbers that tripped it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_that_pauses_itself_tells_the_channel_it_names() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (sink, engine) = start(&sqlite_url(dir.path()), 1_000).await;
    let slack = Sink::start().await;
    let api = engine.api();
    let hook_path = "/services/T0/B0/hook";
    let settings = format!(
        "auto_pause:\n    after_failed_runs: 2\n    notify: {{channel: slack, url: \"{}\"}}\n  retry: {{attempts: 1}}",
        slack.url(hook_path)
    );
    create_flow(&api, &flow_yaml("loud", &sink, &settings)).await;
    for id in ["1", "2"] {
        let run = one_event(&api, id).await;
        api.wait_for_run(&run, |r| r["status"] == "failed", PATIENCE)
            .await
            .expect("the run fails");
    }
    wait_for_flow(&api, "loud", |f| f["paused"] == true).await;
    assert!(
        slack.wait_for(|all| !all.is_empty(), PATIENCE).await,
        "the channel is told"
    );
    let told = slack.requests();
    assert_eq!(told.len(), 1, "one message for one trip");
    assert_eq!(told[0].path, hook_path);
    let text = told[0].json().expect("a JSON payload")["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(text.contains("Flow loud paused itself"), "{text}");
    assert!(text.contains("2 runs failed in a row"), "{text}");
    engine.stop().await;
}

/// `match:` filters events by field values (a list means any of, dotted keys read nested
/// fields), and the trigger summary lists it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_filters_pick_events_without_templates() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (_sink, engine) = start(&sqlite_url(dir.path()), 0).await;
    let api = engine.api();
    let yaml = "id: stores\ntriggers:\n  - entity: sale\n    match: {store: [S1, S2], \"customer.country\": IT}\nsteps:\n  - id: m\n    map: {store: \"{{entity.store}}\"}\n";
    create_flow(&api, yaml).await;
    let events = [
        json!({"store": "S1", "customer": {"country": "IT"}}),
        json!({"store": "S2", "customer": {"country": "IT"}}),
        json!({"store": "S3", "customer": {"country": "IT"}}),
        json!({"store": "S1", "customer": {"country": "FR"}}),
        json!({"store": "S1"}),
    ];
    let mut started = Vec::new();
    for (i, data) in events.iter().enumerate() {
        let event =
            json!({"entity": "sale", "action": "create", "id": i.to_string(), "data": data});
        let acks = api.post_events(&[event]).await.expect("accepted");
        started.push(acks[0].runs.len());
    }
    assert_eq!(started, vec![1, 1, 0, 0, 0]);
    let listed = crate::api_flows::listed_flow(&api, "/api/v1/flows", "stores").await;
    assert_eq!(
        listed["triggers"][0]["filters"],
        json!(["match: customer.country = IT", "match: store = S1 | S2"])
    );

    // A webhook trigger takes `match` (on the body) and `if` too; a request that fails them
    // is answered 200 with no run.
    let hook = "id: orders\ntriggers:\n  - webhook: {path: orders, match: {kind: order}, if: \"{{gt input.total 10}}\"}\nsteps:\n  - id: m\n    map: {total: \"{{input.total}}\"}\n";
    create_flow(&api, hook).await;
    for (body, expected) in [
        (json!({"kind": "order", "total": 20}), StatusCode::ACCEPTED),
        (json!({"kind": "refund", "total": 20}), StatusCode::OK),
        (json!({"kind": "order", "total": 5}), StatusCode::OK),
    ] {
        let (status, answer) = send(
            &api,
            "POST",
            "/hooks/orders",
            Some(("application/json", &body.to_string())),
        )
        .await;
        assert_eq!(status, expected, "{body}: {answer}");
        assert_eq!(
            answer["run_id"].is_string(),
            expected == StatusCode::ACCEPTED
        );
    }
    engine.stop().await;
}

/// A manual action with an `if` runs where it holds and answers 409 `not_applicable` where it
/// does not; an `if` that does not parse is refused when the flow is saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_action_applies_only_where_its_if_holds() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (_sink, engine) = start(&sqlite_url(dir.path()), 0).await;
    let api = engine.api();
    let yaml = "id: resend\ntriggers:\n  - manual: {label: Resend, entity: guest, if: \"{{in entity.status 'confirmed' 'vip'}}\"}\nsteps:\n  - id: m\n    map: {id: \"{{entity.id}}\"}\n";
    create_flow(&api, yaml).await;
    let trigger = |status: &str| {
        json!({"entity": {"type": "guest", "id": "9", "data": {"status": status}}}).to_string()
    };
    let (status, body) = send(
        &api,
        "POST",
        "/api/v1/flows/resend/trigger",
        Some(("application/json", &trigger("vip"))),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = send(
        &api,
        "POST",
        "/api/v1/flows/resend/trigger",
        Some(("application/json", &trigger("cancelled"))),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::CONFLICT, json!("not_applicable")),
        "{body}"
    );
    let broken = yaml.replace("{{in entity.status", "{{in entity.status}");
    let (status, body) = send(
        &api,
        "POST",
        "/api/v1/flows",
        Some(("application/yaml", &broken)),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // Asked for one entity, the list offers the action only where its `if` holds, judged on
    // the entity's last state flowd received; for the type as a whole it is always offered.
    let events = [
        ("1", "confirmed"),
        ("2", "new"),
        ("2", "vip"),
        ("3", "vip"),
        ("3", "cancelled"),
    ];
    for (id, status) in events {
        api.post_events(&[
            json!({"entity": "guest", "action": "update", "id": id, "data": {"status": status}}),
        ])
        .await
        .expect("accepted");
    }
    let offered = async |query: &str| {
        let (status, body) = send(&api, "GET", &format!("/api/v1/actions?{query}"), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["items"].as_array().map_or(0, Vec::len)
    };
    assert_eq!(offered("entity=guest").await, 1);
    assert_eq!(offered("entity=guest&entity_id=1").await, 1, "confirmed");
    assert_eq!(
        offered("entity=guest&entity_id=2").await,
        1,
        "vip since its last event"
    );
    assert_eq!(
        offered("entity=guest&entity_id=3").await,
        0,
        "cancelled since its last event"
    );
    assert_eq!(
        offered("entity=guest&entity_id=404").await,
        0,
        "never seen: no status"
    );
    engine.stop().await;
}

/// A schedule trigger's `if` decides per fire: of two flows firing every second, the one whose
/// `if` holds starts runs, the other none, though its fire times pass just the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_only_where_its_if_holds() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (_sink, engine) = start(&sqlite_url(dir.path()), 0).await;
    let api = engine.api();
    for (id, condition) in [("ticks", "{{schedule.fire_at}}"), ("never", "{{eq 1 2}}")] {
        let yaml = format!(
            "id: {id}\ntriggers:\n  - schedule: {{cron: \"* * * * * *\", if: \"{condition}\"}}\nsteps:\n  - id: m\n    map: {{x: 1}}\n"
        );
        create_flow(&api, &yaml).await;
    }
    let runs_of = async |flow: &str| {
        let (_, page) = send(&api, "GET", &format!("/api/v1/runs?flow={flow}"), None).await;
        page["items"].as_array().map_or(0, Vec::len)
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while runs_of("ticks").await < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the schedule never fired twice"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(runs_of("never").await, 0, "its `if` never holds");
    engine.stop().await;
}

/// A flow whose endpoint fails its first answers: one run goes into backoff, the flow is
/// paused, three more events arrive (held), the endpoint recovers. Until well past the backoff's
/// wake-up the sink receives nothing; after the resume each run is delivered exactly once.
/// Paused again, two held runs are discarded by the resume and never sent.
async fn pause_holds(database_url: &str) {
    let (sink, engine) = start(database_url, 1).await;
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
    assert_eq!(in_backoff["waiting_reason"], "backoff", "{in_backoff}");
    let (status, _) = send(&api, "POST", "/api/v1/flows/held/pause", None).await;
    assert_eq!(status, StatusCode::OK);
    let mut held = Vec::new();
    for id in ["2", "3", "4"] {
        let run = one_event(&api, id).await;
        let shown = api.get_run(&run).await.unwrap().unwrap();
        assert_eq!(
            (
                shown["status"].clone(),
                shown["waiting_reason"].clone(),
                shown["wake_at"].clone()
            ),
            (json!("held"), json!("held"), Value::Null)
        );
        held.push(run);
    }
    let wake_at = time(&in_backoff["wake_at"]);
    wait_until(wake_at + chrono::Duration::seconds(2)).await;
    assert_eq!(sink.count(), 1, "nothing is sent while paused");
    let first_now = api.get_run(&first).await.unwrap().unwrap();
    assert_eq!(
        (
            first_now["status"].clone(),
            first_now["waiting_reason"].clone()
        ),
        (json!("waiting"), json!("held")),
        "its retry is held while paused"
    );

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
    let (sink, engine) = start(database_url, 1).await;
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
        let run = api
            .wait_for_run(run, |r| r["waiting_reason"] == "rate_limited", PATIENCE)
            .await
            .expect("the run says it waits for the rate limit");
        assert_eq!(run["status"], "pending");
        assert!(run["wake_at"].is_string(), "and until when: {run}");
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

/// A sink that answers 500 to its first `failures` requests, and an engine without flow files.
async fn start(database_url: &str, failures: usize) -> (Sink, TestEngine) {
    let sink = Sink::start_with(Behaviour {
        fail_first: failures,
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
