//! API keys (from `flowd keys` and `FLOWD_API_KEYS`), the refusal to run open on a public
//! address, `flowd migrate`, and the error shape of oversized bodies and wrong methods.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::api::Api;
use crate::support::flowd::{FlowdEnv, FlowdProcess};

fn flowd(dir: &Path, args: &[&str]) -> (bool, String, String) {
    crate::support::flowd::cli_in(dir, args)
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("flowd.db").display())
}

async fn get(api: &Api, path: &str, key: Option<&str>) -> (StatusCode, Value) {
    let bearer = key.map(|key| format!("Bearer {key}"));
    let headers: Vec<(&str, &str)> = bearer
        .iter()
        .map(|b| ("authorization", b.as_str()))
        .collect();
    let answer = api
        .call("GET", path, None, &headers)
        .await
        .expect("the server answers");
    (
        answer.status,
        serde_json::from_slice(&answer.body).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_keys_open_the_api_until_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = flowd(dir.path(), &["migrate"]);
    assert!(ok, "{err}");
    assert!(out.contains("m20261123_000001_initial"), "{out}");
    let (ok, out, _) = flowd(dir.path(), &["migrate"]);
    assert!(ok && out.contains("up to date"), "{out}");

    let (ok, key, err) = flowd(dir.path(), &["keys", "create", "ci"]);
    assert!(ok, "{err}");
    let key = key.trim().to_owned();
    assert!(key.starts_with("fk_") && key.len() == 67, "{key}");
    let (ok, list, _) = flowd(dir.path(), &["keys", "list"]);
    assert!(
        ok && list.contains(&key[..10]) && list.contains("active"),
        "{list}"
    );
    assert!(!list.contains(&key), "a listing never shows the key");
    let db = std::fs::read(dir.path().join("flowd.db")).unwrap();
    assert!(
        !db.windows(key.len()).any(|w| w == key.as_bytes()),
        "only the hash is stored"
    );

    let flows = dir.path().join("flows");
    std::fs::create_dir_all(&flows).unwrap();
    let server = FlowdProcess::start(&FlowdEnv::new(sqlite_url(dir.path()), flows)).await;
    let api = server.api();
    let (status, body) = get(&api, "/api/v1/runs", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    let (status, _) = get(&api, "/api/v1/runs", Some("fk_wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = get(&api, "/api/v1/runs", Some(&key)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = get(&api, "/healthz", None).await;
    assert_eq!(status, StatusCode::OK, "health stays open");

    let (ok, _, err) = flowd(dir.path(), &["keys", "revoke", &key[..10]]);
    assert!(ok, "{err}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while get(&api, "/api/v1/runs", Some(&key)).await.0 != StatusCode::UNAUTHORIZED {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a revoked key keeps working"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (ok, _, err) = flowd(dir.path(), &["keys", "revoke", "nothing-like-it"]);
    assert!(!ok && err.contains("no active key"), "{err}");
}

#[test]
fn keys_refuse_to_create_a_database_in_the_wrong_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = flowd(dir.path(), &["keys", "create", "ci"]);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(
        err.contains("no database at") && err.contains("--create"),
        "{err}"
    );
    assert!(!dir.path().join("flowd.db").exists(), "nothing created");

    let (ok, key, err) = flowd(dir.path(), &["keys", "create", "ci", "--create"]);
    assert!(ok && key.trim().starts_with("fk_"), "{err}");
    assert!(
        err.contains("using the SQLite file"),
        "says which database: {err}"
    );
    let (ok, list, err) = flowd(dir.path(), &["keys", "list"]);
    assert!(ok && list.contains("ci"), "{list}{err}");
}

/// `flowd validate … | head -1`: the reader goes away and the next write fails. That ends the
/// command as it ends other Unix tools (SIGPIPE), never with a panic (exit 101).
#[test]
fn a_closed_pipe_ends_a_command_without_a_panic() {
    let flows = Path::new(env!("CARGO_MANIFEST_DIR")).join("flows");
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowd"))
        .args(["validate", "--format", "json"])
        .arg(&flows)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start flowd");
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("flowd ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(101), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_keys_body_limit_and_methods() {
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(&flows).unwrap();
    let mut env = FlowdEnv::new(sqlite_url(dir.path()), flows);
    env.extra
        .push(("FLOWD_API_KEYS".into(), "alpha-key, beta-key".into()));
    env.extra.push(("FLOWD_MAX_BODY".into(), "2000".into()));
    let server = FlowdProcess::start(&env).await;
    let api = server.api();
    assert_eq!(
        get(&api, "/api/v1/flows", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&api, "/api/v1/flows", Some("beta-key")).await.0,
        StatusCode::OK
    );

    let alpha = [("authorization", "Bearer alpha-key")];
    let huge = format!(
        "[{}]",
        vec!["{\"entity\":\"guest\",\"action\":\"create\",\"id\":\"1\"}"; 100].join(",")
    );
    let response = api
        .call(
            "POST",
            "/api/v1/events",
            Some(("application/json", huge.as_bytes())),
            &alpha,
        )
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json_strict().unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");

    let response = api
        .call("DELETE", "/api/v1/runs", None, &alpha)
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::METHOD_NOT_ALLOWED);
    let body: Value = response.json_strict().unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

#[test]
fn open_server_refuses_a_public_address() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = flowd(
        dir.path(),
        &["serve", "--listen", "0.0.0.0:0", "--flows", "none"],
    );
    assert!(!ok, "it must not start");
    assert!(err.contains("flowd keys create"), "{err}");
}
