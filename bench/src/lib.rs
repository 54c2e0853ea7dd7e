//! `flowd-bench`: the performance yardstick of SPEC §9, workload W1 ("guest sync").
//!
//! Starts a sink on 127.0.0.1, writes the W1 flow into a temporary folder, starts the release
//! `flowd serve` against a fresh database (SQLite in the temporary folder by default, or a new
//! PostgreSQL database), posts events to `POST /api/v1/events` from many clients, waits for the
//! deliveries and reports events accepted per second, runs completed per second at the sink,
//! event-to-delivery latency, flowd's peak RSS and CPU, and whether every accepted event arrived
//! exactly once with the mapped body. See `docs/performance.md`. With `--nodes N` it starts N
//! nodes on one PostgreSQL database and spreads the clients over them (`docs/scaling.md`).
//!
//! Exit status: 0 all checks passed, 1 the benchmark ran and found a problem (lost, duplicate or
//! wrong deliveries, failed requests, errors in flowd's log, an unclean stop), 2 it could not run.

mod cluster;
pub mod flowd;
pub mod goals;
mod load;
pub mod render;
pub mod report;
mod sink;
pub mod workload;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::Parser;
use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::flowd::{Perf, PgDatabase};
use crate::load::{Events, Plan};
use crate::sink::Sink;

#[derive(Clone, Debug, Parser)]
#[command(
    name = "flowd-bench",
    about = "Benchmark flowd with workload W1 (SPEC §9): events in, HTTP deliveries out, all checked.",
    after_help = "Run from the repository: cargo run --release -p flowd-bench -- [options]"
)]
pub struct Args {
    /// flowd binary to benchmark, used as is. Default: `cargo build --release --bin flowd`
    /// (when run through cargo), then the `flowd` next to this harness.
    #[arg(long, value_name = "PATH")]
    flowd: Option<PathBuf>,
    /// Do not build flowd first; use the release binary that is there.
    #[arg(long)]
    no_build: bool,
    /// Database of flowd. Default: a new SQLite file in the temporary folder. A postgres:// URL
    /// names a server: a fresh database with a unique name is created there (with psql) and
    /// dropped at the end.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// `flowd serve` nodes on the same database (needs a postgres:// --database-url when above
    /// 1). The clients are spread over them; the one sink counts the deliveries of all.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// flowd's `FLOWD_WORKERS` (runs executing at once, per node). Default: flowd's own default.
    #[arg(long)]
    workers: Option<usize>,
    /// Concurrent HTTP clients posting events.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Events to send.
    #[arg(long, default_value_t = 20_000)]
    count: usize,
    /// Stop sending after this long even if fewer than --count events were sent (e.g. 60s, 2m).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Events per request (a JSON array when above 1).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Open loop at this many events per second overall (to measure latency below saturation).
    /// Default: closed loop, each client sends its next request when the previous is answered.
    #[arg(long, value_name = "EVENTS_PER_S")]
    rate: Option<f64>,
    /// After the last request, wait at most this long for the deliveries.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// Extra environment of flowd, e.g. --flowd-env FLOWD_SQLITE_SYNC=full (repeatable).
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_env)]
    flowd_env: Vec<(String, String)>,
    /// Record a CPU profile of flowd during the load with `perf record` into this file.
    #[arg(long, value_name = "FILE")]
    perf: Option<PathBuf>,
    /// Options of `perf record` for --perf.
    #[arg(long, default_value = "-F 499 -g", allow_hyphen_values = true)]
    perf_args: String,
    /// Keep the temporary folder (flow, database, flowd's log); it is kept anyway on failure.
    #[arg(long)]
    keep: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Hold the runner: pause the W1 flow while the events are posted (their runs wait as
    /// `held`), then resume it and wait for the deliveries. Measures peak RSS with a backlog of
    /// --count runs (the goal is about 100,000).
    #[arg(long)]
    backlog: bool,
    /// Run the goals of issue #20 in sequence (SQLite closed loop with --concurrency clients
    /// and --count events, open loop at 5,000 and at 200 events/s, a 100,000-run backlog, and
    /// PostgreSQL one node when --database-url is a postgres:// URL) and print one table.
    #[arg(long, conflicts_with_all = ["render", "rate", "backlog", "nodes"])]
    goals: bool,
    /// Instead of W1: the console render benchmark (issue #16). Makes a SQLite database with
    /// --flows flows and --runs runs, then measures the flows page, filtered run log pages and
    /// run pages over HTTP (goal: p99 under 100 ms). Needs the `sqlite3` shell.
    #[arg(long)]
    render: bool,
    /// With --render: flows in the database.
    #[arg(long, default_value_t = 1_000)]
    flows: usize,
    /// With --render: runs in the database.
    #[arg(long, default_value_t = 1_000_000)]
    runs: usize,
    /// With --render: measured requests per page (after a tenth as many to warm up).
    #[arg(long, default_value_t = 500)]
    requests: usize,
}

/// `60`, `60s`, `500ms`, `2m`, `1.5s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 60s, 500ms or 2m"))?;
    let seconds = match unit {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => {
            return Err(format!(
                "unknown unit `{unit}` in `{text}`; use ms, s, m or h"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not KEY=VALUE"))?;
    Ok((key.to_string(), value.to_string()))
}

/// The whole command: parse the arguments, run, and map the outcome to the exit status above.
pub fn main() -> ExitCode {
    let args = Args::parse();
    // Without a provider the first `reqwest::Client` panics (see the note in Cargo.toml).
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("flowd-bench: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    // Ctrl-C drops the benchmark future, whose guards stop flowd and drop a PostgreSQL database.
    let result = runtime.block_on(async {
        tokio::select! {
            r = run(&args) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("flowd-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

pub fn check_args(args: &Args) -> anyhow::Result<()> {
    if args.count == 0 || args.concurrency == 0 {
        bail!("--count and --concurrency must be at least 1");
    }
    if !(1..=10_000).contains(&args.batch) {
        bail!("--batch must be between 1 and 10000 (flowd's limit per request)");
    }
    if args.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        bail!("--rate must be a positive number of events per second");
    }
    if args.duration.is_zero() {
        bail!("--duration must be above zero");
    }
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    if args.render && (args.flows == 0 || args.runs == 0 || args.requests == 0) {
        bail!("--flows, --runs and --requests must be at least 1");
    }
    if args.backlog && args.rate.is_some() {
        bail!("--backlog posts as fast as flowd accepts; leave out --rate");
    }
    if args.nodes > 1 && !args.database_url.as_deref().is_some_and(is_postgres) {
        bail!(
            "--nodes {} needs --database-url postgres://…: several nodes share one PostgreSQL \
             database; SQLite serves a single node",
            args.nodes
        );
    }
    Ok(())
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

pub(crate) fn machine() -> Value {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_default();
    json!({"cpus": cpus, "cpu_model": model})
}

/// Runs of the benchmark flow per non-succeeded status (capped at 500 each by the API).
async fn runs_left(http: &reqwest::Client, base: &str) -> anyhow::Result<(Value, u64, u64)> {
    let mut left = serde_json::Map::new();
    let (mut total, mut unfinished) = (0, 0);
    for status in ["pending", "running", "waiting", "failed", "cancelled"] {
        let url = format!(
            "{base}/api/v1/runs?flow={}&status={status}&limit=500",
            workload::FLOW_ID
        );
        let answer = http.get(&url).send().await?;
        let code = answer.status();
        let body: Value = serde_json::from_slice(&answer.bytes().await?)
            .with_context(|| format!("GET {url}: {code}, not JSON"))?;
        let Some(items) = body["items"].as_array() else {
            bail!("GET {url}: {code} {body}");
        };
        let n = items.len() as u64;
        if n > 0 {
            let more = !body["next_cursor"].is_null();
            left.insert(
                status.to_string(),
                if more {
                    json!(format!("{n}+"))
                } else {
                    json!(n)
                },
            );
        }
        total += n;
        if matches!(status, "pending" | "running" | "waiting") {
            unfinished += n;
        }
    }
    Ok((Value::Object(left), total, unfinished))
}

async fn run(args: &Args) -> anyhow::Result<bool> {
    check_args(args)?;
    let bin = flowd::locate(args.flowd.as_deref(), args.no_build)?;
    if args.render {
        let sizes = render::Sizes {
            flows: args.flows,
            runs: args.runs,
            requests: args.requests,
        };
        return render::run(&bin, sizes, args.keep, args.json).await;
    }
    if args.goals {
        return run_goals(args, &bin).await;
    }
    let report = w1(args, &bin).await?;
    if args.json {
        println!("{:#}", report.json);
    } else {
        print!("{}", report.human);
    }
    Ok(report.ok)
}

/// One W1 run: its report as JSON and as text, the goals it could judge, and whether every
/// check passed (the goals do not count there).
pub struct W1Report {
    pub ok: bool,
    pub json: Value,
    pub human: String,
    pub goals: Vec<goals::Goal>,
}

/// The runs of `--goals`: (what it measures, its options).
fn goal_runs(args: &Args) -> Vec<(&'static str, Args)> {
    let sqlite = Args {
        database_url: None,
        ..args.clone()
    };
    let open = |rate: f64| Args {
        rate: Some(rate),
        // Ten seconds of events, so that a p99 rests on many samples.
        count: (rate * 10.0) as usize,
        ..sqlite.clone()
    };
    let mut runs = vec![
        ("SQLite closed loop", sqlite.clone()),
        ("open loop, fast", open(goals::OPEN_LOOP_FAST)),
        ("open loop, idle", open(goals::OPEN_LOOP_IDLE)),
        (
            "backlog",
            Args {
                backlog: true,
                count: goals::BACKLOG_RUNS,
                duration: sqlite.duration.max(Duration::from_secs(600)),
                drain_timeout: sqlite.drain_timeout.max(Duration::from_secs(600)),
                ..sqlite.clone()
            },
        ),
    ];
    if args.database_url.as_deref().is_some_and(is_postgres) {
        runs.push(("PostgreSQL one node", args.clone()));
    }
    runs
}

async fn run_goals(args: &Args, bin: &Path) -> anyhow::Result<bool> {
    let mut all_ok = true;
    let (mut goals, mut reports) = (Vec::new(), Vec::new());
    for (what, run_args) in goal_runs(args) {
        eprintln!("flowd-bench: goals: {what}");
        let report = w1(&run_args, bin).await?;
        all_ok &= report.ok;
        if !args.json {
            println!("{}", report.human);
        }
        goals.extend(report.goals);
        reports.push(report.json);
    }
    if args.json {
        let table: Vec<Value> = goals.iter().map(goals::Goal::json).collect();
        println!("{:#}", json!({"goals": table, "runs": reports}));
    } else {
        print!("{}", goals::table(&goals));
    }
    Ok(all_ok)
}

/// Pauses or resumes the W1 flow (`--backlog`).
async fn flow_action(http: &reqwest::Client, base: &str, action: &str) -> anyhow::Result<()> {
    let url = format!("{base}/api/v1/flows/{}/{action}", workload::FLOW_ID);
    let answer = http.post(&url).send().await?;
    let code = answer.status();
    if code.as_u16() != 200 {
        bail!(
            "POST {url}: {code} {}",
            answer.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

/// Runs W1 once with these options against this flowd binary.
pub async fn w1(args: &Args, bin: &Path) -> anyhow::Result<W1Report> {
    check_args(args)?;
    let bin = bin.to_path_buf();
    let t0 = Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix("flowd-bench-")
        .tempdir()
        .context("creating a temporary folder")?;
    let (sink, sink_addr) = Sink::start(t0, args.count).await?;
    let flows = tmp.path().join("flows");
    std::fs::create_dir_all(&flows)?;
    let sink_url = format!("http://{sink_addr}{}", workload::SINK_PATH);
    std::fs::write(flows.join("w1.yaml"), workload::flow_yaml(&sink_url))?;
    flowd::validate(&bin, &flows)?;

    let given = args.database_url.as_deref();
    let pg = match given {
        Some(url) if is_postgres(url) => Some(PgDatabase::create(url)?),
        _ => None,
    };
    let sqlite_file = tmp.path().join("bench.db");
    let (backend, database_url) = match (&pg, given) {
        (Some(pg), _) => ("postgres", pg.url.clone()),
        (None, Some(url)) => (
            if url.starts_with("sqlite:") {
                "sqlite"
            } else {
                "other"
            },
            url.to_string(),
        ),
        (None, None) => ("sqlite", format!("sqlite://{}", sqlite_file.display())),
    };
    let http = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(30))
        .build()?;

    eprintln!(
        "flowd-bench: starting {} × {} serve on {backend}{}",
        args.nodes,
        bin.display(),
        pg.as_ref()
            .map_or(String::new(), |pg| format!(" (database {})", pg.name()))
    );
    let shared = cluster::Shared {
        bin: &bin,
        dir: tmp.path(),
        flows: &flows,
        database_url: &database_url,
        workers: args.workers,
        extra_env: &args.flowd_env,
    };
    let (mut flowd, ready_after) = Cluster::start(&shared, args.nodes, &http).await?;
    if args.backlog {
        flow_action(&http, flowd.base_url(), "pause").await?;
    }
    let pids = flowd.pids();
    let rss_start_kb = flowd.max_status_kb("VmRSS");
    flowd.start_measuring();
    // With several nodes, the profile is of the first one.
    let perf = match &args.perf {
        Some(out) => Some(Perf::start(pids[0], out, &args.perf_args)?),
        None => None,
    };
    eprintln!(
        "flowd-bench: flowd (pid {pids:?}) ready after {:.2} s; posting {} events, {} clients, batch {}{}",
        ready_after.as_secs_f64(),
        args.count,
        args.concurrency,
        args.batch,
        args.rate
            .map_or(String::new(), |r| format!(", {r} events/s"))
    );

    let window_start = Instant::now();
    let bench_cpu0 = flowd::cpu_time("self");
    let machine0 = flowd::machine_jiffies();
    let events = Arc::new(Events::new(t0, args.count));
    let plan = Arc::new(Plan {
        events_urls: flowd.events_urls(),
        count: args.count,
        batch: args.batch,
        concurrency: args.concurrency,
        duration: args.duration,
        rate: args.rate,
    });
    let stats = load::run(plan, events.clone(), http.clone()).await;
    if args.backlog {
        eprintln!(
            "flowd-bench: resuming the flow: {} held runs",
            stats.events_acked
        );
        flow_action(&http, flowd.base_url(), "resume").await?;
    }
    eprintln!(
        "flowd-bench: {} events accepted in {:.2} s ({} request errors); waiting for deliveries",
        stats.events_acked,
        window_start.elapsed().as_secs_f64(),
        stats.error_count
    );

    let drain_start = Instant::now();
    let mut reported = Instant::now();
    while sink.distinct() < stats.events_acked && drain_start.elapsed() < args.drain_timeout {
        if reported.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "flowd-bench: {} of {} delivered",
                sink.distinct(),
                stats.events_acked
            );
            reported = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let window_s = window_start.elapsed().as_secs_f64();
    let (flowd_cpu_s, flowd_cpu_per_node) = flowd.cpu_since_start();
    let bench_cpu1 = flowd::cpu_time("self");
    let machine1 = flowd::machine_jiffies();
    if let Some(perf) = perf {
        perf.stop();
    }
    // The last runs commit `succeeded` just after their request reached the sink; a duplicate
    // delivery would come within this time too.
    let settle = Instant::now();
    let (left, left_total) = loop {
        let (left, total, unfinished) = runs_left(&http, flowd.base_url()).await?;
        if unfinished == 0 || settle.elapsed() > Duration::from_secs(10) {
            break (left, total);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_millis(500).saturating_sub(settle.elapsed())).await;

    let rss_hwm_kb = flowd.max_status_kb("VmHWM");
    let rss_peak = flowd.finish_measuring();
    let (exit, exit_clean) = flowd.terminate(Duration::from_secs(30)).await?;
    let log = flowd.scan_logs();
    drop(flowd);
    drop(pg);

    let arrivals = sink.take_arrivals();
    let deliveries = report::check_deliveries(&events, &arrivals);
    let db_size_bytes = (backend == "sqlite" && given.is_none()).then(|| {
        ["bench.db", "bench.db-wal", "bench.db-shm"]
            .iter()
            .filter_map(|f| std::fs::metadata(tmp.path().join(f)).ok())
            .map(|m| m.len())
            .sum()
    });
    let cpu = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64()),
        _ => None,
    };
    let mut outcome = report::Outcome {
        settings: json!({
            "backend": backend,
            "flowd": bin.display().to_string(),
            "concurrency": args.concurrency,
            "batch": args.batch,
            "count": args.count,
            "duration_limit_s": args.duration.as_secs_f64(),
            "rate": args.rate,
            "workers": args.workers,
            "nodes": args.nodes,
            "backlog": args.backlog,
            "flowd_cpu_s_per_node": flowd_cpu_per_node,
            "flowd_env": args.flowd_env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        }),
        machine: machine(),
        load: &stats,
        deliveries: &deliveries,
        sink_total: sink.total(),
        rss_start_kb,
        rss_peak,
        machine_busy: match (machine0, machine1) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
                Some((b1 - b0) as f64 / (t1 - t0) as f64)
            }
            _ => None,
        },
        rss_hwm_kb,
        flowd_cpu_s,
        bench_cpu_s: cpu(bench_cpu0, bench_cpu1),
        window_s,
        runs_left: left,
        runs_left_total: left_total,
        log: &log,
        log_path: None,
        exit,
        exit_clean,
        db_size_bytes,
    };
    let ok = outcome.problems().is_empty();
    if args.keep || !ok {
        let kept = tmp.keep();
        outcome.log_path = Some(
            kept.join(cluster::log_name(0, args.nodes))
                .display()
                .to_string(),
        );
    }
    Ok(W1Report {
        ok,
        json: outcome.json(),
        human: outcome.human(),
        goals: outcome.goals(),
    })
}
