//! `flowd run` and `flowd export` through the real binary: a run that delivers to a real sink
//! and prints every step, a dry run that sends nothing and shows what it would send (secrets
//! redacted), a failing endpoint, bad input of every kind, and export of API flows into files
//! that validate, are skipped or overwritten as asked, and serve again as file flows with the
//! same definition.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::api::Api;
use crate::support::flowd::{FlowdEnv, FlowdProcess, output_within, wait_within};
use crate::support::sink::{Behaviour, Failure, Sink};

const SECRET: &str = "tok-9f8e7d6c5b4a";

const EVENT: &str = r#"{"entity": "guest", "action": "create", "id": "42",
  "data": {"first_name": "Ada", "last_name": "Lovelace", "email": "Ada@Example.com"}}"#;

/// An entity flow that maps, posts to `url`, notifies, waits an hour and copies a secret.
fn guest_flow(url: &str) -> String {
    format!(
        r#"id: guest-push
triggers:
  - entity: guest
    on: [create]
steps:
  - id: contact
    map:
      full_name: "{{{{entity.first_name}}}} {{{{entity.last_name}}}}"
      email: "{{{{lowercase entity.email}}}}"
      guest_id: "{{{{entity.id}}}}"
  - id: push
    http:
      url: "{url}"
      headers: {{X-Token: "{{{{secrets.TOKEN}}}}"}}
      body: "{{{{steps.contact}}}}"
  - id: tell
    notify:
      channel: inbox
      subject: "Pushed {{{{steps.contact.full_name}}}}"
      text: "with token {{{{secrets.TOKEN}}}}"
  - id: cool_off
    delay: 1h
  - id: summary
    map:
      status: "{{{{steps.push.status}}}}"
      token_copy: "{{{{secrets.TOKEN}}}}"
"#
    )
}

/// A manual flow that posts its input to `url`.
fn manual_flow(url: &str) -> String {
    format!(
        "id: resend\ntriggers:\n  - manual: {{label: Resend}}\nsteps:\n  - id: send\n    http:\n      url: \"{url}\"\n      body: \"{{{{input}}}}\"\n"
    )
}

/// A folder with a `flows/` folder holding the given files.
fn workspace(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(&flows).unwrap();
    for (name, text) in files {
        std::fs::write(flows.join(name), text).unwrap();
    }
    dir
}

/// Runs `flowd ARGS` in `dir` with only the given `FLOWD_*` variables, off the async runtime
/// (the sink answers on it meanwhile).
async fn flowd(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = command(dir, args);
    let stdin = stdin.map(str::to_owned);
    tokio::task::spawn_blocking(move || output_within(&mut command, stdin.as_deref()))
        .await
        .expect("the blocking task ends")
}

/// `flowd ARGS` in `dir`, with the test's secret and none of the developer's `FLOWD_*` settings.
fn command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flowd"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("FLOWD_") {
            command.env_remove(name);
        }
    }
    command
        .args(args)
        .env("FLOWD_SECRET_TOKEN", SECRET)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .current_dir(dir);
    command
}

fn texts(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn assert_exit(output: &Output, code: i32) -> (String, String) {
    let (out, err) = texts(output);
    assert_eq!(
        output.status.code(),
        Some(code),
        "exit code\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    (out, err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_delivers_the_mapped_body_and_prints_every_step() {
    let sink = Sink::start().await;
    let dir = workspace(&[("guest.yaml", &guest_flow(&sink.url("/contacts")))]);
    std::fs::write(dir.path().join("event.json"), EVENT).unwrap();
    let output = flowd(
        dir.path(),
        &["run", "guest-push", "--event", "@event.json", "--no-wait"],
        None,
    )
    .await;
    let (out, err) = assert_exit(&output, 0);

    let requests = sink.requests();
    assert_eq!(requests.len(), 1, "one delivery: {requests:?}");
    let delivered = &requests[0];
    assert_eq!(
        delivered.json(),
        Some(json!({"full_name": "Ada Lovelace", "email": "ada@example.com", "guest_id": "42"}))
    );
    assert_eq!(
        delivered.header("x-token"),
        Some(SECRET),
        "sent as rendered"
    );
    assert!(
        delivered
            .idempotency_key()
            .is_some_and(|k| k.ends_with("_push")),
        "{delivered:?}"
    );

    for expected in [
        "step contact (map): succeeded in ",
        "\"full_name\": \"Ada Lovelace\"",
        "step push (http): succeeded in ",
        &format!("attempt 1: POST {} → 200 in ", sink.url("/contacts")),
        "\"status\": 200",
        "step tell (notify): succeeded",
        "\"channel\": \"inbox\"",
        "step cool_off (delay): succeeded",
        "(not waited: a served run waits 1h here)",
        "\"token_copy\": \"***\"",
        ": succeeded in ",
    ] {
        assert!(
            out.contains(expected),
            "missing `{expected}` in\n{out}\n{err}"
        );
    }
    let order: Vec<usize> = [
        "step contact",
        "step push",
        "step tell",
        "step cool_off",
        "step summary",
    ]
    .iter()
    .map(|s| out.find(s).expect("every step is printed"))
    .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "steps in order:\n{out}"
    );
    assert!(
        !out.contains(SECRET) && !err.contains(SECRET),
        "{out}\n{err}"
    );
    assert!(
        out.lines()
            .last()
            .is_some_and(|l| l.starts_with("run ") && l.contains(": succeeded")),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_sends_nothing_and_shows_the_rendered_request() {
    let sink = Sink::start().await;
    let dir = workspace(&[("guest.yaml", &guest_flow(&sink.url("/contacts")))]);
    // A path instead of an id, the event on standard input, and the JSON report.
    let output = flowd(
        dir.path(),
        &["run", "flows/guest.yaml", "--event", "-", "--dry-run"],
        Some(EVENT),
    )
    .await;
    let (out, err) = assert_exit(&output, 0);
    assert_eq!(sink.count(), 0, "a dry run sends nothing");
    for expected in [
        "(dry run: nothing is sent)",
        "step push (http): succeeded",
        "(dry run: nothing sent)",
        &format!("would send: POST {}", sink.url("/contacts")),
        "x-token: ***",
        "content-type: application/json",
        "idempotency-key: ",
        "\"full_name\": \"Ada Lovelace\"",
        "\"email\": \"ada@example.com\"",
        "would send (inbox):",
        "subject: Pushed Ada Lovelace",
        "text: with token ***",
        "step cool_off (delay): succeeded",
        "\"token_copy\": \"***\"",
    ] {
        assert!(
            out.contains(expected),
            "missing `{expected}` in\n{out}\n{err}"
        );
    }
    assert!(
        !out.contains(SECRET) && !err.contains(SECRET),
        "{out}\n{err}"
    );

    let output = flowd(
        dir.path(),
        &[
            "run",
            "guest-push",
            "--event",
            EVENT,
            "--dry-run",
            "--format",
            "json",
        ],
        None,
    )
    .await;
    let (out, err) = assert_exit(&output, 0);
    let run: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    assert_eq!(
        (run["status"].as_str(), run["dry_run"].as_bool()),
        (Some("succeeded"), Some(true))
    );
    let push = &run["steps"][1];
    assert_eq!(push["output"]["dry_run"], true, "{push}");
    let request = &push["attempts"][0]["request"];
    assert_eq!(request["method"], "POST");
    let body: Value = serde_json::from_str(request["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["guest_id"], "42");
    assert!(
        push["attempts"][0]["curl"]
            .as_str()
            .unwrap()
            .contains("x-token: ***")
    );
    assert!(!out.contains(SECRET));
    assert_eq!(sink.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_fails_the_run_after_one_attempt() {
    let sink = Sink::start_with(Behaviour {
        fail_first: usize::MAX,
        failure: Failure::Status(500),
        delay: Duration::ZERO,
    })
    .await;
    let dir = workspace(&[("resend.yaml", &manual_flow(&sink.url("/resend")))]);
    let output = flowd(
        dir.path(),
        &["run", "resend", "--input", r#"{"invoice": "F-7"}"#],
        None,
    )
    .await;
    let (out, err) = assert_exit(&output, 1);
    assert_eq!(sink.count(), 1, "one attempt without --retry");
    assert_eq!(sink.requests()[0].json(), Some(json!({"invoice": "F-7"})));
    for expected in [
        "step send (http): failed",
        "→ 500 in ",
        "error: HTTP 500 Internal Server Error",
        "\"ok\": false",
        ": failed in ",
        "step `send` failed: HTTP 500",
    ] {
        assert!(
            out.contains(expected),
            "missing `{expected}` in\n{out}\n{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_exits_2_and_says_what_is_wrong() {
    let sink = Sink::start().await;
    let dir = workspace(&[
        ("guest.yaml", &guest_flow(&sink.url("/contacts"))),
        ("resend.yaml", &manual_flow(&sink.url("/resend"))),
    ]);
    std::fs::write(
        dir.path().join("broken.yaml"),
        "id: broken\ntriggers:\n  - manual: {label: Go}\nsteps:\n  - id: a\n    mapp: {x: 1}\n",
    )
    .unwrap();
    let cases: [(&[&str], &[&str]); 8] = [
        (
            &["run", "guest-push", "--event", r#"{"entity": "guest", "#],
            &["--event is not valid JSON", "line 1 column"],
        ),
        (
            &[
                "run",
                "guest-push",
                "--event",
                r#"{"entity": "guest", "action": "create"}"#,
            ],
            &["--event is not an event", "missing field `id`"],
        ),
        (
            &["run", "nope", "--input", "{}"],
            &["no flow `nope` in flows", "guest-push", "resend"],
        ),
        (
            &[
                "run",
                "guest-push",
                "--event",
                r#"{"entity": "invoice", "action": "create", "id": "1"}"#,
            ],
            &[
                "matches none of flow `guest-push`'s triggers",
                "entity `guest` on create",
            ],
        ),
        (
            &["run", "guest-push", "--input", "{}"],
            &[
                "flow `guest-push` has no manual trigger",
                "entity `guest` on create",
            ],
        ),
        (
            &["run", "resend", "--event", EVENT],
            &["flow `resend` has no entity trigger", "manual (--input)"],
        ),
        (
            &["run", "broken.yaml", "--input", "{}"],
            &["broken.yaml:6:5:", "mapp", "is not a valid flow"],
        ),
        (
            &["run", "resend", "--input", "@missing.json"],
            &["--input: cannot read `missing.json`"],
        ),
    ];
    for (args, expected) in cases {
        let output = flowd(dir.path(), args, None).await;
        let (out, err) = assert_exit(&output, 2);
        for text in expected {
            assert!(
                err.contains(text),
                "{args:?}: missing `{text}` in\n{err}\n{out}"
            );
        }
    }
    assert_eq!(sink.count(), 0, "no run started");
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("flowd.db").display())
}

const YAML_FLOW: &str = "id: greet\n# kept: the YAML source is exported as written\ntriggers:\n  - entity: contact\n    on: create\nsteps:\n  - id: hello\n    map: {text: \"hello {{entity.name}}\"}\n";

/// A flow sent as JSON, with an `auth` enum that plain serde_yaml would write as a YAML tag.
fn json_flow() -> Value {
    json!({
        "id": "from-json",
        "triggers": [{"manual": {"label": "Go"}}],
        "steps": [{"id": "call", "http": {
            "url": "https://crm.example.com/x",
            "auth": {"basic": {"username": "u", "password": "{{secrets.P}}"}},
            "retry": {"attempts": 3, "delay": "2s"}
        }}]
    })
}

async fn send(
    api: &Api,
    method: &str,
    path: &str,
    body: Option<(&str, String)>,
) -> (StatusCode, Value) {
    let body = body.as_ref().map(|(t, b)| (*t, b.as_bytes()));
    let answer = api
        .call(method, path, body, &[])
        .await
        .expect("the server answers");
    (
        answer.status,
        serde_json::from_slice(&answer.body).unwrap_or(Value::Null),
    )
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_writes_files_that_validate_and_serve_as_the_same_flows() {
    let dir = workspace(&[(
        "filed.yaml",
        "id: filed\ntriggers:\n  - manual: {label: Go}\nsteps:\n  - id: m\n    map: {x: 1}\n",
    )]);
    let server = FlowdProcess::start(&FlowdEnv::new(
        sqlite_url(dir.path()),
        dir.path().join("flows"),
    ))
    .await;
    let api = server.api();
    let (status, body) = send(
        &api,
        "POST",
        "/api/v1/flows",
        Some(("application/yaml", YAML_FLOW.into())),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = send(
        &api,
        "POST",
        "/api/v1/flows",
        Some(("application/json", json_flow().to_string())),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut definitions = Vec::new();
    for id in ["greet", "from-json"] {
        let (status, flow) = send(&api, "GET", &format!("/api/v1/flows/{id}"), None).await;
        assert_eq!(status, StatusCode::OK, "{flow}");
        definitions.push(flow["definition"].clone());
    }

    let db = sqlite_url(dir.path());
    let export = ["export", "--out", "exported", "--database-url", db.as_str()];
    let (out, err) = assert_exit(&flowd(dir.path(), &export, None).await, 0);
    let exported = dir.path().join("exported");
    assert!(
        out.contains("wrote exported/greet.yaml") && out.contains("wrote exported/from-json.yaml"),
        "{out}\n{err}"
    );
    assert!(
        !exported.join("filed.yaml").exists(),
        "file flows are not exported"
    );
    assert_eq!(
        read(&exported.join("greet.yaml")),
        YAML_FLOW,
        "the YAML source as written"
    );
    let from_json = read(&exported.join("from-json.yaml"));
    assert!(
        from_json.contains("basic:") && !from_json.contains('!'),
        "{from_json}"
    );

    let (out, err) = assert_exit(&flowd(dir.path(), &["validate", "exported"], None).await, 0);
    assert!(err.contains("2 flow files valid"), "{out}\n{err}");

    // Unchanged files stay; a changed file is kept unless --force.
    let (out, _) = assert_exit(&flowd(dir.path(), &export, None).await, 0);
    assert!(out.contains("unchanged exported/greet.yaml"), "{out}");
    let edited = YAML_FLOW.replace("hello", "hi");
    std::fs::write(exported.join("greet.yaml"), &edited).unwrap();
    let (out, _) = assert_exit(&flowd(dir.path(), &export, None).await, 1);
    assert!(
        out.contains("skipped exported/greet.yaml: it differs from flow `greet`"),
        "{out}"
    );
    assert_eq!(read(&exported.join("greet.yaml")), edited);
    let forced: Vec<&str> = export.iter().copied().chain(["--force"]).collect();
    let (out, _) = assert_exit(&flowd(dir.path(), &forced, None).await, 0);
    assert!(
        out.contains("overwrote exported/greet.yaml")
            && out.contains("unchanged exported/from-json.yaml"),
        "{out}"
    );
    assert_eq!(read(&exported.join("greet.yaml")), YAML_FLOW);

    // A flow already held by another file of the folder is written to that file.
    std::fs::rename(exported.join("greet.yaml"), exported.join("renamed.yaml")).unwrap();
    let (out, _) = assert_exit(&flowd(dir.path(), &export, None).await, 0);
    assert!(out.contains("unchanged exported/renamed.yaml"), "{out}");
    assert!(!exported.join("greet.yaml").exists());
    std::fs::rename(exported.join("renamed.yaml"), exported.join("greet.yaml")).unwrap();

    // Served from files by another node with its own database: the same definitions.
    let second = tempfile::tempdir().unwrap();
    let served =
        FlowdProcess::start(&FlowdEnv::new(sqlite_url(second.path()), exported.clone())).await;
    for (id, definition) in ["greet", "from-json"].iter().zip(&definitions) {
        let (status, flow) = send(&served.api(), "GET", &format!("/api/v1/flows/{id}"), None).await;
        assert_eq!(status, StatusCode::OK, "{flow}");
        assert_eq!(
            (flow["source"].as_str(), &flow["definition"]),
            (Some("file"), definition),
            "{id}"
        );
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_refuses_a_missing_database() {
    let dir = tempfile::tempdir().unwrap();
    let output = flowd(
        dir.path(),
        &["export", "--database-url", "sqlite://nowhere.db"],
        None,
    )
    .await;
    let (_, err) = assert_exit(&output, 2);
    assert!(err.contains("no database at nowhere.db"), "{err}");
    assert!(
        !dir.path().join("nowhere.db").exists(),
        "export creates no database"
    );
    let empty: PathBuf = dir.path().join("flows");
    assert!(!empty.exists(), "and no folder");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_is_waited_for_and_announced() {
    let flow = "id: pause\ntriggers:\n  - manual: {label: Go}\nsteps:\n  - id: first\n    map: {n: \"{{input.n}}\"}\n  - id: hold\n    delay: 1s\n  - id: then\n    map: {n: \"{{steps.first.n}}\"}\n";
    let dir = workspace(&[("pause.yaml", flow)]);
    let started = std::time::Instant::now();
    let output = flowd(
        dir.path(),
        &["run", "pause", "--input", r#"{"n": 7}"#],
        None,
    )
    .await;
    let (out, err) = assert_exit(&output, 0);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the delay was waited for"
    );
    for expected in [
        "step hold (delay): waiting until ",
        "--no-wait skips delays",
        "step hold (delay): succeeded in ",
        "step then (map): succeeded",
        "\"n\": 7",
    ] {
        assert!(
            out.contains(expected),
            "missing `{expected}` in\n{out}\n{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_cancels_a_waiting_run() {
    use std::io::{BufRead, BufReader};
    let flow = "id: long\ntriggers:\n  - manual: {label: Go}\nsteps:\n  - id: hold\n    delay: 1h\n  - id: after\n    map: {x: 1}\n";
    let dir = workspace(&[("long.yaml", flow)]);
    let mut child = command(dir.path(), &["run", "long", "--input", "{}"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn flowd run");
    let stdout = child.stdout.take().expect("piped stdout");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("waiting until")) {
        match lines_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => seen.push(line),
            Err(e) => panic!("no wait announced ({e}): {seen:?}"),
        }
    }
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success());
    let status = tokio::task::spawn_blocking(move || wait_within(&mut child))
        .await
        .unwrap();
    reader.join().expect("the reader ends at EOF");
    seen.extend(lines_rx.try_iter());
    let out = seen.join("\n");
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(
        out.contains("not run: after") && out.contains(": cancelled"),
        "{out}"
    );
}
