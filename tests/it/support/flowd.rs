//! Runs the real `flowd serve` binary for end-to-end tests and talks to its REST API.
//!
//! `FlowdProcess::start` spawns the binary built by cargo with a test's database and flows folder,
//! waits for the `flowd listening on http://…` line on stderr and exposes the address. Its output
//! is drained by two threads into a bounded buffer, so the pipes never fill up (a full pipe would
//! block the engine's logging) and the last lines can be shown when a test fails. `kill_9` and
//! `terminate` end it the way a crash and an orderly stop do; dropping it kills it, so a failed
//! test leaves no process behind.
//!
//! `Api` is a small client for the endpoints the tests need. It holds one `reqwest::Client`
//! shared by every request of one test: a process-wide client would outlive the test's tokio
//! runtime, and reqwest's pooled connections must not be reused from another runtime.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde_json::Value;
use tokio::task::JoinSet;

/// How long a start may take: migrations and flow loading on a loaded CI machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How many lines of output are kept for diagnostics.
const KEPT_LINES: usize = 400;
/// How many of the kept lines a failure message shows.
const SHOWN_LINES: usize = 80;
/// Per request: generous, because a loaded engine answers slowly but must still answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between polling rounds; short, since the deadline, not the pause, bounds the wait.
const POLL: Duration = Duration::from_millis(100);
/// Run lookups in flight at once while polling many runs.
const POLL_CONCURRENCY: usize = 16;
/// The text `flowd serve` prints once it accepts connections.
const LISTENING: &str = "flowd listening on ";

/// Run statuses after which nothing changes any more.
pub const TERMINAL: [&str; 3] = ["succeeded", "failed", "cancelled"];

/// The configuration of one engine; several processes started from it share the database.
#[derive(Clone, Debug)]
pub struct FlowdEnv {
    /// `sqlite:///abs/path/flowd.db` or a PostgreSQL URL.
    pub database_url: String,
    pub flows_dir: PathBuf,
    /// `FLOWD_LEASE`: how long a dead node's runs stay claimed.
    pub lease: String,
    /// `FLOWD_WORKERS`: runs executing at once.
    pub workers: usize,
    /// Further variables, set last.
    pub extra: Vec<(String, String)>,
    /// How many lines of output are kept (the last ones); raise it to inspect every line.
    pub kept_lines: usize,
}

impl FlowdEnv {
    /// A short lease so a crashed node's runs are taken over within a test's patience.
    pub fn new(database_url: impl Into<String>, flows_dir: impl Into<PathBuf>) -> FlowdEnv {
        FlowdEnv {
            database_url: database_url.into(),
            flows_dir: flows_dir.into(),
            lease: "3s".to_owned(),
            workers: 16,
            extra: Vec::new(),
            kept_lines: KEPT_LINES,
        }
    }
}

/// What the output threads collected.
#[derive(Default)]
struct Output {
    lines: VecDeque<String>,
    total: usize,
    listening: Option<String>,
    /// Lines kept at most.
    limit: usize,
}

/// A running (or ended) `flowd serve`.
pub struct FlowdProcess {
    child: Child,
    pub base_url: String,
    output: Arc<Mutex<Output>>,
    drains: Vec<JoinHandle<()>>,
    api: Api,
    exit: Option<ExitStatus>,
}

impl FlowdProcess {
    /// Spawns `flowd serve` and waits until it listens; panics with its output if it does not.
    pub async fn start(env: &FlowdEnv) -> FlowdProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_flowd"));
        command.arg("serve");
        // Settings of the developer's shell (API keys, log format, …) must not leak in.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("FLOWD_") {
                command.env_remove(name);
            }
        }
        command
            .env("FLOWD_DATABASE_URL", &env.database_url)
            .env("FLOWD_FLOWS_DIR", &env.flows_dir)
            .env("FLOWD_LISTEN", "127.0.0.1:0")
            .env("FLOWD_LEASE", &env.lease)
            .env("FLOWD_WORKERS", env.workers.to_string())
            .env("RUST_LOG", "info")
            // Plain text keeps the listening line and the diagnostics readable.
            .env("NO_COLOR", "1")
            .envs(env.extra.iter().map(|(k, v)| (k, v)))
            // Any default path (./flowd.db) lands in the test's folder, not in the repository,
            // and beside the flows folder rather than in it, where a reload would look.
            .current_dir(env.flows_dir.parent().unwrap_or(&env.flows_dir))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn flowd serve");
        let output = Arc::new(Mutex::new(Output {
            limit: env.kept_lines.max(1),
            ..Output::default()
        }));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let drains = vec![
            drain("stdout", stdout, output.clone()),
            drain("stderr", stderr, output.clone()),
        ];
        let mut process = FlowdProcess {
            child,
            base_url: String::new(),
            output,
            drains,
            api: Api::new(String::new()),
            exit: None,
        };
        process.base_url = process.wait_for_listening().await;
        process.api = Api::new(process.base_url.clone());
        process
    }

    async fn wait_for_listening(&mut self) -> String {
        let started = Instant::now();
        loop {
            if let Some(url) = lock(&self.output).listening.clone() {
                return url;
            }
            if let Some(status) = self.child.try_wait().expect("poll flowd") {
                self.exit = Some(status);
                self.join_drains();
                panic!(
                    "flowd serve exited with {status} before listening\n{}",
                    self.stderr_tail()
                );
            }
            if started.elapsed() > START_TIMEOUT {
                panic!(
                    "flowd serve did not print \"{LISTENING}http://…\" within {START_TIMEOUT:?}\n{}",
                    self.stderr_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A client for this process's API; cheap to clone into tasks.
    pub fn api(&self) -> Api {
        self.api.clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Ends the process with SIGKILL (what `Child::kill` sends on Unix) and reaps it: a crash
    /// that gives the engine no chance to clean up.
    pub async fn kill_9(&mut self) {
        if self.exit.is_some() {
            return;
        }
        if let Err(error) = self.child.kill() {
            // Only possible when it already exited; `wait` below then reports how.
            eprintln!("kill -9 flowd (pid {}): {error}", self.child.id());
        }
        let status = self.child.wait().expect("reap flowd after kill -9");
        self.exit = Some(status);
        self.join_drains();
    }

    /// Sends SIGTERM and waits up to `timeout` for the process to stop by itself. Returns its
    /// exit status, or `Err` (after killing it) when it did not stop in time.
    pub async fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        if let Some(status) = self.exit {
            return Ok(status);
        }
        // `kill` from the system rather than a libc binding: the tests need no extra crate.
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill -TERM");
        if !sent.success() {
            return Err(format!("kill -TERM {pid} failed: {sent}"));
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll flowd") {
                self.exit = Some(status);
                self.join_drains();
                return Ok(status);
            }
            if Instant::now() >= deadline {
                self.kill_9().await;
                return Err(format!(
                    "flowd (pid {pid}) did not stop within {timeout:?} of SIGTERM; killed it"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The last lines the process wrote (stdout and stderr interleaved), for failure messages.
    pub fn stderr_tail(&self) -> String {
        let output = lock(&self.output);
        let skip = output.lines.len().saturating_sub(SHOWN_LINES);
        let mut tail = format!(
            "--- last {} of {} output lines of flowd (pid {}) ---\n",
            output.lines.len() - skip,
            output.total,
            self.child.id()
        );
        for line in output.lines.iter().skip(skip) {
            tail.push_str(line);
            tail.push('\n');
        }
        tail.push_str("--- end of flowd output ---");
        tail
    }

    /// The kept lines of output (stdout and stderr interleaved, oldest first) and how many
    /// lines were written in all; the two differ when older lines were dropped.
    pub fn output_lines(&self) -> (Vec<String>, usize) {
        let output = lock(&self.output);
        (output.lines.iter().cloned().collect(), output.total)
    }

    /// Waits for the output threads, so the tail includes the very last lines; they end at EOF,
    /// which comes when the process has exited.
    fn join_drains(&mut self) {
        for handle in self.drains.drain(..) {
            if handle.join().is_err() {
                eprintln!("a thread reading flowd's output panicked");
            }
        }
    }
}

impl Drop for FlowdProcess {
    fn drop(&mut self) {
        if self.exit.is_none() {
            if let Err(error) = self.child.kill() {
                eprintln!("kill flowd (pid {}) on drop: {error}", self.child.id());
            }
            if let Err(error) = self.child.wait() {
                eprintln!("reap flowd (pid {}) on drop: {error}", self.child.id());
            }
        }
    }
}

fn lock(output: &Mutex<Output>) -> MutexGuard<'_, Output> {
    output.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reads one pipe line by line until EOF, keeping the last `KEPT_LINES` and watching for the
/// listening line.
fn drain(
    name: &'static str,
    pipe: impl Read + Send + 'static,
    output: Arc<Mutex<Output>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut raw = Vec::new();
        loop {
            raw.clear();
            match reader.read_until(b'\n', &mut raw) {
                Ok(0) => return,
                Ok(_) => {}
                Err(error) => {
                    lock(&output)
                        .lines
                        .push_back(format!("[{name}] read error: {error}"));
                    return;
                }
            }
            let line = strip_ansi(String::from_utf8_lossy(&raw).trim_end());
            let mut output = lock(&output);
            if output.listening.is_none() {
                output.listening = listening_url(&line);
            }
            output.total += 1;
            if output.lines.len() >= output.limit {
                output.lines.pop_front();
            }
            output.lines.push_back(line);
        }
    })
}

/// `http://127.0.0.1:PORT` from a line containing `flowd listening on http://127.0.0.1:PORT`.
fn listening_url(line: &str) -> Option<String> {
    let rest = &line[line.find(LISTENING)? + LISTENING.len()..];
    let url: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || ":/.[]-".contains(*c))
        .collect();
    let url = url.trim_end_matches(['.', '/']);
    url.starts_with("http://").then(|| url.to_owned())
}

/// Removes terminal colour sequences (`ESC [ … letter`), in case the logger adds them anyway.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// What `POST /api/v1/events` answered for one event.
#[derive(Clone, Debug)]
pub struct EventAck {
    pub event_id: String,
    pub runs: Vec<String>,
}

/// A client for one engine's REST API. Errors are `String`s ready for a failure message.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    pub base_url: String,
}

impl Api {
    pub fn new(base_url: String) -> Api {
        Api {
            client: http_client(),
            base_url,
        }
    }

    /// Posts events (a JSON array) and returns one acknowledgement per event, in order.
    /// `Err` for anything but a 202 with the documented body, including a connection that broke
    /// because the process died: such events count as not acknowledged.
    pub async fn post_events(&self, events: &[Value]) -> Result<Vec<EventAck>, String> {
        let body = serde_json::to_vec(events).map_err(|e| e.to_string())?;
        let response = self
            .client
            .post(format!("{}/api/v1/events", self.base_url))
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("POST /api/v1/events: {}", error_chain(&e)))?;
        let status = response.status();
        let answer = read_json(response).await?;
        if status != StatusCode::ACCEPTED {
            return Err(format!("POST /api/v1/events answered {status}: {answer}"));
        }
        let items = answer["items"]
            .as_array()
            .ok_or_else(|| format!("POST /api/v1/events: no items in {answer}"))?;
        if items.len() != events.len() {
            return Err(format!(
                "POST /api/v1/events: {} items for {} events: {answer}",
                items.len(),
                events.len()
            ));
        }
        items
            .iter()
            .map(|item| {
                let event_id = item["event_id"].as_str();
                let runs = item["runs"].as_array().map(|runs| {
                    runs.iter()
                        .map(|r| r.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                });
                match (event_id, runs) {
                    (Some(event_id), Some(Some(runs))) => Ok(EventAck {
                        event_id: event_id.to_owned(),
                        runs,
                    }),
                    _ => Err(format!("POST /api/v1/events: malformed item {item}")),
                }
            })
            .collect()
    }

    /// Any request: `body` is `(content type, text)`. Answers the status and the JSON body
    /// (`Null` when empty); `Err` when the server cannot be reached or the body is not JSON.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &str)>,
    ) -> Result<(StatusCode, Value), String> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base_url));
        if let Some((content_type, body)) = body {
            request = request
                .header(CONTENT_TYPE, content_type)
                .body(body.to_owned());
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("{method} {path}: {}", error_chain(&e)))?;
        let status = response.status();
        Ok((status, read_json(response).await?))
    }

    /// `GET path`, which must answer 200 with JSON.
    pub async fn get_json(&self, path: &str) -> Result<Value, String> {
        match self.request("GET", path, None).await? {
            (StatusCode::OK, body) => Ok(body),
            (status, body) => Err(format!("GET {path} answered {status}: {body}")),
        }
    }

    /// The run with its steps, or `None` for a 404.
    pub async fn get_run(&self, id: &str) -> Result<Option<Value>, String> {
        let response = self
            .client
            .get(format!("{}/api/v1/runs/{id}", self.base_url))
            .send()
            .await
            .map_err(|e| format!("GET /api/v1/runs/{id}: {}", error_chain(&e)))?;
        let status = response.status();
        let answer = read_json(response).await?;
        match status {
            StatusCode::OK => Ok(Some(answer)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(format!("GET /api/v1/runs/{id} answered {status}: {answer}")),
        }
    }

    /// Every run (all pages of `GET /api/v1/runs`), optionally with a `status` filter.
    pub async fn list_runs(&self, status: Option<&str>) -> Result<Vec<Value>, String> {
        let mut runs = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = url::Url::parse(&format!("{}/api/v1/runs", self.base_url))
                .map_err(|e| e.to_string())?;
            {
                let mut query = url.query_pairs_mut();
                query.append_pair("limit", "500");
                if let Some(status) = status {
                    query.append_pair("status", status);
                }
                if let Some(cursor) = &cursor {
                    query.append_pair("cursor", cursor);
                }
            }
            let response = self
                .client
                .get(url.as_str())
                .send()
                .await
                .map_err(|e| format!("GET {url}: {}", error_chain(&e)))?;
            let code = response.status();
            let answer = read_json(response).await?;
            if code != StatusCode::OK {
                return Err(format!("GET {url} answered {code}: {answer}"));
            }
            let items = answer["items"]
                .as_array()
                .ok_or_else(|| format!("GET {url}: no items in {answer}"))?;
            runs.extend(items.iter().cloned());
            match answer["next_cursor"].as_str() {
                Some(next) if !items.is_empty() => cursor = Some(next.to_owned()),
                _ => return Ok(runs),
            }
        }
    }

    /// Polls one run until `predicate` holds for it; returns that snapshot.
    pub async fn wait_for_run(
        &self,
        id: &str,
        predicate: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Result<Value, String> {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            if let Some(run) = self.get_run(id).await? {
                if predicate(&run) {
                    return Ok(run);
                }
                last = Some(run);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "run {id} did not reach the expected state within {timeout:?}; last seen: {}",
                    last.map_or_else(|| "404".to_owned(), |r| r.to_string())
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls until every run in `ids` is terminal and returns each one's terminal snapshot
    /// (final, since a terminal run does not change). Only runs not yet seen terminal are asked
    /// for again, so the polling load shrinks as runs finish.
    pub async fn wait_until_all_terminal(
        &self,
        ids: &[String],
        timeout: Duration,
    ) -> Result<HashMap<String, Value>, String> {
        let deadline = Instant::now() + timeout;
        let mut done: HashMap<String, Value> = HashMap::new();
        let mut open: Vec<String> = ids
            .iter()
            .collect::<HashSet<_>>()
            .into_iter()
            .cloned()
            .collect();
        let mut last_seen: HashMap<String, Value> = HashMap::new();
        loop {
            let mut still_open = Vec::new();
            for chunk in open.chunks(POLL_CONCURRENCY) {
                let mut lookups = JoinSet::new();
                for id in chunk {
                    let api = self.clone();
                    let id = id.clone();
                    lookups.spawn(async move {
                        let run = api.get_run(&id).await;
                        (id, run)
                    });
                }
                while let Some(joined) = lookups.join_next().await {
                    let (id, run) = joined.map_err(|e| format!("a run lookup panicked: {e}"))?;
                    match run? {
                        Some(run) if is_terminal(&run) => {
                            done.insert(id, run);
                        }
                        Some(run) => {
                            last_seen.insert(id.clone(), run);
                            still_open.push(id);
                        }
                        None => still_open.push(id),
                    }
                }
            }
            open = still_open;
            if open.is_empty() {
                return Ok(done);
            }
            if Instant::now() >= deadline {
                return Err(describe_open(&open, &last_seen, done.len(), timeout));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

pub fn is_terminal(run: &Value) -> bool {
    run["status"]
        .as_str()
        .is_some_and(|s| TERMINAL.contains(&s))
}

/// Counts of the runs that are still open by status, and a few examples with their steps.
fn describe_open(
    open: &[String],
    last_seen: &HashMap<String, Value>,
    finished: usize,
    timeout: Duration,
) -> String {
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for id in open {
        let status = last_seen
            .get(id)
            .and_then(|r| r["status"].as_str())
            .unwrap_or("404 (not found)");
        *by_status.entry(status.to_owned()).or_insert(0) += 1;
    }
    let mut text = format!(
        "{} of {} runs still not terminal after {timeout:?}; by status: {by_status:?}",
        open.len(),
        open.len() + finished
    );
    for id in open.iter().take(5) {
        let steps = last_seen.get(id).map_or_else(String::new, |run| {
            run["steps"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| format!("{}={}", s["id"], s["status"]))
                .collect::<Vec<_>>()
                .join(" ")
        });
        let status = last_seen
            .get(id)
            .map_or("?", |r| r["status"].as_str().unwrap_or("?"));
        text.push_str(&format!("\n  run {id}: {status}; steps: {steps}"));
    }
    text
}

/// One client per `Api` family: no proxy (the engine is on loopback) and a timeout per
/// request, so a hung engine fails the test instead of hanging it.
pub fn http_client() -> reqwest::Client {
    // reqwest is built without a default rustls provider (flowd ships ring); the tests speak
    // plain HTTP, but building a client still needs one installed.
    if rustls::crypto::CryptoProvider::get_default().is_none()
        && let Err(_lost_race) = rustls::crypto::ring::default_provider().install_default()
    {
        eprintln!("another thread installed a rustls crypto provider first; using that one");
    }
    reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("build the test HTTP client")
}

async fn read_json(response: reqwest::Response) -> Result<Value, String> {
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| format!("reading a {status} answer: {}", error_chain(&e)))?;
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "a {status} answer is not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    })
}

/// reqwest's top-level message ("error sending request") hides the cause; show the chain.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_url_is_found_in_plain_and_coloured_lines() {
        let plain = "2026-11-23T12:00:00Z  INFO flowd::cli::serve: flowd listening on http://127.0.0.1:40123";
        assert_eq!(
            listening_url(plain).as_deref(),
            Some("http://127.0.0.1:40123")
        );
        let coloured =
            "\u{1b}[32m INFO\u{1b}[0m flowd listening on http://127.0.0.1:8080/. workers=16";
        assert_eq!(
            listening_url(&strip_ansi(coloured)).as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(listening_url("Database migrated."), None);
    }
}
