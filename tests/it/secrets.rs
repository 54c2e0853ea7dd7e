//! The secret store end to end, with a real `flowd serve` on SQLite: a step that reads a secret
//! nobody set fails with `missing_secret` and sends nothing; the secret is set through the API;
//! the run is retried and succeeds without a restart; and no form of the value (raw, upper and
//! lower case, base64, URL-encoded, JSON-escaped) is anywhere in the database file, the log or
//! the API answers. Then the bad inputs: names, sizes, a wrong master key at start.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use flowd::secrets::cipher::MasterKey;
use flowd::store::sql::{get, stmt};
use flowd::store::{Backend, Store, StoreOptions};
use reqwest::StatusCode;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::support::flowd::{FlowdEnv, FlowdProcess, output_within};
use crate::support::sink::Sink;

const DEADLINE: Duration = Duration::from_secs(60);

/// Quotes, slashes, a backslash, `+`, `=` and non-ASCII letters: every encoding differs.
const VALUE: &str = "p@ss \"Wörd\"/x\\y+z=Ü-long-enough";

fn flow(url: &str) -> String {
    format!(
        r#"
id: secret-flow
triggers: [{{manual: {{label: Go}}}}]
steps:
  - id: prepared
    map:
      lower: "x-{{{{lowercase secrets.API_KEY}}}}"
      plain: "{{{{input.n}}}}"
  - id: push
    http:
      url: "{url}"
      headers:
        X-Key: "{{{{secrets.API_KEY}}}}"
        X-Upper: "{{{{uppercase secrets.API_KEY}}}}"
        X-Prepared: "{{{{steps.prepared.lower}}}}"
      query:
        k: "{{{{secrets.API_KEY}}}}"
        e: "{{{{url_encode secrets.API_KEY}}}}"
      auth: {{basic: {{username: u, password: "{{{{secrets.API_KEY}}}}"}}}}
      body:
        raw: "{{{{secrets.API_KEY}}}}"
        b64: "{{{{base64 secrets.API_KEY}}}}"
        parts: "{{{{split secrets.API_KEY '/'}}}}"
        all: "{{{{json secrets}}}}"
"#
    )
}

/// Every form of the value that must never be stored or shown.
fn forms(value: &str) -> Vec<String> {
    let mut forms = Vec::new();
    for v in [
        value.to_string(),
        value.to_uppercase(),
        value.to_lowercase(),
    ] {
        forms.push(STANDARD.encode(&v));
        forms.push(URL_SAFE_NO_PAD.encode(&v));
        forms.push(url::form_urlencoded::byte_serialize(v.as_bytes()).collect());
        forms.push(
            percent_encoding::utf8_percent_encode(&v, percent_encoding::NON_ALPHANUMERIC)
                .to_string(),
        );
        let json = Value::String(v.clone()).to_string();
        let escaped = json[1..json.len() - 1].to_string();
        // Escaped twice: a JSON text stored inside another JSON string.
        let twice = Value::String(escaped.clone()).to_string();
        forms.push(twice[1..twice.len() - 1].to_string());
        forms.push(escaped);
        forms.push(v);
    }
    forms
}

/// `flowd serve` on `database_url` with a fresh master key, keeping every line of output.
pub fn env_with_key(database_url: String, flows: std::path::PathBuf) -> FlowdEnv {
    let mut env = FlowdEnv::new(database_url, flows);
    env.kept_lines = 1_000_000;
    env.extra = vec![(
        "FLOWD_MASTER_KEY".to_owned(),
        MasterKey::generate().encode(),
    )];
    env
}

/// Some line of `flowd`'s output so far holds both texts.
fn assert_logged(flowd: &FlowdProcess, one: &str, other: &str) {
    let (lines, _) = flowd.output_lines();
    assert!(
        lines.iter().any(|l| l.contains(one) && l.contains(other)),
        "no line with {one:?} and {other:?}:\n{}",
        flowd.stderr_tail()
    );
}

fn assert_no_form(haystack: &[u8], what: &str) {
    for form in forms(VALUE) {
        let found = haystack.windows(form.len()).any(|w| w == form.as_bytes());
        assert!(!found, "{what} holds the secret as {form:?}");
    }
}

#[tokio::test]
async fn a_missing_secret_fails_before_sending_and_a_set_one_works_without_restart() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(&flows).expect("flows folder");
    std::fs::write(flows.join("secret-flow.yaml"), flow(&sink.url("/push"))).expect("flow");
    let db = dir.path().join("flowd.db");
    let env = env_with_key(format!("sqlite://{}", db.display()), flows);
    let flowd = FlowdProcess::start(&env).await;
    let api = flowd.api();
    // serve warns about the missing secret at start.
    assert_logged(&flowd, "API_KEY", "not set");

    let (status, started) = api
        .request(
            "POST",
            "/api/v1/flows/secret-flow/trigger",
            Some(("application/json", r#"{"input": {"n": 1}}"#)),
        )
        .await
        .expect("trigger");
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let run_id = started["run_id"].as_str().expect("run id").to_owned();
    let failed = api
        .wait_for_run(&run_id, |r| r["status"] == "failed", DEADLINE)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", flowd.stderr_tail()));
    let error = failed["steps"][1]["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("missing_secret") && error.contains("flowd secrets set API_KEY"),
        "{failed}"
    );
    assert_eq!(sink.count(), 0, "nothing is sent without the secret");

    let bad = api
        .request(
            "PUT",
            "/api/v1/secrets/api-key",
            Some(("application/json", r#"{"value": "x"}"#)),
        )
        .await
        .expect("put");
    assert_eq!(bad.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.1);
    let too_long = json!({"value": "x".repeat(64 * 1024 + 1)}).to_string();
    let bad = api
        .request(
            "PUT",
            "/api/v1/secrets/API_KEY",
            Some(("application/json", &too_long)),
        )
        .await
        .expect("put");
    assert_eq!(bad.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.1);
    assert!(bad.1.to_string().contains("64 KiB"), "{}", bad.1);

    let set = api.put_secret("API_KEY", VALUE).await.expect("put");
    assert_eq!(set["source"], "store");
    assert_eq!(set["used_by"], json!(["secret-flow"]));

    let (status, _) = api
        .request("POST", &format!("/api/v1/runs/{run_id}/retry"), None)
        .await
        .expect("retry");
    assert_eq!(status, StatusCode::ACCEPTED);
    let done = api
        .wait_for_run(&run_id, |r| r["status"] == "succeeded", DEADLINE)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", flowd.stderr_tail()));
    let sent = sink.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].header("x-key"),
        Some(VALUE),
        "the right value went out"
    );
    assert_eq!(
        sent[0].header("x-upper").map(str::to_owned),
        Some(VALUE.to_uppercase())
    );

    // Every API answer of the run, and the list of secrets.
    let mut answers = done.to_string();
    answers.push_str(
        &api.get_json("/api/v1/secrets")
            .await
            .expect("list")
            .to_string(),
    );
    answers.push_str(
        &api.get_json("/api/v1/runs")
            .await
            .expect("runs")
            .to_string(),
    );
    answers.push_str(
        &api.get_json("/api/v1/flows/secret-flow")
            .await
            .expect("flow")
            .to_string(),
    );
    assert_no_form(answers.as_bytes(), "an API answer");
    assert!(
        done.to_string().contains("***"),
        "redacted, not dropped: {done}"
    );
    assert_eq!(done["steps"][0]["output"]["lower"], "***");
    assert_eq!(done["steps"][0]["output"]["plain"], 1);

    let (lines, _) = flowd.output_lines();
    assert_no_form(lines.join("\n").as_bytes(), "the log");
    drop(flowd);
    let mut bytes = Vec::new();
    for file in ["flowd.db", "flowd.db-wal", "flowd.db-shm"] {
        bytes.extend(std::fs::read(dir.path().join(file)).unwrap_or_default());
    }
    assert!(!bytes.is_empty());
    assert_no_form(&bytes, "the database file");
}

#[tokio::test]
async fn a_wrong_master_key_stops_the_start_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("flowd.db").display());
    let right = MasterKey::generate().encode();
    let mut set = flowd_command(&url, &right);
    set.args(["secrets", "set", "TOKEN", "--create"]);
    let out = output_within(&mut set, Some("tok-value-123"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut list = flowd_command(&url, &MasterKey::generate().encode());
    list.args(["secrets", "set", "OTHER"]);
    let out = output_within(&mut list, Some("other"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("does not open the secret store"),
        "{stderr}"
    );

    let mut list = flowd_command(&url, &right);
    list.args(["secrets", "list"]);
    let out = output_within(&mut list, None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("TOKEN\tstore") && stdout.contains("\tok"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("OTHER") && !stdout.contains("tok-value"),
        "{stdout}"
    );

    let mut bad_name = flowd_command(&url, &right);
    bad_name.args(["secrets", "set", "lower"]);
    let out = output_within(&mut bad_name, Some("x"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a secret name"));
}

fn flowd_command(database_url: &str, key: &str) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_flowd"));
    for (name, _) in std::env::vars() {
        if name.starts_with("FLOWD_") {
            command.env_remove(name);
        }
    }
    command
        .env("FLOWD_DATABASE_URL", database_url)
        .env("FLOWD_MASTER_KEY", key);
    command
}

/// What the echo target saw, and what it answers: every header, the path with its query, and
/// the body (parsed when it is JSON), so a response carries every form the request did.
#[derive(Clone, Default)]
struct Echoed(Arc<Mutex<Vec<Value>>>);

impl Echoed {
    fn seen(&self) -> Vec<Value> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn find(&self, path: &str) -> Option<Value> {
        self.seen()
            .into_iter()
            .find(|r| r["path"].as_str().is_some_and(|p| p.starts_with(path)))
    }
}

async fn echo(
    axum::extract::State(echoed): axum::extract::State<Echoed>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::Json<Value> {
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| {
            let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
            (k.as_str().to_owned(), Value::String(v))
        })
        .collect();
    let body = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let seen = json!({"path": uri.to_string(), "headers": headers, "body": body});
    echoed
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(seen.clone());
    axum::Json(seen)
}

async fn start_echo() -> (String, Echoed) {
    let echoed = Echoed::default();
    let app = axum::Router::new()
        .fallback(echo)
        .with_state(echoed.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            eprintln!("echo target stopped: {error}");
        }
    });
    (base, echoed)
}

/// The flow of the first test, renamed, then a notification, a delay (where the process is
/// killed) and one more request.
fn hygiene_flow(base: &str) -> String {
    let start = flow(&format!("{base}/push")).replace("id: secret-flow", "id: hygiene");
    format!(
        r#"{start}  - id: tell
    notify:
      channel: inbox
      subject: "Key {{{{uppercase secrets.API_KEY}}}} for run {{{{run.id}}}}"
      text: "Parts {{{{split secrets.API_KEY '/'}}}}, encoded {{{{base64 secrets.API_KEY}}}}, lower {{{{lowercase secrets.API_KEY}}}}."
  - id: pause
    delay: 3s
  - id: again
    http:
      url: "{base}/again"
      headers: {{X-Key: "{{{{secrets.API_KEY}}}}"}}
      body: {{b64: "{{{{base64 secrets.API_KEY}}}}", upper: "{{{{uppercase secrets.API_KEY}}}}"}}
"#
    )
}

/// Issue #17's hygiene test (and #21's test 6): one secret in the URL query, a header, basic
/// auth, the body and through `base64`, `url_encode`, `uppercase`, `split` and `json secrets`,
/// sent to a target that echoes everything back. The run is killed with `kill -9` during its
/// delay and resumed by a new process, which still sends the right values. Then no form of the
/// value is in the database files, the logs of both processes (JSON and plain text), the API
/// answers (runs, run detail with the curl lines, flows, notifications, secrets) or the
/// console's run page.
#[tokio::test]
async fn no_form_of_a_secret_is_kept_or_shown_even_across_kill_9() {
    let (base, echoed) = start_echo().await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(&flows).expect("flows folder");
    std::fs::write(flows.join("hygiene.yaml"), hygiene_flow(&base)).expect("flow");
    let db = dir.path().join("flowd.db");
    let mut env = env_with_key(format!("sqlite://{}", db.display()), flows);
    // Debug lines too (each attempt's URL); the first process logs JSON, the second plain text.
    env.extra
        .push(("RUST_LOG".to_owned(), "flowd=debug,info".to_owned()));
    let plain = env.extra.clone();
    env.extra
        .push(("FLOWD_LOG_FORMAT".to_owned(), "json".to_owned()));
    let mut first = FlowdProcess::start(&env).await;
    let api = first.api();
    api.put_secret("API_KEY", VALUE).await.expect("put");
    let run_id = api.trigger("hygiene").await.expect("trigger");
    let in_delay = |r: &Value| {
        r["steps"]
            .as_array()
            .is_some_and(|steps| steps.iter().any(|s| s["id"] == "pause"))
    };
    api.wait_for_run(&run_id, in_delay, DEADLINE)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", first.stderr_tail()));
    first.kill_9().await;
    assert!(
        echoed.find("/again").is_none(),
        "killed before the last step"
    );

    env.extra = plain;
    let second = FlowdProcess::start(&env).await;
    let api = second.api();
    let done = api
        .wait_for_run(&run_id, |r| r["status"] == "succeeded", DEADLINE)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", second.stderr_tail()));

    // The target got the real values, before and after the crash.
    let push = echoed.find("/push").expect("the push request");
    assert_eq!(push["headers"]["x-key"], VALUE);
    assert_eq!(push["headers"]["x-upper"], VALUE.to_uppercase());
    assert_eq!(push["body"]["raw"], VALUE);
    assert_eq!(push["body"]["b64"], STANDARD.encode(VALUE));
    let again = echoed.find("/again").expect("the request after the crash");
    assert_eq!(
        again["headers"]["x-key"], VALUE,
        "resumed with the real value"
    );
    assert_eq!(again["body"]["b64"], STANDARD.encode(VALUE));
    assert_eq!(again["body"]["upper"], VALUE.to_uppercase());

    // Every API answer, the console's run page.
    let mut shown = done.to_string();
    for path in [
        "/api/v1/runs",
        "/api/v1/flows",
        "/api/v1/flows/hygiene",
        "/api/v1/notifications",
        "/api/v1/secrets",
    ] {
        shown.push_str(&api.get_json(path).await.expect(path).to_string());
    }
    let notifications = api.get_json("/api/v1/notifications").await.expect("inbox");
    let notification = notifications.to_string();
    assert!(
        notification.contains("Key *** for run") && notification.contains("encoded ***"),
        "redacted, the words around kept: {notification}"
    );
    assert!(
        done.to_string().contains("curl "),
        "the run detail has curl lines: {done}"
    );
    let page = api
        .call("GET", &format!("/runs/{run_id}"), None, &[])
        .await
        .expect("the run page");
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains(&run_id), "the run's page");
    shown.push_str(&page.text());
    assert_no_form(shown.as_bytes(), "an API answer or the console");

    // Both logs: JSON (first process) and plain text (second).
    for (process, format) in [(&first, "json"), (&second, "plain")] {
        let (lines, _) = process.output_lines();
        assert!(lines.len() > 5, "{format} log");
        assert_no_form(lines.join("\n").as_bytes(), &format!("the {format} log"));
    }
    let (json_lines, _) = first.output_lines();
    assert!(
        json_lines.iter().any(|l| l.starts_with('{')),
        "the first log is JSON"
    );
    drop(second);
    let mut bytes = Vec::new();
    for file in ["flowd.db", "flowd.db-wal", "flowd.db-shm"] {
        bytes.extend(std::fs::read(dir.path().join(file)).unwrap_or_default());
    }
    assert_no_form(&bytes, "the database files");
}

/// `(name, sealed, key fingerprint)` of every stored secret, read straight from the database.
async fn stored_rows(database_url: &str) -> Vec<[String; 3]> {
    let store = Store::connect(database_url, &StoreOptions::default())
        .await
        .expect("open the database");
    let rows = store
        .reader()
        .query_all_raw(stmt(
            Backend::Sqlite,
            "SELECT name, sealed, key_fingerprint FROM secrets ORDER BY name",
            vec![],
        ))
        .await
        .expect("read the secrets");
    let rows = rows
        .iter()
        .map(|row| ["name", "sealed", "key_fingerprint"].map(|c| get::<String>(row, c).expect(c)))
        .collect();
    store.close().await;
    rows
}

async fn execute(database_url: &str, sql: &str) {
    let store = Store::connect(database_url, &StoreOptions::default())
        .await
        .expect("open the database");
    store
        .writer()
        .execute_raw(stmt(Backend::Sqlite, sql, vec![]))
        .await
        .expect("change the database");
    store.close().await;
}

fn flow_reading(id: &str, secret: &str, url: &str) -> String {
    format!(
        "id: {id}\ntriggers: [{{manual: {{label: Go}}}}]\nsteps:\n  - id: push\n    http:\n      url: \"{url}\"\n      headers: {{X-Key: \"{{{{secrets.{secret}}}}}\"}}\n"
    )
}

/// A wrong master key, or a missing key file, stops `flowd serve` at start with a clear error
/// and changes nothing (the key file and every ciphertext stay as they were). A corrupted
/// ciphertext makes that one secret unreadable (listed so, logged at start, the run that needs it
/// fails saying so) while the others work.
#[tokio::test]
async fn a_wrong_key_stops_serve_and_a_corrupted_secret_is_reported_alone() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(&flows).expect("flows folder");
    for (id, secret) in [("uses-good", "GOOD"), ("uses-broken", "BROKEN")] {
        let source = flow_reading(id, secret, &sink.url(&format!("/{id}")));
        std::fs::write(flows.join(format!("{id}.yaml")), source).expect("flow");
    }
    let url = format!("sqlite://{}", dir.path().join("flowd.db").display());
    let key_file = dir.path().join("master.key");
    let mut env = FlowdEnv::new(url.clone(), flows.clone());
    env.kept_lines = 1_000_000;
    env.extra = vec![(
        "FLOWD_MASTER_KEY_FILE".to_owned(),
        key_file.display().to_string(),
    )];
    let mut flowd = FlowdProcess::start(&env).await;
    for name in ["GOOD", "BROKEN"] {
        let value = format!("{name}-value-1234");
        flowd.api().put_secret(name, &value).await.expect("put");
    }
    flowd
        .terminate(DEADLINE)
        .await
        .expect("flowd stops on SIGTERM");
    // BROKEN gets GOOD's ciphertext: sealed under another name, it does not open.
    execute(
        &url,
        "UPDATE secrets SET sealed = (SELECT sealed FROM secrets WHERE name = 'GOOD') WHERE name = 'BROKEN'",
    )
    .await;
    let key_before = std::fs::read(&key_file).expect("the key file");
    let rows_before = stored_rows(&url).await;
    assert_eq!(rows_before.len(), 2);

    let serve = |vars: &[(&str, String)]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_flowd"));
        for (name, _) in std::env::vars() {
            if name.starts_with("FLOWD_") {
                command.env_remove(name);
            }
        }
        command
            .arg("serve")
            .env("FLOWD_DATABASE_URL", &url)
            .env("FLOWD_FLOWS_DIR", &flows)
            .env("FLOWD_LISTEN", "127.0.0.1:0")
            .current_dir(dir.path());
        for (name, value) in vars {
            command.env(name, value);
        }
        output_within(&mut command, None)
    };
    let wrong = serve(&[("FLOWD_MASTER_KEY", MasterKey::generate().encode())]);
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success(), "{stderr}");
    assert!(
        stderr.contains("does not open the secret store") && stderr.contains("nothing was changed"),
        "{stderr}"
    );
    let elsewhere = dir.path().join("elsewhere.key");
    let missing = serve(&[("FLOWD_MASTER_KEY_FILE", elsewhere.display().to_string())]);
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success(), "{stderr}");
    assert!(stderr.contains("is missing"), "{stderr}");
    assert!(!elsewhere.exists(), "no new key was made");
    assert_eq!(std::fs::read(&key_file).expect("key file"), key_before);
    assert_eq!(
        stored_rows(&url).await,
        rows_before,
        "no ciphertext changed"
    );

    // The right key: BROKEN is unreadable, GOOD works.
    let flowd = FlowdProcess::start(&env).await;
    let api = flowd.api();
    assert_logged(&flowd, "BROKEN", "cannot be decrypted");
    let listed = api.get_json("/api/v1/secrets").await.expect("list");
    let readable = |name: &str| {
        listed["items"]
            .as_array()
            .or(listed.as_array())
            .and_then(|items| items.iter().find(|s| s["name"] == name))
            .map(|s| s["readable"].clone())
    };
    assert_eq!(readable("BROKEN"), Some(json!(false)), "{listed}");
    assert_eq!(readable("GOOD"), Some(json!(true)), "{listed}");
    let mut outcomes = Vec::new();
    for flow in ["uses-good", "uses-broken"] {
        let run_id = api.trigger(flow).await.expect("trigger");
        let run = api
            .wait_for_run(&run_id, crate::support::api::is_terminal, DEADLINE)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", flowd.stderr_tail()));
        outcomes.push(run);
    }
    assert_eq!(outcomes[0]["status"], "succeeded", "{}", outcomes[0]);
    assert_eq!(outcomes[1]["status"], "failed", "{}", outcomes[1]);
    let error = outcomes[1]["steps"][0]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        error.starts_with("missing_secret")
            && error.contains("BROKEN")
            && error.contains("cannot be decrypted"),
        "{error}"
    );
    let sent = sink.requests();
    assert_eq!(sent.len(), 1, "only the readable secret's flow sent");
    assert_eq!(sent[0].header("x-key"), Some("GOOD-value-1234"));
}

/// Two `flowd serve` nodes on one PostgreSQL database with the same master key: a secret set
/// through node A's API is used by a run node B executes, without a restart. Node A is frozen
/// (SIGSTOP) right after the set answered, so only B can execute the run. A run that B attempts
/// before it noticed the change fails with `missing_secret` and is retried until it succeeds;
/// the time from the set to B's successful attempt is printed (goal: about a second, the
/// follower's poll).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_set_on_one_node_is_used_by_another_on_postgres() {
    let Some(db) = flowd::store::testing::TestDb::postgres().await else {
        return;
    };
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(&flows).expect("flows folder");
    std::fs::write(
        flows.join("shared.yaml"),
        flow_reading("shared", "SHARED_TOKEN", &sink.url("/shared")),
    )
    .expect("flow");
    let env = env_with_key(db.url.clone(), flows);
    let a = FlowdProcess::start(&env).await;
    let b = FlowdProcess::start(&env).await;
    let b_node = b.api().get_json("/readyz").await.expect("readyz")["node"]
        .as_str()
        .expect("node id")
        .to_owned();

    a.api()
        .put_secret("SHARED_TOKEN", "shared-value-42")
        .await
        .expect("put on A");
    let set_at = std::time::Instant::now();
    // SAFETY: plain kill(2) on the child this test started and still owns.
    let stopped = unsafe { libc::kill(a.pid() as libc::pid_t, libc::SIGSTOP) };
    assert_eq!(stopped, 0, "SIGSTOP node A");

    let api = b.api();
    let run_id = api.trigger("shared").await.expect("trigger on B");
    let deadline = std::time::Instant::now() + DEADLINE;
    let run = loop {
        let run = api
            .wait_for_run(&run_id, crate::support::api::is_terminal, DEADLINE)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", b.stderr_tail()));
        if run["status"] == "succeeded" {
            break run;
        }
        let error = run["steps"][0]["error"].as_str().unwrap_or_default();
        assert!(error.starts_with("missing_secret"), "{run}");
        assert!(
            std::time::Instant::now() < deadline,
            "B never saw the secret: {run}"
        );
        let (status, _) = api
            .request("POST", &format!("/api/v1/runs/{run_id}/retry"), None)
            .await
            .expect("retry");
        assert_eq!(status, StatusCode::ACCEPTED);
        api.wait_for_run(&run_id, |r| r["status"] != "failed", DEADLINE)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", b.stderr_tail()));
    };
    let took = set_at.elapsed();
    eprintln!("a secret set on node A was used by node B after {took:?}");
    let attempts = run["steps"][0]["attempts"].as_array().expect("attempts");
    let last = attempts.last().expect("an attempt");
    assert_eq!(last["node"], b_node.as_str(), "{run}");
    assert!(last["error"].is_null(), "{run}");
    let sent = sink.requests();
    assert_eq!(sent.len(), 1, "only the successful attempt sent");
    assert_eq!(sent[0].header("x-key"), Some("shared-value-42"));
    assert!(
        took < Duration::from_secs(5),
        "node B took {took:?} to use a secret set on node A (goal: about a second)"
    );
    // SAFETY: as above; A is let go so that dropping it can stop it.
    unsafe { libc::kill(a.pid() as libc::pid_t, libc::SIGCONT) };
    drop((a, b));
    db.cleanup().await;
}
