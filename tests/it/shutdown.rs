//! Graceful shutdown of the real `flowd serve` (SPEC §7: "stops gracefully on SIGTERM"): 300 runs
//! in flight, half against a target that answers within the grace period and half against one
//! that holds every request far longer. SIGTERM must end the process with status 0 shortly after
//! the grace period; the quick half finishes during it, the slow half is cut off and each cut-off
//! attempt is recorded (`cancelled by shutdown`). After a restart every run succeeds, none is left
//! `running`, and each run lists exactly the attempts its target saw.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::flowd::{FlowdEnv, FlowdProcess};
use crate::support::sink::{Behaviour, Sink};

/// Runs in flight at the signal, half of them against each target.
const RUNS: usize = 300;
/// The runner's grace period (`RunnerConfig::default().shutdown_grace`).
const GRACE: Duration = Duration::from_secs(10);
/// What the process may take beyond the grace period: recording the cut-off attempts, giving
/// back leases and closing the database, on a loaded 2-core machine.
const STOP_SLACK: Duration = Duration::from_secs(10);
/// The quick target answers within the grace period; the stuck one long after it.
const QUICK_HOLD: Duration = Duration::from_secs(3);
const STUCK_HOLD: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_300_runs_in_flight_stops_in_time_and_loses_no_attempt() {
    let quick = Sink::start_with(hold(QUICK_HOLD)).await;
    let stuck = Sink::start_with(hold(STUCK_HOLD)).await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let flows = write_flows(dir.path(), &quick, &stuck);
    let url = format!("sqlite://{}", dir.path().join("flowd.db").display());
    let env = FlowdEnv {
        workers: RUNS,
        ..FlowdEnv::new(url, flows)
    };

    let mut first = FlowdProcess::start(&env).await;
    let run_ids = post(&first, RUNS).await;
    if !(all_in_flight(&stuck).await && all_in_flight(&quick).await) {
        panic!(
            "not every run reached its target: quick {}, stuck {}\n{}",
            quick.count(),
            stuck.count(),
            first.stderr_tail()
        );
    }
    let signalled = Instant::now();
    let stopped = first.terminate(GRACE + STOP_SLACK).await;
    let took = signalled.elapsed();
    match stopped {
        Ok(status) => assert!(
            status.success(),
            "flowd exited with {status} after SIGTERM\n{}",
            first.stderr_tail()
        ),
        Err(error) => panic!("{error}\n{}", first.stderr_tail()),
    }
    println!("SIGTERM with {RUNS} runs in flight: exited 0 after {took:?}");

    stuck.set_behaviour(Behaviour::default());
    let second = FlowdProcess::start(&env).await;
    let runs = second
        .api()
        .wait_until_all_terminal(&run_ids, Duration::from_secs(180))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", second.stderr_tail()));
    let running = second
        .api()
        .list_runs(Some("running"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", second.stderr_tail()));
    let mut problems: Vec<String> = running
        .iter()
        .map(|run| format!("run {} is still running", run["id"]))
        .collect();
    let seen = seen_by_targets(&[&quick, &stuck]);
    for (id, run) in &runs {
        problems.extend(check_run(id, run, &seen));
    }
    let cut_off = runs
        .values()
        .filter(|run| first_error(run).as_deref() == Some("cancelled by shutdown"))
        .count();
    if cut_off != RUNS / 2 {
        problems.push(format!(
            "{cut_off} runs have an attempt cut off by the shutdown, expected the {} stuck ones",
            RUNS / 2
        ));
    }
    assert!(
        problems.is_empty(),
        "after SIGTERM and a restart:\n- {}\n{}\n{}",
        problems.join("\n- "),
        first.stderr_tail(),
        second.stderr_tail()
    );
}

fn hold(delay: Duration) -> Behaviour {
    Behaviour {
        delay,
        ..Behaviour::default()
    }
}

/// Posts `n` events, alternating between the quick and the stuck flow; returns their runs.
async fn post(process: &FlowdProcess, n: usize) -> Vec<String> {
    let events: Vec<Value> = (0..n)
        .map(|i| {
            let entity = if i % 2 == 0 { "quick" } else { "stuck" };
            json!({"entity": entity, "action": "create", "id": i.to_string(), "data": {"n": i}})
        })
        .collect();
    let mut run_ids = Vec::new();
    for batch in events.chunks(100) {
        let acks = process
            .api()
            .post_events(batch)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", process.stderr_tail()));
        for ack in acks {
            assert_eq!(ack.runs.len(), 1, "one run per event: {ack:?}");
            run_ids.extend(ack.runs);
        }
    }
    run_ids
}

/// How many requests each `Idempotency-Key` brought to the targets.
fn seen_by_targets(sinks: &[&Sink]) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for sink in sinks {
        for (key, count) in sink.count_by_idempotency_key() {
            *seen.entry(key).or_insert(0) += count;
        }
    }
    seen
}

/// A run succeeded and lists one attempt per request its target saw.
fn check_run(id: &str, run: &Value, seen: &HashMap<String, usize>) -> Vec<String> {
    let mut problems = Vec::new();
    if run["status"] != "succeeded" {
        problems.push(format!(
            "run {id} ended {} ({})",
            run["status"], run["error"]
        ));
    }
    let attempts = push_attempts(run).len();
    let delivered = seen.get(&format!("{id}_push")).copied().unwrap_or(0);
    if attempts != delivered {
        problems.push(format!(
            "run {id} lists {attempts} attempts, its target saw {delivered}: {}",
            run["steps"]
        ));
    }
    problems
}

fn push_attempts(run: &Value) -> Vec<Value> {
    run["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["id"] == "push"))
        .and_then(|push| push["attempts"].as_array())
        .cloned()
        .unwrap_or_default()
}

fn first_error(run: &Value) -> Option<String> {
    push_attempts(run)
        .first()
        .and_then(|a| a["error"].as_str().map(str::to_owned))
}

fn write_flows(dir: &Path, quick: &Sink, stuck: &Sink) -> std::path::PathBuf {
    let flows = dir.join("flows");
    std::fs::create_dir_all(&flows).expect("create the flows folder");
    for (name, sink) in [("quick", quick), ("stuck", stuck)] {
        let yaml = format!(
            r#"id: {name}
triggers:
  - entity: {name}
    on: [create]
settings:
  retry: {{attempts: 5, delay: 200ms, max_delay: 1s}}
steps:
  - id: push
    http:
      url: "{url}"
      body: {{n: "{{{{entity.n}}}}"}}
      timeout: 10m
"#,
            url = sink.url("/deliver")
        );
        std::fs::write(flows.join(format!("{name}.yaml")), yaml).expect("write the flow");
    }
    flows
}

/// Waits until half the runs reached `sink`: with one worker per run, all of them are in flight.
async fn all_in_flight(sink: &Sink) -> bool {
    sink.wait_for(|r| r.len() >= RUNS / 2, Duration::from_secs(120))
        .await
}
