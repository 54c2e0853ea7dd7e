//! The audit log (issue #19, `docs/audit.md`): every change through the API is recorded once
//! with its action, target, workspace and actor, a change that fails records nothing, and no
//! form of a secret's value reaches the table or the API (on SQLite and PostgreSQL, through an
//! engine of this process); the filters and pages of `GET /api/v1/audit`; keys created and
//! revoked with the real `flowd keys`; old entries pruned by the real `flowd serve`'s retention
//! pass; and the console's `/audit` page in a real headless Chromium.

use std::path::Path;
use std::time::{Duration, Instant};

use flowd::secrets::cipher::MasterKey;
use flowd::store::audit::{self, AuditAction, AuditFilter, NewAuditEntry};
use flowd::store::sql::stmt;
use flowd::store::testing::TestDb;
use flowd::store::{Store, StoreOptions};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::support::api::Api;
use crate::support::browser::Browser;
use crate::support::engine::{EngineSetup, TestEngine};
use crate::support::flowd::{FlowdEnv, FlowdProcess, output_within};
use crate::support::sink::{Behaviour, Failure, Sink};

const PATIENCE: Duration = Duration::from_secs(90);

/// A value no encoding of which could appear by chance.
const SECRET_VALUE: &str = "audit-canary-7Qx9\"Zz/Wörd";

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("flowd.db").display())
}

fn push_flow(sink: &Sink, description: &str) -> String {
    format!(
        "id: push\ndescription: {description}\ntriggers:\n  - manual: {{label: Push}}\nsteps:\n  - id: push\n    http: {{url: \"{}\", body: {{a: 1}}}}\n",
        sink.url("/push")
    )
}

const SLOW_FLOW: &str = "id: slow\ntriggers:\n  - manual: {label: Wait}\nsteps:\n  - id: nap\n    delay: 1h\n  - id: after\n    map: {a: 1}\n";

async fn send(api: &Api, method: &str, path: &str, body: Option<(&str, &str)>) -> (u16, Value) {
    let (status, answer) = api
        .request(method, path, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    (status.as_u16(), answer)
}

const YAML: &str = "application/yaml";
const JSON: &str = "application/json";

/// Every entry, oldest first, as `(action, target)`, after checking who and where.
async fn entries(api: &Api) -> Vec<Value> {
    let page = api
        .get_json("/api/v1/audit?limit=500")
        .await
        .expect("the audit log");
    let mut items = page["items"].as_array().cloned().unwrap_or_default();
    items.reverse();
    items
}

fn actions(items: &[Value]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|e| {
            let text = |key: &str| e[key].as_str().unwrap_or_default().to_owned();
            (text("action"), text("target"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_is_recorded_once_on_sqlite() {
    let dir = tempfile::tempdir().expect("temporary directory");
    every_change_is_recorded_once(&sqlite_url(dir.path()), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_is_recorded_once_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    every_change_is_recorded_once(&db.url, dir.path()).await;
    db.cleanup().await;
}

/// Each change of the API, in turn, with the failed ones between them: the log holds exactly
/// the successful changes, in order, by `local` in `default` (a new workspace's and its quotas'
/// in that workspace).
async fn every_change_is_recorded_once(database_url: &str, dir: &Path) {
    let sink = Sink::start_with(Behaviour {
        fail_first: 1,
        failure: Failure::Status(400),
        ..Behaviour::default()
    })
    .await;
    let setup = EngineSetup {
        master_key: Some(MasterKey::generate()),
        ..EngineSetup::new(database_url, dir.join("no-flows"))
    };
    let engine = TestEngine::start(&setup).await;
    let api = engine.api();
    let mut expected: Vec<(&str, String)> = Vec::new();

    // Changes that fail record nothing.
    let (status, _) = send(&api, "POST", "/api/v1/flows", Some((YAML, "id: [broken"))).await;
    assert_eq!(status, 422);
    let (status, _) = send(&api, "DELETE", "/api/v1/secrets/NOT_THERE", None).await;
    assert_eq!(status, 404);
    let (status, _) = send(&api, "POST", "/api/v1/flows/nope/pause", None).await;
    assert_eq!(status, 404);
    assert_eq!(entries(&api).await, Vec::<Value>::new());

    let (status, body) = send(
        &api,
        "POST",
        "/api/v1/flows",
        Some((YAML, &push_flow(&sink, "one"))),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    expected.push(("flow.created", "push".into()));
    let (status, body) = send(
        &api,
        "PUT",
        "/api/v1/flows/push",
        Some((YAML, &push_flow(&sink, "two"))),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    expected.push(("flow.updated", "push".into()));
    let (status, _) = send(
        &api,
        "PUT",
        "/api/v1/flows/push",
        Some((YAML, "id: push\nsteps: 7\n")),
    )
    .await;
    assert_eq!(status, 422, "an invalid replacement is refused");
    let (status, _) = send(
        &api,
        "POST",
        "/api/v1/flows",
        Some((YAML, &push_flow(&sink, "again"))),
    )
    .await;
    assert_eq!(status, 409, "the id is taken");
    for (path, action) in [("pause", "flow.paused"), ("resume", "flow.resumed")] {
        let (status, body) = send(&api, "POST", &format!("/api/v1/flows/push/{path}"), None).await;
        assert_eq!(status, 200, "{body}");
        expected.push((action, "push".into()));
    }
    let (status, body) = send(&api, "POST", "/api/v1/flows/push/revisions/1/restore", None).await;
    assert_eq!(status, 200, "{body}");
    expected.push(("flow.restored", "push".into()));

    let secret = json!({"value": SECRET_VALUE}).to_string();
    let (status, body) = send(
        &api,
        "PUT",
        "/api/v1/secrets/AUDIT_TOKEN",
        Some((JSON, &secret)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    expected.push(("secret.set", "AUDIT_TOKEN".into()));
    let (status, _) = send(
        &api,
        "PUT",
        "/api/v1/secrets/bad-name",
        Some((JSON, &secret)),
    )
    .await;
    assert_eq!(status, 422, "a bad name is refused");
    let (status, _) = send(&api, "DELETE", "/api/v1/secrets/AUDIT_TOKEN", None).await;
    assert_eq!(status, 204);
    expected.push(("secret.deleted", "AUDIT_TOKEN".into()));

    // The first attempt gets a 400: the run fails, is retried and succeeds, then is replayed.
    let run_id = api.trigger("push").await.expect("trigger push");
    api.wait_for_run(&run_id, |r| r["status"] == "failed", PATIENCE)
        .await
        .expect("the run fails on the 400");
    let (status, body) = send(&api, "POST", &format!("/api/v1/runs/{run_id}/retry"), None).await;
    assert_eq!(status, 202, "{body}");
    expected.push(("run.retried", run_id.clone()));
    api.wait_for_run(&run_id, |r| r["status"] == "succeeded", PATIENCE)
        .await
        .expect("the retried run succeeds");
    let (status, _) = send(&api, "POST", &format!("/api/v1/runs/{run_id}/retry"), None).await;
    assert_eq!(status, 409, "a succeeded run is not retried");
    let (status, body) = send(&api, "POST", &format!("/api/v1/runs/{run_id}/replay"), None).await;
    assert_eq!(status, 202, "{body}");
    let replayed = body["run_id"].as_str().expect("the new run").to_owned();
    expected.push(("run.replayed", run_id.clone()));
    let (status, _) = send(&api, "POST", "/api/v1/runs/no-such-run/cancel", None).await;
    assert_eq!(status, 404);

    let (status, body) = send(&api, "POST", "/api/v1/flows", Some((YAML, SLOW_FLOW))).await;
    assert_eq!(status, 201, "{body}");
    expected.push(("flow.created", "slow".into()));
    let napping = api.trigger("slow").await.expect("trigger slow");
    let (status, body) = send(
        &api,
        "POST",
        &format!("/api/v1/runs/{napping}/cancel"),
        None,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    expected.push(("run.cancelled", napping.clone()));

    let filter = json!({"flow": "slow"}).to_string();
    let (status, body) = send(&api, "POST", "/api/v1/runs/retry", Some((JSON, &filter))).await;
    assert_eq!(status, 202, "{body}");
    let operation = body["operation_id"]
        .as_str()
        .expect("an operation id")
        .to_owned();
    expected.push(("runs.retried", operation));
    let (status, _) = send(&api, "DELETE", "/api/v1/flows/slow", None).await;
    assert_eq!(status, 204);
    expected.push(("flow.deleted", "slow".into()));
    let (status, _) = send(&api, "DELETE", "/api/v1/flows/slow", None).await;
    assert_eq!(status, 404, "a deleted flow is not deleted twice");

    let acme = json!({"name": "acme"}).to_string();
    let (status, body) = send(&api, "POST", "/api/v1/workspaces", Some((JSON, &acme))).await;
    assert_eq!(status, 201, "{body}");
    expected.push(("workspace.created", "acme".into()));
    let (status, _) = send(&api, "POST", "/api/v1/workspaces", Some((JSON, &acme))).await;
    assert_eq!(status, 409, "a workspace is not created twice");
    let quotas = json!({"runs_per_day": 100}).to_string();
    let path = "/api/v1/workspaces/acme/quotas";
    let (status, body) = send(&api, "PUT", path, Some((JSON, &quotas))).await;
    assert_eq!(status, 200, "{body}");
    expected.push(("quotas.set", "acme".into()));
    let bad = json!({"runs_per_day": -1}).to_string();
    let (status, _) = send(&api, "PUT", path, Some((JSON, &bad))).await;
    assert_eq!(status, 422, "a bad quota is refused");

    let items = entries(&api).await;
    let want: Vec<(String, String)> = expected
        .iter()
        .map(|(a, t)| ((*a).to_owned(), t.clone()))
        .collect();
    assert_eq!(actions(&items), want, "{items:#?}");
    for item in &items {
        // A new workspace's entry is in that workspace; every other change is in `default`.
        let workspace = match item["action"].as_str() {
            Some("workspace.created" | "quotas.set") => "acme",
            _ => "default",
        };
        assert_eq!(
            (item["actor"].as_str(), item["workspace"].as_str()),
            (Some("local"), Some(workspace)),
            "{item}"
        );
    }
    let detail = |action: &str| {
        items
            .iter()
            .find(|e| e["action"] == action)
            .map(|e| e["detail"].clone())
            .unwrap_or_default()
    };
    assert_eq!(detail("flow.updated"), json!({"revision": 2}));
    assert_eq!(
        detail("flow.restored"),
        json!({"revision": 3, "restored_from": 1})
    );
    assert_eq!(detail("flow.paused"), json!({"reason": "manual"}));
    assert_eq!(detail("run.replayed"), json!({"run_id": replayed}));
    assert_eq!(
        detail("quotas.set"),
        json!({"runs_per_day": 100, "http_attempts_per_minute": null})
    );

    // No trace of the secret's value, in the API's answer or anywhere in the table.
    let answer = api
        .call("GET", "/api/v1/audit?limit=500", None, &[])
        .await
        .expect("the audit log")
        .text();
    let stored = table_text(database_url).await;
    for form in value_forms(SECRET_VALUE) {
        assert!(!answer.contains(&form), "the API shows `{form}`");
        assert!(!stored.contains(&form), "the table holds `{form}`");
    }
    assert!(stored.contains("AUDIT_TOKEN"), "the table is the one read");
    engine.stop().await;
}

/// The value as typed, in both cases, and JSON-escaped.
fn value_forms(value: &str) -> Vec<String> {
    let json = Value::String(value.into()).to_string();
    vec![
        value.to_owned(),
        value.to_lowercase(),
        value.to_uppercase(),
        json[1..json.len() - 1].to_owned(),
        "audit-canary".to_owned(),
    ]
}

/// Every column of every audit row, as text.
async fn table_text(database_url: &str) -> String {
    let store = Store::connect(database_url, &StoreOptions::default())
        .await
        .expect("open the database");
    let sql = "SELECT id || ' ' || workspace || ' ' || actor || ' ' || action || ' ' || target || ' ' || detail AS line FROM audit_log";
    let rows = store
        .reader()
        .query_all_raw(stmt(store.backend(), sql, vec![]))
        .await
        .expect("read the audit log");
    let lines: Vec<String> = rows
        .iter()
        .map(|row| row.try_get::<String>("", "line").expect("a line"))
        .collect();
    store.close().await;
    lines.join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_and_pages() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let setup = EngineSetup::new(sqlite_url(dir.path()), dir.path().join("no-flows"));
    let engine = TestEngine::start(&setup).await;
    let api = engine.api();
    let before = chrono::Utc::now();
    for i in 0..5 {
        let yaml = format!(
            "id: f{i}\ntriggers:\n  - manual: {{label: Go}}\nsteps:\n  - id: m\n    map: {{a: 1}}\n"
        );
        let (status, body) = send(&api, "POST", "/api/v1/flows", Some((YAML, &yaml))).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, _) = send(&api, "POST", "/api/v1/flows/f1/pause", None).await;
    assert_eq!(status, 200);

    // Pages of two, newest first, end to end without a repeat or a gap.
    let mut seen = Vec::new();
    let mut path = "/api/v1/audit?limit=2".to_owned();
    loop {
        let page = api.get_json(&path).await.expect("a page");
        let items = page["items"].as_array().cloned().unwrap_or_default();
        assert!(items.len() <= 2);
        seen.extend(actions(&items));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/audit?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let mut want: Vec<(String, String)> = (0..5)
        .map(|i| ("flow.created".to_owned(), format!("f{i}")))
        .collect();
    want.push(("flow.paused".into(), "f1".into()));
    want.reverse();
    assert_eq!(seen, want);

    let count = |query: String| {
        let api = api.clone();
        async move {
            let page = api
                .get_json(&format!("/api/v1/audit?{query}"))
                .await
                .unwrap_or_else(|e| panic!("{query}: {e}"));
            actions(
                page["items"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default(),
            )
        }
    };
    // A change in another workspace, for `?workspace=` to tell apart.
    let acme = json!({"name": "acme"}).to_string();
    let (status, body) = send(&api, "POST", "/api/v1/workspaces", Some((JSON, &acme))).await;
    assert_eq!(status, 201, "{body}");
    let f1 = |action: &str| vec![(action.to_owned(), "f1".to_owned())];
    assert_eq!(count("action=flow.paused".into()).await, f1("flow.paused"));
    assert_eq!(
        count("target=f1&action=flow.created".into()).await,
        f1("flow.created")
    );
    assert_eq!(count("actor=local".into()).await.len(), 7);
    assert_eq!(count("actor=key:someone".into()).await.len(), 0);
    // `?workspace=` narrows to one workspace, as on every route.
    assert_eq!(count("workspace=default".into()).await.len(), 6);
    assert_eq!(
        count("workspace=acme".into()).await,
        [("workspace.created".to_owned(), "acme".to_owned())]
    );
    let (status, body) = send(&api, "GET", "/api/v1/audit?workspace=nowhere", None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("workspace_not_found")),
        "{body}"
    );
    let since =
        (before - chrono::Duration::seconds(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(count(format!("since={since}")).await.len(), 7);
    assert_eq!(count(format!("until={since}")).await.len(), 0);
    assert_eq!(count("since=2999-01-01T00:00:00Z".into()).await.len(), 0);

    for (query, names) in [
        ("action=flow.eaten", "flow.created"),
        ("since=yesterday", "since"),
        ("cursor=nonsense", "cursor"),
        ("limit=0", "limit"),
        ("colour=red", "colour"),
    ] {
        let (status, body) = send(&api, "GET", &format!("/api/v1/audit?{query}"), None).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{query}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(names), "{query}: {message}");
    }
    engine.stop().await;
}

/// `flowd keys create` and `flowd keys revoke` (by prefix) record the key's id as `local`, in
/// the key's workspace; `flowd workspaces create` records the workspace in itself; a revoke of
/// an unknown key records nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_created_and_revoked_on_the_command_line_are_recorded() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = sqlite_url(dir.path());
    let keys = |args: &[&str]| {
        let mut command = flowd_command(&url);
        command.arg("keys").args(args);
        output_within(&mut command, None)
    };
    let created = keys(&["create", "back-office", "--create"]);
    assert!(created.status.success(), "{created:?}");
    let key = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    let refused = keys(&["revoke", "fk_unknown"]);
    assert!(!refused.status.success(), "{refused:?}");
    let revoked = keys(&["revoke", &key[..10]]);
    assert!(revoked.status.success(), "{revoked:?}");
    let mut command = flowd_command(&url);
    let workspace = output_within(command.args(["workspaces", "create", "acme"]), None);
    assert!(workspace.status.success(), "{workspace:?}");
    let operator = keys(&[
        "create",
        "acme-ops",
        "--workspace",
        "acme",
        "--role",
        "operator",
    ]);
    assert!(operator.status.success(), "{operator:?}");

    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .expect("open the database");
    let mut rows = audit::list(
        store.reader(),
        store.backend(),
        &AuditFilter::default(),
        None,
        10,
    )
    .await
    .expect("the audit log");
    rows.reverse();
    let seen: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| (r.action.as_str(), r.actor.as_str(), r.workspace.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("key.created", "local", "default"),
            ("key.revoked", "local", "default"),
            ("workspace.created", "local", "acme"),
            ("key.created", "local", "acme"),
        ]
    );
    assert_eq!(rows[0].target, rows[1].target, "both name the same key");
    assert_eq!(rows[2].target, "acme");
    let detail: Value = serde_json::from_str(&rows[3].detail).expect("a JSON detail");
    assert_eq!(detail["role"], "operator", "{detail}");
    assert!(!rows[0].target.is_empty());
    let everything = format!("{rows:?}");
    assert!(
        !everything.contains(&key),
        "the key itself is never recorded"
    );
    assert!(
        everything.contains(&key[..10]),
        "its prefix is, to tell keys apart"
    );
    store.close().await;
}

fn flowd_command(database_url: &str) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_flowd"));
    for (name, _) in std::env::vars() {
        if name.starts_with("FLOWD_") {
            command.env_remove(name);
        }
    }
    command.env("FLOWD_DATABASE_URL", database_url);
    command
}

/// The real server's retention pass prunes entries older than `FLOWD_RETENTION` and keeps the
/// others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_past_the_retention_are_pruned() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = sqlite_url(dir.path());
    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .expect("create the database");
    store.migrate().await.expect("migrate");
    let now = chrono::Utc::now().timestamp_millis();
    let hour = 3_600_000;
    for (id, at) in [
        ("old-1", now - 3 * hour),
        ("old-2", now - 2 * hour),
        ("fresh", now),
    ] {
        let entry = NewAuditEntry {
            id: id.into(),
            at,
            workspace: "default".into(),
            actor: "local".into(),
            action: AuditAction::FlowCreated,
            target: id.into(),
            detail: json!({}),
        };
        audit::record(store.writer(), store.backend(), &entry)
            .await
            .expect("record an entry");
    }
    store.close().await;

    let flows = dir.path().join("flows");
    std::fs::create_dir_all(&flows).expect("create the flows folder");
    let env = FlowdEnv {
        extra: vec![("FLOWD_RETENTION".into(), "1h".into())],
        ..FlowdEnv::new(url, flows)
    };
    let server = FlowdProcess::start(&env).await;
    let api = server.api();
    let deadline = Instant::now() + PATIENCE;
    let targets = loop {
        let targets: Vec<String> = entries(&api)
            .await
            .iter()
            .map(|e| e["target"].as_str().unwrap_or_default().to_owned())
            .collect();
        if !targets.iter().any(|t| t.starts_with("old")) {
            break targets;
        }
        assert!(Instant::now() < deadline, "old entries stay: {targets:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(targets, ["fresh"]);
}

/// The console's `/audit` page: the entries as a table, the filter form's values in the
/// address, and paging back to the oldest entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_audit_page_in_a_browser() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let setup = EngineSetup::new(sqlite_url(dir.path()), dir.path().join("no-flows"));
    let mut engine = TestEngine::start(&setup).await;
    let base = engine.serve().await;
    let api = engine.api();
    let yaml =
        "id: watched\ntriggers:\n  - manual: {label: Go}\nsteps:\n  - id: m\n    map: {a: 1}\n";
    let (status, _) = send(&api, "POST", "/api/v1/flows", Some((YAML, yaml))).await;
    assert_eq!(status, 201);
    // 60 more changes: more than one page of 50.
    for i in 0..30 {
        for step in ["pause", "resume"] {
            let (status, body) =
                send(&api, "POST", &format!("/api/v1/flows/watched/{step}"), None).await;
            assert_eq!(status, 200, "{i} {step}: {body}");
        }
    }

    browser.goto(&format!("{base}/audit")).await;
    let table = browser.text("table.audit").await;
    assert!(
        table.contains("flow.resumed") && table.contains("watched") && table.contains("local"),
        "{table}"
    );
    assert!(
        !table.contains("flow.created"),
        "the oldest entry is on the next page:\n{table}"
    );
    browser.click("a[rel=next]").await;
    browser
        .wait_for("the oldest entry", "table.audit", false, |t| {
            t.contains("flow.created")
        })
        .await;

    // Filter by action through the form: the address keeps the filter.
    browser.goto(&format!("{base}/audit")).await;
    browser.click("details.filters summary").await;
    browser
        .click("select[name=action] option[value='flow.created']")
        .await;
    browser
        .click("form[action='/audit'] button[type=submit]")
        .await;
    browser
        .wait_for("only the creation", "table.audit tbody", false, |t| {
            t.contains("flow.created") && !t.contains("flow.paused")
        })
        .await;
    let url = browser.client.current_url().await.expect("the address");
    assert!(url.as_str().contains("action=flow.created"), "{url}");
    assert!(
        browser
            .text("nav[aria-label=Console] a[aria-current=page]")
            .await
            .contains("Audit")
    );

    browser.close().await;
    assert_eq!(engine.panics().await, Vec::<String>::new());
    engine.stop().await;
}
