//! Runs the real `flowd serve` binary, for the tests that need a process of their own: a crash,
//! several nodes, signals, logs, the refusal to listen. Tests of API behaviour use an engine in
//! the test process (`support::engine`) instead.
//!
//! `FlowdProcess::start` spawns the binary built by cargo with a test's database and flows folder,
//! waits for the `flowd listening on http://…` line on stderr and exposes the address. Its output
//! is drained by two threads into a bounded buffer, so the pipes never fill up (a full pipe would
//! block the engine's logging) and the last lines can be shown when a test fails. `kill_9` and
//! `terminate` end it the way a crash and an orderly stop do; dropping it kills it, so a failed
//! test leaves no process behind.
//!
//! `api()` is a client of its REST API (`support::api`).
//!
//! `output_within` and `wait_within` run the other commands (`flowd run`, `validate`, `keys`, …)
//! with a deadline, so a command that should exit but hangs fails its test instead of hanging
//! the suite.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::support::api::Api;

/// How long a start may take: migrations and flow loading on a loaded CI machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How many lines of output are kept for diagnostics.
const KEPT_LINES: usize = 400;
/// How many of the kept lines a failure message shows.
const SHOWN_LINES: usize = 80;
/// How long a command other than `serve` may take to exit by itself.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// The text `flowd serve` prints once it accepts connections.
const LISTENING: &str = "flowd listening on ";

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

/// `flowd args` in `dir` on the SQLite database `dir/flowd.db`, without `FLOWD_API_KEYS`:
/// (success, stdout, stderr).
pub fn cli_in(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let url = format!("sqlite://{}", dir.join("flowd.db").display());
    let output = output_within(
        Command::new(env!("CARGO_BIN_EXE_flowd"))
            .args(args)
            .env("FLOWD_DATABASE_URL", url)
            .env_remove("FLOWD_API_KEYS")
            .env("RUST_LOG", "warn")
            .current_dir(dir),
        None,
    );
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Like `command.output()` (stdout and stderr captured, stdin empty unless given), but kills the
/// command and panics when it has not exited within `COMMAND_TIMEOUT`.
pub fn output_within(command: &mut Command, stdin: Option<&str>) -> std::process::Output {
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn flowd");
    let read_all = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe
                && let Err(error) = pipe.read_to_end(&mut bytes)
            {
                bytes.extend(format!("[reading the output failed: {error}]").into_bytes());
            }
            bytes
        })
    };
    let stdout = read_all(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = read_all(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).expect("write stdin");
    }
    let status = wait_within(&mut child);
    std::process::Output {
        status,
        stdout: stdout.join().expect("the stdout reader ends"),
        stderr: stderr.join().expect("the stderr reader ends"),
    }
}

/// Waits for `child` to exit; kills it and panics when it has not within `COMMAND_TIMEOUT`.
pub fn wait_within(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("poll flowd") {
            return status;
        }
        if Instant::now() >= deadline {
            if let Err(error) = child.kill() {
                eprintln!("kill flowd (pid {}): {error}", child.id());
            }
            if let Err(error) = child.wait() {
                eprintln!("reap flowd (pid {}): {error}", child.id());
            }
            panic!(
                "flowd (pid {}) did not exit within {COMMAND_TIMEOUT:?}; killed it",
                child.id()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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
