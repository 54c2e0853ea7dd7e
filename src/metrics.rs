//! Prometheus metrics of one engine, served as text by `GET /metrics`.
//!
//! Each [`Metrics`] owns its own registry, so several engines in one process (tests, an
//! embedding program) never share or double-count, and nothing is installed globally. Counters
//! and the step histogram are updated on the hot path: one hash lookup of the label values and
//! a few atomic operations, no database work and no allocation once a label set has been seen.
//! Counts that live in the database (runs waiting for a worker) are read at scrape time by the
//! caller and passed to [`Metrics::render`].
//!
//! Label values come from flows (flow ids), from closed sets (statuses, step kinds, outcomes),
//! or, for events, from entity types that some flow listens to: a sender cannot grow the set of
//! series by inventing entity types. rust-prometheus hashes label values without a separator,
//! so label sets are only told apart safely when one value of each pair comes from a closed set
//! whose members are not suffixes of one another; every metric here has such a label.

use std::sync::Arc;
use std::time::Instant;

use prometheus::proto::MetricFamily;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::core::status::RunStatus;
use crate::core::workspace::split_flow_key;
use crate::store::usage::ActiveRuns;

/// The content type of the text exposition format 0.0.4.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// The `entity` label of events whose type no flow listens to.
pub const OTHER_ENTITY: &str = "_other";

/// Upper bounds of the step-duration buckets, in seconds: from a `map` step's microseconds to
/// an HTTP call near its default 30 s timeout.
const STEP_BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics: {0}")]
    Prometheus(#[from] prometheus::Error),
}

/// How one attempt of an `http` step ended, as the `outcome` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpOutcome {
    /// The target answered 2xx.
    Success,
    /// The target answered, with anything but 2xx (or too many redirects).
    HttpError,
    /// No complete answer within the step's timeout.
    Timeout,
    /// Connecting, sending or reading failed (refused, reset, DNS, broken response).
    ConnectionError,
    /// Never sent: the request could not be built or the network policy refused the target.
    NotSent,
}

impl HttpOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpOutcome::Success => "success",
            HttpOutcome::HttpError => "http_error",
            HttpOutcome::Timeout => "timeout",
            HttpOutcome::ConnectionError => "connection_error",
            HttpOutcome::NotSent => "not_sent",
        }
    }
}

/// The metrics of one engine; cloning shares them.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    runs_finished: IntCounterVec,
    step_duration: HistogramVec,
    http_attempts: IntCounterVec,
    events_ingested: IntCounterVec,
    webhooks_received: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let build_info = IntGaugeVec::new(
            Opts::new(
                "flowd_build_info",
                "The flowd version, as a label; always 1.",
            ),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        registry.register(Box::new(build_info))?;
        let inner = Inner {
            runs_finished: counter(
                &registry,
                "flowd_runs_finished_total",
                "Runs that reached a terminal state on this node, by flow and status.",
                &["workspace", "flow", "status"],
            )?,
            step_duration: histogram(
                &registry,
                "flowd_step_duration_seconds",
                "Time one execution of a step took on this node (an attempt for http and notify), by flow and kind.",
                &["workspace", "flow", "kind"],
            )?,
            http_attempts: counter(
                &registry,
                "flowd_http_attempts_total",
                "Attempts of http steps made by this node, by flow and outcome.",
                &["workspace", "flow", "outcome"],
            )?,
            events_ingested: counter(
                &registry,
                "flowd_events_ingested_total",
                "Entity events accepted by POST /api/v1/events on this node, by entity type (_other: types no flow listens to).",
                &["entity"],
            )?,
            webhooks_received: counter(
                &registry,
                "flowd_webhooks_received_total",
                "Webhook requests accepted for a flow on this node (signature and body valid).",
                &["workspace", "flow"],
            )?,
            registry,
        };
        Ok(Metrics {
            inner: Arc::new(inner),
        })
    }

    /// A run ended with `status` on this node.
    pub fn run_finished(&self, flow: &str, status: RunStatus) {
        let (workspace, flow) = split_flow_key(flow);
        self.inner
            .runs_finished
            .with_label_values(&[workspace, flow, status.as_str()])
            .inc();
    }

    /// One execution of a step of `kind` that began at `started` is over.
    pub fn step_executed(&self, flow: &str, kind: &str, started: Instant) {
        let (workspace, flow) = split_flow_key(flow);
        self.inner
            .step_duration
            .with_label_values(&[workspace, flow, kind])
            .observe(started.elapsed().as_secs_f64());
    }

    pub fn http_attempt(&self, flow: &str, outcome: HttpOutcome) {
        let (workspace, flow) = split_flow_key(flow);
        self.inner
            .http_attempts
            .with_label_values(&[workspace, flow, outcome.as_str()])
            .inc();
    }

    /// Counts accepted events by entity type; a type for which `listened` is false counts as
    /// [`OTHER_ENTITY`]. Consecutive events of one type (a batch) cost one counter update.
    pub fn events_ingested<'a>(
        &self,
        entities: impl IntoIterator<Item = &'a str>,
        listened: impl Fn(&str) -> bool,
    ) {
        let mut current: Option<(&str, u64)> = None;
        for entity in entities {
            match &mut current {
                Some((same, n)) if *same == entity => *n += 1,
                _ => {
                    self.add_events(current.take(), &listened);
                    current = Some((entity, 1));
                }
            }
        }
        self.add_events(current, &listened);
    }

    fn add_events(&self, run: Option<(&str, u64)>, listened: &impl Fn(&str) -> bool) {
        if let Some((entity, n)) = run {
            let label = if listened(entity) {
                entity
            } else {
                OTHER_ENTITY
            };
            self.inner
                .events_ingested
                .with_label_values(&[label])
                .inc_by(n);
        }
    }

    pub fn webhook_received(&self, flow: &str) {
        let (workspace, flow) = split_flow_key(flow);
        self.inner
            .webhooks_received
            .with_label_values(&[workspace, flow])
            .inc();
    }

    /// The text exposition of every metric, with the run counts read from the database when
    /// the caller could read them (left out, rather than shown stale, when it could not).
    pub fn render(&self, active: Option<&ActiveRuns>) -> Result<String, MetricsError> {
        let mut families = self.inner.registry.gather();
        if let Some(active) = active {
            families.extend(database_gauges(active)?);
        }
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut text = String::new();
        TextEncoder::new().encode_utf8(&families, &mut text)?;
        Ok(text)
    }
}

/// `flowd_queue_depth` and `flowd_runs_active`, built afresh for one scrape.
fn database_gauges(active: &ActiveRuns) -> Result<Vec<MetricFamily>, MetricsError> {
    let registry = Registry::new();
    let depth = IntGauge::new(
        "flowd_queue_depth",
        "Runs waiting for a worker: pending (due or held back by a rate limit) plus waiting (a delay or a retry backoff), on every node.",
    )?;
    depth.set(active.pending + active.waiting);
    registry.register(Box::new(depth))?;
    let by_status = IntGaugeVec::new(
        Opts::new(
            "flowd_runs_active",
            "Runs not finished yet, by status, on every node.",
        ),
        &["status"],
    )?;
    for (status, n) in [
        (RunStatus::Pending, active.pending),
        (RunStatus::Running, active.running),
        (RunStatus::Waiting, active.waiting),
        (RunStatus::Held, active.held),
    ] {
        by_status.with_label_values(&[status.as_str()]).set(n);
    }
    registry.register(Box::new(by_status))?;
    Ok(registry.gather())
}

fn counter(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, MetricsError> {
    let counter = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(counter.clone()))?;
    Ok(counter)
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<HistogramVec, MetricsError> {
    let opts = HistogramOpts::new(name, help).buckets(STEP_BUCKETS.to_vec());
    let histogram = HistogramVec::new(opts, labels)?;
    registry.register(Box::new(histogram.clone()))?;
    Ok(histogram)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active() -> ActiveRuns {
        ActiveRuns {
            pending: 3,
            running: 2,
            waiting: 4,
            held: 0,
        }
    }

    #[test]
    fn counters_and_database_gauges_render_as_text() {
        let metrics = Metrics::new().unwrap();
        metrics.run_finished("sync", RunStatus::Succeeded);
        metrics.run_finished("sync", RunStatus::Succeeded);
        metrics.http_attempt("sync", HttpOutcome::Timeout);
        metrics.step_executed("sync", "http", Instant::now());
        metrics.webhook_received("hook");
        // A flow key of another workspace is labelled with its workspace and bare id.
        metrics.run_finished("acme/sync", RunStatus::Failed);
        let text = metrics.render(Some(&active())).unwrap();
        for line in [
            r#"flowd_runs_finished_total{flow="sync",status="succeeded",workspace="default"} 2"#,
            r#"flowd_http_attempts_total{flow="sync",outcome="timeout",workspace="default"} 1"#,
            r#"flowd_step_duration_seconds_count{flow="sync",kind="http",workspace="default"} 1"#,
            r#"flowd_step_duration_seconds_bucket{flow="sync",kind="http",workspace="default",le="0.001"} 1"#,
            r#"flowd_webhooks_received_total{flow="hook",workspace="default"} 1"#,
            r#"flowd_runs_finished_total{flow="sync",status="failed",workspace="acme"} 1"#,
            "flowd_queue_depth 7",
            r#"flowd_runs_active{status="running"} 2"#,
            r#"flowd_build_info{version=""#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        let without_db = metrics.render(None).unwrap();
        assert!(!without_db.contains("flowd_queue_depth"), "{without_db}");
    }

    #[test]
    fn events_of_unlistened_types_share_one_label() {
        let metrics = Metrics::new().unwrap();
        let listened = |e: &str| e == "guest";
        metrics.events_ingested(["guest", "guest", "spam1", "guest", "spam2"], listened);
        metrics.events_ingested([], listened);
        let text = metrics.render(None).unwrap();
        assert!(
            text.contains(r#"flowd_events_ingested_total{entity="guest"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"flowd_events_ingested_total{entity="_other"} 2"#),
            "{text}"
        );
        assert!(!text.contains("spam"), "{text}");
    }

    #[test]
    fn engines_do_not_share_metrics() {
        let (a, b) = (Metrics::new().unwrap(), Metrics::new().unwrap());
        a.run_finished("f", RunStatus::Failed);
        assert!(
            a.render(None)
                .unwrap()
                .contains("flowd_runs_finished_total")
        );
        assert!(
            !b.render(None)
                .unwrap()
                .contains("flowd_runs_finished_total")
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let metrics = Metrics::new().unwrap();
        metrics.webhook_received("a\"b\\c\nd");
        let text = metrics.render(None).unwrap();
        assert!(
            text.contains(
                r#"flowd_webhooks_received_total{flow="a\"b\\c\nd",workspace="default"} 1"#
            ),
            "{text}"
        );
    }
}
