//! Turning what the clients, the sink, `/proc` and flowd's log recorded into figures, the
//! exactly-once check, and the human-readable or JSON report.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::flowd::RssPeak;
use crate::goals::Goal;
use crate::load::{Events, LoadStats};
use crate::sink::Arrival;
use crate::workload;

/// At most this many examples of each kind of problem are shown.
const EXAMPLES: usize = 5;

/// Delivery figures and the check that every accepted event arrived once, as mapped.
#[derive(Default)]
pub struct Deliveries {
    pub accepted: usize,
    /// Accepted events delivered at least once.
    pub delivered: usize,
    pub missing: usize,
    /// Events delivered more than once, and the surplus deliveries (of which with the same
    /// `Idempotency-Key`, i.e. re-sent steps rather than duplicate runs).
    pub duplicated_events: usize,
    pub extra_deliveries: usize,
    pub extra_same_key: usize,
    pub body_mismatches: usize,
    pub key_mismatches: usize,
    /// Requests whose body names no known event, or on another path than the flow's.
    pub unknown: usize,
    /// Deliveries of events whose request failed or was never answered with a run.
    pub unacknowledged: usize,
    pub examples: Vec<String>,
    /// First delivery minus send time, ns, per delivered event.
    pub latency_ns: Vec<u64>,
    /// First delivery time of each delivered event, ns since the epoch.
    pub delivered_at_ns: Vec<u64>,
    pub first_send_ns: Option<u64>,
    pub last_ack_ns: Option<u64>,
    pub first_arrival_ns: Option<u64>,
    pub last_arrival_ns: Option<u64>,
    /// Most runs accepted and not yet delivered at any one time.
    pub max_backlog: usize,
}

impl Deliveries {
    fn example(&mut self, text: String) {
        if self.examples.len() < 4 * EXAMPLES {
            self.examples.push(text);
        }
    }
}

pub fn check_deliveries(events: &Events, arrivals: &[Arrival]) -> Deliveries {
    let count = events.sent_ns.len();
    let mut d = Deliveries::default();
    let mut per_event: Vec<Vec<&Arrival>> = vec![Vec::new(); count];
    for a in arrivals {
        let n = a.body.as_ref().ok().and_then(workload::event_index);
        match n {
            Some(n) if n < count && a.path == workload::SINK_PATH => per_event[n].push(a),
            _ => {
                d.unknown += 1;
                let body = match &a.body {
                    Ok(v) => v.to_string(),
                    Err(raw) => raw.clone(),
                };
                d.example(format!(
                    "unknown delivery to {}: {}",
                    a.path,
                    body.chars().take(200).collect::<String>()
                ));
            }
        }
        d.first_arrival_ns = Some(d.first_arrival_ns.map_or(a.at_ns, |f| f.min(a.at_ns)));
        d.last_arrival_ns = Some(d.last_arrival_ns.map_or(a.at_ns, |l| l.max(a.at_ns)));
    }
    let mut missing_examples = Vec::new();
    let mut acked_at_ns = Vec::new();
    for (n, got) in per_event.iter().enumerate() {
        let id = n + 1;
        let acked = events.acked(n);
        if let Some(sent) = events.sent(n) {
            d.first_send_ns = Some(d.first_send_ns.map_or(sent, |f| f.min(sent)));
        }
        let Some(acked) = acked else {
            if !got.is_empty() {
                d.unacknowledged += 1;
            }
            continue;
        };
        d.accepted += 1;
        acked_at_ns.push(acked);
        d.last_ack_ns = Some(d.last_ack_ns.map_or(acked, |l| l.max(acked)));
        let Some(first) = got.iter().map(|a| a.at_ns).min() else {
            d.missing += 1;
            if missing_examples.len() < EXAMPLES {
                missing_examples.push(id.to_string());
            }
            continue;
        };
        d.delivered += 1;
        d.delivered_at_ns.push(first);
        if let Some(sent) = events.sent(n) {
            d.latency_ns.push(first.saturating_sub(sent));
        }
        let expected_key = events.run_id[n]
            .get()
            .map(|run| format!("{run}_{}", workload::HTTP_STEP));
        let expected_body = workload::expected_body(n);
        for a in got {
            if a.body.as_ref().ok() != Some(&expected_body) {
                d.body_mismatches += 1;
                let body = a.body.as_ref().map(Value::to_string).unwrap_or_default();
                d.example(format!("event {id}: body {body}, expected {expected_body}"));
            }
            if a.idempotency_key != expected_key {
                d.key_mismatches += 1;
                d.example(format!(
                    "event {id}: Idempotency-Key {:?}, expected {:?}",
                    a.idempotency_key, expected_key
                ));
            }
        }
        if got.len() > 1 {
            d.duplicated_events += 1;
            d.extra_deliveries += got.len() - 1;
            let keys: Vec<_> = got.iter().map(|a| a.idempotency_key.clone()).collect();
            let same = keys.iter().filter(|k| **k == keys[0]).count() - 1;
            d.extra_same_key += same;
            d.example(format!(
                "event {id}: delivered {} times (Idempotency-Keys {keys:?})",
                got.len()
            ));
        }
    }
    d.max_backlog = max_backlog(acked_at_ns, d.delivered_at_ns.clone());
    if d.missing > 0 {
        d.example(format!(
            "{} accepted events never arrived, e.g. ids {}",
            d.missing,
            missing_examples.join(", ")
        ));
    }
    d
}

/// The most accepted-but-undelivered runs at any instant: a sweep over both sorted timelines.
fn max_backlog(mut acked: Vec<u64>, mut delivered: Vec<u64>) -> usize {
    acked.sort_unstable();
    delivered.sort_unstable();
    let (mut out, mut best) = (0usize, 0usize);
    for (i, at) in acked.iter().enumerate() {
        while out < delivered.len() && delivered[out] <= *at {
            out += 1;
        }
        best = best.max((i + 1).saturating_sub(out));
    }
    best
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

pub struct Spread {
    pub count: usize,
    pub p50: Option<u64>,
    pub p90: Option<u64>,
    pub p99: Option<u64>,
    pub max: Option<u64>,
}

pub fn spread(mut values: Vec<u64>) -> Spread {
    values.sort_unstable();
    Spread {
        count: values.len(),
        p50: percentile(&values, 0.50),
        p90: percentile(&values, 0.90),
        p99: percentile(&values, 0.99),
        max: values.last().copied(),
    }
}

fn ms(ns: Option<u64>) -> Value {
    ns.map_or(Value::Null, |ns| json!(round(ns as f64 / 1e6, 2)))
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

impl Spread {
    fn json(&self) -> Value {
        json!({
            "count": self.count,
            "p50": ms(self.p50),
            "p90": ms(self.p90),
            "p99": ms(self.p99),
            "max": ms(self.max),
        })
    }

    fn human(&self) -> String {
        let f =
            |ns: Option<u64>| ns.map_or("-".to_string(), |ns| format!("{:.1} ms", ns as f64 / 1e6));
        format!(
            "p50 {}  p90 {}  p99 {}  max {}",
            f(self.p50),
            f(self.p90),
            f(self.p99),
            f(self.max)
        )
    }
}

/// Warnings, errors and panics in flowd's (JSON) log.
#[derive(Default)]
pub struct LogSummary {
    pub lines: usize,
    pub warn: usize,
    pub error: usize,
    pub panics: usize,
    /// (level, message) → count, WARN and ERROR only.
    pub messages: BTreeMap<(String, String), usize>,
}

impl LogSummary {
    /// Adds another log's counts (several nodes report as one).
    pub fn merge(&mut self, other: LogSummary) {
        self.lines += other.lines;
        self.warn += other.warn;
        self.error += other.error;
        self.panics += other.panics;
        for (key, count) in other.messages {
            *self.messages.entry(key).or_default() += count;
        }
    }
}

pub fn scan_log(path: &Path) -> LogSummary {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut s = LogSummary::default();
    for line in text.lines() {
        s.lines += 1;
        if line.contains("panicked at") {
            s.panics += 1;
        }
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let level = v["level"].as_str().unwrap_or_default().to_string();
        match level.as_str() {
            "WARN" => s.warn += 1,
            "ERROR" => s.error += 1,
            _ => continue,
        }
        let fields = &v["fields"];
        let mut message = fields["message"].as_str().unwrap_or_default().to_string();
        if let Some(error) = fields["error"].as_str() {
            message = format!(
                "{message} ({})",
                error.chars().take(160).collect::<String>()
            );
        }
        *s.messages.entry((level, message)).or_default() += 1;
    }
    s
}

/// Everything measured in one benchmark.
pub struct Outcome<'a> {
    pub settings: Value,
    pub machine: Value,
    pub load: &'a LoadStats,
    pub deliveries: &'a Deliveries,
    pub sink_total: usize,
    pub rss_start_kb: Option<u64>,
    pub rss_peak: RssPeak,
    /// Share of the machine's CPU time that was busy (all processes) during the window.
    pub machine_busy: Option<f64>,
    pub rss_hwm_kb: Option<u64>,
    /// CPU seconds of flowd and of the harness over the measured window, and its length.
    pub flowd_cpu_s: Option<f64>,
    pub bench_cpu_s: Option<f64>,
    pub window_s: f64,
    pub runs_left: Value,
    pub runs_left_total: u64,
    pub log: &'a LogSummary,
    pub log_path: Option<String>,
    pub exit: Value,
    pub exit_clean: bool,
    pub db_size_bytes: Option<u64>,
}

impl Outcome<'_> {
    /// VmHWM, or the largest sample when that is higher (the kernel updates VmHWM lazily).
    pub(crate) fn peak_rss_kb(&self) -> u64 {
        self.rss_hwm_kb.unwrap_or(0).max(self.rss_peak.rss_kb)
    }

    pub fn problems(&self) -> Vec<String> {
        let d = self.deliveries;
        let mut p = Vec::new();
        if self.load.error_count > 0 {
            p.push(format!(
                "{} requests failed or were refused",
                self.load.error_count
            ));
        }
        if d.accepted == 0 {
            p.push("no event was accepted".to_string());
        }
        if d.missing > 0 {
            p.push(format!(
                "{} accepted events never reached the sink",
                d.missing
            ));
        }
        if d.extra_deliveries > 0 {
            p.push(format!(
                "{} events were delivered more than once ({} surplus deliveries, {} with the same Idempotency-Key)",
                d.duplicated_events, d.extra_deliveries, d.extra_same_key
            ));
        }
        if d.body_mismatches > 0 {
            p.push(format!(
                "{} deliveries had a body other than the mapped one",
                d.body_mismatches
            ));
        }
        if d.key_mismatches > 0 {
            p.push(format!(
                "{} deliveries had an Idempotency-Key other than <run_id>_{}",
                d.key_mismatches,
                workload::HTTP_STEP
            ));
        }
        if d.unknown > 0 {
            p.push(format!(
                "{} requests at the sink belong to no event",
                d.unknown
            ));
        }
        if self.runs_left_total > 0 {
            p.push(format!("runs not succeeded at the end: {}", self.runs_left));
        }
        if self.log.error > 0 || self.log.panics > 0 {
            p.push(format!(
                "flowd logged {} errors and {} panics",
                self.log.error, self.log.panics
            ));
        }
        if !self.exit_clean {
            p.push(format!(
                "flowd did not stop cleanly on SIGTERM: {}",
                self.exit
            ));
        }
        p
    }

    pub(crate) fn rates(&self) -> (Option<f64>, Option<f64>, Option<f64>, f64, f64) {
        let d = self.deliveries;
        let secs = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) if b > a => Some((b - a) as f64 / 1e9),
            _ => None,
        };
        let load_s = secs(d.first_send_ns, d.last_ack_ns);
        let sink_s = secs(d.first_arrival_ns, d.last_arrival_ns);
        let overall_s = secs(d.first_send_ns, d.last_arrival_ns);
        let accepted = load_s.map(|s| d.accepted as f64 / s);
        let completed_sink = sink_s.map(|s| d.delivered as f64 / s);
        let completed_all = overall_s.map(|s| d.delivered as f64 / s);
        (
            accepted,
            completed_sink,
            completed_all,
            load_s.unwrap_or(0.0),
            sink_s.unwrap_or(0.0),
        )
    }

    /// Runs completed per second while the clients were sending, and after the last answer
    /// (the runner alone working off the backlog), with the number of runs in each phase.
    pub(crate) fn phases(&self) -> Option<(f64, usize, f64, usize)> {
        let d = self.deliveries;
        let (first, last_ack, last) = (d.first_send_ns?, d.last_ack_ns?, d.last_arrival_ns?);
        let during = d.delivered_at_ns.iter().filter(|&&t| t <= last_ack).count();
        let after = d.delivered - during;
        let rate = |n: usize, a: u64, b: u64| {
            if b > a {
                n as f64 / ((b - a) as f64 / 1e9)
            } else {
                0.0
            }
        };
        Some((
            rate(during, first, last_ack),
            during,
            rate(after, last_ack, last),
            after,
        ))
    }

    pub fn json(&self) -> Value {
        let d = self.deliveries;
        let (accepted_per_s, completed_sink, completed_all, load_s, sink_s) = self.rates();
        let mb = |kb: Option<u64>| kb.map(|kb| round(kb as f64 / 1024.0, 1));
        let problems = self.problems();
        json!({
            "workload": "W1",
            "settings": self.settings,
            "machine": self.machine,
            "events": {
                "requests": self.load.requests,
                "sent": self.load.events_sent,
                "accepted": d.accepted,
                "request_errors": self.load.error_count,
                "answered_429": self.load.pushed_back,
                "errors": self.load.errors,
                "accepted_per_s": accepted_per_s.map(|r| round(r, 0)),
                "load_s": round(load_s, 3),
                "late_requests": self.load.late_requests,
                "max_send_lag_ms": ms(Some(self.load.max_lag_ns)),
            },
            "runs": {
                "delivered": d.delivered,
                "completed_per_s_sink_window": completed_sink.map(|r| round(r, 0)),
                "completed_per_s_overall": completed_all.map(|r| round(r, 0)),
                "sink_window_s": round(sink_s, 3),
                "while_sending": self.phases().map(|(r, n, _, _)| json!({"runs": n, "per_s": round(r, 0)})),
                "after_last_answer": self.phases().map(|(_, _, r, n)| json!({"runs": n, "per_s": round(r, 0)})),
                "left_not_succeeded": self.runs_left,
            },
            "latency_ms": spread(d.latency_ns.clone()).json(),
            "ack_latency_ms": spread(self.load.ack_latency_ns.clone()).json(),
            "rss_mb": {
                "peak": mb(Some(self.peak_rss_kb())),
                "vmhwm": mb(self.rss_hwm_kb),
                "max_sampled": mb(Some(self.rss_peak.rss_kb)),
                "max_sampled_anon": mb(Some(self.rss_peak.anon_kb)),
                "max_sampled_file": mb(Some(self.rss_peak.file_kb)),
                "at_start": mb(self.rss_start_kb),
                "samples": self.rss_peak.samples,
                "timeline_ms_kb": self.rss_peak.timeline,
            },
            "cpu": {
                "window_s": round(self.window_s, 3),
                "flowd_cpu_s": self.flowd_cpu_s.map(|c| round(c, 2)),
                "flowd_cores": self.flowd_cpu_s.map(|c| round(c / self.window_s.max(1e-9), 2)),
                "bench_cpu_s": self.bench_cpu_s.map(|c| round(c, 2)),
                "machine_busy": self.machine_busy.map(|b| round(b, 3)),
            },
            "database_bytes": self.db_size_bytes,
            "check": {
                "ok": problems.is_empty(),
                "missing": d.missing,
                "duplicated_events": d.duplicated_events,
                "extra_deliveries": d.extra_deliveries,
                "extra_same_idempotency_key": d.extra_same_key,
                "body_mismatches": d.body_mismatches,
                "idempotency_key_mismatches": d.key_mismatches,
                "unknown_requests": d.unknown,
                "delivered_without_ack": d.unacknowledged,
                "sink_requests": self.sink_total,
                "problems": problems,
                "examples": d.examples,
            },
            "flowd_log": {
                "path": self.log_path,
                "lines": self.log.lines,
                "warn": self.log.warn,
                "error": self.log.error,
                "panics": self.log.panics,
                "messages": self.log.messages.iter().map(|((level, message), count)| json!({
                    "level": level, "message": message, "count": count
                })).collect::<Vec<_>>(),
            },
            "flowd_exit": self.exit,
            "goals": self.goals().iter().map(Goal::json).collect::<Vec<_>>(),
        })
    }

    pub fn human(&self) -> String {
        let d = self.deliveries;
        let l = self.load;
        let (accepted_per_s, completed_sink, completed_all, load_s, sink_s) = self.rates();
        let rate = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{r:.0}"));
        let mb = |kb: u64| format!("{:.1} MB", kb as f64 / 1024.0);
        let s = &self.settings;
        let mut out = String::new();
        let mut line = |text: String| {
            out.push_str(&text);
            out.push('\n');
        };
        line(format!(
            "flowd-bench W1 on {}{} — {}, {} clients, batch {}, workers {}",
            s["backend"].as_str().unwrap_or("?"),
            match s["nodes"].as_u64() {
                Some(n) if n > 1 => format!(", {n} nodes"),
                _ => String::new(),
            },
            match s["rate"].as_f64() {
                Some(r) => format!("open loop at {r:.0} events/s"),
                None => "closed loop".to_string(),
            },
            s["concurrency"],
            s["batch"],
            s["workers"]
                .as_u64()
                .map_or("default".to_string(), |w| w.to_string()),
        ));
        line(format!(
            "  machine      {} cores, {}",
            self.machine["cpus"],
            self.machine["cpu_model"].as_str().unwrap_or("?")
        ));
        line(format!(
            "  events       {} sent in {} requests, {} accepted, {} request errors",
            l.events_sent, l.requests, d.accepted, l.error_count
        ));
        line(format!(
            "  accepted     {} events/s   (first send to last answer: {load_s:.2} s)",
            rate(accepted_per_s)
        ));
        line(format!(
            "  completed    {} runs/s at the sink (first to last arrival: {sink_s:.2} s), {} runs/s overall (first send to last arrival)",
            rate(completed_sink),
            rate(completed_all)
        ));
        if let Some((during, n_during, after, n_after)) = self.phases() {
            line(format!(
                "               {during:.0} runs/s while sending ({n_during} runs), {after:.0} runs/s after the last answer ({n_after} runs)"
            ));
        }
        line(format!(
            "  latency      {}   (event sent → body at the sink, {} events)",
            spread(d.latency_ns.clone()).human(),
            d.latency_ns.len()
        ));
        line(format!(
            "  answer       {}   (POST /api/v1/events round trip)",
            spread(l.ack_latency_ns.clone()).human()
        ));
        if s["rate"].is_number() {
            line(format!(
                "  schedule     {} requests left more than 10 ms late, worst {:.1} ms",
                l.late_requests,
                l.max_lag_ns as f64 / 1e6
            ));
        }
        line(format!(
            "  flowd RSS    peak {} (VmHWM {}; sampled every 100 ms: max {}, anonymous {}, file {}), {} when ready",
            mb(self.peak_rss_kb()),
            self.rss_hwm_kb.map_or("-".to_string(), mb),
            mb(self.rss_peak.rss_kb),
            mb(self.rss_peak.anon_kb),
            mb(self.rss_peak.file_kb),
            self.rss_start_kb.map_or("-".to_string(), mb),
        ));
        if let Some(cpu) = self.flowd_cpu_s {
            line(format!(
                "  CPU          flowd {cpu:.2} s = {:.2} cores over {:.2} s of load and drain; harness {:.2} s; machine {} busy",
                cpu / self.window_s.max(1e-9),
                self.window_s,
                self.bench_cpu_s.unwrap_or(0.0),
                self.machine_busy
                    .map_or("-".to_string(), |b| format!("{:.0} %", b * 100.0)),
            ));
        }
        if let Some(bytes) = self.db_size_bytes {
            line(format!(
                "  database     {:.1} MB on disk",
                bytes as f64 / 1048576.0
            ));
        }
        line(format!(
            "  flowd log    {} lines, {} WARN, {} ERROR, {} panics{}",
            self.log.lines,
            self.log.warn,
            self.log.error,
            self.log.panics,
            self.log_path
                .as_ref()
                .map_or(String::new(), |p| format!(" — {p}"))
        ));
        for ((level, message), count) in self.log.messages.iter().take(10) {
            line(format!("               {level} ×{count}: {message}"));
        }
        line(format!(
            "  flowd stop   {} after SIGTERM in {} ms{}",
            self.exit["status"].as_str().unwrap_or("?"),
            self.exit["stop_ms"],
            if self.exit_clean { "" } else { " (not clean)" }
        ));
        if d.unacknowledged > 0 {
            line(format!(
                "  note         {} events arrived at the sink although their request failed",
                d.unacknowledged
            ));
        }
        for e in &l.errors {
            line(format!("  request error: {e}"));
        }
        for goal in self.goals() {
            line(format!("  goal         {}", goal.human()));
        }
        let problems = self.problems();
        if problems.is_empty() {
            line(format!(
                "  check        OK: all {} accepted events delivered exactly once, body as mapped, Idempotency-Key <run_id>_{}",
                d.accepted,
                workload::HTTP_STEP
            ));
        } else {
            line("  check        FAILED:".to_string());
            for p in problems {
                line(format!("    - {p}"));
            }
            for e in &d.examples {
                line(format!("      e.g. {e}"));
            }
        }
        out
    }
}
