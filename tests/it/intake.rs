//! Zero loss at intake (#21, SPEC §5 and §6): 64 clients post events to the real `flowd serve`,
//! each on its own connection, and the process is killed with SIGKILL in the middle of the load.
//! After a restart every event answered 202 has its runs, and they finish; posting every event
//! again (those answered and those cut off by the kill) starts nothing new and answers each
//! acknowledged event with the runs it was first answered with; each event has exactly one run.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::support::api::Api;
use crate::support::flowd::{FlowdEnv, FlowdProcess};

const CLIENTS: usize = 64;
/// Events each client posts at most, one per request.
const PER_CLIENT: usize = 100;
/// The kill comes once this many events were acknowledged: well inside the load.
const KILL_AFTER_ACKS: usize = 1_500;

/// Acknowledged events (event id → runs) and every event posted, answered or not.
#[derive(Default)]
struct Ledger {
    acked: HashMap<String, Vec<String>>,
    posted: Vec<Value>,
    /// How many events are acknowledged, for the test to wait on.
    progress: watch::Sender<usize>,
}

type Shared = Arc<Mutex<Ledger>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_event_is_lost_or_doubled_by_a_kill_under_load() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(&flows).expect("create the flows folder");
    std::fs::write(flows.join("intake.yaml"), INTAKE_FLOW).expect("write the flow");
    let url = format!("sqlite://{}", dir.path().join("flowd.db").display());
    let env = FlowdEnv::new(url, flows);
    let prefix = uuid::Uuid::now_v7().simple().to_string();

    let mut first = FlowdProcess::start(&env).await;
    let ledger = Shared::default();
    let mut clients = JoinSet::new();
    for client in 0..CLIENTS {
        // One client (and connection pool) each: 64 connections at once.
        let api = Api::new(first.base_url.clone());
        let (ledger, prefix) = (ledger.clone(), prefix.clone());
        clients.spawn(async move { post_until_error(&api, &ledger, &prefix, client).await });
    }
    let reached = wait_for_acks(&ledger, KILL_AFTER_ACKS).await;
    first.kill_9().await;
    let mut cut_off = 0;
    while let Some(joined) = clients.join_next().await {
        cut_off += usize::from(joined.expect("a client panicked").is_some());
    }
    let (acked, posted) = {
        let ledger = lock(&ledger);
        (ledger.acked.clone(), ledger.posted.clone())
    };
    assert!(
        reached,
        "only {} events were acknowledged before the deadline\n{}",
        acked.len(),
        first.stderr_tail()
    );
    println!(
        "killed with {} of {} posted events acknowledged; {cut_off} clients cut off mid-request",
        acked.len(),
        posted.len()
    );

    let second = FlowdProcess::start(&env).await;
    let api = second.api();
    let acked_runs: Vec<String> = acked.values().flatten().cloned().collect();
    let finished = api
        .wait_until_all_terminal(&acked_runs, Duration::from_secs(180))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", second.stderr_tail()));
    let mut problems = Vec::new();
    for (id, run) in &finished {
        if run["status"] != "succeeded" {
            problems.push(format!("run {id} ended {}", run["status"]));
        }
    }
    let mut again = HashMap::new();
    for batch in posted.chunks(100) {
        let acks = api
            .post_events(batch)
            .await
            .unwrap_or_else(|e| panic!("posting again: {e}\n{}", second.stderr_tail()));
        again.extend(acks.into_iter().map(|a| (a.event_id, a.runs)));
    }
    for (event_id, runs) in &acked {
        if again.get(event_id) != Some(runs) {
            problems.push(format!(
                "event {event_id} was answered with runs {runs:?}, and {:?} when posted again",
                again.get(event_id)
            ));
        }
    }
    for (event_id, runs) in &again {
        if runs.len() != 1 {
            problems.push(format!("event {event_id} has runs {runs:?}"));
        }
    }
    let stored = api
        .list_runs(None)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", second.stderr_tail()));
    let stored: HashSet<&str> = stored.iter().filter_map(|r| r["id"].as_str()).collect();
    let answered: HashSet<&str> = again.values().flatten().map(String::as_str).collect();
    if stored != answered || stored.len() != posted.len() {
        problems.push(format!(
            "{} runs stored, {} answered for {} events posted",
            stored.len(),
            answered.len(),
            posted.len()
        ));
    }
    assert!(
        problems.is_empty(),
        "intake lost or doubled events across the kill:\n- {}\n{}\n{}",
        problems.join("\n- "),
        first.stderr_tail(),
        second.stderr_tail()
    );
}

/// Posts this client's events one by one until a post fails (the kill) or all are posted;
/// returns the error that stopped it, if any. Each event enters the ledger before its post.
async fn post_until_error(
    api: &Api,
    ledger: &Shared,
    prefix: &str,
    client: usize,
) -> Option<String> {
    for n in 0..PER_CLIENT {
        let event = json!({
            "entity": "order",
            "action": "create",
            "id": format!("{client}-{n}"),
            "data": {"client": client, "n": n},
            "event_id": format!("{prefix}-{client}-{n}"),
        });
        lock(ledger).posted.push(event.clone());
        match api.post_events(std::slice::from_ref(&event)).await {
            Ok(acks) => {
                let mut ledger = lock(ledger);
                for ack in acks {
                    ledger.acked.insert(ack.event_id, ack.runs);
                }
                ledger.progress.send_replace(ledger.acked.len());
            }
            Err(error) => return Some(error),
        }
    }
    None
}

/// Waits until `n` events were acknowledged; whether that happened within the deadline.
async fn wait_for_acks(ledger: &Shared, n: usize) -> bool {
    let mut progress = lock(ledger).progress.subscribe();
    let reached = progress.wait_for(|&acked| acked >= n);
    matches!(
        tokio::time::timeout(Duration::from_secs(120), reached).await,
        Ok(Ok(_))
    )
}

fn lock(ledger: &Shared) -> std::sync::MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(PoisonError::into_inner)
}

const INTAKE_FLOW: &str = r#"id: intake
triggers:
  - entity: order
    on: [create]
steps:
  - id: note
    map: {client: "{{entity.client}}", n: "{{entity.n}}"}
"#;
