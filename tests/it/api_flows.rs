//! Flow management through the API of an engine in the test process: API flows (YAML and JSON, revisions, errors), file
//! flows (read-only through the API, reloaded when their file changes, a broken file keeps the
//! last good revision running and shows its error), pause and resume.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::api::Api;
use crate::support::engine::{EngineSetup, TestEngine};

const PATIENCE: Duration = Duration::from_secs(90);

const API_FLOW: &str = "id: greet\n# a comment that the YAML source keeps\ntriggers:\n  - entity: contact\n    on: create\nsteps:\n  - id: hello\n    map: {text: \"hello {{entity.name}}\"}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_flows_are_created_revised_paused_and_deleted() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(&flows).unwrap();
    std::fs::write(
        flows.join("filed.yaml"),
        "id: filed\ntriggers:\n  - manual: {label: Go}\nsteps:\n  - id: m\n    map: {x: 1}\n",
    )
    .unwrap();
    let engine = TestEngine::start(&EngineSetup::new(sqlite_url(dir.path()), flows)).await;
    let api = engine.api();

    let (status, created) = send(
        &api,
        "POST",
        "/api/v1/flows",
        Some(("application/yaml", API_FLOW)),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        (created["revision"].clone(), created["source"].clone()),
        (json!(1), json!("api"))
    );
    assert_eq!(created["definition"]["steps"][0]["id"], "hello");

    let (status, again) = send(
        &api,
        "POST",
        "/api/v1/flows",
        Some(("application/yaml", API_FLOW)),
    )
    .await;
    assert_eq!(
        (status, again["error"]["code"].clone()),
        (StatusCode::CONFLICT, json!("flow_exists"))
    );

    // YAML source back as written; JSON otherwise.
    let yaml = raw(&api, "/api/v1/flows/greet", "application/yaml").await;
    assert_eq!(yaml, API_FLOW);

    // A run on revision 1, then a new revision: the next run uses it, the first keeps its own.
    let first = one_run(
        &api,
        json!({"entity": "contact", "action": "create", "id": "1", "data": {"name": "Ada"}}),
    )
    .await;
    let revised = API_FLOW.replace("hello {{entity.name}}", "welcome {{entity.name}}");
    let (status, put) = send(
        &api,
        "PUT",
        "/api/v1/flows/greet",
        Some(("application/yaml", &revised)),
    )
    .await;
    assert_eq!(
        (status, put["revision"].clone()),
        (StatusCode::OK, json!(2)),
        "{put}"
    );
    let second = one_run(
        &api,
        json!({"entity": "contact", "action": "create", "id": "2", "data": {"name": "Bo"}}),
    )
    .await;
    assert_eq!(first["revision"], 1);
    assert_eq!(first["steps"][0]["output"]["text"], "hello Ada");
    assert_eq!(second["revision"], 2);
    assert_eq!(second["steps"][0]["output"]["text"], "welcome Bo");
    let (_, revisions) = send(&api, "GET", "/api/v1/flows/greet/revisions", None).await;
    let numbers: Vec<i64> = revisions["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["revision"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, vec![2, 1]);
    assert_eq!(
        revisions["items"][0]["sha256"].as_str().map(str::len),
        Some(64)
    );

    // An old revision reads back as JSON or as the YAML written; one that never was is a 404.
    let (status, one) = send(&api, "GET", "/api/v1/flows/greet/revisions/1", None).await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(
        (
            one["revision"].clone(),
            one["definition"]["steps"][0]["map"]["text"].clone()
        ),
        (json!(1), json!("hello {{entity.name}}"))
    );
    assert_eq!(
        raw(&api, "/api/v1/flows/greet/revisions/1", "application/yaml").await,
        API_FLOW
    );
    let (status, _) = send(&api, "GET", "/api/v1/flows/greet/revisions/9", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The list carries the grid's fields, run figures included.
    let listed = listed_flow(&api, "/api/v1/flows", "greet").await;
    assert_eq!(
        (
            listed["runs_24h"].clone(),
            listed["failed_24h"].clone(),
            listed["triggers"].clone(),
            listed["targets"].clone(),
            listed["paused_at"].clone(),
            listed["deleted_at"].clone(),
        ),
        (
            json!(2),
            json!(0),
            json!([{"kind": "entity", "summary": "contact: create", "filters": []}]),
            json!([]),
            Value::Null,
            Value::Null,
        ),
        "{listed}"
    );
    assert_eq!(listed["last_run_at"], second["created_at"], "{listed}");
    assert!(listed["created_at"].is_string(), "{listed}");

    // JSON works too; ids must agree with the URL; problems come with line and column.
    let json_flow = json!({"id": "as-json", "triggers": [{"manual": {"label": "J"}}], "steps": [{"id": "m", "map": {"a": 1}}]});
    let (status, body) = send(
        &api,
        "POST",
        "/api/v1/flows",
        Some(("application/json", &json_flow.to_string())),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(
        raw(&api, "/api/v1/flows/as-json", "application/yaml")
            .await
            .contains("id: as-json")
    );
    let (status, body) = send(
        &api,
        "PUT",
        "/api/v1/flows/greet",
        Some((
            "application/yaml",
            &API_FLOW.replace("id: greet", "id: other"),
        )),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("invalid_flow")),
        "{body}"
    );
    let broken =
        "id: bad\ntriggers:\n  - entity: contact\nsteps:\n  - id: s\n    http: {methd: GET}\n";
    let (status, body) = send(
        &api,
        "POST",
        "/api/v1/flows",
        Some(("application/yaml", broken)),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let details = body["error"]["details"].as_array().expect("details");
    assert!(
        details
            .iter()
            .any(|d| d["line"] == 6 && d["message"].as_str().unwrap().contains("methd")),
        "{body}"
    );
    let (status, body) = send(
        &api,
        "POST",
        "/api/v1/flows",
        Some(("application/json", "{\"id\": ")),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_json"))
    );
    let (status, body) = send(
        &api,
        "POST",
        "/api/v1/flows/validate",
        Some(("application/yaml", API_FLOW)),
    )
    .await;
    assert_eq!(
        (status, body["valid"].clone()),
        (StatusCode::OK, json!(true)),
        "{body}"
    );
    let (status, _) = send(
        &api,
        "POST",
        "/api/v1/flows/validate",
        Some(("application/yaml", broken)),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = send(&api, "GET", "/api/v1/flows/bad", None).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "nothing of the invalid flow was stored"
    );

    // A flow's targets show its URLs as written, secrets masked; its description is listed.
    let sender = "id: sender\ndescription: Pushes guests.\ntriggers: [{manual: {label: Go}}]\nsteps:\n  - id: push\n    http: {url: \"https://bot:hunter2@crm.example.com/{{entity.id}}?key={{secrets.CRM_KEY}}\"}\n";
    let (status, body) = send(
        &api,
        "POST",
        "/api/v1/flows",
        Some(("application/yaml", sender)),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        (body["description"].clone(), body["targets"].clone()),
        (
            json!("Pushes guests."),
            json!(["https://bot:***@crm.example.com/{{entity.id}}?key=***"])
        ),
        "{body}"
    );
    send(&api, "DELETE", "/api/v1/flows/sender", None).await;

    // Pause: events make held runs, manual triggers answer 409; resume sends the held run.
    let (status, paused) = send(&api, "POST", "/api/v1/flows/greet/pause", None).await;
    assert_eq!(
        (
            status,
            paused["paused"].clone(),
            paused["pause_reason"].clone()
        ),
        (StatusCode::OK, json!(true), json!("manual"))
    );
    assert!(paused["paused_at"].is_string(), "{paused}");
    let acks = api
        .post_events(&[
            json!({"entity": "contact", "action": "create", "id": "3", "data": {"name": "Held"}}),
        ])
        .await
        .unwrap();
    assert_eq!(acks[0].runs.len(), 1, "a paused flow holds what arrives");
    let held = api.get_run(&acks[0].runs[0]).await.unwrap().unwrap();
    assert_eq!(held["status"], "held", "{held}");
    let (status, _) = send(&api, "POST", "/api/v1/flows/filed/pause", None).await;
    assert_eq!(status, StatusCode::OK, "file flows can be paused");
    let (status, body) = send(&api, "POST", "/api/v1/flows/filed/trigger", None).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::CONFLICT, json!("flow_paused"))
    );
    let (_, resumed) = send(&api, "POST", "/api/v1/flows/greet/resume", None).await;
    assert_eq!(
        (resumed["paused"].clone(), resumed["paused_at"].clone()),
        (json!(false), Value::Null)
    );
    api.wait_for_run(&acks[0].runs[0], |r| r["status"] == "succeeded", PATIENCE)
        .await
        .expect("the held run is sent after the resume");
    one_run(
        &api,
        json!({"entity": "contact", "action": "create", "id": "4", "data": {"name": "Cy"}}),
    )
    .await;

    // Restoring revision 1 makes it current again as revision 3; the next run uses it.
    let (status, restored) = send(
        &api,
        "POST",
        "/api/v1/flows/greet/revisions/1/restore",
        None,
    )
    .await;
    assert_eq!(
        (status, restored["revision"].clone()),
        (StatusCode::OK, json!(3)),
        "{restored}"
    );
    let after = one_run(
        &api,
        json!({"entity": "contact", "action": "create", "id": "5", "data": {"name": "Di"}}),
    )
    .await;
    assert_eq!(after["steps"][0]["output"]["text"], "hello Di");
    let (status, body) = send(
        &api,
        "POST",
        "/api/v1/flows/filed/revisions/1/restore",
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::CONFLICT, json!("managed_by_file"))
    );

    // File flows are read-only through the API.
    let (status, body) = send(
        &api,
        "PUT",
        "/api/v1/flows/filed",
        Some((
            "application/yaml",
            "id: filed\ntriggers: [{manual: {label: X}}]\nsteps: [{id: m, map: {}}]\n",
        )),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::CONFLICT, json!("managed_by_file"))
    );
    let (status, body) = send(&api, "DELETE", "/api/v1/flows/filed", None).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::CONFLICT, json!("managed_by_file"))
    );

    // Delete: gone from the API, its runs stay.
    let (status, _) = send(&api, "DELETE", "/api/v1/flows/greet", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = send(&api, "GET", "/api/v1/flows/greet", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let run = api
        .get_run(first["id"].as_str().unwrap())
        .await
        .unwrap()
        .expect("the run stays");
    assert_eq!(run["steps"][0]["id"], "hello");
    let (_, list) = send(&api, "GET", "/api/v1/flows", None).await;
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["as-json", "filed"]);
    let deleted = listed_flow(&api, "/api/v1/flows?include_deleted=true", "greet").await;
    assert!(deleted["deleted_at"].is_string(), "{deleted}");
    assert_eq!(deleted["runs_24h"], 5, "its runs still count: {deleted}");
    let (status, _) = send(&api, "GET", "/api/v1/flows/greet/revisions/2", None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a deleted flow's revisions stay readable"
    );
    let (status, body) = send(&api, "GET", "/api/v1/flows?include_deleted=maybe", None).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("bad_request"))
    );
    engine.stop().await;
}

/// The item of flow `id` in the list at `path`.
async fn listed_flow(api: &Api, path: &str, id: &str) -> Value {
    let (status, list) = send(api, "GET", path, None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("flow {id} is not in {list}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_flows_reload_and_survive_a_broken_edit() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(&flows).unwrap();
    let file = flows.join("greet.yaml");
    std::fs::write(&file, API_FLOW).unwrap();
    let engine = TestEngine::start(&EngineSetup::new(sqlite_url(dir.path()), flows.clone())).await;
    let api = engine.api();
    let first = one_run(
        &api,
        json!({"entity": "contact", "action": "create", "id": "1", "data": {"name": "Ada"}}),
    )
    .await;
    assert_eq!(first["steps"][0]["output"]["text"], "hello Ada");

    std::fs::write(&file, API_FLOW.replace("hello", "hi")).unwrap();
    wait_for_flow(&api, "greet", |f| f["revision"] == 2).await;
    let second = one_run(
        &api,
        json!({"entity": "contact", "action": "create", "id": "2", "data": {"name": "Bo"}}),
    )
    .await;
    assert_eq!(
        second["steps"][0]["output"]["text"], "hi Bo",
        "the edited file runs"
    );

    std::fs::write(
        &file,
        "id: greet\ntriggers:\n  - entity: contact\n    on: crate\nsteps: []\n",
    )
    .unwrap();
    let flow = wait_for_flow(&api, "greet", |f| f["load_error"].is_string()).await;
    assert!(
        flow["load_error"]
            .as_str()
            .unwrap()
            .contains("greet.yaml:4:"),
        "{flow}"
    );
    assert_eq!(flow["revision"], 2);
    let third = one_run(
        &api,
        json!({"entity": "contact", "action": "create", "id": "3", "data": {"name": "Cy"}}),
    )
    .await;
    assert_eq!(
        third["steps"][0]["output"]["text"], "hi Cy",
        "the last good revision keeps running"
    );

    std::fs::remove_file(&file).unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (status, _) = send(&api, "GET", "/api/v1/flows/greet", None).await;
        if status == StatusCode::NOT_FOUND {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a removed file's flow goes away"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    engine.stop().await;
}

async fn wait_for_flow(api: &Api, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (_, flow) = send(api, "GET", &format!("/api/v1/flows/{id}"), None).await;
        if done(&flow) {
            return flow;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "flow never got there: {flow}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Posts one event that starts one run and returns the run once it succeeded.
async fn one_run(api: &Api, event: Value) -> Value {
    let acks = api.post_events(&[event]).await.expect("accepted");
    assert_eq!(acks[0].runs.len(), 1, "one run: {:?}", acks[0].runs);
    api.wait_for_run(&acks[0].runs[0], |r| r["status"] == "succeeded", PATIENCE)
        .await
        .expect("the run succeeds")
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

async fn raw(api: &Api, path: &str, accept: &str) -> String {
    let answer = api
        .call("GET", path, None, &[("accept", accept)])
        .await
        .expect("the server answers");
    assert_eq!(answer.status, StatusCode::OK);
    String::from_utf8(answer.body.to_vec()).unwrap()
}
