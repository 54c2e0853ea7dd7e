//! The `delay` step: a durable wait. The run is parked as `waiting` with a wake-up time in the
//! database, so the wait survives restarts. Output: `{until}`. The runner does the waiting (see
//! `Plan::Delay`); this module holds the configuration and its rules.

use crate::core::diagnostic::{Diagnostic, FlowPath};
use crate::core::duration::Duration;
use crate::step::check::Context;

/// How long to wait, e.g. `10m`.
pub type DelayConfig = Duration;

/// Checks a `delay` step at `path`. The shape check has already read the duration, and every
/// duration it accepts is a valid wait, so there is nothing more to check.
pub fn validate(_delay: &DelayConfig, _path: &FlowPath, _cx: &Context<'_>) -> Vec<Diagnostic> {
    Vec::new()
}
