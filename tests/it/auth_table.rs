//! The authentication table (#21, test 11), against the real `flowd serve` with
//! `FLOWD_API_KEYS` set. The operations come from the OpenAPI document the server serves, so a
//! new route is covered without touching this file: every operation under `/api/v1` (and
//! `/metrics`, which names every flow) must answer 401 in the error shape without a key and with
//! a wrong one, whatever the document's `security` says, and must say so in the document. Any
//! other route must be one of the few that are public on purpose, listed below.

use serde_json::{Value, json};

use crate::support::api::{Answer, Api};
use crate::support::flowd::{FlowdEnv, FlowdProcess};

const KEY: &str = "table-key";
/// Routes open to anyone: probes, and webhooks (they carry their own signatures).
const PUBLIC: [&str; 3] = ["/healthz", "/readyz", "/hooks/{path}"];

/// One operation of the document: method, path template, and whether it declares a body.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("the document has paths") {
        for (method, spec) in item.as_object().expect("a path item") {
            found.push((method.to_uppercase(), path.clone(), spec.clone()));
        }
    }
    found
}

/// `path` with every `{…}` parameter replaced by a dummy value of its kind.
fn filled(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
        out.push_str(&rest[..open]);
        out.push_str(match &rest[open..close] {
            "{revision}" => "1",
            "{id}" | "{run_id}" => "0190a8a0-0000-7000-8000-000000000000",
            _ => "dummy",
        });
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
}

/// The complaint about an answer that should have been a 401 in the error shape, if any.
fn not_unauthorized(answer: &Answer) -> Option<String> {
    let code = answer.json().ok().map(|b| b["error"]["code"].clone());
    if answer.status == 401 && code == Some(json!("unauthorized")) {
        None
    } else {
        Some(format!("{}: {}", answer.status, answer.text()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_operation_needs_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(&flows).unwrap();
    let url = format!("sqlite://{}", dir.path().join("flowd.db").display());
    let mut env = FlowdEnv::new(url, flows);
    env.extra.push(("FLOWD_API_KEYS".into(), KEY.into()));
    let server = FlowdProcess::start(&env).await;
    let api: Api = server.api();
    let bearer = format!("Bearer {KEY}");
    let answer = api
        .call(
            "GET",
            "/api/v1/openapi.json",
            None,
            &[("authorization", &bearer)],
        )
        .await
        .expect("the document is served");
    assert_eq!(answer.status, 200, "{}", answer.text());
    let doc = answer.json_strict().unwrap();

    let mut failures = Vec::new();
    let mut checked = 0;
    for (method, path, spec) in operations(&doc) {
        let guarded = path.starts_with("/api/v1/") || path == "/metrics";
        if !guarded {
            assert!(
                PUBLIC.contains(&path.as_str()),
                "{method} {path} is outside /api/v1 and not a known public route: \
                 put it under /api/v1 or add it to PUBLIC here on purpose"
            );
            continue;
        }
        if !spec["security"].is_array() {
            failures.push(format!(
                "{method} {path}: the document does not say it needs a key"
            ));
        }
        let target = filled(&path);
        // A well-formed JSON body, so only the key can be what is refused.
        let body = spec["requestBody"]
            .is_object()
            .then_some(("application/json", b"{}".as_slice()));
        for (what, headers) in [
            ("no key", vec![]),
            ("a wrong key", vec![("authorization", "Bearer not-the-key")]),
            (
                "the key in lower case",
                vec![("authorization", "Bearer TABLE-KEY")],
            ),
        ] {
            checked += 1;
            match api.call(&method, &target, body, &headers).await {
                Ok(answer) => {
                    if let Some(problem) = not_unauthorized(&answer) {
                        failures.push(format!("{method} {target} with {what}: {problem}"));
                    }
                }
                Err(e) => failures.push(format!("{method} {target} with {what}: {e}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} requests were not refused with 401:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Every operation of the API at the time of writing; fewer means the table lost routes.
    assert!(
        checked >= 3 * 25,
        "only {checked} requests: did the document lose operations?"
    );
    // And the key does open it: the table is not passing because everything is refused.
    let answer = api
        .call("GET", "/api/v1/flows", None, &[("authorization", &bearer)])
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
}
