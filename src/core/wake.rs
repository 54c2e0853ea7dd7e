//! Signals between the parts of one engine: the group commit rings [`Wake::new_runs`] after
//! storing runs it could not hand to a worker, so the runner claims them at once instead of
//! polling; the runner rings
//! [`Wake::run_ended`] so that requests waiting on a run (`?wait=`) look again. At the end of a
//! shutdown's grace period the worker pool rings [`Wake::cut_off_attempts`], and attempts still
//! in flight stop and are recorded as cut off instead of vanishing with their task.

use std::sync::Arc;

use tokio::sync::{Notify, watch};

/// Cheap to clone; clones share the signals.
#[derive(Debug, Clone, Default)]
pub struct Wake {
    inner: Arc<Signals>,
}

#[derive(Debug, Default)]
struct Signals {
    new_runs: Notify,
    run_ended: Notify,
    /// Turns true once, when attempts in flight must stop (end of the shutdown grace period).
    cut_off: watch::Sender<bool>,
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

    /// Attempts in flight must stop now; attempts started later stop at once too.
    pub fn cut_off_attempts(&self) {
        self.inner.cut_off.send_replace(true);
    }

    /// Whether [`Wake::cut_off_attempts`] was rung.
    pub fn is_cut_off(&self) -> bool {
        *self.inner.cut_off.borrow()
    }

    /// Completes once [`Wake::cut_off_attempts`] was rung (at once if it already was).
    pub async fn attempts_cut_off(&self) {
        let mut cut_off = self.inner.cut_off.subscribe();
        if cut_off.wait_for(|cut| *cut).await.is_err() {
            // The sender lives as long as `self`; never reached, but never a false alarm either.
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cut_off_reaches_waiters_before_and_after_the_ring() {
        let wake = Wake::default();
        let early = tokio::spawn({
            let wake = wake.clone();
            async move { wake.attempts_cut_off().await }
        });
        assert!(
            tokio::time::timeout(
                std::time::Duration::from_millis(20),
                wake.attempts_cut_off()
            )
            .await
            .is_err(),
            "no cut-off before the ring"
        );
        assert!(!wake.is_cut_off());
        wake.cut_off_attempts();
        assert!(wake.is_cut_off());
        early.await.expect("the early waiter ends");
        wake.attempts_cut_off().await;
    }
}
