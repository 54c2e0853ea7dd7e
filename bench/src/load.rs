//! The clients: `concurrency` tasks post events to `POST /api/v1/events`, `batch` per request.
//!
//! Closed loop (default): each client sends its next request as soon as the previous one is
//! answered, until `count` events are sent or `duration` has passed. Open loop (`--rate N`):
//! request `k` is due at `start + k × batch / N` whatever the answers do; its events' send time
//! is the due time, so a server (or a client pool) that falls behind shows up in the latency
//! instead of hiding it (no coordinated omission).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use reqwest::header::CONTENT_TYPE;
use serde_json::Value;
use tokio::task::JoinSet;

use crate::workload;

/// A request is "late" in open-loop mode when it leaves this long after its due time.
const LATE: Duration = Duration::from_millis(10);
/// At most this many error messages are kept.
const KEPT_ERRORS: usize = 10;

pub struct Plan {
    /// `POST /api/v1/events` of each node; client `i` posts to `events_urls[i % len]`.
    pub events_urls: Vec<String>,
    pub count: usize,
    pub batch: usize,
    pub concurrency: usize,
    pub duration: Duration,
    pub rate: Option<f64>,
}

/// Per-event record, indexed by event number. Times are nanoseconds since the epoch plus one
/// (0 = not happened).
pub struct Events {
    pub t0: Instant,
    pub sent_ns: Vec<AtomicU64>,
    pub acked_ns: Vec<AtomicU64>,
    /// The run the event started, from the answer.
    pub run_id: Vec<OnceLock<String>>,
}

impl Events {
    pub fn new(t0: Instant, count: usize) -> Events {
        Events {
            t0,
            sent_ns: (0..count).map(|_| AtomicU64::new(0)).collect(),
            acked_ns: (0..count).map(|_| AtomicU64::new(0)).collect(),
            run_id: (0..count).map(|_| OnceLock::new()).collect(),
        }
    }

    fn ns(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.t0).as_nanos() as u64
    }

    pub fn sent(&self, n: usize) -> Option<u64> {
        self.sent_ns[n].load(Ordering::Acquire).checked_sub(1)
    }

    pub fn acked(&self, n: usize) -> Option<u64> {
        self.acked_ns[n].load(Ordering::Acquire).checked_sub(1)
    }
}

/// What the clients saw.
#[derive(Default)]
pub struct LoadStats {
    pub requests: usize,
    pub events_sent: usize,
    pub events_acked: usize,
    /// Round trip of each answered request, ns.
    pub ack_latency_ns: Vec<u64>,
    pub error_count: usize,
    pub errors: Vec<String>,
    /// Requests answered 429 (intake pushing back); also counted in `error_count`, as the
    /// harness does not retry them.
    pub pushed_back: usize,
    /// Open loop: requests that left more than [`LATE`] after their due time, and the worst lag.
    pub late_requests: usize,
    pub max_lag_ns: u64,
    /// Events whose answer did not list exactly one run.
    pub bad_acks: usize,
}

impl LoadStats {
    fn merge(&mut self, other: LoadStats) {
        self.requests += other.requests;
        self.events_sent += other.events_sent;
        self.events_acked += other.events_acked;
        self.ack_latency_ns.extend(other.ack_latency_ns);
        self.error_count += other.error_count;
        self.pushed_back += other.pushed_back;
        for e in other.errors {
            if self.errors.len() < KEPT_ERRORS {
                self.errors.push(e);
            }
        }
        self.late_requests += other.late_requests;
        self.max_lag_ns = self.max_lag_ns.max(other.max_lag_ns);
        self.bad_acks += other.bad_acks;
    }

    fn error(&mut self, message: String) {
        self.error_count += 1;
        if self.errors.len() < KEPT_ERRORS {
            self.errors.push(message);
        }
    }
}

pub async fn run(plan: Arc<Plan>, events: Arc<Events>, http: reqwest::Client) -> LoadStats {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut clients = JoinSet::new();
    for i in 0..plan.concurrency {
        clients.spawn(client(
            i,
            plan.clone(),
            events.clone(),
            http.clone(),
            next.clone(),
            start,
        ));
    }
    let mut stats = LoadStats::default();
    while let Some(done) = clients.join_next().await {
        match done {
            Ok(s) => stats.merge(s),
            Err(e) => stats.error(format!("a client task failed: {e}")),
        }
    }
    stats
}

async fn client(
    index: usize,
    plan: Arc<Plan>,
    events: Arc<Events>,
    http: reqwest::Client,
    next: Arc<AtomicUsize>,
    start: Instant,
) -> LoadStats {
    let mut stats = LoadStats::default();
    let events_url = &plan.events_urls[index % plan.events_urls.len()];
    let requests = plan.count.div_ceil(plan.batch);
    let deadline = start + plan.duration;
    loop {
        let k = next.fetch_add(1, Ordering::Relaxed);
        if k >= requests {
            break;
        }
        let first = k * plan.batch;
        let last = (first + plan.batch).min(plan.count);
        let send_at = match plan.rate {
            Some(rate) => {
                let due = start + Duration::from_secs_f64(first as f64 / rate);
                if due >= deadline {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                let lag = Instant::now().saturating_duration_since(due);
                stats.max_lag_ns = stats.max_lag_ns.max(lag.as_nanos() as u64);
                if lag > LATE {
                    stats.late_requests += 1;
                }
                due
            }
            None => {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                now
            }
        };
        let body = workload::request_body(first, last, plan.batch);
        let send_ns = events.ns(send_at) + 1;
        for n in first..last {
            events.sent_ns[n].store(send_ns, Ordering::Release);
        }
        stats.requests += 1;
        stats.events_sent += last - first;
        let left = Instant::now();
        let answer = http
            .post(events_url)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let response = match answer {
            Ok(r) => r,
            Err(e) => {
                stats.error(format!("events {first}..{last}: {}", error_chain(&e)));
                continue;
            }
        };
        let status = response.status();
        let bytes = match response.bytes().await {
            Ok(b) => b,
            Err(e) => {
                stats.error(format!(
                    "events {first}..{last}: reading the answer: {}",
                    error_chain(&e)
                ));
                continue;
            }
        };
        let answered = Instant::now();
        if status.as_u16() != 202 {
            if status.as_u16() == 429 {
                stats.pushed_back += 1;
            }
            let text = String::from_utf8_lossy(&bytes);
            stats.error(format!(
                "events {first}..{last}: HTTP {status}: {}",
                text.chars().take(300).collect::<String>()
            ));
            continue;
        }
        stats
            .ack_latency_ns
            .push(answered.duration_since(left).as_nanos() as u64);
        let acked_ns = events.ns(answered) + 1;
        let items = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| match v.get("items") {
                Some(Value::Array(items)) => Some(items.clone()),
                _ => None,
            })
            .unwrap_or_default();
        if items.len() != last - first {
            stats.bad_acks += last - first;
            stats.error(format!(
                "events {first}..{last}: the answer lists {} items: {}",
                items.len(),
                String::from_utf8_lossy(&bytes)
                    .chars()
                    .take(300)
                    .collect::<String>()
            ));
            continue;
        }
        for (i, item) in items.iter().enumerate() {
            let n = first + i;
            match item
                .get("runs")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
            {
                Some([Value::String(run)]) => {
                    let _ = events.run_id[n].set(run.clone());
                    events.acked_ns[n].store(acked_ns, Ordering::Release);
                    stats.events_acked += 1;
                }
                _ => {
                    stats.bad_acks += 1;
                    stats.error(format!(
                        "event {}: the answer does not list exactly one run: {item}",
                        n + 1
                    ));
                }
            }
        }
    }
    stats
}

/// An error with its causes, which is where reqwest keeps the useful part.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
