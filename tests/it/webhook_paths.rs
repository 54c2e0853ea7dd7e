//! Webhook paths that differ only in letter case (`sec` beside `SEC`) are refused when a flow
//! is saved through the API, with an error naming both paths and both flows; requests keep
//! matching paths exactly. The same rule for flow files is in `validate.rs`.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::api::Api;
use crate::support::engine::{EngineSetup, TestEngine};

fn flow(id: &str, path: &str) -> String {
    format!(
        "id: {id}\ntriggers:\n  - webhook: {{path: {path}}}\nsteps:\n  - id: a\n    map: {{x: 1}}\n"
    )
}

async fn create(api: &Api, yaml: &str) -> (StatusCode, Value) {
    api.request("POST", "/api/v1/flows", Some(("application/yaml", yaml)))
        .await
        .expect("the server answers with JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_that_differ_only_in_case_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(&flows).unwrap();
    let url = format!("sqlite://{}", dir.path().join("flowd.db").display());
    let engine = TestEngine::start(&EngineSetup::new(url, flows)).await;
    let api = engine.api();

    let (status, body) = create(&api, &flow("secure", "sec")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for (id, path) in [("loud", "SEC"), ("mixed", "Sec")] {
        let (status, body) = create(&api, &flow(id, path)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {body}");
        let text = body.to_string();
        let expected = format!(
            "webhook path `{path}` of flow `{id}` differs only in letter case from `sec` of flow `secure`"
        );
        assert!(text.contains(&expected), "{text}");
    }
    // Within one flow too.
    let both = "id: both\ntriggers:\n  - webhook: {path: in}\n  - webhook: {path: IN}\nsteps:\n  - id: a\n    map: {x: 1}\n";
    let (status, body) = create(&api, both).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body.to_string()
            .contains("webhook paths `in` and `IN` of this flow differ only in letter case"),
        "{body}"
    );
    // Nothing was stored, and requests still match exactly.
    let (_, listed) = api.request("GET", "/api/v1/flows", None).await.unwrap();
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    let hook = |path: &'static str| {
        let api = api.clone();
        async move {
            let answer = api
                .call("POST", path, Some(("application/json", b"{}")), &[])
                .await
                .expect("answered");
            answer.status
        }
    };
    assert_eq!(hook("/hooks/sec").await, StatusCode::ACCEPTED);
    assert_eq!(hook("/hooks/SEC").await, StatusCode::NOT_FOUND);
    // The flow keeps its own path when it is replaced.
    let (status, body) = api
        .request(
            "PUT",
            "/api/v1/flows/secure",
            Some(("application/yaml", &flow("secure", "sec"))),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    engine.stop().await;
}
