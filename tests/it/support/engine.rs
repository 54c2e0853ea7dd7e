//! An engine in the test's own process, wired the way `flowd serve` wires it (`src/cli/serve.rs`):
//! flow files loaded, the node registered, then the runner, the scheduler and the flow-file
//! follower as tasks of the test's runtime. Tests reach its API through the router itself with
//! `oneshot` ([`TestEngine::api`]).
//!
//! No binary is spawned and no port is needed for the API, so such a test starts in milliseconds
//! and fails with a plain assertion. Tests of what only a real process shows (a crash, several
//! nodes, signals, the command line, logs and exit codes) use `support::flowd` instead.
//!
//! The engine reads part of its configuration from the environment (secrets, HTTP policy, SMTP,
//! API keys), which in this process is shared by every test; a `FLOWD_*` variable there would
//! reach every engine, so `start` refuses to run with one (the process tests remove them from
//! the child's environment).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Once, PoisonError};
use std::time::Duration;

use axum::Router;
use flowd::api;
use flowd::engine::{Engine, EngineConfig};
use flowd::runner::worker::{self, RunnerConfig};
use flowd::store::StoreOptions;
use flowd::store::nodes::{self, NodeInfo};
use flowd::trigger::schedule;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::support::api::Api;

/// How long stopping waits for the runner to hand back its runs.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// How one in-process engine is set up; `new` gives what `FlowdEnv::new` gives a process.
#[derive(Clone, Debug)]
pub struct EngineSetup {
    /// `sqlite:///abs/path/flowd.db` or a PostgreSQL URL.
    pub database_url: String,
    /// The flow files to load and follow, if any.
    pub flows_dir: Option<PathBuf>,
    /// Runs executing at once.
    pub workers: usize,
    /// How long a claim on a run lasts without renewal.
    pub lease: Duration,
    /// The largest accepted request body (`FLOWD_MAX_BODY`).
    pub max_body: usize,
    /// This node's name in the registry and on attempts.
    pub node_id: String,
}

impl EngineSetup {
    pub fn new(database_url: impl Into<String>, flows_dir: impl Into<PathBuf>) -> EngineSetup {
        EngineSetup {
            database_url: database_url.into(),
            flows_dir: Some(flows_dir.into()),
            workers: 16,
            lease: Duration::from_secs(3),
            max_body: api::DEFAULT_MAX_BODY,
            node_id: format!("test-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]),
        }
    }
}

/// Panics caught in the tasks and request handlers of one engine.
type Panics = Arc<Mutex<Vec<String>>>;

/// A running engine of this process; dropping it aborts its tasks, `stop` ends it in order.
pub struct TestEngine {
    engine: Engine,
    app: Router,
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
    panics: Panics,
}

impl TestEngine {
    /// Opens the engine on `setup.database_url` (migrating it), loads the flow files and starts
    /// the runner, the scheduler and the follower; panics with the reason if any of it fails.
    pub async fn start(setup: &EngineSetup) -> TestEngine {
        refuse_engine_variables();
        init_logging();
        let engine = Engine::open(EngineConfig {
            database_url: setup.database_url.clone(),
            store: StoreOptions::default(),
            node_id: setup.node_id.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("open the engine on {}: {e}", setup.database_url));
        let flows_dir = setup.flows_dir.clone().filter(|dir| dir.is_dir());
        if let Some(dir) = &flows_dir {
            engine
                .load_flow_files(dir)
                .await
                .unwrap_or_else(|e| panic!("load the flow files of {}: {e}", dir.display()));
        }
        let store = engine.store();
        let node = NodeInfo {
            id: setup.node_id.clone(),
            hostname: "test".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            lease_ms: setup.lease.as_millis() as i64,
        };
        let now = chrono::Utc::now().timestamp_millis();
        nodes::register(store.writer(), store.backend(), &node, now)
            .await
            .unwrap_or_else(|e| panic!("register the node: {e}"));
        let (stop, stopped) = watch::channel(false);
        let runner = RunnerConfig {
            workers: setup.workers.max(1),
            lease: setup.lease,
            ..RunnerConfig::default()
        };
        let tasks = vec![
            (
                "runner",
                tokio::spawn(worker::run(
                    engine.runner().clone(),
                    runner,
                    stopped.clone(),
                )),
            ),
            (
                "scheduler",
                tokio::spawn(schedule::run(engine.intake().clone(), stopped.clone())),
            ),
            (
                "follower",
                tokio::spawn(flowd::engine::follow::run(
                    engine.clone(),
                    flows_dir,
                    stopped,
                )),
            ),
        ];
        let app = api::app(engine.clone(), setup.max_body);
        TestEngine {
            engine,
            app,
            stop,
            tasks,
            panics: Panics::default(),
        }
    }

    /// A client that calls the router in this process (`oneshot`), without a socket.
    pub fn api(&self) -> Api {
        Api::in_process(self.app.clone())
    }

    /// Stops taking work, lets the runner hand back its runs and closes the store, as
    /// `flowd serve` does on SIGTERM; panics if a task of the engine panicked.
    pub async fn stop(mut self) {
        if self.stop.send(true).is_err() {
            eprintln!("every task of the engine had already ended");
        }
        for (name, task) in std::mem::take(&mut self.tasks) {
            if name == "runner" || name == "server" {
                match tokio::time::timeout(STOP_TIMEOUT, task).await {
                    Ok(ended) => record_end(&self.panics, name, ended),
                    Err(_) => panic!("the {name} did not stop within {STOP_TIMEOUT:?}"),
                }
            } else {
                task.abort();
                record_end(&self.panics, name, task.await);
            }
        }
        self.engine.store().clone().close().await;
        let panics = lock(&self.panics).clone();
        assert!(panics.is_empty(), "the engine panicked: {panics:#?}");
    }
}

impl Drop for TestEngine {
    fn drop(&mut self) {
        for (_, task) in &self.tasks {
            task.abort();
        }
    }
}

/// Notes how a task ended when that was a panic; an abort is how `stop` ends some of them.
fn record_end(panics: &Panics, name: &str, ended: Result<(), tokio::task::JoinError>) {
    if let Err(error) = ended
        && error.is_panic()
    {
        lock(panics).push(format!("the {name} task panicked: {error}"));
    }
}

fn lock(panics: &Panics) -> MutexGuard<'_, Vec<String>> {
    panics.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Panics when the environment holds `FLOWD_*` settings the engine would read. The suite's own
/// variables (`FLOWD_TEST_*`, `FLOWD_CRASH_*`, `FLOWD_BLESS`) are fine.
fn refuse_engine_variables() {
    let own = ["FLOWD_TEST_", "FLOWD_CRASH_", "FLOWD_BLESS"];
    let set: Vec<String> = std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| name.starts_with("FLOWD_") && !own.iter().any(|o| name.starts_with(o)))
        .collect();
    assert!(
        set.is_empty(),
        "unset {set:?} to run the tests: an engine in the test process would read them"
    );
}

/// Engine logs go through libtest's capture, so a failing test shows them; `RUST_LOG` overrides
/// the level.
fn init_logging() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,flowd=info"));
        if tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init()
            .is_err()
        {
            eprintln!("a tracing subscriber was already installed; engine logs go there");
        }
    });
}
