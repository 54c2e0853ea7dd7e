//! Retention through the real `flowd` binary on SQLite with `FLOWD_RETENTION=1s`: while events
//! keep arriving, finished runs disappear in batches (the run log shrinks below what was
//! created, during the load), and once everything is delivered and pruned, `GET /api/v1/usage`
//! still counts every run, success and HTTP attempt exactly as the sink counted them.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::api::Api;
use crate::support::flowd::{FlowdEnv, FlowdProcess};
use crate::support::sink::Sink;

const ROUNDS: usize = 30;
const BATCH: usize = 50;
const PATIENCE: Duration = Duration::from_secs(180);
const POLL: Duration = Duration::from_millis(100);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_runs_are_pruned_under_load_and_usage_stays_exact() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let sink = Sink::start().await;
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(&flows).expect("create the flows folder");
    let yaml = format!(
        "id: kept\ntriggers:\n  - entity: guest\nsteps:\n  - id: push\n    http: {{url: \"{}\", body: {{id: \"{{{{entity.id}}}}\"}}}}\n",
        sink.url("/in")
    );
    std::fs::write(flows.join("kept.yaml"), yaml).expect("write a flow");
    let env = FlowdEnv {
        extra: vec![("FLOWD_RETENTION".into(), "1s".into())],
        ..FlowdEnv::new(sqlite_url(dir.path()), flows)
    };
    let server = FlowdProcess::start(&env).await;
    let api = server.api();

    for round in 0..ROUNDS {
        let events: Vec<Value> = (0..BATCH)
            .map(|i| json!({"entity": "guest", "action": "create", "id": format!("{round}-{i}")}))
            .collect();
        api.post_events(&events).await.expect("events accepted");
        if round % 10 == 9 {
            // Mid-load: some of the runs created so far must be gone already.
            wait_until(|| async { runs_listed(&api).await < (round + 1) * BATCH }).await;
        }
    }
    let total = ROUNDS * BATCH;
    assert!(
        sink.wait_for(|all| all.len() == total, PATIENCE).await,
        "every run is delivered once: {} of {total}",
        sink.count()
    );
    wait_until(|| async { runs_listed(&api).await == 0 }).await;

    let usage = api
        .get_json("/api/v1/usage?flow=kept")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.stderr_tail()));
    let sum = |key: &str| -> i64 {
        usage["items"]
            .as_array()
            .expect("usage items")
            .iter()
            .map(|d| d[key].as_i64().unwrap_or(0))
            .sum()
    };
    let delivered = sink.requests().iter().filter(|r| r.accepted()).count() as i64;
    assert_eq!(
        (
            sum("runs_started"),
            sum("runs_succeeded"),
            sum("http_attempts")
        ),
        (delivered, delivered, sink.count() as i64),
        "usage after pruning: {usage}"
    );
}

async fn runs_listed(api: &Api) -> usize {
    api.list_runs(None).await.expect("the run log").len()
}

async fn wait_until<F: Future<Output = bool>>(check: impl Fn() -> F) {
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {PATIENCE:?}");
        tokio::time::sleep(POLL).await;
    }
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("flowd.db").display())
}
