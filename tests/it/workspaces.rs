//! Workspaces and roles (#19, SPEC §11), on SQLite and, when `FLOWD_TEST_DATABASE_URL` is set,
//! PostgreSQL. The isolation and role tables walk the OpenAPI document the server serves, so a
//! route added later is covered at once: without a row in [`isolation`] (and in
//! `flowd::api::PERMISSIONS`) the tests fail and name it. Also here: webhooks at `@ws/path`,
//! flow files under `flows/<ws>/`, one flow id and one `event_id` in two workspaces, secrets a
//! run of another workspace cannot read, and the upgrade of a database of the previous release.

use std::time::Duration;

use flowd::core::workspace::Role;
use flowd::secrets::cipher::MasterKey;
use flowd::store::testing::TestDb;
use serde_json::{Value, json};

use crate::support::api::{Answer, Api};
use crate::support::engine::{EngineSetup, TestEngine};
use crate::support::sink::Sink;

const WAIT: Duration = Duration::from_secs(30);

/// A client that sends one key with every request.
struct Keyed {
    api: Api,
    bearer: String,
}

impl Keyed {
    fn new(api: &Api, key: &str) -> Keyed {
        Keyed {
            api: api.clone(),
            bearer: format!("Bearer {key}"),
        }
    }

    /// `method path`, with a body of `content_type` when given.
    async fn call(&self, method: &str, path: &str, body: Option<(&str, &str)>) -> Answer {
        let body = body.map(|(content_type, text)| (content_type, text.as_bytes()));
        self.api
            .call(method, path, body, &[("authorization", &self.bearer)])
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    async fn json(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let text = body.map(Value::to_string);
        let body = text.as_deref().map(|t| ("application/json", t));
        let answer = self.call(method, path, body).await;
        let json = answer.json().unwrap_or(Value::Null);
        (answer.status.as_u16(), json)
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.json("GET", path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    async fn yaml(&self, method: &str, path: &str, yaml: &str) -> (u16, Value) {
        let answer = self
            .call(method, path, Some(("application/yaml", yaml)))
            .await;
        (answer.status.as_u16(), answer.json().unwrap_or(Value::Null))
    }
}

/// A flow of workspace `beta` made through the API: a manual trigger and an inbox note.
const B_FLOW: &str = "id: bflow\ntriggers:\n  - manual: {label: Go}\n  - entity: guest\nsteps:\n  - id: note\n    notify: {channel: inbox, subject: hello, text: from beta}\n";

/// What beta holds, for the isolation table to aim at.
struct Beta {
    run: String,
    notification: String,
    operation: String,
}

/// An engine on `url` with workspaces `alpha` (made through the API) and `beta` (named by the
/// folder of a flow file), an admin key, and in beta a flow, a finished run, a notification, a
/// secret and a bulk operation.
async fn world(url: &str, flows: &std::path::Path) -> (TestEngine, Keyed, Beta) {
    std::fs::create_dir_all(flows.join("beta")).unwrap();
    let hooked = "triggers:\n  - webhook: {path: crm}\n  - entity: guest\nsteps:\n  - id: m\n    map: {x: 1}\n";
    std::fs::write(flows.join("hooked.yaml"), hooked).unwrap();
    std::fs::write(flows.join("beta").join("hooked.yaml"), hooked).unwrap();
    let setup = EngineSetup {
        master_key: Some(MasterKey::generate()),
        ..EngineSetup::new(url, flows)
    };
    let engine = TestEngine::start(&setup).await;
    let admin = Keyed::new(&engine.api(), &engine.add_api_key("root").await);
    let (status, body) = admin
        .json(
            "POST",
            "/api/v1/workspaces",
            Some(&json!({"name": "alpha"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let b_key = engine.add_key("beta-editor", "beta", Role::Editor).await;
    let b = Keyed::new(&engine.api(), &b_key);
    let (status, body) = b.yaml("POST", "/api/v1/flows", B_FLOW).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["workspace"], "beta", "{body}");
    let (status, body) = b
        .json(
            "POST",
            "/api/v1/flows/bflow/trigger?wait=20s",
            Some(&json!({})),
        )
        .await;
    assert_eq!(
        (status, &body["status"]),
        (200, &json!("succeeded")),
        "{body}"
    );
    let run = body["id"].as_str().unwrap().to_owned();
    let notes = b.get("/api/v1/notifications").await;
    let notification = notes["items"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(notes["items"][0]["workspace"], "beta", "{notes}");
    let (status, body) = b
        .json(
            "PUT",
            "/api/v1/secrets/B_TOKEN",
            Some(&json!({"value": "beta-secret-value"})),
        )
        .await;
    assert_eq!(
        (status, &body["workspace"]),
        (200, &json!("beta")),
        "{body}"
    );
    // A retry matches nothing (the run succeeded), so beta's runs stay as they are.
    let (status, body) = b
        .json(
            "POST",
            "/api/v1/runs/retry",
            Some(&json!({"flow": "bflow"})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let operation = body["operation_id"].as_str().unwrap().to_owned();
    (
        engine,
        admin,
        Beta {
            run,
            notification,
            operation,
        },
    )
}

/// Every operation of the served document: `(METHOD, path)`.
async fn operations(admin: &Keyed) -> Vec<(String, String)> {
    let doc = admin.get("/api/v1/openapi.json").await;
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            found.push((method.to_uppercase(), path.clone()));
        }
    }
    found
}

/// Routes outside workspaces and keys: probes and webhooks (which resolve `@ws/path`).
fn is_public(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/hooks/{path}")
}

/// What a key of workspace `alpha` (role `editor`) must get for an operation aimed at beta.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// 404 in the error shape, as for an unknown id.
    NotFound,
    /// 200 with nothing of beta in it.
    OwnList,
    /// 200 with every item in alpha: a list whose items may name beta's ids without being
    /// beta's (the audit log holds alpha's own retry of `bflow`).
    OwnItems,
    /// 403: admin keys only.
    Forbidden,
    /// Not workspace data (the document, the nodes): any answer but a 5xx.
    Global,
    /// Refused because it names beta: the given status.
    Refused(u16),
    /// Acts in alpha (not 403, not 5xx); the final checks prove beta unchanged.
    InOwn,
}

/// The isolation table: one row per operation. A new operation needs a row here.
fn isolation(method: &str, path: &str) -> Option<Expect> {
    use Expect::*;
    Some(match (method, path) {
        ("GET", "/metrics")
        | ("POST", "/api/v1/workspaces")
        | ("PUT", "/api/v1/workspaces/{ws}/quotas") => Forbidden,
        ("GET", "/api/v1/workspaces/{ws}/quotas") => NotFound,
        // Portal links are handed out by admins only, to any workspace.
        (_, p) if p.starts_with("/api/v1/workspaces/{ws}/portal-links") => Forbidden,
        ("GET", "/api/v1/openapi.json") | ("GET", "/api/v1/nodes") => Global,
        ("POST", "/api/v1/events") => Refused(404),
        ("POST", "/api/v1/flows") | ("POST", "/api/v1/flows/validate") => Refused(422),
        ("GET", "/api/v1/flows")
        | ("GET", "/api/v1/actions")
        | ("GET", "/api/v1/runs")
        | ("GET", "/api/v1/usage")
        | ("GET", "/api/v1/notifications")
        | ("GET", "/api/v1/secrets")
        | ("GET", "/api/v1/workspaces") => OwnList,
        ("GET", "/api/v1/audit") => OwnItems,
        ("POST", "/api/v1/runs/retry")
        | ("POST", "/api/v1/runs/replay")
        | ("PUT", "/api/v1/secrets/{name}") => InOwn,
        // Alpha's own secret of that name, if the PUT made it already; beta's stays (checked).
        ("DELETE", "/api/v1/secrets/{name}") => Global,
        (_, p) if p.starts_with("/api/v1/flows/{id}") => NotFound,
        (_, p) if p.starts_with("/api/v1/runs/{id}") => NotFound,
        ("GET", "/api/v1/operations/{id}") => NotFound,
        ("POST", "/api/v1/notifications/{id}/read") => NotFound,
        _ => return None,
    })
}

/// `path` with its parameters naming beta's objects, and the body the operation is sent with.
fn aimed_at_beta(method: &str, path: &str, beta: &Beta) -> (String, Option<(String, String)>) {
    let id = if path.starts_with("/api/v1/runs/") {
        beta.run.as_str()
    } else if path.starts_with("/api/v1/operations/") {
        beta.operation.as_str()
    } else if path.starts_with("/api/v1/notifications/") {
        beta.notification.as_str()
    } else {
        "bflow"
    };
    let mut filled = path
        .replace("{id}", id)
        .replace("{revision}", "1")
        .replace("{name}", "B_TOKEN")
        .replace("{ws}", "beta");
    if path == "/api/v1/actions" {
        filled.push_str("?entity=guest");
    }
    let json = |v: Value| Some(("application/json".to_owned(), v.to_string()));
    let body = match (method, path) {
        ("POST", "/api/v1/events") => {
            json(json!({"entity": "guest", "action": "create", "id": "1", "workspace": "beta"}))
        }
        ("POST", "/api/v1/flows") | ("POST", "/api/v1/flows/validate") | ("PUT", _)
            if path.starts_with("/api/v1/flows") =>
        {
            Some((
                "application/yaml".to_owned(),
                format!("workspace: beta\n{B_FLOW}"),
            ))
        }
        ("PUT", "/api/v1/secrets/{name}") => json(json!({"value": "alpha-value"})),
        ("POST", _) => json(json!({})),
        _ => None,
    };
    (filled, body)
}

/// The complaint about `answer` to `expect`, if any; `beta_marks` must not appear in lists.
fn complaint(expect: Expect, answer: &Answer, beta_marks: &[&str]) -> Option<String> {
    let status = answer.status.as_u16();
    let text = answer.text();
    let code = answer.json().ok().map(|b| b["error"]["code"].clone());
    let ok = match expect {
        Expect::NotFound => status == 404 && code.is_some(),
        Expect::OwnList => status == 200 && !beta_marks.iter().any(|m| text.contains(m)),
        Expect::OwnItems => status == 200 && all_in_alpha(&answer.json().unwrap_or_default()),
        Expect::Forbidden => status == 403 && code == Some(json!("forbidden")),
        Expect::Global => status < 500 && status != 403,
        Expect::Refused(want) => status == want,
        Expect::InOwn => status < 500 && status != 403 && status != 404,
    };
    (!ok).then(|| format!("expected {expect:?}, got {status}: {text}"))
}

/// Whether `page` is a list whose items are all of workspace `alpha`.
fn all_in_alpha(page: &Value) -> bool {
    page["items"]
        .as_array()
        .is_some_and(|items| items.iter().all(|i| i["workspace"] == "alpha"))
}

/// The id of the API key named `name`.
async fn key_id(engine: &TestEngine, name: &str) -> String {
    let keys = flowd::store::api_keys::list(engine.engine().store().reader())
        .await
        .unwrap();
    keys.into_iter().find(|k| k.name == name).unwrap().id
}

/// The audit log as `key` sees it: `(id, workspace, actor, action, target)` of every entry.
async fn audit_of(key: &Keyed, query: &str) -> Vec<[String; 5]> {
    let page = key.get(&format!("/api/v1/audit?limit=500{query}")).await;
    let text = |e: &Value, k: &str| e[k].as_str().unwrap_or_default().to_owned();
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| ["id", "workspace", "actor", "action", "target"].map(|k| text(e, k)))
        .collect()
}

/// The audit log keeps workspaces apart: a key sees its own workspace's entries only (each with
/// its `key:<id>` as the actor), an admin key every workspace's or one with `?workspace=`.
async fn audit_entries_stay_in_their_workspace(engine: &TestEngine, admin: &Keyed, a: &Keyed) {
    let b = Keyed::new(
        &engine.api(),
        &engine.add_key("beta-auditor", "beta", Role::Viewer).await,
    );
    let b_editor = format!("key:{}", key_id(engine, "beta-editor").await);
    let a_editor = format!("key:{}", key_id(engine, "alpha-editor").await);
    let root = format!("key:{}", key_id(engine, "root").await);
    let of_beta = audit_of(&b, "").await;
    let has = |entries: &[[String; 5]], want: [&str; 4]| {
        entries.iter().any(|e| e[1..] == want.map(str::to_owned))
    };
    assert!(
        has(&of_beta, ["beta", &b_editor, "flow.created", "bflow"]),
        "{of_beta:?}"
    );
    assert!(
        has(&of_beta, ["beta", &b_editor, "secret.set", "B_TOKEN"]),
        "{of_beta:?}"
    );
    assert!(of_beta.iter().all(|e| e[1] == "beta"), "{of_beta:?}");
    let of_alpha = audit_of(a, "").await;
    assert!(
        has(&of_alpha, ["alpha", &a_editor, "secret.set", "B_TOKEN"]),
        "alpha's own change is there: {of_alpha:?}"
    );
    assert!(
        has(&of_alpha, ["alpha", &root, "workspace.created", "alpha"]),
        "{of_alpha:?}"
    );
    let beta_ids: Vec<&String> = of_beta.iter().map(|e| &e[0]).collect();
    assert!(
        of_alpha
            .iter()
            .all(|e| e[1] == "alpha" && !beta_ids.contains(&&e[0])),
        "alpha's key sees an entry of beta: {of_alpha:?}"
    );
    let everything = audit_of(admin, "").await;
    assert!(everything.len() >= of_alpha.len() + of_beta.len());
    assert_eq!(audit_of(admin, "&workspace=beta").await, of_beta);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_one_workspace_reaches_nothing_of_another() {
    for db in TestDb::all().await {
        let dir = tempfile::tempdir().unwrap();
        let (engine, admin, beta) = world(&db.url, &dir.path().join("flows")).await;
        let b = Keyed::new(
            &engine.api(),
            &engine.add_key("beta-viewer", "beta", Role::Viewer).await,
        );
        let before = (b.get("/api/v1/runs").await, b.get("/api/v1/secrets").await);
        let a = Keyed::new(
            &engine.api(),
            &engine.add_key("alpha-editor", "alpha", Role::Editor).await,
        );
        let marks = [
            "bflow",
            "\"beta\"",
            beta.run.as_str(),
            beta.notification.as_str(),
        ];
        let mut failures = Vec::new();
        let mut checked = 0;
        for (method, path) in operations(&admin).await {
            if is_public(&path) {
                continue;
            }
            let Some(expect) = isolation(&method, &path) else {
                failures.push(format!("{method} {path}: no row in the isolation table"));
                continue;
            };
            let (filled, body) = aimed_at_beta(&method, &path, &beta);
            let body = body.as_ref().map(|(t, b)| (t.as_str(), b.as_str()));
            // Naming beta with `?workspace=` is refused like a workspace that does not exist.
            let sep = if filled.contains('?') { '&' } else { '?' };
            let named = a
                .call(&method, &format!("{filled}{sep}workspace=beta"), body)
                .await;
            let code = named.json().ok().map(|b| b["error"]["code"].clone());
            if named.status != 404 || code != Some(json!("workspace_not_found")) {
                failures.push(format!(
                    "{method} {path}?workspace=beta: {} {}",
                    named.status,
                    named.text()
                ));
            }
            let answer = a.call(&method, &filled, body).await;
            if let Some(problem) = complaint(expect, &answer, &marks) {
                failures.push(format!("{method} {filled}: {problem}"));
            }
            checked += 1;
        }
        assert!(checked >= 30, "only {checked} operations were checked");
        assert!(failures.is_empty(), "{}:\n{}", db.url, failures.join("\n"));
        audit_entries_stay_in_their_workspace(&engine, &admin, &a).await;

        // Beta is as it was: its flow, run, secret and notification untouched, no new run.
        let flow = b.get("/api/v1/flows/bflow").await;
        assert_eq!(flow["paused"], false, "{flow}");
        let after = (b.get("/api/v1/runs").await, b.get("/api/v1/secrets").await);
        assert_eq!(after.1, before.1, "beta's secrets changed");
        let ids = |runs: &Value| -> Vec<Value> {
            runs["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].clone())
                .collect()
        };
        assert_eq!(ids(&after.0), ids(&before.0), "beta's runs changed");
        let run = b.get(&format!("/api/v1/runs/{}", beta.run)).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        let notes = b.get("/api/v1/notifications?unread=true").await;
        assert_eq!(notes["items"].as_array().unwrap().len(), 1, "{notes}");
        let (status, _) = b
            .json(
                "GET",
                &format!("/api/v1/operations/{}", beta.operation),
                None,
            )
            .await;
        assert_eq!(status, 200);
        engine.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_may_do_what_it_should_and_is_told_the_role_it_lacks() {
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let (engine, admin, _) = world(&db.url, &dir.path().join("flows")).await;
    let ops = operations(&admin).await;
    let mut failures = Vec::new();
    for role in Role::ALL {
        let key = Keyed::new(
            &engine.api(),
            &engine.add_key(&format!("beta-{role}"), "beta", role).await,
        );
        for (method, path) in &ops {
            if is_public(path) {
                continue;
            }
            if !flowd::api::PERMISSIONS
                .iter()
                .any(|(m, p, _)| m == method && p == path)
            {
                failures.push(format!(
                    "{method} {path}: no row in flowd::api::PERMISSIONS"
                ));
                continue;
            }
            let needed = flowd::api::permission(method, path);
            let (filled, _) = aimed_at_beta(
                method,
                path,
                &Beta {
                    run: "0190a8a0-0000-7000-8000-000000000000".into(),
                    notification: "none".into(),
                    operation: "none".into(),
                },
            );
            let answer = key.call(method, &filled, None).await;
            let body = answer.json().unwrap_or(Value::Null);
            match needed.filter(|p| !role.allows(*p)) {
                None if answer.status == 403 => {
                    failures.push(format!("{role} {method} {path}: 403 {body}"))
                }
                None => {}
                Some(p) => {
                    let want = Role::needed_for(p).as_str();
                    let named = body["error"]["details"][0]["role_needed"] == want
                        && body["error"]["code"] == "forbidden"
                        && body["error"]["message"]
                            .as_str()
                            .is_some_and(|m| m.contains(&format!("`{want}`")));
                    if answer.status != 403 || !named {
                        failures.push(format!(
                            "{role} {method} {path}: wanted 403 naming `{want}`, got {} {body}",
                            answer.status
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    engine.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_id_one_path_and_one_event_id_live_in_two_workspaces() {
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let (engine, admin, _) = world(&db.url, &dir.path().join("flows")).await;
    // The same file name in `flows/` and `flows/beta/`: one flow `hooked` in each workspace.
    let flows = admin.get("/api/v1/flows").await;
    let hooked: Vec<&str> = flows["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["id"] == "hooked")
        .map(|f| f["workspace"].as_str().unwrap())
        .collect();
    assert_eq!(hooked.len(), 2, "{flows}");
    assert!(
        hooked.contains(&"default") && hooked.contains(&"beta"),
        "{flows}"
    );

    // One webhook path in each: `/hooks/crm` and `/hooks/@beta/crm` start their own flow.
    let mut started = Vec::new();
    for (url, workspace) in [("/hooks/crm", "default"), ("/hooks/@beta/crm", "beta")] {
        let (status, body) = admin.json("POST", url, Some(&json!({"n": 1}))).await;
        assert_eq!(status, 202, "{url}: {body}");
        let run = body["run_id"].as_str().unwrap().to_owned();
        let detail = admin
            .get(&format!("/api/v1/runs/{run}?workspace={workspace}"))
            .await;
        assert_eq!(
            (&detail["flow"], &detail["workspace"]),
            (&json!("hooked"), &json!(workspace))
        );
        started.push(run);
    }
    let (status, _) = admin
        .json("POST", "/hooks/@alpha/crm", Some(&json!({})))
        .await;
    assert_eq!(status, 404, "alpha has no webhook `crm`");

    // One event id in two workspaces: two events, each starting its workspace's flow.
    let event = |ws: Option<&str>| {
        let mut e = json!({"entity": "guest", "action": "create", "id": "7", "event_id": "ev-1"});
        if let Some(ws) = ws {
            e["workspace"] = json!(ws);
        }
        e
    };
    let mut runs_of = Vec::new();
    for ws in [None, Some("beta"), Some("beta")] {
        let (status, body) = admin.json("POST", "/api/v1/events", Some(&event(ws))).await;
        assert_eq!(status, 202, "{body}");
        runs_of.push(body["items"][0]["runs"].clone());
    }
    assert_ne!(runs_of[0], runs_of[1], "default and beta share an event id");
    assert_eq!(
        runs_of[1], runs_of[2],
        "a repeated event id of beta started something new"
    );
    let default_runs = runs_of[0].as_array().unwrap();
    let beta_runs = runs_of[1].as_array().unwrap();
    // Beta has two flows on `guest`: `hooked` and `bflow`; default one.
    assert_eq!((default_runs.len(), beta_runs.len()), (1, 2), "{runs_of:?}");
    engine.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_reads_only_its_own_workspaces_secrets() {
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    let sink = Sink::start().await;
    std::fs::create_dir_all(flows.join("beta")).unwrap();
    let flow = format!(
        "triggers:\n  - manual: {{label: Go}}\nsteps:\n  - id: push\n    http:\n      url: {}\n      headers: {{X-Token: \"{{{{secrets.TOKEN}}}}\"}}\n      retry: {{attempts: 1}}\n",
        sink.url("/in")
    );
    std::fs::write(flows.join("push.yaml"), &flow).unwrap();
    std::fs::write(flows.join("beta").join("push.yaml"), &flow).unwrap();
    let setup = EngineSetup {
        master_key: Some(MasterKey::generate()),
        ..EngineSetup::new(&db.url, &flows)
    };
    let engine = TestEngine::start(&setup).await;
    let admin = Keyed::new(&engine.api(), &engine.add_api_key("root").await);
    let beta = Keyed::new(
        &engine.api(),
        &engine.add_key("beta-editor", "beta", Role::Editor).await,
    );
    let (status, body) = admin
        .json(
            "PUT",
            "/api/v1/secrets/TOKEN",
            Some(&json!({"value": "default-token-value"})),
        )
        .await;
    assert_eq!(
        (status, &body["workspace"]),
        (200, &json!("default")),
        "{body}"
    );

    let run_in = |who: &'static str| {
        let key = if who == "beta" { &beta } else { &admin };
        async move {
            let (status, body) = key
                .json(
                    "POST",
                    "/api/v1/flows/push/trigger?wait=20s",
                    Some(&json!({})),
                )
                .await;
            assert_eq!(status, 200, "{who}: {body}");
            body
        }
    };
    let ok = run_in("default").await;
    assert_eq!(ok["status"], "succeeded", "{ok}");
    let failed = run_in("beta").await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(failed.to_string().contains("missing_secret"), "{failed}");

    let (status, body) = beta
        .json(
            "PUT",
            "/api/v1/secrets/TOKEN",
            Some(&json!({"value": "beta-token-value"})),
        )
        .await;
    assert_eq!(
        (status, &body["workspace"]),
        (200, &json!("beta")),
        "{body}"
    );
    let ok = run_in("beta").await;
    assert_eq!(ok["status"], "succeeded", "{ok}");
    let tokens: Vec<String> = sink
        .requests()
        .iter()
        .filter_map(|r| r.header("x-token").map(str::to_owned))
        .collect();
    assert_eq!(tokens, ["default-token-value", "beta-token-value"]);
    // The listing of each workspace shows its own secret only.
    let listed = beta.get("/api/v1/secrets").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
    engine.stop().await;
    db.cleanup().await;
}

/// How many migrations the release before workspaces had.
const MIGRATIONS_BEFORE: u32 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_the_previous_release_upgrades_into_default() {
    use flowd::store::api_keys::hash_key;
    use migration::MigratorTrait;
    for db in TestDb::all_unmigrated().await {
        let conn = db.store.writer();
        migration::Migrator::up(conn, Some(MIGRATIONS_BEFORE))
            .await
            .unwrap();
        let key = "fk_previous_release_key_0123456789";
        let master = MasterKey::generate();
        previous_release_rows(&db, key, &master).await;
        // A file in a subfolder was a flow of its own id; the folder now names its workspace.
        let dir = tempfile::tempdir().unwrap();
        let flows = dir.path().join("flows");
        std::fs::create_dir_all(flows.join("crm")).unwrap();
        let moved = flows.join("crm").join("moved.yaml");
        std::fs::write(
            &moved,
            "triggers:\n  - entity: guest\nsteps:\n  - id: m\n    map: {x: 1}\n",
        )
        .unwrap();
        previous_release_file_flow(&db, &moved).await;

        let setup = EngineSetup {
            master_key: Some(master),
            ..EngineSetup::new(&db.url, &flows)
        };
        let engine = TestEngine::start(&setup).await;
        let access = engine
            .engine()
            .access_for_key(key)
            .expect("the old key works");
        assert_eq!(
            (
                access.workspace.as_str(),
                access.role,
                access.all_workspaces
            ),
            ("default", Role::Admin, true),
            "{}",
            hash_key(key)
        );
        let old = Keyed::new(&engine.api(), key);
        let flow = old.get("/api/v1/flows/old-flow").await;
        assert_eq!(flow["workspace"], "default", "{flow}");
        let run = old
            .get("/api/v1/runs/0190a8a0-0000-7000-8000-0000000000aa")
            .await;
        assert_eq!(
            (&run["workspace"], &run["flow"]),
            (&json!("default"), &json!("old-flow"))
        );
        let secrets = old.get("/api/v1/secrets").await;
        assert_eq!(secrets["items"][0]["name"], "OLD_SECRET", "{secrets}");
        assert_eq!(secrets["items"][0]["readable"], true, "{secrets}");
        // The stored event id still deduplicates; a new one starts the old flow.
        let event =
            |id: &str| json!({"entity": "guest", "action": "create", "id": "1", "event_id": id});
        let (status, body) = old
            .json("POST", "/api/v1/events", Some(&event("ev-old")))
            .await;
        assert_eq!(status, 202);
        assert_eq!(
            body["items"][0]["runs"],
            json!(["0190a8a0-0000-7000-8000-0000000000aa"])
        );
        let (_, body) = old
            .json("POST", "/api/v1/events", Some(&event("ev-new")))
            .await;
        let new_run = body["items"][0]["runs"][0].as_str().unwrap().to_owned();
        let api = engine.api();
        let done = Keyed::new(&api, key);
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let run = done.get(&format!("/api/v1/runs/{new_run}")).await;
            if run["status"] == "succeeded" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{run}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The file's flow moved into the folder's workspace; its old self is deleted.
        let (status, _) = old.json("GET", "/api/v1/flows/moved", None).await;
        assert_eq!(status, 404);
        let flow = old.get("/api/v1/flows/moved?workspace=crm").await;
        assert_eq!(flow["workspace"], "crm", "{flow}");
        // Its webhook answers where it did.
        let (status, body) = old.json("POST", "/hooks/old-hook", Some(&json!({}))).await;
        assert_eq!(status, 202, "{body}");
        engine.stop().await;
        db.cleanup().await;
    }
}

/// A file flow `moved` of `file`, as the release before workspaces stored it.
async fn previous_release_file_flow(db: &TestDb, file: &std::path::Path) {
    use sea_orm::ConnectionTrait;
    let yaml = std::fs::read_to_string(file).unwrap();
    let report = flowd::flow::validate::validate_source(&yaml, Some("moved"), &Default::default());
    let definition = serde_json::to_string(&report.flow.unwrap().def).unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let q = |s: &str| s.replace('\'', "''");
    for sql in [
        format!(
            "INSERT INTO flows (id, name, source, path, revision, enabled, paused, created_at, updated_at) \
             VALUES ('moved', 'moved', 'file', '{}', 1, TRUE, FALSE, {now}, {now})",
            q(&file.display().to_string())
        ),
        format!(
            "INSERT INTO flow_revisions (flow_id, revision, sha256, source, definition, created_at) \
             VALUES ('moved', 1, 'x', '{}', '{}', {now})",
            q(&yaml),
            q(&definition)
        ),
    ] {
        db.store
            .writer()
            .execute_unprepared(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// A flow with a webhook and an entity trigger, a finished run, an event, a key and a secret,
/// written as the release before workspaces wrote them.
async fn previous_release_rows(db: &TestDb, key: &str, master: &MasterKey) {
    use sea_orm::ConnectionTrait;
    let yaml = "id: old-flow\ntriggers:\n  - webhook: {path: old-hook}\n  - entity: guest\nsteps:\n  - id: m\n    map: {x: 1}\n";
    let report = flowd::flow::validate::validate_source(yaml, None, &Default::default());
    let definition = serde_json::to_string(&report.flow.unwrap().def).unwrap();
    let run = "0190a8a0-0000-7000-8000-0000000000aa";
    let trigger = json!({"kind": "manual", "input": null}).to_string();
    let now = chrono::Utc::now().timestamp_millis();
    let q = |s: &str| s.replace('\'', "''");
    let statements = [
        format!(
            "INSERT INTO flows (id, name, source, path, revision, enabled, paused, created_at, updated_at) \
             VALUES ('old-flow', 'old-flow', 'api', NULL, 1, TRUE, FALSE, {now}, {now})"
        ),
        format!(
            "INSERT INTO flow_revisions (flow_id, revision, sha256, source, definition, created_at) \
             VALUES ('old-flow', 1, 'x', '{}', '{}', {now})",
            q(yaml),
            q(&definition)
        ),
        format!(
            "INSERT INTO runs (id, flow_id, revision, status, trigger, next_step, attempt, lease_epoch, cancel_requested, created_at, finished_at) \
             VALUES ('{run}', 'old-flow', 1, 'succeeded', '{}', 1, 1, 0, FALSE, {now}, {now})",
            q(&trigger)
        ),
        format!(
            "INSERT INTO events (id, entity, action, entity_id, data, run_ids, created_at) \
             VALUES ('ev-old', 'guest', 'create', '1', '{{}}', '[\"{run}\"]', {now})"
        ),
        format!(
            "INSERT INTO api_keys (id, name, prefix, hash, created_at) \
             VALUES ('k-old', 'old', 'fk_previou', '{}', {now})",
            flowd::store::api_keys::hash_key(key)
        ),
        format!(
            "INSERT INTO secrets (workspace, name, sealed, key_fingerprint, created_at, updated_at) \
             VALUES ('default', 'OLD_SECRET', '{}', '{}', {now}, {now})",
            q(&master.seal("OLD_SECRET", "old-value")),
            master.fingerprint()
        ),
    ];
    for sql in statements {
        db.store
            .writer()
            .execute_unprepared(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_makes_workspaces_and_scoped_keys_a_server_honours() {
    use crate::support::flowd::{FlowdEnv, FlowdProcess};
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = crate::support::flowd::cli_in(dir.path(), &["migrate"]);
    assert!(ok, "{err}");
    let (ok, _, err) = crate::support::flowd::cli_in(
        dir.path(),
        &[
            "keys",
            "create",
            "x",
            "--workspace",
            "acme",
            "--role",
            "viewer",
        ],
    );
    assert!(!ok && err.contains("no workspace `acme`"), "{err}");
    let (ok, _, err) =
        crate::support::flowd::cli_in(dir.path(), &["keys", "create", "x", "--role", "root"]);
    assert!(!ok && err.contains("`root` is not a role"), "{err}");
    let (ok, _, err) = crate::support::flowd::cli_in(dir.path(), &["workspaces", "create", "Acme"]);
    assert!(!ok && err.contains("not a workspace name"), "{err}");
    let (ok, _, err) = crate::support::flowd::cli_in(dir.path(), &["workspaces", "create", "acme"]);
    assert!(ok, "{err}");
    let (ok, _, err) = crate::support::flowd::cli_in(dir.path(), &["workspaces", "create", "acme"]);
    assert!(!ok && err.contains("exists already"), "{err}");
    let (ok, list, _) = crate::support::flowd::cli_in(dir.path(), &["workspaces", "list"]);
    assert!(
        ok && list.contains("acme") && list.contains("default"),
        "{list}"
    );
    let (ok, key, err) = crate::support::flowd::cli_in(
        dir.path(),
        &[
            "keys",
            "create",
            "viewer",
            "--workspace",
            "acme",
            "--role",
            "viewer",
        ],
    );
    assert!(ok, "{err}");
    let key = key.trim().to_owned();
    let (ok, editor, err) = crate::support::flowd::cli_in(
        dir.path(),
        &[
            "keys",
            "create",
            "ed",
            "--workspace",
            "acme",
            "--role",
            "editor",
        ],
    );
    assert!(ok, "{err}");
    let (ok, list, _) = crate::support::flowd::cli_in(dir.path(), &["keys", "list"]);
    assert!(ok && list.contains("\tacme\tviewer\t"), "{list}");

    let flows = dir.path().join("flows");
    std::fs::create_dir_all(flows.join("acme")).unwrap();
    std::fs::write(
        flows.join("acme").join("a.yaml"),
        "triggers:\n  - manual: {label: Go}\nsteps:\n  - id: m\n    map: {x: 1}\n",
    )
    .unwrap();
    let url = format!("sqlite://{}", dir.path().join("flowd.db").display());
    let server = FlowdProcess::start(&FlowdEnv::new(url, flows)).await;
    let viewer = Keyed::new(&server.api(), &key);
    let listed = viewer.get("/api/v1/flows").await;
    assert_eq!(listed["items"][0]["id"], "a", "{listed}");
    assert_eq!(listed["items"][0]["workspace"], "acme", "{listed}");
    let (status, body) = viewer
        .json("POST", "/api/v1/flows/a/trigger", Some(&json!({})))
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body["error"]["details"][0]["role_needed"], "trigger",
        "{body}"
    );
    let (status, body) = viewer.json("GET", "/metrics", None).await;
    assert_eq!(
        (status, &body["error"]["details"][0]["role_needed"]),
        (403, &json!("admin"))
    );

    // An API flow of acme is exported into the folder that gives it back to acme.
    let editor = Keyed::new(&server.api(), editor.trim());
    let yaml = "id: made\ntriggers:\n  - manual: {label: Go}\nsteps:\n  - id: m\n    map: {x: 1}\n";
    let (status, body) = editor.yaml("POST", "/api/v1/flows", yaml).await;
    assert_eq!(
        (status, &body["workspace"]),
        (201, &json!("acme")),
        "{body}"
    );
    let out = dir.path().join("exported");
    let out_arg = out.display().to_string();
    let (ok, _, err) = crate::support::flowd::cli_in(dir.path(), &["export", "--out", &out_arg]);
    assert!(ok, "{err}");
    let written = std::fs::read_to_string(out.join("acme").join("made.yaml")).unwrap();
    assert_eq!(written, yaml);
}
