//! The flowd process under test: finding or building the binary, starting `flowd serve` with a
//! clean environment, waiting for `/readyz`, sampling its memory and CPU from `/proc`, and
//! stopping it with SIGTERM. Also a fresh PostgreSQL database per benchmark.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

/// The workspace root, known at compile time (this crate lives in `<root>/bench`).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The `flowd` binary to benchmark. With `explicit`, that file, made absolute (flowd is started
/// in the run's temporary folder, where a relative path would name nothing). Otherwise
/// `target/release/flowd` of the same target directory as this harness, built first with
/// `cargo build --release --bin flowd` when the harness runs under cargo (a no-op when it is
/// up to date) unless `no_build`.
pub fn locate(explicit: Option<&Path>, no_build: bool) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        if !path.is_file() {
            bail!(
                "no flowd binary at {}; build one with `cargo build --release --bin flowd`",
                path.display()
            );
        }
        return std::path::absolute(path).with_context(|| format!("resolving {}", path.display()));
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("flowd")));
    let cargo = std::env::var_os("CARGO");
    if !no_build && let Some(cargo) = cargo {
        eprintln!("flowd-bench: cargo build --release --bin flowd");
        let status = Command::new(cargo)
            .args(["build", "--release", "--bin", "flowd"])
            .current_dir(workspace_root())
            .status()
            .context("running cargo build")?;
        if !status.success() {
            bail!("`cargo build --release --bin flowd` failed ({status})");
        }
    }
    let candidates = [beside, Some(workspace_root().join("target/release/flowd"))];
    for candidate in candidates.into_iter().flatten() {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "no release flowd binary found next to this harness or in target/release; run \
         `cargo build --release --bin flowd` first, or pass --flowd PATH"
    )
}

/// Runs `flowd validate DIR`; an invalid flow is an error carrying flowd's output.
pub fn validate(bin: &Path, flows: &Path) -> anyhow::Result<()> {
    let out = Command::new(bin)
        .arg("validate")
        .arg(flows)
        .env_remove("RUST_LOG")
        .output()
        .with_context(|| format!("running {} validate", bin.display()))?;
    if !out.status.success() {
        bail!(
            "flowd validate rejected the W1 flow ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A free TCP port on 127.0.0.1 (bound and released; another process could take it meanwhile,
/// which only makes flowd fail to start with a clear message).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub struct Settings<'a> {
    pub bin: &'a Path,
    pub dir: &'a Path,
    pub flows: &'a Path,
    pub database_url: &'a str,
    pub listen: SocketAddr,
    pub workers: Option<usize>,
    pub extra_env: &'a [(String, String)],
    pub log: &'a Path,
}

pub struct Flowd {
    child: Child,
    pub pid: u32,
    pub base_url: String,
}

impl Flowd {
    /// Starts `flowd serve` in `dir`. Every inherited `FLOWD_*` variable is removed (an
    /// `FLOWD_API_KEYS` of the caller would turn every request into a 401); logs are JSON, to
    /// `log`, so the harness can count warnings and errors.
    pub fn start(s: &Settings<'_>) -> anyhow::Result<Flowd> {
        let log = File::create(s.log).with_context(|| format!("creating {}", s.log.display()))?;
        let mut cmd = Command::new(s.bin);
        cmd.arg("serve")
            .current_dir(s.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("FLOWD_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("FLOWD_DATABASE_URL", s.database_url)
            .env("FLOWD_FLOWS_DIR", s.flows)
            .env("FLOWD_LISTEN", s.listen.to_string())
            .env("FLOWD_LOG_FORMAT", "json");
        if let Some(workers) = s.workers {
            cmd.env("FLOWD_WORKERS", workers.to_string());
        }
        for (key, value) in s.extra_env {
            cmd.env(key, value);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} serve", s.bin.display()))?;
        Ok(Flowd {
            pid: child.id(),
            child,
            base_url: format!("http://{}", s.listen),
        })
    }

    /// Waits until `GET /readyz` answers 200.
    pub async fn wait_ready(
        &mut self,
        http: &reqwest::Client,
        timeout: Duration,
        log: &Path,
    ) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let url = format!("{}/readyz", self.base_url);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "flowd exited before it was ready ({status}); its log:\n{}",
                    log_tail(log, 30)
                );
            }
            if let Ok(r) = http.get(&url).send().await
                && r.status().as_u16() == 200
            {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                bail!(
                    "flowd was not ready after {timeout:?}; its log:\n{}",
                    log_tail(log, 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then waits up to `grace` for the exit; SIGKILL after that. Returns the exit
    /// status, how long the stop took and whether it had to be killed.
    pub async fn terminate(
        &mut self,
        grace: Duration,
    ) -> anyhow::Result<(ExitStatus, Duration, bool)> {
        let started = Instant::now();
        signal(self.pid, libc::SIGTERM);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok((status, started.elapsed(), false));
            }
            if started.elapsed() > grace {
                self.child.kill()?;
                let status = self.child.wait()?;
                return Ok((status, started.elapsed(), true));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Flowd {
    /// An early error or Ctrl-C must not leave a flowd behind.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) with the id of a child this process started and has not reaped.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// The last `lines` lines of a log file.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A field of `/proc/<pid>/status` in kB (`VmRSS`, `VmHWM`).
pub fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// User plus system CPU time of a process (`/proc/<pid>/stat`, or `self`).
pub fn cpu_time(pid: &str) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5), i.e. 11 and 12 after the state (3).
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second).ok().filter(|&t| t > 0)?;
    Some(Duration::from_micros(ticks * 1_000_000 / per_second))
}

/// Busy and total jiffies of the whole machine (first line of `/proc/stat`).
pub fn machine_jiffies() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let values: Vec<u64> = text
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = values.iter().sum();
    // idle and iowait are the 4th and 5th values.
    let idle = values.get(3)? + values.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// The largest samples, in kB.
#[derive(Debug, Default, Clone)]
pub struct RssPeak {
    pub rss_kb: u64,
    pub anon_kb: u64,
    pub file_kb: u64,
    pub samples: usize,
    /// (milliseconds since sampling started, VmRSS kB), one entry per sample.
    pub timeline: Vec<(u64, u64)>,
}

/// Samples `VmRSS` (and its anonymous and file-backed parts) every 100 ms on its own thread
/// until stopped.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<RssPeak>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let started = Instant::now();
            let mut peak = RssPeak::default();
            while !flag.load(Ordering::Acquire) {
                let Some(rss) = status_kb(pid, "VmRSS") else {
                    break;
                };
                peak.rss_kb = peak.rss_kb.max(rss);
                peak.anon_kb = peak.anon_kb.max(status_kb(pid, "RssAnon").unwrap_or(0));
                peak.file_kb = peak.file_kb.max(status_kb(pid, "RssFile").unwrap_or(0));
                peak.samples += 1;
                peak.timeline
                    .push((started.elapsed().as_millis() as u64, rss));
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        });
        RssSampler { stop, handle }
    }

    pub fn finish(self) -> RssPeak {
        self.stop.store(true, Ordering::Release);
        self.handle.join().unwrap_or_default()
    }
}

/// `perf record` attached to flowd for the load phase.
pub struct Perf {
    child: Child,
}

impl Perf {
    pub fn start(pid: u32, out: &Path, args: &str) -> anyhow::Result<Perf> {
        let child = Command::new("perf")
            .arg("record")
            .args(args.split_whitespace())
            .arg("-o")
            .arg(out)
            .arg("-p")
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .spawn()
            .context("starting perf record (is `perf` installed?)")?;
        // perf needs a moment to attach before the load starts.
        std::thread::sleep(Duration::from_millis(300));
        Ok(Perf { child })
    }

    pub fn stop(mut self) {
        signal(self.child.id(), libc::SIGINT);
        let _ = self.child.wait();
    }
}

/// A fresh PostgreSQL database for one benchmark, dropped again at the end (also on errors).
/// Created and dropped with `psql`, so the harness needs no PostgreSQL driver.
pub struct PgDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl PgDatabase {
    /// `url` names the server (its database part, if any, is only tried for the connection
    /// that creates the new database, after `postgres` and before `template1`).
    pub fn create(url: &str) -> anyhow::Result<PgDatabase> {
        let parsed = url::Url::parse(url).with_context(|| format!("bad database URL {url}"))?;
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let name = format!("flowd_bench_{}_{stamp}", std::process::id());
        let given = parsed.path().trim_start_matches('/').to_string();
        let mut tried = Vec::new();
        for admin_db in ["postgres", given.as_str(), "template1"] {
            if admin_db.is_empty() {
                continue;
            }
            let mut admin = parsed.clone();
            admin.set_path(&format!("/{admin_db}"));
            match psql(admin.as_str(), &format!("CREATE DATABASE {name}")) {
                Ok(()) => {
                    let mut bench = parsed.clone();
                    bench.set_path(&format!("/{name}"));
                    return Ok(PgDatabase {
                        admin_url: admin.to_string(),
                        name,
                        url: bench.to_string(),
                    });
                }
                Err(e) => tried.push(format!("via database {admin_db}: {e}")),
            }
        }
        bail!(
            "cannot create a PostgreSQL database on {url}:\n  {}",
            tried.join("\n  ")
        )
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = psql(&self.admin_url, &sql) {
            eprintln!(
                "flowd-bench: could not drop the database {}: {e}",
                self.name
            );
        }
    }
}

fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .stdin(Stdio::null())
        .output()
        .context("running psql (is the PostgreSQL client installed?)")?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}
