//! `flowd-bench --render`: how fast the console's pages render on a big database (issue #16):
//! with 1,000 flows and 1,000,000 runs in SQLite, the flows page, a filtered run log page and a
//! run page must each answer in under 100 ms at p99, measured over HTTP against a release
//! `flowd serve`.
//!
//! The database is made the way a real one is: `flowd serve` migrates it and the flows are
//! created through `POST /api/v1/flows` (so their definitions and revisions are flowd's own);
//! then, with flowd stopped, the runs, their steps and their attempts are written in bulk by SQL
//! in one transaction per table (`populate_sql`, run with the `sqlite3` shell, as the PostgreSQL
//! mode of the harness uses `psql`): a million runs through the API would take an hour and
//! measure the intake, not the console. flowd is then started again on it and each page is
//! asked for many times, one request at a time, after a warm-up.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::flowd::{self, Flowd};
use crate::report::{Spread, spread};

/// The render goal of issue #16, at p99.
pub const GOAL: Duration = Duration::from_millis(100);

/// How big the database is and how many requests each page gets.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub flows: usize,
    pub runs: usize,
    pub requests: usize,
}

/// Runs span this many days, the newest now: the last 24 hours hold 1/30 of them.
const DAYS: i64 = 30;

/// One in `DETAIL_EVERY` runs has its steps and attempts stored (the failed ones among them);
/// the run page is measured on those. Step and attempt rows are looked up by run id, so the
/// others add size without changing what a run page costs.
const DETAIL_EVERY: usize = 5;

/// The id of bench flow `i`.
pub fn flow_id(i: usize) -> String {
    format!("flow-{i:04}")
}

/// A flow like the ones people write: an entity trigger, a map and an http step with a secret.
pub fn flow_yaml(i: usize) -> String {
    format!(
        r#"id: {id}
name: Bench flow {i}
description: Pushes guests to the CRM (render benchmark)
triggers:
  - entity: guest
    on: [create, update]
    fields: [email, status]
steps:
  - id: contact
    map: {{email: "{{{{entity.email}}}}", guest_id: "{{{{entity.id}}}}"}}
  - id: push
    http:
      url: "https://crm.example.com/api/contacts/{{{{entity.id}}}}"
      headers: {{Authorization: "Bearer {{{{secrets.CRM_TOKEN}}}}"}}
      body: "{{{{steps.contact}}}}"
"#,
        id = flow_id(i)
    )
}

/// The SQL that writes `sizes.runs` runs over the flows `flow-0000`…, newest at `now_ms`:
/// one in ten failed; one in [`DETAIL_EVERY`] with its two steps and its http attempt. Run ids
/// are UUIDv7-shaped (time first), as flowd's are.
pub fn populate_sql(sizes: Sizes, now_ms: i64) -> String {
    let (flows, runs) = (sizes.flows.max(1), sizes.runs.max(1));
    let span_ms = DAYS * 24 * 3600 * 1000;
    let step_ms = (span_ms / runs as i64).max(1);
    let start = now_ms - step_ms * runs as i64;
    let every = DETAIL_EVERY;
    format!(
        r#"PRAGMA journal_mode=MEMORY;
PRAGMA synchronous=OFF;
PRAGMA cache_size=-262144;
CREATE TEMP TABLE seq AS
  WITH RECURSIVE s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s WHERE n + 1 < {runs})
  SELECT n, {start} + n * {step_ms} AS created,
    printf('%08x-%04x-7%03x-%04x-%012x', ({start} + n * {step_ms}) / 65536,
           ({start} + n * {step_ms}) % 65536, n % 4096, 32768 + (n / 4096) % 16384, n) AS id,
    printf('flow-%04d', n % {flows}) AS flow,
    n % 50000 AS guest,
    CASE WHEN n % 10 = 3 THEN 'failed' ELSE 'succeeded' END AS status
  FROM s;
BEGIN;
INSERT INTO runs (id, flow_id, revision, status, trigger, entity, entity_id, next_step, attempt,
                  error, created_at, started_at, finished_at)
SELECT id, flow, 1, status,
  '{{"kind":"entity","event":{{"id":"ev-' || n || '","type":"guest.update","entity":"guest","action":"update","entity_id":"' || guest || '","occurred_at":"' || strftime('%Y-%m-%dT%H:%M:%fZ', created / 1000.0, 'unixepoch') || '"}},"entity":{{"id":"' || guest || '","email":"guest' || guest || '@example.com","status":"confirmed"}},"changed":["status"]}}',
  'guest', CAST(guest AS TEXT), 2, 1,
  CASE WHEN status = 'failed' THEN 'step `push` failed: HTTP 503 Service Unavailable' END,
  created, created + 3, created + 180
FROM seq;
COMMIT;
BEGIN;
INSERT INTO step_runs (run_id, step_index, step_id, kind, status, output, attempts, started_at, finished_at)
SELECT id, 0, 'contact', 'map', 'succeeded',
  '{{"email":"guest' || guest || '@example.com","guest_id":"' || guest || '"}}', 0, created + 3, created + 4
FROM seq WHERE n % {every} = 3;
INSERT INTO step_runs (run_id, step_index, step_id, kind, status, output, error, attempts, started_at, finished_at)
SELECT id, 1, 'push', 'http', status,
  CASE WHEN status = 'succeeded' THEN '{{"status":200,"headers":{{"content-type":"application/json"}},"body":{{"ok":true,"id":' || guest || '}}}}' END,
  CASE WHEN status = 'failed' THEN 'HTTP 503 Service Unavailable' END,
  1, created + 4, created + 180
FROM seq WHERE n % {every} = 3;
INSERT INTO attempts (run_id, step_index, n, node, started_at, finished_at, duration_ms, request, response, error)
SELECT id, 1, 1, 'bench-node', created + 4, created + 180, 176,
  '{{"method":"POST","url":"https://crm.example.com/api/contacts/' || guest || '","headers":[{{"name":"authorization","value":"***"}},{{"name":"content-type","value":"application/json"}},{{"name":"idempotency-key","value":"' || id || '_push"}}],"body":"{{\"email\":\"guest' || guest || '@example.com\",\"guest_id\":\"' || guest || '\"}}"}}',
  CASE WHEN status = 'failed'
    THEN '{{"status":503,"headers":[{{"name":"content-type","value":"text/plain"}}],"body":"try later","truncated":false}}'
    ELSE '{{"status":200,"headers":[{{"name":"content-type","value":"application/json"}}],"body":"{{\"ok\":true}}","truncated":false}}' END,
  CASE WHEN status = 'failed' THEN 'HTTP 503 Service Unavailable' END
FROM seq WHERE n % {every} = 3;
COMMIT;
DROP TABLE seq;
PRAGMA journal_mode=WAL;
ANALYZE;
"#
    )
}

/// Runs `sql` on the SQLite file `db` with the `sqlite3` shell.
pub fn run_sqlite(db: &Path, sql: &str) -> anyhow::Result<()> {
    let mut child = Command::new("sqlite3")
        .arg("-bail")
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running `sqlite3` (Debian package sqlite3), which writes the runs in bulk")?;
    child
        .stdin
        .take()
        .context("sqlite3's stdin")?
        .write_all(sql.as_bytes())
        .context("sending SQL to sqlite3")?;
    let out = child.wait_with_output().context("waiting for sqlite3")?;
    if !out.status.success() {
        bail!(
            "sqlite3 failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One measured page: its name, an example address and the latencies.
pub struct PageFigures {
    pub name: &'static str,
    pub example: String,
    pub latency: Spread,
}

impl PageFigures {
    /// Whether the page met the goal at p99.
    pub fn met(&self) -> bool {
        self.latency
            .p99
            .is_some_and(|p99| p99 <= GOAL.as_nanos() as u64)
    }
}

/// Nanoseconds as milliseconds; NaN for none.
fn ms(nanos: Option<u64>) -> f64 {
    nanos.map_or(f64::NAN, |n| n as f64 / 1e6)
}

/// Starts `flowd serve` on `database_url` in `dir` and waits until it is ready.
pub async fn serve(
    bin: &Path,
    dir: &Path,
    database_url: &str,
    http: &reqwest::Client,
) -> anyhow::Result<Flowd> {
    let log = dir.join("flowd.log");
    let flows = dir.join("flows");
    std::fs::create_dir_all(&flows)?;
    let mut flowd = Flowd::start(&flowd::Settings {
        bin,
        dir,
        flows: &flows,
        database_url,
        listen: format!("127.0.0.1:{}", flowd::free_port()?).parse()?,
        workers: None,
        extra_env: &[],
        log: &log,
    })?;
    flowd
        .wait_ready(http, Duration::from_secs(300), &log)
        .await?;
    Ok(flowd)
}

/// Makes the database: migrated and with the flows by `flowd serve`, the runs by SQL.
pub async fn populate(
    bin: &Path,
    dir: &Path,
    sizes: Sizes,
    http: &reqwest::Client,
) -> anyhow::Result<String> {
    let db = dir.join("render.db");
    let database_url = format!("sqlite://{}", db.display());
    let mut flowd = serve(bin, dir, &database_url, http).await?;
    let started = Instant::now();
    for i in 0..sizes.flows {
        let answer = http
            .post(format!("{}/api/v1/flows", flowd.base_url))
            .header("content-type", "application/yaml")
            .body(flow_yaml(i))
            .send()
            .await?;
        let status = answer.status();
        if status.as_u16() != 201 {
            let body = answer.text().await.unwrap_or_default();
            bail!("POST /api/v1/flows for {}: {status} {body}", flow_id(i));
        }
    }
    eprintln!(
        "flowd-bench: {} flows created through the API in {:.1} s",
        sizes.flows,
        started.elapsed().as_secs_f64()
    );
    let (status, _, killed) = flowd.terminate(Duration::from_secs(30)).await?;
    if killed || !status.success() {
        bail!("flowd did not stop cleanly after the flows were created ({status})");
    }
    let started = Instant::now();
    run_sqlite(&db, &populate_sql(sizes, now_ms()))?;
    eprintln!(
        "flowd-bench: {} runs written by SQL in {:.1} s",
        sizes.runs,
        started.elapsed().as_secs_f64()
    );
    Ok(database_url)
}

/// Asks for each of `paths` in turn (round robin) `requests` times after `requests / 10` of
/// warm-up, and measures each answer; every answer must be 200.
async fn measure(
    http: &reqwest::Client,
    base: &str,
    paths: &[String],
    requests: usize,
) -> anyhow::Result<Spread> {
    let warm_up = (requests / 10).max(3);
    let mut nanos = Vec::with_capacity(requests);
    for i in 0..warm_up + requests {
        let path = &paths[i % paths.len()];
        let started = Instant::now();
        let answer = http.get(format!("{base}{path}")).send().await?;
        let status = answer.status();
        let body = answer.bytes().await?;
        let took = started.elapsed();
        if status.as_u16() != 200 {
            bail!(
                "GET {path}: {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            );
        }
        if i >= warm_up {
            nanos.push(took.as_nanos() as u64);
        }
    }
    Ok(spread(nanos))
}

/// Ids of failed runs (those have their steps and attempts), from the API.
pub async fn failed_runs(http: &reqwest::Client, base: &str) -> anyhow::Result<Vec<String>> {
    let url = format!("{base}/api/v1/runs?status=failed&limit=500");
    let body: Value = serde_json::from_slice(&http.get(&url).send().await?.bytes().await?)
        .with_context(|| format!("GET {url}: not JSON"))?;
    let ids: Vec<String> = body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["id"].as_str().map(str::to_string))
        .collect();
    if ids.is_empty() {
        bail!("GET {url}: no failed runs in {body}");
    }
    Ok(ids)
}

/// Measures the pages on a running flowd.
pub async fn measure_pages(
    http: &reqwest::Client,
    base: &str,
    sizes: Sizes,
) -> anyhow::Result<Vec<PageFigures>> {
    // Spread over flows and runs, so no one answer is simply cached by SQLite.
    let flows: Vec<String> = (0..sizes.flows.min(97))
        .map(|i| flow_id(i * sizes.flows.max(1) / sizes.flows.clamp(1, 97)))
        .collect();
    let runs = failed_runs(http, base).await?;
    let pages: Vec<(&'static str, Vec<String>)> = vec![
        ("flows page", vec!["/".to_string()]),
        ("run log, failed", vec!["/runs?status=failed".to_string()]),
        (
            "run log, one flow's failed",
            flows
                .iter()
                .map(|f| format!("/runs?flow={f}&status=failed"))
                .collect(),
        ),
        (
            "run log, one entity",
            (0..97)
                .map(|g| format!("/runs?entity=guest&entity_id={}", g * 431))
                .collect(),
        ),
        (
            "run page",
            runs.iter().map(|r| format!("/runs/{r}")).collect(),
        ),
    ];
    let mut figures = Vec::new();
    for (name, paths) in pages {
        let latency = measure(http, base, &paths, sizes.requests).await?;
        eprintln!(
            "flowd-bench: {name}: p50 {:.1} ms, p99 {:.1} ms",
            ms(latency.p50),
            ms(latency.p99)
        );
        figures.push(PageFigures {
            name,
            example: paths[0].clone(),
            latency,
        });
    }
    Ok(figures)
}

/// The whole render benchmark; returns whether every page met the goal.
pub async fn run(bin: &Path, sizes: Sizes, keep: bool, as_json: bool) -> anyhow::Result<bool> {
    let tmp = tempfile::Builder::new()
        .prefix("flowd-bench-render-")
        .tempdir()
        .context("creating a temporary folder")?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .build()?;
    let started = Instant::now();
    let database_url = populate(bin, tmp.path(), sizes, &http).await?;
    let populate_s = started.elapsed().as_secs_f64();
    let db_bytes: u64 = ["render.db", "render.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(tmp.path().join(f)).ok())
        .map(|m| m.len())
        .sum();
    let mut flowd = serve(bin, tmp.path(), &database_url, &http).await?;
    let figures = measure_pages(&http, &flowd.base_url, sizes).await;
    flowd.terminate(Duration::from_secs(30)).await?;
    let figures = figures?;
    let ok = figures.iter().all(PageFigures::met);
    if keep {
        eprintln!("flowd-bench: kept {}", tmp.keep().display());
    }
    let report = Report {
        sizes,
        populate_s,
        db_bytes,
        figures: &figures,
    };
    if as_json {
        println!("{:#}", report.json());
    } else {
        print!("{}", report.human());
    }
    Ok(ok)
}

struct Report<'a> {
    sizes: Sizes,
    populate_s: f64,
    db_bytes: u64,
    figures: &'a [PageFigures],
}

impl Report<'_> {
    fn json(&self) -> Value {
        json!({
            "workload": "console render",
            "flows": self.sizes.flows,
            "runs": self.sizes.runs,
            "requests_per_page": self.sizes.requests,
            "populate_s": self.populate_s,
            "db_bytes": self.db_bytes,
            "goal_p99_ms": GOAL.as_millis() as u64,
            "machine": crate::machine(),
            "pages": self.figures.iter().map(|f| json!({
                "page": f.name,
                "example": f.example,
                "p50_ms": ms(f.latency.p50),
                "p99_ms": ms(f.latency.p99),
                "max_ms": ms(f.latency.max),
                "met": f.met(),
            })).collect::<Vec<_>>(),
        })
    }

    fn human(&self) -> String {
        let mut out = format!(
            "Console render: {} flows, {} runs in SQLite ({:.0} MB, made in {:.0} s), {} requests per page, one at a time\n",
            self.sizes.flows,
            self.sizes.runs,
            self.db_bytes as f64 / 1e6,
            self.populate_s,
            self.sizes.requests
        );
        for f in self.figures {
            let met = f.met();
            out.push_str(&format!(
                "  {:<28} p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms   goal p99 < {} ms: {}   ({})\n",
                f.name,
                ms(f.latency.p50),
                ms(f.latency.p99),
                ms(f.latency.max),
                GOAL.as_millis(),
                if met { "met" } else { "MISSED" },
                f.example
            ));
        }
        out
    }
}
