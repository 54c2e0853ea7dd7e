//! The `flowd serve` nodes of one benchmark: one by default, or `--nodes N` sharing one
//! PostgreSQL database (SPEC §8), each on its own port with its own log. Measured together: the
//! clients are spread over the nodes, CPU time is summed, memory is the largest node's (the
//! per-process target is what SPEC §9 sets), the logs are scanned as one, and every node must
//! stop cleanly.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::flowd::{self, Flowd, RssPeak, RssSampler};
use crate::report::{self, LogSummary};

/// What every node shares.
pub struct Shared<'a> {
    pub bin: &'a Path,
    pub dir: &'a Path,
    pub flows: &'a Path,
    pub database_url: &'a str,
    pub workers: Option<usize>,
    pub extra_env: &'a [(String, String)],
}

struct Node {
    flowd: Flowd,
    log: PathBuf,
    sampler: Option<RssSampler>,
    cpu0: Option<Duration>,
}

pub struct Cluster {
    nodes: Vec<Node>,
}

/// `flowd.log` for a single node, as before; `flowd-1.log`, `flowd-2.log`, … for several.
pub fn log_name(index: usize, nodes: usize) -> String {
    if nodes == 1 {
        "flowd.log".to_string()
    } else {
        format!("flowd-{}.log", index + 1)
    }
}

impl Cluster {
    /// Starts `n` nodes, then waits until each answers `/readyz`; returns how long the slowest
    /// took. They start together, so their migrations race, which flowd serialises.
    pub async fn start(
        shared: &Shared<'_>,
        n: usize,
        http: &reqwest::Client,
    ) -> anyhow::Result<(Cluster, Duration)> {
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let log = shared.dir.join(log_name(i, n));
            let flowd = Flowd::start(&flowd::Settings {
                bin: shared.bin,
                dir: shared.dir,
                flows: shared.flows,
                database_url: shared.database_url,
                listen: format!("127.0.0.1:{}", flowd::free_port()?).parse()?,
                workers: shared.workers,
                extra_env: shared.extra_env,
                log: &log,
            })?;
            nodes.push(Node {
                flowd,
                log,
                sampler: None,
                cpu0: None,
            });
        }
        let mut slowest = Duration::ZERO;
        for node in &mut nodes {
            let ready = node
                .flowd
                .wait_ready(http, Duration::from_secs(60), &node.log)
                .await?;
            slowest = slowest.max(ready);
        }
        Ok((Cluster { nodes }, slowest))
    }

    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(|n| n.flowd.pid).collect()
    }

    /// The first node's address: any node answers for the shared database.
    pub fn base_url(&self) -> &str {
        &self.nodes[0].flowd.base_url
    }

    pub fn events_urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("{}/api/v1/events", n.flowd.base_url))
            .collect()
    }

    /// The largest value of a `/proc/<pid>/status` field (in kB) over the nodes.
    pub fn max_status_kb(&self, field: &str) -> Option<u64> {
        self.pids()
            .into_iter()
            .filter_map(|pid| flowd::status_kb(pid, field))
            .max()
    }

    /// Starts sampling memory and marks the CPU time of every node.
    pub fn start_measuring(&mut self) {
        for node in &mut self.nodes {
            node.sampler = Some(RssSampler::start(node.flowd.pid));
            node.cpu0 = flowd::cpu_time(&node.flowd.pid.to_string());
        }
    }

    /// CPU seconds of every node since `start_measuring`, summed and per node.
    pub fn cpu_since_start(&self) -> (Option<f64>, Vec<Option<f64>>) {
        let per_node: Vec<Option<f64>> = self
            .nodes
            .iter()
            .map(|node| {
                let now = flowd::cpu_time(&node.flowd.pid.to_string())?;
                Some(now.saturating_sub(node.cpu0?).as_secs_f64())
            })
            .collect();
        let total = per_node.iter().copied().sum::<Option<f64>>();
        (total, per_node)
    }

    /// Stops sampling; the samples of the node whose resident memory peaked highest.
    pub fn finish_measuring(&mut self) -> RssPeak {
        self.nodes
            .iter_mut()
            .filter_map(|node| node.sampler.take())
            .map(RssSampler::finish)
            .max_by_key(|peak| peak.rss_kb)
            .unwrap_or_default()
    }

    /// SIGTERM to every node, each given `grace` to stop. The exit as the report shows it (for
    /// several nodes: every status, the slowest stop, and each node's exit) and whether every
    /// node stopped cleanly.
    pub async fn terminate(&mut self, grace: Duration) -> anyhow::Result<(Value, bool)> {
        let mut exits = Vec::with_capacity(self.nodes.len());
        for node in &mut self.nodes {
            let (status, took, killed) = node.flowd.terminate(grace).await?;
            exits.push((status, took, killed));
        }
        let clean = exits.iter().all(|(s, _, killed)| s.success() && !killed);
        let one = |(status, took, killed): &(std::process::ExitStatus, Duration, bool)| {
            json!({
                "status": status.to_string(),
                "stop_ms": took.as_millis() as u64,
                "killed_after_grace": killed,
            })
        };
        let exit = match exits.as_slice() {
            [single] => one(single),
            all => json!({
                "status": all.iter().map(|e| e.0.to_string()).collect::<Vec<_>>().join(", "),
                "stop_ms": all.iter().map(|e| e.1.as_millis() as u64).max(),
                "killed_after_grace": all.iter().any(|e| e.2),
                "nodes": all.iter().map(one).collect::<Vec<_>>(),
            }),
        };
        Ok((exit, clean))
    }

    /// Every node's log, scanned as one.
    pub fn scan_logs(&self) -> LogSummary {
        let mut all = LogSummary::default();
        for node in &self.nodes {
            all.merge(report::scan_log(&node.log));
        }
        all
    }
}
