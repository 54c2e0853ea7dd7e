//! SQLite under contention (#21): 32 writers post events (each starts a run, which the runner
//! then executes and the usage counters count) and 4 readers list runs and read usage, all
//! through the REST API of the real `flowd serve`, for 10 s (long: 60 s, `--ignored`). No answer
//! may be an error, nothing may say "database is locked" (answers or log), and the WAL file
//! stays under [`WAL_BOUND`]: the single writer connection checkpoints as it goes, and readers
//! never pin an old snapshot long enough to stop that.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::task::JoinSet;

use crate::support::api::Api;
use crate::support::flowd::{FlowdEnv, FlowdProcess};

const WRITERS: usize = 32;
const READERS: usize = 4;
/// Events per writer request.
const BATCH: usize = 10;
/// The WAL may grow to this size at most. SQLite checkpoints every 1,000 pages (4 MB); the bound
/// leaves room for a checkpoint that cannot reset the log while a long read is in progress.
const WAL_BOUND: u64 = 64 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_writers_and_four_readers_never_see_database_is_locked() {
    contention(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: 60 s of contention; run with --ignored"]
async fn thirty_two_writers_and_four_readers_never_see_database_is_locked_long() {
    contention(Duration::from_secs(60)).await;
}

/// What the load saw.
#[derive(Default)]
struct Tally {
    writes: AtomicUsize,
    reads: AtomicUsize,
    wal_peak: AtomicU64,
    problems: std::sync::Mutex<Vec<String>>,
}

impl Tally {
    fn problem(&self, text: String) {
        let mut problems = self
            .problems
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if problems.len() < 20 {
            problems.push(text);
        }
    }
}

async fn contention(duration: Duration) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(&flows).expect("create the flows folder");
    std::fs::write(flows.join("tally.yaml"), TALLY_FLOW).expect("write the flow");
    let db = dir.path().join("flowd.db");
    let env = FlowdEnv {
        kept_lines: 5_000,
        extra: vec![("RUST_LOG".into(), "info,flowd::store::wal=debug".into())],
        ..FlowdEnv::new(format!("sqlite://{}", db.display()), flows)
    };
    let process = FlowdProcess::start(&env).await;
    let tally = Arc::new(Tally::default());
    let end = Instant::now() + duration;
    let mut load = JoinSet::new();
    for writer in 0..WRITERS {
        let (api, tally) = (Api::new(process.base_url.clone()), tally.clone());
        load.spawn(async move { write(&api, &tally, writer, end).await });
    }
    for reader in 0..READERS {
        let (api, tally) = (Api::new(process.base_url.clone()), tally.clone());
        load.spawn(async move { read(&api, &tally, reader, end).await });
    }
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    load.spawn(watch_wal(wal, tally.clone(), end));
    while let Some(joined) = load.join_next().await {
        joined.expect("a load task panicked");
    }
    let (lines, total) = process.output_lines();
    let locked: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("database is locked") || l.contains("database is busy"))
        .collect();
    let mut problems = tally
        .problems
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if !locked.is_empty() {
        problems.push(format!("the log says: {locked:?}"));
    }
    if total > lines.len() {
        problems.push(format!(
            "{total} log lines, only {} kept to check",
            lines.len()
        ));
    }
    let wal_peak = tally.wal_peak.load(Ordering::SeqCst);
    if wal_peak > WAL_BOUND {
        problems.push(format!("the WAL grew to {wal_peak} bytes"));
    }
    let (writes, reads) = (
        tally.writes.load(Ordering::SeqCst),
        tally.reads.load(Ordering::SeqCst),
    );
    println!(
        "{WRITERS} writers, {READERS} readers for {duration:?}: {writes} event posts ({} runs), \
         {reads} reads, WAL peak {} KiB",
        writes * BATCH,
        wal_peak / 1024
    );
    if writes == 0 || reads == 0 {
        problems.push(format!("no load: {writes} writes, {reads} reads"));
    }
    assert!(
        problems.is_empty(),
        "under contention:\n- {}\n{}",
        problems.join("\n- "),
        process.stderr_tail()
    );
}

async fn write(api: &Api, tally: &Tally, writer: usize, end: Instant) {
    let mut n = 0;
    while Instant::now() < end {
        let events: Vec<_> = (0..BATCH)
            .map(|i| {
                json!({"entity": "tally", "action": "create", "id": format!("{writer}-{n}-{i}"),
                       "data": {"writer": writer}})
            })
            .collect();
        n += 1;
        match api.post_events(&events).await {
            Ok(_) => {
                tally.writes.fetch_add(1, Ordering::SeqCst);
            }
            Err(error) => tally.problem(format!("writer {writer}: {error}")),
        }
    }
}

async fn read(api: &Api, tally: &Tally, reader: usize, end: Instant) {
    let paths = ["/api/v1/runs?limit=100", "/api/v1/usage"];
    let mut n = 0;
    while Instant::now() < end {
        let path = paths[(reader + n) % paths.len()];
        n += 1;
        match api.get_json(path).await {
            Ok(_) => {
                tally.reads.fetch_add(1, Ordering::SeqCst);
            }
            Err(error) => tally.problem(format!("reader {reader}: {error}")),
        }
    }
}

/// Samples the WAL's size every 20 ms and keeps the largest.
async fn watch_wal(wal: PathBuf, tally: Arc<Tally>, end: Instant) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    while Instant::now() < end {
        tick.tick().await;
        if let Ok(meta) = std::fs::metadata(&wal) {
            tally.wal_peak.fetch_max(meta.len(), Ordering::SeqCst);
        }
    }
}

const TALLY_FLOW: &str = r#"id: tally
triggers:
  - entity: tally
    on: [create]
steps:
  - id: count
    map: {writer: "{{entity.writer}}"}
"#;
