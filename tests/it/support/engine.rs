//! An engine in the test's own process, wired the way `flowd serve` wires it (`src/cli/serve.rs`):
//! flow files loaded, the node registered, then the runner, the scheduler and the flow-file
//! follower as tasks of the test's runtime. Tests reach its API through the router itself with
//! `oneshot` ([`TestEngine::api`]), or through a live server on `127.0.0.1:0`
//! ([`TestEngine::serve`]) where the HTTP connection is part of what they check.
//!
//! No binary is spawned and no port is needed for the API, so such a test starts in milliseconds
//! and fails with a plain assertion. Tests of what only a real process shows (a crash, several
//! nodes, signals, the command line, logs and exit codes) use `support::flowd` instead.
//!
//! The engine reads part of its configuration from the environment (secrets, HTTP policy, SMTP,
//! API keys), which in this process is shared by every test; a `FLOWD_*` variable there would
//! reach every engine, so `start` refuses to run with one (the process tests remove them from
//! the child's environment). A test that needs an API key stores one ([`TestEngine::add_api_key`]).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Once, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use flowd::api;
use flowd::api::listen::Limits;
use flowd::engine::{Engine, EngineConfig};
use flowd::runner::worker::{self, RunnerConfig};
use flowd::secrets::Secrets;
use flowd::store::nodes::{self, NodeInfo};
use flowd::trigger::schedule;
use tokio::net::TcpListener;
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
    /// The key of the secret store (`FLOWD_MASTER_KEY`); without one, secrets cannot be set.
    pub master_key: Option<flowd::secrets::cipher::MasterKey>,
    /// Secrets as `FLOWD_SECRET_<NAME>` would set them (name, value).
    pub secrets: Vec<(String, String)>,
    /// A clock the test moves (the runner's and the triggers' time); `None`: the system's.
    pub clock: Option<Arc<flowd::core::clock::TestClock>>,
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
            master_key: None,
            secrets: Vec::new(),
            clock: None,
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
        let mut config = EngineConfig {
            secrets: Secrets::from_pairs(setup.secrets.clone()),
            ..EngineConfig::new(setup.database_url.clone(), setup.node_id.clone())
        };
        if let Some(key) = &setup.master_key {
            config.master_key = flowd::engine::secrets::MasterKeySource::Given(key.clone());
        }
        if let Some(clock) = &setup.clock {
            config.clock = clock.clone();
        }
        let engine = Engine::open(config)
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
        let app = flowd::cli::serve::app(engine.clone(), setup.max_body);
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

    /// Serves the API on `127.0.0.1:0` until the engine stops or is dropped, and returns its base
    /// URL (`http://127.0.0.1:PORT`, for `Api::new`). A panic in a handler drops the connection,
    /// as it does in `flowd serve`, and is also recorded for [`TestEngine::panics`].
    pub async fn serve(&mut self) -> String {
        let (base_url, server) =
            serve_app(self.app.clone(), self.panics.clone(), self.stop.subscribe()).await;
        self.tasks.push(("server", server));
        base_url
    }

    /// The engine itself, for operations the API does not offer.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Stores a new API key (`admin` of `default`), so from now on the API asks for one;
    /// returns the key.
    pub async fn add_api_key(&self, name: &str) -> String {
        self.add_key(name, "default", flowd::core::workspace::Role::Admin)
            .await
    }

    /// Stores a new API key acting in `workspace` with `role`; returns the key.
    pub async fn add_key(
        &self,
        name: &str,
        workspace: &str,
        role: flowd::core::workspace::Role,
    ) -> String {
        let now = chrono::Utc::now().timestamp_millis();
        let writer = self.engine.store().writer();
        let (_, key) = flowd::store::api_keys::create(writer, name, workspace, role, now)
            .await
            .unwrap_or_else(|e| panic!("create an API key: {e}"));
        self.engine
            .refresh_api_keys()
            .await
            .unwrap_or_else(|e| panic!("reload the API keys: {e}"));
        key
    }

    /// Panics so far: in request handlers of the live server, and in the engine's tasks.
    pub async fn panics(&mut self) -> Vec<String> {
        let mut running = Vec::new();
        for (name, task) in self.tasks.drain(..) {
            if task.is_finished() {
                record_end(&self.panics, name, task.await);
            } else {
                running.push((name, task));
            }
        }
        self.tasks = running;
        lock(&self.panics).clone()
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

/// Serves `app` on `127.0.0.1:0` until `stopped` turns true, recording handler panics in
/// `panics`; returns its base URL and the server's task.
async fn serve_app(
    app: Router,
    panics: Panics,
    mut stopped: watch::Receiver<bool>,
) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the API on 127.0.0.1:0");
    let addr = listener.local_addr().expect("the API's address");
    let app = app.layer(axum::middleware::from_fn_with_state(panics, record_panics));
    // The listener `flowd serve` uses, with its header deadline and per-client cap.
    let server = flowd::api::listen::serve(listener, app, Limits::default(), async move {
        if stopped.wait_for(|stop| *stop).await.is_err() {
            eprintln!("the engine went away before its server stopped");
        }
    });
    let task = tokio::spawn(server);
    (format!("http://{addr}"), task)
}

/// Notes how a task ended when that was a panic; an abort is how `stop` ends some of them.
fn record_end(panics: &Panics, name: &str, ended: Result<(), tokio::task::JoinError>) {
    if let Err(error) = ended
        && error.is_panic()
    {
        lock(panics).push(format!("the {name} task panicked: {error}"));
    }
}

/// Runs each request in a task of its own, so a panic in a handler is seen and recorded before
/// it is passed on (and drops the connection, as without this layer).
async fn record_panics(State(panics): State<Panics>, request: Request, next: Next) -> Response {
    let target = format!("{} {}", request.method(), request.uri());
    match tokio::spawn(next.run(request)).await {
        Ok(response) => response,
        Err(error) => {
            lock(&panics).push(format!("{target}: {error}"));
            match error.try_into_panic() {
                Ok(payload) => std::panic::resume_unwind(payload),
                Err(error) => panic!("{target}: the handler was cancelled: {error}"),
            }
        }
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

#[cfg(test)]
mod tests {
    use axum::routing::get;

    use super::*;

    async fn boom() -> &'static str {
        panic!("boom")
    }

    #[tokio::test]
    async fn a_panicking_handler_drops_the_connection_and_is_recorded() {
        let panics = Panics::default();
        let (_stop, stopped) = watch::channel(false);
        let app = Router::new()
            .route("/boom", get(boom))
            .route("/fine", get(|| async { "fine" }));
        let (base_url, server) = serve_app(app, panics.clone(), stopped).await;
        let api = Api::new(base_url);
        let fine = api
            .call("GET", "/fine", None, &[])
            .await
            .expect("an answer");
        assert_eq!(fine.text(), "fine");
        assert!(lock(&panics).is_empty());
        let boom = api.call("GET", "/boom", None, &[]).await;
        assert!(boom.is_err(), "a panic answers nothing: {boom:?}");
        let recorded = lock(&panics).clone();
        assert!(
            recorded.len() == 1 && recorded[0].starts_with("GET /boom"),
            "{recorded:?}"
        );
        server.abort();
    }
}
