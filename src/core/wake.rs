//! Signals between the parts of one engine: triggers ring [`Wake::new_runs`] after storing runs
//! so the runner claims them at once instead of polling; the runner rings
//! [`Wake::run_ended`] so that requests waiting on a run (`?wait=`) look again.

use std::sync::Arc;

use tokio::sync::Notify;

/// Cheap to clone; clones share the signals.
#[derive(Debug, Clone, Default)]
pub struct Wake {
    inner: Arc<Signals>,
}

#[derive(Debug, Default)]
struct Signals {
    new_runs: Notify,
    run_ended: Notify,
}

impl Wake {
    /// New runs exist: wake the runner.
    pub fn new_runs(&self) {
        self.inner.new_runs.notify_one();
    }

    /// Waits until [`Wake::new_runs`] is rung (a ring while nobody waits is kept for the next
    /// wait).
    pub async fn wait_new_runs(&self) {
        self.inner.new_runs.notified().await;
    }

    /// A run ended on this node.
    pub fn run_ended(&self) {
        self.inner.run_ended.notify_waiters();
    }

    /// A future that completes at the next [`Wake::run_ended`]; create it before looking, so a
    /// ring between the look and the wait is not missed.
    pub fn run_ended_signal(&self) -> tokio::sync::futures::Notified<'_> {
        self.inner.run_ended.notified()
    }
}
