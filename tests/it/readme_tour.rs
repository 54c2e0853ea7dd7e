//! The README's first commands and its short tour, command by command, against the real `flowd`
//! binary and a copy of the repository's `flows/`. Every command of the tour's shell blocks is
//! run (`cargo run [--release] -- ARGS` as the built binary with ARGS, `VAR=value` prefixes as
//! its environment, `curl` through the parser of `api_docs.rs`, `<run id>` replaced by the run the
//! event started), and what the text around them promises is checked: the console's pages, the
//! run waiting between retries with its attempts recorded and a curl line, cancel, the test
//! panel hiding the token, and the validation message quoted for a misspelt key. A command the
//! test does not know fails it, so a line added to the tour must be taught here.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::api_docs::{Example, curl_request, documented_status, shell_commands, shell_words};
use crate::support::api::Api;
use crate::support::flowd::{FlowdEnv, FlowdProcess, output_within};

const PATIENCE: Duration = Duration::from_secs(60);

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The commands of the README from its first block to the end of the `## Commands` section.
fn tour_commands() -> Vec<Example> {
    let readme = std::fs::read_to_string(repository().join("README.md")).expect("README.md");
    let end = readme
        .find("\nSettings come from")
        .expect("the README's settings paragraph closes the commands section");
    shell_commands(&readme[..end])
}

/// A folder with a copy of the repository's example flows, as a newcomer's checkout has them.
fn checkout() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(&flows).expect("flows folder");
    for entry in std::fs::read_dir(repository().join("flows")).expect("the example flows") {
        let path = entry.expect("a directory entry").path();
        if path.is_file() {
            std::fs::copy(&path, flows.join(path.file_name().expect("a file name")))
                .expect("copy a flow");
        }
    }
    dir
}

/// Variables set before a command (`VAR=value cargo run …`).
type Environment = Vec<(String, String)>;

/// `cargo run [--release] -- ARGS` with `VAR=value` prefixes: (environment, ARGS); `cargo test`
/// as the ARGS `["test"]`.
fn cargo_run(words: &[String]) -> Option<(Environment, Vec<String>)> {
    let mut env = Vec::new();
    let mut rest = words.iter();
    let mut word = rest.next()?;
    while let Some((name, value)) = word.split_once('=') {
        env.push((name.to_owned(), value.to_owned()));
        word = rest.next()?;
    }
    if word != "cargo" {
        return None;
    }
    let mut args: Vec<String> = match rest.next()?.as_str() {
        "test" => return Some((env, vec!["test".to_owned()])),
        "run" => rest.cloned().collect(),
        _ => return None,
    };
    let separator = args.iter().position(|a| a == "--")?;
    args.drain(..=separator);
    Some((env, args))
}

/// Runs `flowd ARGS` in `dir` with `env`, as the README's `cargo run -- ARGS` does.
fn flowd_in(dir: &Path, env: &[(String, String)], args: &[String]) -> (bool, String) {
    let database = format!("sqlite://{}", dir.join("flowd.db").display());
    let output = output_within(
        Command::new(env!("CARGO_BIN_EXE_flowd"))
            .args(args)
            .env("FLOWD_DATABASE_URL", database)
            .env_remove("FLOWD_API_KEYS")
            .env("NO_COLOR", "1")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(dir),
        None,
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_of_the_readme_tour_does_what_the_readme_says() {
    let commands = tour_commands();
    assert!(commands.len() >= 8, "the tour's commands: {commands:#?}");
    let dir = checkout();
    let mut server: Option<FlowdProcess> = None;
    let mut run_id = None::<String>;
    let mut ran = Vec::new();
    for command in &commands {
        let at = format!("README.md:{}: {}", command.line, command.text);
        let text = match &run_id {
            Some(id) => command.text.replace("<run id>", id),
            None => command.text.clone(),
        };
        let (words, _) = shell_words(&text, &Default::default())
            .unwrap_or_else(|e| panic!("{at}\n  cannot read it: {e}"));
        if words.first().map(String::as_str) == Some("curl") {
            let api = server
                .as_ref()
                .unwrap_or_else(|| panic!("{at}\n  no server runs yet"))
                .api();
            let answer = curl(&api, &words, dir.path(), &at).await;
            if let Some(status) = documented_status(&command.comment) {
                assert_eq!(answer.0.as_u16(), status, "{at}\n  {}", answer.1);
            }
            if let Some(run) = answer.1["items"][0]["runs"][0].as_str() {
                run_id = Some(run.to_owned());
            }
            ran.push(words[..2.min(words.len())].join(" "));
            continue;
        }
        let (env, args) = cargo_run(&words)
            .unwrap_or_else(|| panic!("{at}\n  this test does not know how to run it"));
        match args.first().map(String::as_str) {
            Some("serve") => {
                // A later `serve` line restarts the server with its settings, as a newcomer
                // following the tour stops the first one and starts the next.
                if let Some(mut running) = server.take() {
                    running
                        .terminate(PATIENCE)
                        .await
                        .unwrap_or_else(|e| panic!("{at}\n  stopping the previous server: {e}"));
                }
                server = Some(serve(dir.path(), &env).await);
            }
            Some("test") => {} // `cargo test` is what runs this very test.
            Some(_) => {
                let (ok, output) = flowd_in(dir.path(), &env, &args);
                assert!(ok, "{at}\n  failed:\n{output}");
            }
            None => panic!("{at}\n  no subcommand"),
        }
        ran.push(args.join(" "));
    }
    let server = server.expect("the tour starts a server");
    let run = run_id.expect("the tour's event started a run");
    the_console_shows_what_step_1_says(&server.api()).await;
    the_run_waits_between_retries_with_its_attempts_recorded(&server.api(), &run).await;
    the_misspelt_key_gets_the_quoted_message(dir.path());
    println!("ran: {ran:#?}");
}

async fn serve(dir: &Path, env: &[(String, String)]) -> FlowdProcess {
    let database = format!("sqlite://{}", dir.join("flowd.db").display());
    let mut setup = FlowdEnv::new(database, dir.join("flows"));
    setup.extra = env.to_vec();
    FlowdProcess::start(&setup).await
}

async fn curl(api: &Api, words: &[String], dir: &Path, at: &str) -> (StatusCode, Value) {
    let request = curl_request(words, "", dir).unwrap_or_else(|e| panic!("{at}\n  {e}"));
    let headers: Vec<(&str, &str)> = request
        .headers
        .iter()
        .filter(|(name, _)| !name.eq_ignore_ascii_case("content-type"))
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let content_type = request
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.as_str())
        .unwrap_or("application/json");
    let body = request.body.as_deref().map(|b| (content_type, b));
    let answer = api
        .call(&request.method, &request.url, body, &headers)
        .await
        .unwrap_or_else(|e| panic!("{at}\n  {e}"));
    assert!(
        answer.status.is_success(),
        "{at}\n  {} {}",
        answer.status,
        answer.text()
    );
    (answer.status, answer.json().unwrap_or(Value::Null))
}

/// "the Flows page lists the example flows, each with its state and a Pause / Resume button.
/// Actions offers the "Resend to accounting" button on an invoice id; Nodes shows this server.
/// On a flow's page, Test dry-runs it … the token shown as `***`".
async fn the_console_shows_what_step_1_says(api: &Api) {
    let flows = page(api, "/").await;
    for entry in std::fs::read_dir(repository().join("flows")).expect("the example flows") {
        let path = entry.expect("an entry").path();
        let id = path
            .file_stem()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        assert!(flows.contains(&id), "the flows page lists {id}");
    }
    assert!(flows.contains("Pause"), "a Pause button on the flows page");
    let actions = page(api, "/actions").await;
    assert!(actions.contains("Resend to accounting"), "{actions}");
    let nodes = api.get_json("/api/v1/nodes").await.expect("the nodes");
    let node = nodes["items"][0]["id"]
        .as_str()
        .expect("this server's node");
    assert!(
        page(api, "/nodes").await.contains(node),
        "the nodes page shows {node}"
    );
    let event = json!({"event": {"entity": "guest", "action": "create", "id": "42",
        "data": {"id": 42, "first_name": "Ada", "last_name": "Lovelace",
                 "email": "Ada@Example.com", "status": "confirmed", "event_uid": "summit-2025"}}});
    let (status, test) = api
        .request(
            "POST",
            "/api/v1/flows/guest-to-crm/test",
            Some(("application/json", &event.to_string())),
        )
        .await
        .expect("the test panel's operation");
    assert_eq!(status, StatusCode::OK, "{test}");
    let shown = test.to_string();
    assert!(shown.contains("***"), "the token is shown as ***: {shown}");
    assert!(
        !shown.contains("dev-token"),
        "the token itself is never shown"
    );
}

async fn page(api: &Api, path: &str) -> String {
    let answer = api.call("GET", path, None, &[]).await.expect(path);
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "GET {path}: {}",
        answer.text()
    );
    answer.text()
}

/// "the run is `waiting` between retries …, and each attempt is recorded with its request, its
/// error and a `curl` line … Stop it with … `POST /api/v1/runs/<run id>/cancel`".
async fn the_run_waits_between_retries_with_its_attempts_recorded(api: &Api, run: &str) {
    let deadline = Instant::now() + PATIENCE;
    let attempt = loop {
        let detail = api
            .get_run(run)
            .await
            .expect("the run")
            .expect("the run exists");
        let attempt = detail["steps"]
            .as_array()
            .and_then(|steps| steps.iter().find(|s| s["kind"] == "http"))
            .and_then(|step| step["attempts"][0].as_object().cloned());
        if detail["status"] == "waiting"
            && let Some(attempt) = attempt
        {
            assert_eq!(detail["waiting_reason"], "backoff", "{detail}");
            break attempt;
        }
        assert!(
            Instant::now() < deadline,
            "the run never waited for a retry: {detail}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(attempt["error"].is_string(), "{attempt:?}");
    assert!(attempt["request"].is_object(), "{attempt:?}");
    let curl = attempt["curl"].as_str().expect("a curl line");
    assert!(
        curl.starts_with("curl ") && curl.contains("crm.example.com"),
        "{curl}"
    );
    assert!(!curl.contains("dev-token"), "the token is redacted: {curl}");
    let (status, body) = api
        .request("POST", &format!("/api/v1/runs/{run}/cancel"), None)
        .await
        .expect("cancel");
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let cancelled = api
        .wait_for_run(run, |r| r["status"] == "cancelled", PATIENCE)
        .await
        .expect("the run ends after cancel");
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
}

/// The README quotes the message a misspelt `method` gets in guest-to-crm.yaml.
fn the_misspelt_key_gets_the_quoted_message(dir: &Path) {
    let readme = std::fs::read_to_string(repository().join("README.md")).expect("README.md");
    let quoted = readme
        .lines()
        .find(|l| l.contains("unknown key `methd`"))
        .expect("the README quotes the message")
        .trim()
        .to_owned();
    let flow = dir.join("flows/guest-to-crm.yaml");
    let text = std::fs::read_to_string(&flow).expect("the flow");
    std::fs::write(&flow, text.replacen("method: POST", "methd: POST", 1)).expect("misspell");
    let (ok, output) = flowd_in(dir, &[], &["validate".into(), "flows/".into()]);
    assert!(!ok, "validation fails on the misspelt key: {output}");
    assert!(
        output.lines().any(|l| l.trim() == quoted),
        "the README's line `{quoted}` is what flowd prints:\n{output}"
    );
}
